//! Kairo's engine: events arrive on the webhook or NATS, are committed to the
//! store, run through the rule scripts and SORACOM event handlers (one
//! [`pipeline`]), and the actions they ask for are performed durably by the
//! [`dispatch`]er through action plugins.
//!
//! - [`config`]: typed configuration and its loading
//! - [`router`]: [`Router::builder`] and the running router
//! - [`pipeline`]: the one evaluation of events against rules and handlers
//! - [`dry_run`]: the same evaluation without a store or a network (`kairo test`)
//! - [`dispatch`]: performing actions durably, with retries and [`limits`]
//! - [`writer`]: group commit to the store
//! - [`directory`]: SIMs and groups learned from events and the SORACOM API
//! - [`plan`]: configuration to checked registry, rules and handlers, before anything starts
//! - [`handlers`], [`rules`]: loading SORACOM handlers and rule scripts
//! - [`admin`]: operator endpoints (dead letters, history, status)
//! - [`builtin`], [`plugins`]: the action registry
//! - [`metrics`], [`telemetry`], [`shutdown`]: operations

pub mod admin;
pub mod builtin;
mod cluster;
pub mod config;
pub mod console;
pub mod directory;
pub mod dispatch;
pub mod dry_run;
pub mod error;
pub mod handlers;
pub mod limits;
mod matcher;
pub mod metrics;
pub mod operator_mail;
mod partition;
pub mod pipeline;
pub mod plan;
pub mod plugins;
pub mod recorded;
pub mod replay;
pub mod router;
pub mod rule_test;
pub mod rules;
pub mod scheduled;
pub mod shutdown;
mod sink;
pub mod stats;
pub mod telemetry;
pub mod trace;
pub mod watcher;
pub mod writer;

pub use config::KairoConfig;
pub use error::RouterError;
pub use router::{Router, RouterBuilder, RunningRouter};

/// Kairo's version and the source revision it was built from, e.g. `0.1.0 (3f2a9c1d0b7e)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUILD_REVISION"), ")");
