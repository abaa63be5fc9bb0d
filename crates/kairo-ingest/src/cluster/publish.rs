//! Publishing events into the partition stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use kairo_core::Event;

use super::{ClusterConfig, partition_of};
use crate::{EventSink, SinkError};

/// A cluster-mode failure at start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The partition stream, a consumer or the members bucket could not be
    /// found or created.
    #[error("JetStream {what}: {message}")]
    JetStream {
        /// What was set up.
        what: String,
        /// Why it failed.
        message: String,
    },
}

impl ClusterError {
    pub(crate) fn js(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// A sink that stores events in the partition stream: each in its SIM's
/// partition, its id as `Nats-Msg-Id`; taken once JetStream acknowledged it.
/// Rejected input, readiness and metrics are the local router's.
#[derive(Clone)]
pub struct PartitionPublisher {
    js: jetstream::Context,
    config: ClusterConfig,
    local: Arc<dyn EventSink>,
}

impl PartitionPublisher {
    /// Creates the partition stream when missing (work-queue retention: a
    /// message leaves once its partition's instance acknowledged it; ids are
    /// deduplicated for `dedupe_window`) and the partitions' state stream,
    /// and returns the publisher.
    pub async fn open(
        js: jetstream::Context,
        config: ClusterConfig,
        dedupe_window: Duration,
        local: Arc<dyn EventSink>,
    ) -> Result<Self, ClusterError> {
        let name = config.stream.clone();
        js.get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: dedupe_window,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
        super::journal::open_stream(&js, &config).await?;
        Ok(Self { js, config, local })
    }
}

#[async_trait]
impl EventSink for PartitionPublisher {
    async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let partition = partition_of(event, self.config.partitions);
            let payload = serde_json::to_vec(&event.to_value()).expect("events serialize");
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(&event.id);
            let ack = (self
                .js
                .send_publish(self.config.subject(partition), publish)
                .await)
                .map_err(SinkError::new)?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            duplicates += usize::from(ack.await.map_err(SinkError::new)?.duplicate);
        }
        Ok(duplicates)
    }

    async fn reject_input(
        &self,
        source: &str,
        input: &[u8],
        reason: &str,
    ) -> Result<(), SinkError> {
        self.local.reject_input(source, input, reason).await
    }

    fn rejected(&self, reason: &'static str) {
        self.local.rejected(reason);
    }

    fn not_ready(&self) -> Option<String> {
        self.local.not_ready()
    }

    fn metrics(&self) -> String {
        self.local.metrics()
    }
}
