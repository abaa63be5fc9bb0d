//! Where the webhook and NATS deliver events: the durable inbox, then the matcher.

use std::sync::Arc;

use async_trait::async_trait;
use kairo_core::{Clock, Event};
use kairo_ingest::{EventSink, SinkError};
use kairo_store::{Batch, DeadLetter, DeadLetterKind, StoredEvent};
use tokio::sync::mpsc;

use crate::dispatch::InFlight;
use crate::metrics::{Metrics, RejectLabels};
use crate::writer::StoreWriter;

#[derive(Clone)]
pub(crate) struct RouterSink {
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) writer: StoreWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) source: String,
}

impl RouterSink {
    /// Commits `events` to the inbox and hands the new ones to the matcher;
    /// returns how many were duplicates.
    async fn commit_and_hand_off(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        let now = self.clock.now_ms();
        let stored = events
            .iter()
            .map(|event| StoredEvent {
                event: event.to_value(),
                received_at_ms: now,
                source: self.source.clone(),
            })
            .collect();
        let fresh = self
            .writer
            .commit(Batch {
                accept: stored,
                ..Batch::default()
            })
            .await
            .map_err(SinkError::new)?;
        let total = events.len();
        let mut duplicates = 0;
        for (event, is_new) in events.into_iter().zip(fresh) {
            if !is_new {
                duplicates += 1;
                continue;
            }
            self.in_flight.add(1);
            if self.events.send(event).await.is_err() {
                // Durable already: evaluated on the next start.
                self.in_flight.done(1);
            }
        }
        self.metrics
            .events_accepted
            .inc_by((total - duplicates) as u64);
        self.metrics.events_duplicate.inc_by(duplicates as u64);
        Ok(duplicates)
    }
}

#[async_trait]
impl EventSink for RouterSink {
    async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        // The commit and the hand-off run in their own task: the caller (an
        // HTTP handler whose client hung up, say) may be dropped at any await,
        // and whatever the store commits must still reach the matcher.
        let sink = self.clone();
        tokio::spawn(async move { sink.commit_and_hand_off(events).await })
            .await
            .map_err(SinkError::new)?
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
