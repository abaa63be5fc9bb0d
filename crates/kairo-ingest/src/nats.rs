//! NATS ingest: core subjects (at most once, as core NATS delivers) and
//! JetStream durable pull consumers (at least once: a message is acknowledged
//! only after its events are durably accepted; redeliveries are deduplicated
//! by event id downstream).
//!
//! Each message body is one event object or an array of them, as on the
//! webhook. A message that is not JSON or not an event is kept as a dead
//! letter with the reason and acknowledged (terminated), never redelivered forever.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use kairo_core::Event;
use tokio_util::sync::CancellationToken;

use crate::EventSink;
use crate::webhook::parse_events;

/// The priority group of pinned (cluster-mode) consumers: a `[nats]` source
/// and every partition.
pub(crate) const PINNED_GROUP: &str = "kairo";

/// Messages accepted together in one durable commit, at most.
pub(crate) const CHUNK: usize = 256;

/// `[nats]`: where and how to consume; ingest is on when `url` is set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222` (credentials as `user:password@` or `token@`).
    pub url: Option<String>,
    /// Subject (wildcards allowed).
    pub subject: String,
    /// Core NATS queue group, so several instances share the subject.
    pub queue_group: Option<String>,
    /// JetStream stream name; JetStream mode when set.
    pub stream: Option<String>,
    /// Durable consumer name (JetStream).
    pub durable: String,
    /// Create the stream (capturing `subject`) when it does not exist.
    pub create_stream: bool,
    /// Unacknowledged messages outstanding at most (backpressure).
    pub max_ack_pending: i64,
    /// Seconds JetStream waits for an acknowledgement before redelivering.
    pub ack_wait_seconds: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            subject: "soracom.events.>".into(),
            queue_group: None,
            stream: None,
            durable: "kairo".into(),
            create_stream: false,
            max_ack_pending: 1_000,
            ack_wait_seconds: 30,
        }
    }
}

impl NatsConfig {
    /// Every value that parses but makes no sense, as `(key, problem)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.url.is_none() {
            return problems;
        }
        if self.subject.trim().is_empty() {
            problems.push((
                "nats.subject",
                "must not be empty when nats.url is set".into(),
            ));
        }
        if self.stream.is_some() && self.durable.trim().is_empty() {
            problems.push((
                "nats.durable",
                "must not be empty when nats.stream is set".into(),
            ));
        }
        let servers = self.url.iter().flat_map(|url| url.split(','));
        for (n, server) in servers.enumerate() {
            if server.trim().parse::<async_nats::ServerAddr>().is_err() {
                // The entry is not shown: it may hold credentials.
                problems.push((
                    "nats.url",
                    format!("server {} of the comma-separated list is not a server address (nats://host:port)", n + 1),
                ));
            }
        }
        if self.max_ack_pending < 1 {
            problems.push(("nats.max_ack_pending", "must be at least 1".into()));
        }
        problems
    }
}

/// A NATS ingest failure.
#[derive(Debug, thiserror::Error)]
pub enum NatsIngestError {
    /// Subscribing failed.
    #[error("subscribing to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// The stream or consumer could not be found or created.
    #[error("JetStream {what}: {message}")]
    JetStream {
        /// Stream or consumer name.
        what: String,
        /// Why.
        message: String,
    },
}

/// One message's parsed content, or why it is not an event.
pub(crate) fn parse(payload: &[u8]) -> Result<Vec<Event>, String> {
    parse_events(payload).map_err(|e| e.to_string())
}

/// A subscription ready to consume: set up (and checked) before the router starts.
pub enum NatsSource {
    /// Core NATS subscriber.
    Core(async_nats::Subscriber),
    /// JetStream durable pull consumer and its message stream.
    JetStream(Box<JetStreamSource>),
}

/// A JetStream durable pull consumer and its message stream.
pub struct JetStreamSource {
    consumer: jetstream::consumer::PullConsumer,
    messages: pull::Stream,
    /// Pinned to one instance at a time (cluster mode): passed on in stream order.
    pinned: bool,
}

/// Subscribes according to `config`: JetStream when `stream` is set, else core NATS.
/// Errors (no such stream, refused subscription) surface here, at start.
/// With `pinned` (cluster mode), the JetStream consumer delivers to one
/// instance at a time (a pinned priority group that moves when that instance
/// has not pulled for `pinned`), so events are passed on in stream order.
pub async fn subscribe(
    client: async_nats::Client,
    config: &NatsConfig,
    pinned: Option<Duration>,
) -> Result<NatsSource, NatsIngestError> {
    let Some(stream_name) = config.stream.clone() else {
        let subscribe_error = |e: &dyn std::fmt::Display| NatsIngestError::Subscribe {
            subject: config.subject.clone(),
            message: e.to_string(),
        };
        let subscriber = match &config.queue_group {
            Some(group) => client
                .queue_subscribe(config.subject.clone(), group.clone())
                .await
                .map_err(|e| subscribe_error(&e))?,
            None => client
                .subscribe(config.subject.clone())
                .await
                .map_err(|e| subscribe_error(&e))?,
        };
        tracing::info!(subject = %config.subject, queue_group = ?config.queue_group, "NATS core ingest subscribed");
        return Ok(NatsSource::Core(subscriber));
    };
    let js_error = |what: &str, e: &dyn std::fmt::Display| NatsIngestError::JetStream {
        what: what.to_string(),
        message: e.to_string(),
    };
    let context = jetstream::new(client);
    let stream = if config.create_stream {
        context
            .get_or_create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![config.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| js_error(&format!("stream {stream_name}"), &e))?
    } else {
        context.get_stream(&stream_name).await.map_err(|e| {
            js_error(
                &format!("stream {stream_name} (set nats.create_stream = true to create it)"),
                &e,
            )
        })?
    };
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(config.ack_wait_seconds),
                max_ack_pending: config.max_ack_pending,
                filter_subject: config.subject.clone(),
                priority_policy: match pinned {
                    Some(_) => jetstream::consumer::PriorityPolicy::PinnedClient,
                    None => jetstream::consumer::PriorityPolicy::None,
                },
                priority_groups: pinned
                    .map(|_| vec![PINNED_GROUP.into()])
                    .unwrap_or_default(),
                priority_timeout: pinned.unwrap_or_default(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| js_error(&format!("consumer {}", config.durable), &e))?;
    let stream = consumer.stream();
    let stream = match pinned {
        Some(_) => stream.group(PINNED_GROUP),
        None => stream,
    };
    let messages = stream
        .messages()
        .await
        .map_err(|e| js_error(&format!("consumer {}", config.durable), &e))?;
    tracing::info!(stream = %stream_name, durable = %config.durable, subject = %config.subject, "JetStream ingest subscribed");
    Ok(NatsSource::JetStream(Box::new(JetStreamSource {
        consumer,
        messages,
        pinned: pinned.is_some(),
    })))
}

/// Consumes `source` into `sink` until `shutdown`.
pub async fn run(source: NatsSource, sink: Arc<dyn EventSink>, shutdown: CancellationToken) {
    match source {
        NatsSource::Core(subscriber) => run_core(subscriber, sink, shutdown).await,
        NatsSource::JetStream(source) => run_jetstream(*source, sink, shutdown).await,
    }
    tracing::info!("NATS ingest stopped");
}

async fn run_core(
    subscriber: async_nats::Subscriber,
    sink: Arc<dyn EventSink>,
    shutdown: CancellationToken,
) {
    let mut chunks = subscriber.ready_chunks(CHUNK);
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => match chunk { Some(chunk) => chunk, None => break },
            _ = shutdown.cancelled() => break,
        };
        let mut events = Vec::new();
        for message in &chunk {
            let source = format!("nats:{}", message.subject);
            match parse(&message.payload) {
                Ok(parsed) => events.extend(parsed),
                Err(reason) => {
                    sink.rejected("malformed");
                    if let Err(error) = sink.reject_input(&source, &message.payload, &reason).await
                    {
                        tracing::error!(error = %kairo_core::error_chain(&error), %source, "could not keep a rejected message");
                    }
                }
            }
        }
        if !events.is_empty()
            && let Err(error) = sink.accept(events).await
        {
            // Core NATS has no redelivery: the messages are lost. Use JetStream for at-least-once.
            tracing::error!(error = %kairo_core::error_chain(&error), messages = chunk.len(), "could not accept NATS messages");
        }
    }
}

/// Passes a JetStream consumer's messages on to `sink` until `shutdown`,
/// acknowledging them once accepted. A pinned consumer's new client first
/// catches up with what an earlier one left, and a chunk that could not be
/// accepted is sent back and caught up with again, so that no later
/// message passes it.
async fn run_jetstream(
    source: JetStreamSource,
    sink: Arc<dyn EventSink>,
    shutdown: CancellationToken,
) {
    let JetStreamSource {
        consumer,
        messages,
        pinned,
    } = source;
    let mut chunks = messages.ready_chunks(CHUNK);
    while pass_on(&consumer, &mut chunks, pinned, sink.as_ref(), &shutdown)
        .await
        .is_err()
    {
        // Pinned and refused: what was sent back returns first.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Passes chunks on until `shutdown` or the stream's end (`Ok`), or, when
/// `pinned`, until a chunk is refused (`Err`, the chunk sent back).
async fn pass_on(
    consumer: &jetstream::consumer::PullConsumer,
    chunks: &mut Chunks,
    pinned: bool,
    sink: &dyn EventSink,
    shutdown: &CancellationToken,
) -> Result<(), ()> {
    if pinned {
        match catch_up(consumer, chunks, shutdown).await {
            Ok(Some(held)) => {
                let mut held = held.into_iter().map(Ok).peekable();
                while held.peek().is_some() {
                    pass_chunk(held.by_ref().take(CHUNK).collect(), sink, pinned).await?;
                }
            }
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "could not read the JetStream source's consumer; passing on as received")
            }
        }
    }
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => match chunk { Some(chunk) => chunk, None => return Ok(()) },
            _ = shutdown.cancelled() => return Ok(()),
        };
        pass_chunk(chunk, sink, pinned).await?;
    }
}

/// Passes one chunk on and acknowledges it. When it is refused, it is sent
/// back: at once when `pinned` (`Err`: the caller pulls again from it),
/// else after a second.
async fn pass_chunk(chunk: Vec<Pulled>, sink: &dyn EventSink, pinned: bool) -> Result<(), ()> {
    let mut good = Vec::new();
    let mut events = Vec::new();
    for message in chunk.into_iter().filter_map(pulled) {
        match parse(&message.payload) {
            Ok(parsed) => {
                events.extend(parsed);
                good.push(message);
            }
            Err(reason) => reject(sink, &message, &reason).await,
        }
    }
    if good.is_empty() {
        return Ok(());
    }
    let (kind, passed) = match sink.accept(events).await {
        Ok(_) => (AckKind::Ack, Ok(())),
        Err(error) => {
            tracing::error!(error = %kairo_core::error_chain(&error), messages = good.len(), "could not accept JetStream messages; they will be redelivered");
            match pinned {
                true => (AckKind::Nak(None), Err(())),
                false => (AckKind::Nak(Some(Duration::from_secs(1))), Ok(())),
            }
        }
    };
    for message in &good {
        ack(message, kind).await;
    }
    passed
}

/// A consumer's messages, in chunks as they arrive.
pub(crate) type Chunks = futures::stream::ReadyChunks<pull::Stream>;

/// How often a client waiting for what an earlier one left checks the
/// consumer when nothing arrives.
const CATCH_UP_CHECK: Duration = Duration::from_millis(250);

/// Holds what a newly pinned client of `consumer` receives until every
/// message delivered and not acknowledged is in its hands; returns them in
/// stream order (`None` on `stop`, having sent them back). The messages a
/// client that died had received come back only after their
/// acknowledgement time, later than newer ones the next client may be
/// given at once: passed on as they come, a SIM's older events would follow
/// its newer ones.
pub(crate) async fn catch_up(
    consumer: &jetstream::consumer::PullConsumer,
    chunks: &mut Chunks,
    stop: &CancellationToken,
) -> Result<Option<Vec<jetstream::Message>>, jetstream::context::ConsumerInfoError> {
    let mut held = BTreeMap::new();
    loop {
        tokio::select! {
            chunk = chunks.next() => match chunk {
                Some(chunk) => hold(&mut held, chunk),
                None => return Ok(Some(held.into_values().collect())),
            },
            // Another client may acknowledge what it held meanwhile.
            _ = tokio::time::sleep(CATCH_UP_CHECK), if !held.is_empty() => {}
            _ = stop.cancelled() => {
                for message in held.values() {
                    ack(message, AckKind::Nak(None)).await;
                }
                return Ok(None);
            }
        }
        if held.is_empty() {
            continue;
        }
        let info = consumer.get_info().await?;
        if info.num_ack_pending <= held.len() {
            tracing::debug!(consumer = %info.name, held = held.len(), "caught up with what earlier clients left");
            return Ok(Some(held.into_values().collect()));
        }
    }
}

/// Adds `chunk` to `held` by stream sequence (a message delivered again
/// replaces its earlier delivery).
fn hold(held: &mut BTreeMap<u64, jetstream::Message>, chunk: Vec<Pulled>) {
    for message in chunk.into_iter().filter_map(pulled) {
        match message.info().map(|info| info.stream_sequence) {
            Ok(sequence) => {
                held.insert(sequence, message);
            }
            Err(_) => {
                tracing::warn!(subject = %message.subject, "a message without its stream sequence; it will be redelivered")
            }
        }
    }
}

/// What a pull consumer's stream yields.
pub(crate) type Pulled =
    Result<jetstream::Message, async_nats::error::Error<pull::MessagesErrorKind>>;

/// The message pulled, or `None` (logged) when the pull failed; the
/// consumer goes on with the next.
pub(crate) fn pulled(pulled: Pulled) -> Option<jetstream::Message> {
    pulled
        .inspect_err(|error| tracing::warn!(%error, "JetStream pull failed; continuing"))
        .ok()
}

/// Keeps a JetStream message that holds no event as a dead letter and
/// terminates it; when it cannot be kept, it is redelivered later.
pub(crate) async fn reject(sink: &dyn EventSink, message: &jetstream::Message, reason: &str) {
    sink.rejected("malformed");
    let source = format!("jetstream:{}", message.subject);
    match sink.reject_input(&source, &message.payload, reason).await {
        Ok(()) => ack(message, AckKind::Term).await,
        Err(error) => {
            tracing::error!(error = %kairo_core::error_chain(&error), "could not keep a rejected message; it will be redelivered");
            ack(message, AckKind::Nak(Some(Duration::from_secs(5)))).await;
        }
    }
}

/// Acknowledges `message` as `kind`; a failure is logged (the message is redelivered).
pub(crate) async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // Unacknowledged messages are redelivered after ack_wait and deduplicated then.
        tracing::warn!(%error, "JetStream acknowledgement failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_list_entry_that_is_no_address_is_named_without_its_credentials() {
        let config = NatsConfig {
            url: Some("nats://user:s3cret@127.0.0.1:4222, nats://user:s3cret@not a host".into()),
            ..NatsConfig::default()
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "nats.url");
        assert!(problems[0].1.contains("server 2"), "{problems:?}");
        assert!(!problems[0].1.contains("s3cret"), "{problems:?}");
        let fine = NatsConfig {
            url: Some("nats://127.0.0.1:4222,nats://127.0.0.1:4223".into()),
            ..NatsConfig::default()
        };
        assert!(fine.problems().is_empty());
    }
}
