//! The [`Action`] trait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::params::InvalidParams;
use crate::{ActionError, ActionRequest};

/// What an action reports on success (e.g. the HTTP status it got), for logs and history.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActionOutcome {
    /// Free-form detail about the result.
    pub detail: serde_json::Value,
}

impl ActionOutcome {
    /// An outcome carrying `detail`.
    pub fn new(detail: serde_json::Value) -> Self {
        Self { detail }
    }
}

/// What an action gets to run with: shared clients, its configuration section,
/// its deadline and cancellation.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// A shared HTTP client (connection pooling across actions).
    pub http: reqwest::Client,
    /// The plugin's `[plugins.<name>]` configuration section (`null` when absent).
    pub config: Arc<serde_json::Value>,
    /// When the attempt must be finished; the dispatcher cuts it off then.
    pub deadline: Instant,
    /// Cancelled when the router shuts down.
    pub cancel: CancellationToken,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
}

impl ActionContext {
    /// A context whose deadline is `timeout` from now, with no configuration section.
    pub fn new(
        http: reqwest::Client,
        timeout: Duration,
        cancel: CancellationToken,
        attempt: u32,
    ) -> Self {
        Self {
            http,
            config: Arc::new(serde_json::Value::Null),
            deadline: Instant::now() + timeout,
            cancel,
            attempt,
        }
    }

    /// The same context with `config` as the configuration section.
    pub fn with_config(mut self, config: Arc<serde_json::Value>) -> Self {
        self.config = config;
        self
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// An action plugin: validates parameters up front and performs requests.
#[async_trait]
pub trait Action: Send + Sync + 'static {
    /// The name rule scripts use to call it, e.g. `set_group`.
    fn name(&self) -> &str;

    /// The family it belongs to (e.g. `soracom`); concurrency and rate limits are per family.
    fn family(&self) -> &str {
        self.name()
    }

    /// The plugin's version, shown by `kairo plugins`.
    fn version(&self) -> &str {
        ""
    }

    /// Checks the plugin's `[plugins.<name>]` section at start; the message says which key is wrong.
    fn validate_config(&self, config: &serde_json::Value) -> Result<(), InvalidParams> {
        let _ = config;
        Ok(())
    }

    /// Checks parameters without performing anything; the message says which parameter is wrong.
    fn validate(&self, params: &serde_json::Value) -> Result<(), InvalidParams> {
        let _ = params;
        Ok(())
    }

    /// Performs one attempt of the request.
    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError>;
}
