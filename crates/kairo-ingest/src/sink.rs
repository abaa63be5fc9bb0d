//! Where sources deliver events.

use async_trait::async_trait;
use kairo_core::Event;

/// The sink could not take the events; the sender should try again later.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl SinkError {
    /// A sink error caused by `source`.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(source))
    }
}

/// Takes normalized events from a source.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Takes `events`; once this returns `Ok`, the source may acknowledge them.
    /// Returns how many were duplicates of events already taken (acknowledged, but nothing new happens).
    async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError>;

    /// Keeps input a source could not turn into events (a dead letter), with the reason.
    /// Once this returns `Ok`, the source may acknowledge the input.
    async fn reject_input(
        &self,
        source: &str,
        input: &[u8],
        reason: &str,
    ) -> Result<(), SinkError> {
        tracing::warn!(source, reason, bytes = input.len(), "input rejected");
        Ok(())
    }

    /// Notes that a source rejected input, for metrics; `reason` is a short label.
    fn rejected(&self, reason: &'static str) {
        let _ = reason;
    }

    /// Why the sink cannot take events now (its store cannot commit, say), or
    /// `None` when it can; `GET /readyz` answers 503 with this reason.
    fn not_ready(&self) -> Option<String> {
        None
    }

    /// Prometheus text exposition of the router's metrics.
    fn metrics(&self) -> String {
        String::new()
    }
}
