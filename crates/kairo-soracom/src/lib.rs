//! SORACOM API access for Kairo: a client with AuthKey authentication and token
//! refresh, errors classed for retrying, and an emulator of the endpoints Kairo
//! calls for tests, demos and offline use.
//!
//! - [`client`]: [`SoracomClient`] and the [`SimOperation`]s it performs
//! - [`error`]: [`SoracomError`] with a [`SoracomErrorKind`]
//! - [`emulator`]: an in-memory SORACOM API served with axum
//! - [`forward`]: SORACOM event handlers that forward events to Kairo's webhook
//! - [`watch`]: what the watcher keeps of a SIM and the events its changes make

pub mod client;
pub mod emulator;
pub mod error;
pub mod forward;
pub mod watch;

pub use client::{ClientConfig, SimOperation, SoracomClient};
pub use error::{SoracomError, SoracomErrorKind};
