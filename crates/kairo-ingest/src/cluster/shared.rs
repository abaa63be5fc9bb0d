//! The handler state many SIMs' events change, shared by every instance:
//! group and operator traffic counters, and the suppression times of
//! `runOnceAmongTarget` handlers aimed at a group or an operator.
//!
//! - Counters are JetStream counters (nats-server 2.12+): one subject per
//!   counter in the counters stream. A partition chunk's bytes are added
//!   with `Nats-Incr` once its journal entry is stored, with the entry's
//!   subject and sequence as `Nats-Msg-Id`, so the entry added again by a
//!   new owner (its owner died in between) is not counted twice.
//! - Suppression times are entries of a key-value bucket, claimed with
//!   revision-checked writes: the first instance to claim a handler's target
//!   fires, the others see it held. A claim names the event that made it, so
//!   that event evaluated again claims it again.

use async_nats::jetstream::{self, kv, message::PublishMessage, stream};
use futures::future::try_join_all;

use super::{ClusterConfig, ClusterError, compare_and_set, token};

/// Counters are kept this long (monthly ones matter for a year).
const COUNTER_AGE: std::time::Duration = std::time::Duration::from_secs(400 * 24 * 3600);

/// Who holds a suppression, until when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// Epoch milliseconds.
    pub until: i64,
    /// The event that fired.
    pub by: String,
}

/// The counters stream and the suppressions bucket.
#[derive(Clone)]
pub struct SharedState {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    kv: kv::Store,
    config: ClusterConfig,
}

impl SharedState {
    /// Opens (creating when missing) the counters stream and the bucket.
    pub async fn open(js: jetstream::Context, config: ClusterConfig) -> Result<Self, ClusterError> {
        let name = config.counters_stream.clone();
        let stream = (js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.*", config.counters_subject_prefix)],
                allow_message_counter: true,
                max_messages_per_subject: 1,
                max_age: COUNTER_AGE,
                duplicate_window: duplicate_window(&config),
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await)
            .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
        let bucket = config.shared_bucket.clone();
        let kv = super::bucket(&js, &config, bucket, std::time::Duration::ZERO).await?;
        Ok(Self {
            js,
            stream,
            kv,
            config,
        })
    }

    fn subject(&self, counter: &str) -> String {
        format!("{}.{}", self.config.counters_subject_prefix, token(counter))
    }

    /// The current value of each counter (0 when never added to).
    pub async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, ClusterError> {
        let read = keys.iter().map(|key| {
            let (stream, subject) = (&self.stream, self.subject(key));
            async move {
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(value_of(&message.payload)),
                    Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
                    Err(e) => Err(ClusterError::js(format!("counter {subject}"), e)),
                }
            }
        });
        try_join_all(read).await
    }

    /// Adds each `(counter, amount)` of journal entry `id` once: the same
    /// entry added again within [`duplicate_window`] is a duplicate.
    pub async fn add(&self, id: &str, adds: &[(String, i64)]) -> Result<(), ClusterError> {
        let what = || format!("stream {}", self.config.counters_stream);
        let mut acks = Vec::with_capacity(adds.len());
        for (key, amount) in adds {
            let message = PublishMessage::build()
                .header("Nats-Incr", format!("{amount:+}"))
                .message_id(format!("{id}/{key}"));
            let ack = (self.js.send_publish(self.subject(key), message).await)
                .map_err(|e| ClusterError::js(what(), e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| ClusterError::js(what(), e))?;
        }
        Ok(())
    }

    /// Who holds each suppression, if anyone.
    pub async fn suppressions(&self, keys: &[String]) -> Result<Vec<Option<Held>>, ClusterError> {
        let read = keys.iter().map(|key| async move {
            let entry = (self.kv.entry(token(key)).await)
                .map_err(|e| ClusterError::js(format!("suppression {key}"), e))?;
            Ok(entry
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| serde_json::from_slice(&e.value).ok()))
        });
        try_join_all(read).await
    }

    /// Claims suppression `key` until `until` for event `by`, unless another
    /// event holds it past `now_ms`; returns that holder then.
    pub async fn claim(
        &self,
        key: &str,
        until: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<Option<Held>, ClusterError> {
        let mine = Held {
            until,
            by: by.to_string(),
        };
        let what = format!("suppression {key}");
        compare_and_set(&self.kv, &token(key), &what, |value| {
            let held: Option<Held> = value.and_then(|v| serde_json::from_slice(v).ok());
            match held {
                Some(held) if held.by != by && held.until > now_ms => (None, Some(held)),
                _ => (Some(serde_json::to_vec(&mine).expect("serializes")), None),
            }
        })
        .await
    }
}

/// How long the counters' stream remembers an add's id: a journal entry's
/// adds are added again within a takeover or two.
pub fn duplicate_window(config: &ClusterConfig) -> std::time::Duration {
    std::time::Duration::from_secs((config.takeover_seconds * 10).max(120))
}

/// A counter message's value: `{"val":"123"}`.
fn value_of(payload: &[u8]) -> i64 {
    #[derive(serde::Deserialize)]
    struct Counter {
        val: String,
    }
    (serde_json::from_slice::<Counter>(payload).ok())
        .and_then(|c| c.val.parse().ok())
        .unwrap_or(0)
}
