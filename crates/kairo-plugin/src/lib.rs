//! Kairo's action plugin API. Every action Kairo performs, built-in or not, is an
//! [`Action`] registered by name in a [`Registry`].
//!
//! - [`action`]: the [`Action`] trait and the [`ActionContext`] it runs with
//! - [`error`]: [`ActionError`], classed [`ErrorClass::Retryable`] or [`ErrorClass::Permanent`]
//! - [`registry`]: name → action lookup
//! - [`http`]: helpers for actions that call HTTP endpoints
//! - [`params`]: helpers for reading and checking action parameters

pub mod action;
pub mod error;
pub mod http;
pub mod params;
pub mod registry;

pub use action::{Action, ActionContext, ActionOutcome};
pub use error::{ActionError, ErrorClass};
pub use kairo_core::ActionRequest;
pub use registry::Registry;
