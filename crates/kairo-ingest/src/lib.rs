//! Kairo's event sources. Each source turns what it receives into
//! [`kairo_core::Event`]s and hands them to an [`EventSink`], acknowledging the
//! sender only after the sink has taken them.
//!
//! - [`sink`]: the [`EventSink`] trait sources deliver to
//! - [`webhook`]: `POST /v1/events`, `GET /healthz`, `GET /metrics` over HTTP (axum)
//! - [`server`]: serving HTTP with connection, header and idle bounds
//! - [`nats`]: NATS core subjects (optionally in a queue group) and JetStream durable consumers

pub mod cluster;
pub mod config;
pub mod nats;
pub mod server;
pub mod sink;
pub mod webhook;

pub use config::ServerConfig;
pub use sink::{EventSink, SinkError};
pub use webhook::webhook_router;
