//! Cluster mode on NATS JetStream: events are partitioned by SIM into one
//! stream, and each partition is evaluated by one instance at a time.
//!
//! - Any instance's sources (webhook, `[nats]`, the SORACOM watcher) publish
//!   each event to `{subject_prefix}.{partition}` of the partition stream with
//!   the event id as `Nats-Msg-Id`, and answer once JetStream has stored it:
//!   the stream's duplicate window deduplicates ids across the cluster
//!   ([`PartitionPublisher`]).
//! - The partition of an event is a stable hash of its `simId` (else `imsi`,
//!   else its id) modulo the partition count ([`partition_of`]), so one SIM's
//!   events are in one partition, in the order they were stored.
//! - Every partition has a durable consumer with a pinned priority group: the
//!   server delivers a partition to one instance at a time, and moves it to
//!   another that pulls when the pinned one has not pulled for
//!   `takeover_seconds`. Instances spread the partitions among themselves by
//!   rendezvous hashing over the members listed in a key-value bucket
//!   ([`membership`]); each pulls only the partitions it prefers, plus, after
//!   a member has gone from the list, the partitions it held.
//! - A partition's handler state (the counters and suppression times only
//!   its SIMs change) is kept in a journal in JetStream, appended before the
//!   partition's messages are acknowledged, and read by whoever owns the
//!   partition next ([`journal`]).
//! - Families' `per_second` paces are shared through a key-value bucket
//!   ([`pace`]), so the instances together keep to each limit.

mod actions;
mod journal;
pub mod membership;
pub mod pace;
mod partition;
mod publish;
mod run;
mod shared;

pub use actions::{ActionJob, ActionQueue, Job};
pub use membership::{Members, owner_of};
pub use pace::{KvPace, SharedPace};
pub use partition::partition_consumer;
pub use publish::{ClusterError, PartitionPublisher};
pub use run::run;
pub use shared::{Held, SharedState};

use std::time::Duration;

use async_trait::async_trait;
use kairo_core::Event;

use crate::{EventSink, SinkError};

/// What the cluster keeps of a partition's evaluated events.
#[derive(Debug, Default)]
pub struct PartitionEvaluation {
    /// The state values only that partition's SIMs change, as set.
    pub state: Vec<(String, i64)>,
    /// The actions asked for, to perform (not shadow ones).
    pub actions: Vec<ActionJob>,
    /// What the events add to counters many partitions share (group and
    /// operator traffic), by counter: added once the journal holds them.
    pub adds: Vec<(String, i64)>,
}

/// Where an instance's partitions are evaluated: its router, holding the
/// handler state of every partition it owns.
#[async_trait]
pub trait PartitionSink: EventSink {
    /// Evaluates one partition's `events` in order and commits them, even
    /// those seen before (redeliveries the journal has not applied); returns
    /// what the cluster keeps of it.
    async fn evaluate(&self, events: Vec<Event>) -> Result<PartitionEvaluation, SinkError>;

    /// Puts handler state in place: each key to its value, or removed for `None`.
    async fn restore(&self, values: Vec<(String, Option<i64>)>) -> Result<(), SinkError>;

    /// Now, in epoch milliseconds, by the router's clock.
    fn now_ms(&self) -> i64;
}

/// Where the router keeps its work: on this machine, or in JetStream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One process with its embedded store (the default).
    #[default]
    Embedded,
    /// Several processes sharing partitions through NATS JetStream.
    Jetstream,
}

/// `[cluster]`: running several instances on NATS JetStream (`[nats] url`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `embedded` (one process) or `jetstream` (a cluster).
    pub backend: Backend,
    /// Partitions of the event stream; every instance of a cluster must agree.
    pub partitions: u32,
    /// The partition stream's name.
    pub stream: String,
    /// Partition `p`'s subject is `{subject_prefix}.{p}`.
    pub subject_prefix: String,
    /// The key-value bucket listing the live members.
    pub members_bucket: String,
    /// The stream of the partitions' handler-state journals.
    pub state_stream: String,
    /// Partition `p`'s journal subject is `{state_subject_prefix}.{p}`.
    pub state_subject_prefix: String,
    /// The stream of actions to perform (due, and scheduled for later).
    pub actions_stream: String,
    /// The actions stream's subjects are under `{actions_subject_prefix}.`.
    pub actions_subject_prefix: String,
    /// The stream recording how actions ended (performed, dead letters).
    pub outcomes_stream: String,
    /// The outcomes stream's subjects are under `{outcomes_subject_prefix}.`.
    pub outcomes_subject_prefix: String,
    /// The stream of group and operator traffic counters.
    pub counters_stream: String,
    /// The counters stream's subjects are under `{counters_subject_prefix}.`.
    pub counters_subject_prefix: String,
    /// The key-value bucket of group- and operator-wide suppression times.
    pub shared_bucket: String,
    /// A partition whose instance stopped pulling moves to another after this.
    pub takeover_seconds: u64,
    /// How often an instance says it is alive (a member is gone after three
    /// missed beats).
    pub heartbeat_seconds: u64,
    /// This instance's name among the members (default: host name, process id
    /// and a random suffix).
    pub node: Option<String>,
    /// Replicas of every stream and bucket of the cluster (1 for a single
    /// server, 3 for a three-node NATS cluster).
    pub replicas: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            partitions: 16,
            stream: "KAIRO_PARTITIONS".into(),
            subject_prefix: "kairo.partition".into(),
            members_bucket: "KAIRO_MEMBERS".into(),
            state_stream: "KAIRO_STATE".into(),
            state_subject_prefix: "kairo.state".into(),
            actions_stream: "KAIRO_ACTIONS".into(),
            actions_subject_prefix: "kairo.action".into(),
            outcomes_stream: "KAIRO_OUTCOMES".into(),
            outcomes_subject_prefix: "kairo.outcome".into(),
            counters_stream: "KAIRO_COUNTERS".into(),
            counters_subject_prefix: "kairo.counter".into(),
            shared_bucket: "KAIRO_SHARED".into(),
            takeover_seconds: 30,
            heartbeat_seconds: 5,
            node: None,
            replicas: 1,
        }
    }
}

impl ClusterConfig {
    /// True in cluster mode.
    pub fn enabled(&self) -> bool {
        self.backend == Backend::Jetstream
    }

    /// Partition `p`'s subject.
    pub fn subject(&self, partition: u32) -> String {
        format!("{}.{partition}", self.subject_prefix)
    }

    /// How long a member stays listed after its last beat.
    pub fn member_ttl(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds.max(1) * 3)
    }

    /// Every value that parses but makes no sense, as `(key, problem)`;
    /// `nats_url` is `[nats] url`.
    pub fn problems(&self, nats_url: Option<&str>) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.enabled() {
            return problems;
        }
        if nats_url.is_none() {
            problems.push((
                "cluster.backend",
                "\"jetstream\" needs nats.url: the cluster runs on that NATS server".into(),
            ));
        }
        if !(1..=4096).contains(&self.partitions) {
            problems.push(("cluster.partitions", "must be between 1 and 4096".into()));
        }
        if self.takeover_seconds == 0 {
            problems.push(("cluster.takeover_seconds", "must be at least 1".into()));
        }
        if self.heartbeat_seconds == 0 {
            problems.push(("cluster.heartbeat_seconds", "must be at least 1".into()));
        }
        for (key, value) in [
            ("cluster.stream", &self.stream),
            ("cluster.members_bucket", &self.members_bucket),
            ("cluster.state_stream", &self.state_stream),
            ("cluster.actions_stream", &self.actions_stream),
            ("cluster.outcomes_stream", &self.outcomes_stream),
            ("cluster.counters_stream", &self.counters_stream),
            ("cluster.shared_bucket", &self.shared_bucket),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            {
                problems.push((key, "must be letters, digits, `_` or `-`".into()));
            }
        }
        problems.extend(self.subject_problems());
        problems
    }

    /// Subject prefixes with wildcards, or whose subjects two streams would share.
    fn subject_problems(&self) -> Vec<(&'static str, String)> {
        let prefixes = [
            ("cluster.subject_prefix", &self.subject_prefix),
            ("cluster.state_subject_prefix", &self.state_subject_prefix),
            (
                "cluster.actions_subject_prefix",
                &self.actions_subject_prefix,
            ),
            (
                "cluster.outcomes_subject_prefix",
                &self.outcomes_subject_prefix,
            ),
            (
                "cluster.counters_subject_prefix",
                &self.counters_subject_prefix,
            ),
        ];
        let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        let mut problems = Vec::new();
        for (i, (key, prefix)) in prefixes.iter().enumerate() {
            if prefix.is_empty() || prefix.contains(['*', '>', ' ']) {
                problems.push((*key, "must be a subject without wildcards".into()));
            }
            let shared = prefixes[..i]
                .iter()
                .find(|(_, other)| under(prefix, other) || under(other, prefix));
            if let Some((other, _)) = shared {
                problems.push((
                    *key,
                    format!("must not be {other} nor under it, nor it under this (each stream takes its own subjects)"),
                ));
            }
        }
        problems
    }
}

/// Opens the key-value bucket `bucket`, creating it (one value per key,
/// `config.replicas` replicas, entries expiring after `max_age` unless zero)
/// when missing.
pub(crate) async fn bucket(
    js: &async_nats::jetstream::Context,
    config: &ClusterConfig,
    bucket: String,
    max_age: Duration,
) -> Result<async_nats::jetstream::kv::Store, ClusterError> {
    if let Ok(kv) = js.get_key_value(&bucket).await {
        return Ok(kv);
    }
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: bucket.clone(),
        history: 1,
        max_age,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::js(format!("bucket {bucket}"), e))
}

/// How many conflicting writes in a row [`compare_and_set`] tolerates.
const CAS_TRIES: usize = 32;

/// Reads `key` and lets `decide` say what to write in its place (`None`:
/// nothing) and what to answer; the write expects the revision read, so a
/// concurrent writer makes it read and decide again.
pub(crate) async fn compare_and_set<R>(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
    what: &str,
    decide: impl Fn(Option<&[u8]>) -> (Option<Vec<u8>>, R),
) -> Result<R, ClusterError> {
    for _ in 0..CAS_TRIES {
        let entry = (kv.entry(key).await).map_err(|e| ClusterError::js(what, e))?;
        let entry = entry.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put);
        let (write, answer) = decide(entry.as_ref().map(|e| e.value.as_ref()));
        let Some(value) = write else {
            return Ok(answer);
        };
        let written = match &entry {
            Some(entry) => kv.update(key, value.into(), entry.revision).await.is_ok(),
            None => kv.create(key, value.into()).await.is_ok(),
        };
        if written {
            return Ok(answer);
        }
    }
    Err(ClusterError::js(
        what,
        format!("{CAS_TRIES} conflicting updates in a row"),
    ))
}

/// The messages of `stream` on `subject` (wildcards allowed), oldest first,
/// `limit` at most.
pub(crate) async fn messages(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    limit: usize,
) -> Result<
    Vec<async_nats::jetstream::message::StreamMessage>,
    async_nats::jetstream::stream::RawMessageError,
> {
    messages_from(stream, subject, 1, limit).await
}

/// [`messages`] from stream sequence `from` on.
pub(crate) async fn messages_from(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    from: u64,
    limit: usize,
) -> Result<
    Vec<async_nats::jetstream::message::StreamMessage>,
    async_nats::jetstream::stream::RawMessageError,
> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let (mut found, mut next) = (Vec::new(), from);
    while found.len() < limit {
        let message = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(subject.to_string())
            .send()
            .await;
        match message {
            Ok(message) => {
                next = message.sequence + 1;
                found.push(message);
            }
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// A subject token or key-value key naming `key`: its readable characters,
/// then a hash of the whole key, so two keys never share one.
pub(crate) fn token(key: &str) -> String {
    let readable: String = (key.chars().take(80))
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    format!("{readable}-{:016x}", fnv1a(key.as_bytes()))
}

/// The partition of `event` among `partitions`: FNV-1a (64-bit) of its
/// `simId`, else its `imsi`, else its id, modulo the count. Stable across
/// versions and machines: changing it would move SIMs between partitions.
pub fn partition_of(event: &Event, partitions: u32) -> u32 {
    let key = (event.sim_id.as_deref())
        .or(event.imsi.as_deref())
        .unwrap_or(&event.id);
    (fnv1a(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// 64-bit FNV-1a.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(body: serde_json::Value) -> Event {
        Event::from_value(body).unwrap()
    }

    #[test]
    fn a_sims_events_share_a_partition_whatever_else_they_hold() {
        let a = event(json!({"id": "1", "simId": "8981100000000000001", "imsi": "1"}));
        let b = event(json!({"id": "2", "simId": "8981100000000000001", "imsi": "2"}));
        assert_eq!(partition_of(&a, 16), partition_of(&b, 16));
        let by_imsi = event(json!({"id": "3", "imsi": "440100000000001"}));
        let same_imsi = event(json!({"id": "4", "imsi": "440100000000001"}));
        assert_eq!(partition_of(&by_imsi, 16), partition_of(&same_imsi, 16));
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned values: a change would move SIMs between partitions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut counts = [0u32; 16];
        for i in 0..1_600 {
            let e = event(json!({"id": i.to_string(), "simId": format!("89811{i:014}")}));
            counts[partition_of(&e, 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (60..=140).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn cluster_settings_that_make_no_sense_are_named() {
        let config = ClusterConfig {
            backend: Backend::Jetstream,
            partitions: 0,
            stream: "a b".into(),
            ..ClusterConfig::default()
        };
        let keys: Vec<&str> = config.problems(None).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["cluster.backend", "cluster.partitions", "cluster.stream"]
        );
        assert!(
            ClusterConfig::default().problems(None).is_empty(),
            "off by default"
        );
        let overlapping = ClusterConfig {
            backend: Backend::Jetstream,
            state_subject_prefix: "kairo.partition.state".into(),
            ..ClusterConfig::default()
        };
        let keys: Vec<&str> = (overlapping
            .problems(Some("nats://127.0.0.1:4222"))
            .into_iter())
        .map(|(k, _)| k)
        .collect();
        assert_eq!(keys, ["cluster.state_subject_prefix"]);
    }
}
