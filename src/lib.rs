//! Kairo: a self-hosted, plugin-based event router for SORACOM IoT fleets.
//!
//! The engine lives in [`kairo_router`]; this crate is the command line: one
//! module per subcommand that needs more than wiring.
//!
//! - [`check`]: `kairo check`
//! - [`dlq`]: `kairo dlq`
//! - [`events`]: `kairo events export`
//! - [`explain`]: `kairo explain`
//! - [`replay`]: `kairo replay`
//! - [`soracom`]: `kairo soracom forward`
//! - [`suite`]: `kairo test` without an event file: the rule tests
//! - [`catcher`]: `kairo emulator catcher`, a request catcher for local demos

pub mod catcher;
pub mod check;
pub mod dlq;
pub mod events;
pub mod explain;
pub mod replay;
pub mod soracom;
pub mod suite;

pub use kairo_router::*;
pub use kairo_router::{KairoConfig, Router, RouterBuilder, RunningRouter};

pub use kairo_core as core;
pub use kairo_ingest as ingest;
pub use kairo_plugin as plugin;
