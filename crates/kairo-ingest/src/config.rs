//! `[server]`: the HTTP listener's address, authentication and bounds, read
//! by the webhook and the connection loop alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for the webhook, health and metrics endpoints.
    pub listen: String,
    /// When set, `POST /v1/events` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `GET /metrics` needs the token too (when `token` is set).
    pub metrics_require_token: bool,
    /// Count fires per rule and handler in `/metrics` (`kairo_rule_fires_total{rule}`):
    /// one series per rule that fired, so at most the number loaded.
    pub metrics_per_rule: bool,
    /// Largest accepted request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Events in one request, at most (413 beyond).
    pub max_events_per_request: usize,
    /// Events being accepted at once over HTTP, at most (503 with `Retry-After` beyond).
    pub max_events_in_flight: usize,
    /// Request body bytes being received or handled at once, at most (503 with `Retry-After` beyond).
    pub max_bytes_in_flight: usize,
    /// Seconds allowed for a request's headers, counted from when the server
    /// starts waiting for them (a new connection, or the previous answer sent).
    pub header_timeout_seconds: u64,
    /// Seconds allowed to receive a request's body (408 beyond).
    pub body_timeout_seconds: u64,
    /// A connection with no bytes read or written for this many seconds is closed.
    pub idle_timeout_seconds: u64,
    /// Connections open at once, at most; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            metrics_require_token: false,
            metrics_per_rule: true,
            max_body_bytes: 1024 * 1024,
            max_events_per_request: 5_000,
            max_events_in_flight: 20_000,
            max_bytes_in_flight: 64 * 1024 * 1024,
            header_timeout_seconds: 30,
            body_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            max_connections: 1_024,
        }
    }
}

impl ServerConfig {
    /// [`ServerConfig::header_timeout_seconds`] as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_seconds)
    }

    /// [`ServerConfig::body_timeout_seconds`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_seconds)
    }

    /// [`ServerConfig::idle_timeout_seconds`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    /// Every value that parses but makes no sense, as `(key, problem)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push((
                "server.listen",
                format!("not a socket address: {:?}", self.listen),
            ));
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            problems.push((
                "server.token",
                "is empty: set a token, or remove the key to run without authentication".into(),
            ));
        }
        if self.max_events_in_flight < self.max_events_per_request {
            problems.push((
                "server.max_events_in_flight",
                "must be at least server.max_events_per_request".into(),
            ));
        }
        if self.max_bytes_in_flight < self.max_body_bytes {
            problems.push((
                "server.max_bytes_in_flight",
                "must be at least server.max_body_bytes".into(),
            ));
        }
        for (key, value) in [
            ("server.max_body_bytes", self.max_body_bytes as u64),
            (
                "server.max_events_per_request",
                self.max_events_per_request as u64,
            ),
            ("server.header_timeout_seconds", self.header_timeout_seconds),
            ("server.body_timeout_seconds", self.body_timeout_seconds),
            ("server.idle_timeout_seconds", self.idle_timeout_seconds),
            ("server.max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                problems.push((key, "must be at least 1".into()));
            }
        }
        problems
    }
}
