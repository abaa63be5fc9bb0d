//! Actions in JetStream: whoever evaluated an event, any instance performs
//! its actions, and a delayed action waits in NATS, not in one instance.
//!
//! - A partition's owner publishes each action it asked for to the actions
//!   stream before it appends the partition's journal, with the action's
//!   idempotency key as `Nats-Msg-Id` (an action asked for again, after a
//!   takeover, is a duplicate). One due now goes to `{prefix}.due`; a delayed
//!   one is a message schedule on `{prefix}.at.{key}` (`Nats-Schedule: @at
//!   …`, nats-server 2.12+), which the server itself publishes to
//!   `{prefix}.due` when it is due, whichever instances are alive.
//! - Every instance pulls `{prefix}.due` through one shared durable consumer
//!   and performs what it pulled under its limits; a message is acknowledged
//!   once its outcome is recorded, sent back with a delay for a retry, and
//!   kept alive (`+WPI`) while it waits its turn. A message whose instance
//!   died is delivered to another after `takeover_seconds`.
//! - Finished actions are recorded in the outcomes stream on
//!   `{outcomes_prefix}.done`, each for as long as the history is kept
//!   (`Nats-TTL`); dead letters on `{outcomes_prefix}.dead.{id}`, one subject
//!   each, until they are retried or dropped from any instance.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, message::PublishMessage, stream};
use futures::StreamExt;

use super::{ClusterConfig, ClusterError, token};

/// An action to publish: its idempotency key, when it is due if later than
/// now (epoch milliseconds), and its serialized form.
#[derive(Debug, Clone)]
pub struct ActionJob {
    /// The idempotency key (event, rule, index).
    pub key: String,
    /// When it is due, for an action delayed past now.
    pub due_ms: Option<i64>,
    /// What the dispatcher needs to perform it.
    pub body: Vec<u8>,
}

/// The actions and outcomes streams.
#[derive(Clone)]
pub struct ActionQueue {
    js: jetstream::Context,
    config: ClusterConfig,
    /// How long a finished action's record is kept.
    history: Duration,
}

impl ActionQueue {
    /// Creates the actions stream (work-queue retention, message schedules,
    /// ids deduplicated for `dedupe_window`) and the outcomes stream
    /// (per-message time to live: finished actions are kept for `history`)
    /// when missing.
    pub async fn open(
        js: jetstream::Context,
        config: ClusterConfig,
        dedupe_window: Duration,
        history: Duration,
    ) -> Result<Self, ClusterError> {
        let streams = [
            stream::Config {
                name: config.actions_stream.clone(),
                subjects: vec![format!("{}.>", config.actions_subject_prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: dedupe_window,
                allow_message_schedules: true,
                num_replicas: config.replicas,
                ..Default::default()
            },
            stream::Config {
                name: config.outcomes_stream.clone(),
                subjects: vec![format!("{}.>", config.outcomes_subject_prefix)],
                allow_message_ttl: true,
                num_replicas: config.replicas,
                ..Default::default()
            },
        ];
        for stream in streams {
            let name = stream.name.clone();
            (js.get_or_create_stream(stream).await)
                .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
        }
        Ok(Self {
            js,
            config,
            history,
        })
    }

    fn due_subject(&self) -> String {
        format!("{}.due", self.config.actions_subject_prefix)
    }

    /// Publishes `jobs` and waits until JetStream stored every one (or found
    /// it a duplicate).
    pub async fn publish(&self, jobs: Vec<ActionJob>) -> Result<(), ClusterError> {
        let what = || format!("stream {}", self.config.actions_stream);
        let mut acks = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut message = PublishMessage::build()
                .payload(job.body.into())
                .message_id(&job.key);
            let subject = match job.due_ms {
                Some(due) => {
                    message = message
                        .header(async_nats::header::NATS_SCHEDULE, schedule_at(due))
                        .header(async_nats::header::NATS_SCHEDULE_TARGET, self.due_subject());
                    format!(
                        "{}.at.{}",
                        self.config.actions_subject_prefix,
                        token(&job.key)
                    )
                }
                None => self.due_subject(),
            };
            let ack = (self.js.send_publish(subject, message).await)
                .map_err(|e| ClusterError::js(what(), e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| ClusterError::js(what(), e))?;
        }
        Ok(())
    }

    /// Records a finished action (its history entry), kept for the history's time.
    pub async fn record_done(&self, body: Vec<u8>) -> Result<(), ClusterError> {
        let subject = format!("{}.done", self.config.outcomes_subject_prefix);
        let ttl = format!("{}s", self.history.as_secs().max(1));
        let message = PublishMessage::build()
            .payload(body.into())
            .header("Nats-TTL", ttl);
        self.outcome(subject, message).await
    }

    /// Keeps dead letter `id` until it is retried or dropped.
    pub async fn record_dead(&self, id: &str, body: Vec<u8>) -> Result<(), ClusterError> {
        let message = PublishMessage::build().payload(body.into());
        self.outcome(self.dead_subject(id), message).await
    }

    fn dead_subject(&self, id: &str) -> String {
        format!("{}.dead.{}", self.config.outcomes_subject_prefix, token(id))
    }

    async fn outcome(&self, subject: String, message: PublishMessage) -> Result<(), ClusterError> {
        let what = || format!("stream {}", self.config.outcomes_stream);
        (self.js.send_publish(subject, message).await)
            .map_err(|e| ClusterError::js(what(), e))?
            .await
            .map_err(|e| ClusterError::js(what(), e))?;
        Ok(())
    }

    /// The dead letters kept in the cluster (as recorded), oldest first,
    /// `limit` at most.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Vec<u8>>, ClusterError> {
        let subject = format!("{}.dead.*", self.config.outcomes_subject_prefix);
        self.read(&self.config.outcomes_stream, &subject, limit)
            .await
    }

    /// The most recent finished actions (as recorded), oldest first, about
    /// `limit` at most: those among the outcomes stream's last `4 × limit`
    /// messages.
    pub async fn finished(&self, limit: usize) -> Result<Vec<Vec<u8>>, ClusterError> {
        let what = || format!("stream {}", self.config.outcomes_stream);
        let mut stream = self.stream(&self.config.outcomes_stream).await?;
        let last = (stream.info().await).map_err(|e| ClusterError::js(what(), e))?;
        let from = (last.state.last_sequence + 1)
            .saturating_sub(4 * limit as u64)
            .max(1);
        let subject = format!("{}.done", self.config.outcomes_subject_prefix);
        let found = super::messages_from(&stream, &subject, from, limit * 4).await;
        let found = found.map_err(|e| ClusterError::js(what(), e))?;
        let skip = found.len().saturating_sub(limit);
        Ok(found
            .into_iter()
            .skip(skip)
            .map(|m| m.payload.to_vec())
            .collect())
    }

    /// Removes dead letter `id` from the cluster; false when it is not there.
    pub async fn drop_dead(&self, id: &str) -> Result<bool, ClusterError> {
        self.purge(&self.config.outcomes_stream, self.dead_subject(id))
            .await
    }

    /// The stream named `name`.
    async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream, ClusterError> {
        (self.js.get_stream(name).await).map_err(|e| ClusterError::js(format!("stream {name}"), e))
    }

    /// The messages of `stream` on `subject`, `limit` at most.
    async fn read(
        &self,
        stream: &str,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, ClusterError> {
        let what = || format!("stream {stream}");
        let stream = self.stream(stream).await?;
        let found = super::messages(&stream, subject, limit).await;
        let found = found.map_err(|e| ClusterError::js(what(), e))?;
        Ok(found.into_iter().map(|m| m.payload.to_vec()).collect())
    }

    /// Purges `subject` of `stream`; false when it held nothing.
    async fn purge(&self, stream: &str, subject: String) -> Result<bool, ClusterError> {
        let what = || format!("stream {stream}");
        let stream = self.stream(stream).await?;
        let purged =
            (stream.purge().filter(subject).await).map_err(|e| ClusterError::js(what(), e))?;
        Ok(purged.purged > 0)
    }

    /// The actions scheduled for later (as published), soonest scheduled
    /// first, `limit` at most.
    pub async fn scheduled(&self, limit: usize) -> Result<Vec<Vec<u8>>, ClusterError> {
        let subject = format!("{}.at.*", self.config.actions_subject_prefix);
        self.read(&self.config.actions_stream, &subject, limit)
            .await
    }

    /// Takes the action with key `key` off the schedule; false when no such
    /// action waits (it is due already, or was never scheduled).
    pub async fn unschedule(&self, key: &str) -> Result<bool, ClusterError> {
        let subject = format!("{}.at.{}", self.config.actions_subject_prefix, token(key));
        self.purge(&self.config.actions_stream, subject).await
    }

    /// The due actions, pulled through the consumer every instance shares.
    pub async fn pull(&self) -> Result<impl futures::Stream<Item = Job> + use<>, ClusterError> {
        let name = "kairo-actions".to_string();
        let what = || format!("consumer {name}");
        let stream = self.stream(&self.config.actions_stream).await?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.due_subject(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(self.config.takeover_seconds),
                    max_ack_pending: 1_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ClusterError::js(what(), e))?;
        let messages = (consumer.messages().await).map_err(|e| ClusterError::js(what(), e))?;
        Ok(messages.filter_map(|message| async move {
            crate::nats::pulled(message).map(|message| Job { message })
        }))
    }
}

/// `@at` and the RFC 3339 UTC time of `ms`, rounded up to the second.
fn schedule_at(ms: i64) -> String {
    let seconds = (ms + 999).div_euclid(1000);
    format!("@at {}", kairo_core::handler::describe_time(seconds * 1000))
}

/// A due action pulled from the actions stream.
pub struct Job {
    message: jetstream::Message,
}

impl Job {
    /// The action, as published.
    pub fn body(&self) -> &[u8] {
        &self.message.payload
    }

    /// How many times it has been delivered (1 the first time).
    pub fn delivered(&self) -> u32 {
        (self.message.info()).map_or(1, |info| info.delivered.max(1) as u32)
    }

    /// Its outcome is recorded: it leaves the stream.
    pub async fn done(&self) {
        self.ack(AckKind::Ack).await;
    }

    /// It failed and is tried again after `wait`, by whichever instance pulls it then.
    pub async fn retry(&self, wait: Duration) {
        self.ack(AckKind::Nak(Some(wait))).await;
    }

    /// It is not performed here (this instance stops): another takes it now.
    pub async fn release(&self) {
        self.ack(AckKind::Nak(None)).await;
    }

    /// It will never be performed (it cannot be read, or it was cancelled).
    pub async fn drop_for_good(&self) {
        self.ack(AckKind::Term).await;
    }

    /// It is still waiting its turn here: not to be delivered elsewhere yet.
    pub async fn working(&self) {
        self.ack(AckKind::Progress).await;
    }

    async fn ack(&self, kind: AckKind) {
        crate::nats::ack(&self.message, kind).await;
    }
}
