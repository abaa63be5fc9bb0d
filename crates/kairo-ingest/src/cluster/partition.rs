//! Evaluating one partition: its pinned consumer, its journal, and the
//! order of work that keeps its state exact across owners.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use super::journal::{Adds, Journal};
use super::{ActionQueue, ClusterConfig, ClusterError, PartitionSink, SharedState};
use crate::nats::{
    CHUNK, Chunks, PINNED_GROUP as GROUP, Pulled, ack, catch_up, parse, pulled, reject,
};

/// Partition `p`'s durable consumer (created when missing): one per
/// partition, pinned to one instance at a time; a partition moves when its
/// instance has not pulled for `takeover_seconds` (also how long a message
/// waits for its acknowledgement before it is delivered again).
pub async fn partition_consumer(
    js: &jetstream::Context,
    config: &ClusterConfig,
    partition: u32,
) -> Result<jetstream::consumer::PullConsumer, ClusterError> {
    let name = format!("kairo-p{partition}");
    let takeover = Duration::from_secs(config.takeover_seconds);
    let stream = (js.get_stream(&config.stream).await)
        .map_err(|e| ClusterError::js(format!("stream {}", config.stream), e))?;
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: config.subject(partition),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: takeover,
                max_ack_pending: 1_000,
                priority_policy: jetstream::consumer::PriorityPolicy::PinnedClient,
                priority_groups: vec![GROUP.into()],
                priority_timeout: takeover,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::js(format!("consumer {name}"), e))
}

/// Pulls partition `partition` into `sink` until `stop` or until this
/// instance no longer owns it: reads its journal into the handler state,
/// then evaluates one chunk at a time, appends the chunk's state to the
/// journal, and only then acknowledges the chunk.
pub(super) async fn pull(
    js: jetstream::Context,
    config: ClusterConfig,
    partition: u32,
    sink: Arc<dyn PartitionSink>,
    actions: ActionQueue,
    stop: CancellationToken,
) {
    let owner = Owner {
        js,
        config,
        partition,
        sink,
        actions,
        counters: tokio::sync::OnceCell::new(),
    };
    if let Err(error) = owner.evaluate(stop).await {
        tracing::error!(%error, partition, "stopped pulling this partition; it is pulled again at the next heartbeat");
    }
}

/// What a partition's owner works with.
struct Owner {
    js: jetstream::Context,
    config: ClusterConfig,
    partition: u32,
    sink: Arc<dyn PartitionSink>,
    actions: ActionQueue,
    /// The shared counters, opened when first added to.
    counters: tokio::sync::OnceCell<SharedState>,
}

impl Owner {
    async fn evaluate(&self, stop: CancellationToken) -> Result<(), ClusterError> {
        let (js, partition) = (&self.js, self.partition);
        let consumer = partition_consumer(js, &self.config, partition).await?;
        let max_payload = js.client().server_info().max_payload;
        let mut journal = Journal::read(js, &self.config, partition, max_payload).await?;
        (self.sink.restore(journal.values()).await)
            .map_err(|e| ClusterError::js(format!("partition {partition} state"), e))?;
        if let Some(adds) = journal.last_adds() {
            self.add_again(adds).await?;
        }
        let messages = (consumer.stream().group(GROUP).messages().await)
            .map_err(|e| ClusterError::js(format!("consumer kairo-p{partition}"), e))?;
        let mut chunks = messages.ready_chunks(CHUNK);
        let pulled = self.pull(&consumer, &mut journal, &mut chunks, &stop).await;
        self.leave(chunks).await;
        pulled
    }

    /// Evaluates chunk after chunk, in stream order, until `stop` or a chunk
    /// fails (it is sent back; the partition is pulled again from there).
    /// First, what an earlier owner left is caught up with.
    async fn pull(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
        journal: &mut Journal,
        chunks: &mut Chunks,
        stop: &CancellationToken,
    ) -> Result<(), ClusterError> {
        let held = (catch_up(consumer, chunks, stop).await)
            .map_err(|e| ClusterError::js(format!("consumer kairo-p{}", self.partition), e))?;
        let Some(held) = held else {
            return Ok(());
        };
        let mut held = held.into_iter().map(Ok).peekable();
        while held.peek().is_some() {
            let chunk: Vec<Pulled> = held.by_ref().take(CHUNK).collect();
            self.chunk(consumer, journal, chunk).await?;
        }
        loop {
            let chunk = tokio::select! {
                chunk = chunks.next() => match chunk { Some(chunk) => chunk, None => return Ok(()) },
                _ = stop.cancelled() => return Ok(()),
            };
            self.chunk(consumer, journal, chunk).await?;
        }
    }

    /// Evaluates one chunk, and rolls the journal up when it is time.
    async fn chunk(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
        journal: &mut Journal,
        chunk: Vec<Pulled>,
    ) -> Result<(), ClusterError> {
        let (events, good) = sort(chunk, journal, self.sink.as_ref()).await;
        if good.is_empty() {
            return Ok(());
        }
        self.evaluate_chunk(journal, events, &good).await?;
        if journal.roll_up_due() {
            let info = consumer.get_info().await;
            let info = info.map_err(|e| ClusterError::js("partition consumer", e))?;
            (journal.roll_up(info.ack_floor.stream_sequence, self.sink.now_ms())).await?;
        }
        Ok(())
    }

    /// Stops pulling: the messages received but not evaluated are sent back
    /// at once, and the partition is unpinned, so whoever pulls next gets it
    /// now rather than after `takeover_seconds`.
    async fn leave(&self, mut chunks: Chunks) {
        while let Some(Some(chunk)) = chunks.next().now_or_never() {
            for message in chunk.into_iter().flatten() {
                ack(&message, AckKind::Nak(None)).await;
            }
        }
        drop(chunks);
        let name = format!("kairo-p{}", self.partition);
        let unpinned = match self.js.get_stream(&self.config.stream).await {
            Ok(stream) => (stream.unpin_consumer(&name, GROUP).await).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = unpinned {
            tracing::warn!(%error, partition = self.partition, "could not unpin the partition; another instance takes it after takeover_seconds");
        }
    }

    /// Evaluates a chunk, publishes its actions, appends its state to the
    /// journal, then acknowledges it. When the actions or the entry cannot be
    /// stored, the state goes back to what the journal holds and the chunk is
    /// evaluated again by whoever owns the partition (its actions are then
    /// duplicates JetStream drops).
    async fn evaluate_chunk(
        &self,
        journal: &mut Journal,
        events: Vec<kairo_core::Event>,
        good: &[jetstream::Message],
    ) -> Result<(), ClusterError> {
        let evaluation = match self.sink.evaluate(events).await {
            Ok(evaluation) => evaluation,
            Err(error) => {
                // Later chunks must not pass this one: it is sent back and
                // the partition pulled again from it.
                for message in good {
                    ack(message, AckKind::Nak(None)).await;
                }
                let message = kairo_core::error_chain(&error);
                return Err(ClusterError::js("evaluating a partition chunk", message));
            }
        };
        let before = journal.before(&evaluation.state);
        // A chunk that changed no state needs no entry: evaluated again, it
        // changes nothing and asks for the same actions (duplicates then).
        let (state, adds, now) = (evaluation.state, evaluation.adds, self.sink.now_ms());
        let stored = match self.actions.publish(evaluation.actions).await {
            Ok(()) if state.is_empty() && adds.is_empty() => Ok(None),
            Ok(()) => journal.append(state, sequences(good), adds, now).await,
            Err(error) => Err(error),
        };
        let added = match stored {
            Ok(Some(adds)) => self.add(&adds).await,
            Ok(None) => Ok(()),
            Err(error) => {
                let _ = self.sink.restore(before).await;
                Err(error)
            }
        };
        if let Err(error) = added {
            // Sent back: evaluated again, or, when the journal holds them,
            // acknowledged by whoever pulls the partition next, which adds
            // the last entry's counts again.
            for message in good {
                ack(message, AckKind::Nak(None)).await;
            }
            return Err(error);
        }
        for message in good {
            ack(message, AckKind::Ack).await;
        }
        Ok(())
    }

    /// Adds a journal entry's counts to the shared counters.
    async fn add(&self, adds: &Adds) -> Result<(), ClusterError> {
        let open = || SharedState::open(self.js.clone(), self.config.clone());
        let counters = self.counters.get_or_try_init(open).await?;
        counters.add(&adds.id, &adds.adds).await
    }

    /// Adds the last entry's counts again, as its owner may have died before
    /// adding them: a duplicate if it had, while the counters' stream still
    /// remembers the entry; an entry older than that is left as it is.
    async fn add_again(&self, adds: &Adds) -> Result<(), ClusterError> {
        let window = super::shared::duplicate_window(&self.config).as_millis() as i64;
        let age = self.sink.now_ms() - adds.at_ms;
        // 10 s short of the window: the clocks of the instance that stored
        // the entry and of the NATS server need not agree to the second.
        if age < window - 10_000 {
            return self.add(adds).await;
        }
        tracing::warn!(
            partition = self.partition, entry = %adds.id, age_ms = age,
            "the journal's last entry is too old to add its shared counts again safely; left as they are"
        );
        Ok(())
    }
}

/// The partition-stream sequences of `messages`.
fn sequences(messages: &[jetstream::Message]) -> Vec<u64> {
    (messages.iter())
        .filter_map(|m| m.info().ok().map(|info| info.stream_sequence))
        .collect()
}

/// Splits a chunk: the events of messages to evaluate, and those messages.
/// Messages the journal lists were evaluated by an earlier owner and are
/// acknowledged; those holding no event become dead letters.
async fn sort(
    chunk: Vec<Pulled>,
    journal: &Journal,
    sink: &dyn PartitionSink,
) -> (Vec<kairo_core::Event>, Vec<jetstream::Message>) {
    let (mut events, mut good) = (Vec::new(), Vec::new());
    for message in chunk.into_iter().filter_map(pulled) {
        let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
            tracing::warn!(subject = %message.subject, "a partition message without its stream sequence; it will be redelivered");
            continue;
        };
        if journal.evaluated(sequence) {
            ack(&message, AckKind::Ack).await;
            continue;
        }
        match parse(&message.payload) {
            Ok(parsed) => {
                events.extend(parsed);
                good.push(message);
            }
            Err(reason) => reject(sink, &message, &reason).await,
        }
    }
    (events, good)
}
