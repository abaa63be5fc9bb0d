//! Kairo: a self-hosted, plugin-based event router for SORACOM IoT fleets.
//!
//! Events arrive on the webhook, run through Rhai rule scripts, and the
//! actions the rules ask for are performed by action plugins (SORACOM API,
//! Slack, email, web requests, or your own). This crate wires the workspace's
//! crates into a running [`Router`]; the binary adds the command line.
//!
//! - [`config`]: typed configuration and its loading
//! - [`router`]: [`Router::builder`] and the running router
//! - [`dispatch`]: performing actions durably, with retries and [`limits`]
//! - [`writer`]: group commit to the store
//! - [`admin`], [`dlq`]: dead letters over HTTP and on the command line
//! - [`check`]: `kairo check` and `kairo test`
//! - [`builtin`]: the built-in action plugins
//! - [`catcher`]: a request catcher for local demos
//! - [`metrics`], [`telemetry`], [`shutdown`]: operations

pub mod admin;
pub mod builtin;
pub mod catcher;
pub mod check;
pub mod config;
pub mod directory;
pub mod dispatch;
pub mod dlq;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod plugins;

pub mod router;
pub mod shutdown;
pub mod telemetry;
pub mod writer;

pub use config::KairoConfig;
pub use router::{Router, RouterBuilder, RunningRouter};

pub use kairo_core as core;
pub use kairo_plugin as plugin;
