//! Where the webhook, NATS and the SORACOM watcher deliver events: the
//! matcher, which evaluates them and commits them with their evaluation.

use std::sync::Arc;

use async_trait::async_trait;
use kairo_core::{Clock, Event};
use kairo_ingest::cluster::{PartitionEvaluation, PartitionSink};
use kairo_ingest::{EventSink, SinkError};
use kairo_store::{Batch, DeadLetter, DeadLetterKind};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{InFlight, OutcomeHook};
use crate::matcher::{Incoming, Work};
use crate::metrics::{Metrics, RejectLabels};
use crate::writer::{CommitError, StoreWriter};

#[derive(Clone)]
pub(crate) struct RouterSink {
    pub(crate) work: mpsc::Sender<Work>,
    pub(crate) writer: StoreWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) source: String,
    /// In cluster mode: where rejected input is kept first (with the
    /// cluster's dead letters); the store keeps what it could not.
    pub(crate) dead_letters: Option<Arc<dyn OutcomeHook>>,
}

impl RouterSink {
    /// Hands `events` to the matcher as the work `kind` makes of them and
    /// waits for its answer. Safe to drop at any await (a client that hangs
    /// up, say): before the hand-over nothing was sent; after it, the
    /// matcher does the work all the same, and only the answer is lost.
    async fn hand_over<T: Send + 'static>(
        &self,
        events: Vec<Event>,
        kind: impl FnOnce(Vec<Incoming>, oneshot::Sender<Result<T, CommitError>>) -> Work,
    ) -> Result<T, SinkError> {
        if let Some(problem) = self.writer.health().problem() {
            return Err(SinkError::new(CommitError::Unusable(problem)));
        }
        let slot = (self.work.reserve().await).map_err(|_| SinkError::new(CommitError::Stopped))?;
        let now = self.clock.now_ms();
        let total = events.len();
        let incoming = (events.into_iter())
            .map(|event| Incoming {
                event,
                received_at_ms: now,
                source: self.source.clone(),
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        // No await between counting them in flight and handing them over.
        self.in_flight.add(total);
        slot.send(kind(incoming, reply));
        // The matcher counts them in the metrics once committed.
        (answer.await)
            .map_err(|_| SinkError::new(CommitError::Stopped))?
            .map_err(SinkError::new)
    }
}

#[async_trait]
impl PartitionSink for RouterSink {
    /// Evaluates and commits one partition's events; returns the state
    /// changes its journal keeps and the actions the cluster performs.
    async fn evaluate(&self, events: Vec<Event>) -> Result<PartitionEvaluation, SinkError> {
        self.hand_over(events, Work::Partition).await
    }

    async fn restore(&self, values: Vec<(String, Option<i64>)>) -> Result<(), SinkError> {
        let (reply, done) = oneshot::channel();
        (self.work.send(Work::Restore(values, reply)).await)
            .map_err(|_| SinkError::new(CommitError::Stopped))?;
        done.await.map_err(|_| SinkError::new(CommitError::Stopped))
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

#[async_trait]
impl EventSink for RouterSink {
    /// Hands `events` to the matcher and waits until they are committed with
    /// their evaluation; returns how many were duplicates. Safe to drop at
    /// any await (a client that hangs up, say): before the hand-over nothing
    /// was sent; after it, the matcher commits and evaluates them all the
    /// same, and only the answer is lost.
    async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        self.hand_over(events, Work::Accept).await
    }

    async fn reject_input(
        &self,
        source: &str,
        input: &[u8],
        reason: &str,
    ) -> Result<(), SinkError> {
        const KEPT: usize = 64 * 1024;
        let now = self.clock.now_ms();
        let hash = blake3::hash(input).to_hex();
        let letter = DeadLetter {
            id: format!("input/{now}/{}", &hash[..16]),
            kind: DeadLetterKind::Input,
            action: None,
            input: Some(String::from_utf8_lossy(&input[..input.len().min(KEPT)]).into_owned()),
            source: Some(source.to_string()),
            error: reason.to_string(),
            failed_at_ms: now,
        };
        tracing::warn!(source, reason, id = %letter.id, "input rejected; kept as a dead letter");
        if let Some(cluster) = &self.dead_letters
            && cluster.dead(&letter).await
        {
            return Ok(());
        }
        self.writer
            .commit(Batch {
                dead: vec![letter],
                ..Batch::default()
            })
            .await
            .map(|_| ())
            .map_err(SinkError::new)
    }

    fn rejected(&self, reason: &'static str) {
        self.metrics
            .events_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    fn not_ready(&self) -> Option<String> {
        self.writer
            .health()
            .problem()
            .map(|problem| format!("the store cannot commit: {problem}"))
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}
