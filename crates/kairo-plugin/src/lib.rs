//! Kairo's action plugin API. Every action Kairo performs, built-in or not, is an
//! [`Action`] registered by name in a [`Registry`]; the built-in actions use
//! exactly this API.
//!
//! - [`action`]: the [`Action`] trait and the [`ActionContext`] it runs with
//! - [`error`]: [`ActionError`], classed [`ErrorClass::Retryable`] or [`ErrorClass::Permanent`]
//! - [`registry`]: name → action lookup, with each plugin's origin and version
//! - [`http`]: helpers for actions that call HTTP endpoints
//! - [`params`]: helpers for reading and checking action parameters
//! - [`abi`]: the versioned C ABI for dynamic plugins and [`export_plugin!`] to implement it
//! - [`dynamic`]: loading dynamic plugins (`cdylib`) with libloading
//!
//! Writing a compiled-in action: implement [`Action`] and add it with
//! `kairo::Router::builder().plugin(MyAction::new())`. Writing a dynamic
//! plugin: implement [`abi::DynamicAction`] in a `cdylib` crate that depends
//! on this crate with `default-features = false`, and call [`export_plugin!`].

pub mod abi;
#[cfg(feature = "host")]
pub mod action;
#[cfg(feature = "host")]
pub mod dynamic;
pub mod error;
#[cfg(feature = "host")]
pub mod http;
pub mod params;
#[cfg(feature = "host")]
pub mod registry;

#[cfg(feature = "host")]
pub use action::{Action, ActionContext, ActionOutcome};
pub use error::{ActionError, ErrorClass};
pub use kairo_core::ActionRequest;
pub use params::InvalidParams;
#[cfg(feature = "host")]
pub use registry::{Origin, PluginInfo, Registry};
