//! A partition's handler state in JetStream: one journal per partition,
//! whoever owns it.
//!
//! The owner appends one entry per evaluated chunk of the partition: the
//! state values the chunk changed (the keys only that partition's SIMs
//! change: [`kairo_core::handler::keys::partition_scoped`]) and the
//! partition-stream sequences of the messages evaluated. One message is
//! stored whole or not at all, so the values and the sequences always agree.
//! The partition's messages are acknowledged only after the entry is stored.
//!
//! - Every append expects the subject's last sequence it knows
//!   (`Nats-Expected-Last-Subject-Sequence`): an owner that lost the
//!   partition (another took over while it was still evaluating) is refused
//!   and stops, so one chain of entries is the truth.
//! - A new owner reads the journal, puts its values into the handler state,
//!   and acknowledges without evaluating every message whose sequence it
//!   lists: evaluated by the previous owner, which died before
//!   acknowledging. Exact sequences, not a high-water mark: a message sent
//!   back (its instance stopped, its chunk failed) may come after newer ones.
//! - An entry also holds what its chunk adds to the counters many
//!   partitions share, which the owner adds right after the entry is
//!   stored, each with the entry's subject and sequence as `Nats-Msg-Id`. A
//!   new owner adds the last entry's again (a duplicate for the counters'
//!   stream when its owner had added them), as its owner may have died
//!   between the two.
//! - Every [`SNAPSHOT_EVERY`] entries the owner appends the whole
//!   partition's state as a roll-up (`Nats-Rollup: sub`), with the listed
//!   sequences not yet acknowledged (above the consumer's ack floor), which
//!   replaces the entries before it, so reading a journal stays short.

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use kairo_core::handler::Retention;

use super::{ClusterConfig, ClusterError};

/// Entries between two roll-ups of the whole partition's state.
pub(crate) const SNAPSHOT_EVERY: usize = 64;

/// One journal message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// The partition-stream sequences of the messages evaluated (for a
    /// roll-up: those not yet acknowledged).
    sequences: Vec<u64>,
    /// True for a roll-up: `values` is the whole partition's state.
    #[serde(default)]
    snapshot: bool,
    /// The values set.
    values: Vec<(String, i64)>,
    /// What the chunk adds to shared counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    adds: Vec<(String, i64)>,
}

/// What an entry adds to shared counters, to add once.
#[derive(Debug, Clone)]
pub(crate) struct Adds {
    /// The entry's subject and sequence: the same for every attempt.
    pub(crate) id: String,
    /// By counter.
    pub(crate) adds: Vec<(String, i64)>,
    /// When the entry was stored, epoch milliseconds.
    pub(crate) at_ms: i64,
}

/// Creates the state stream when missing (roll-ups allowed; one stream
/// for every partition's journal).
pub(crate) async fn open_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<(), ClusterError> {
    let name = config.state_stream.clone();
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.*", config.state_subject_prefix)],
        allow_rollup: true,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
    Ok(())
}

/// Partition `p`'s journal as its owner knows it.
pub(crate) struct Journal {
    stream: jetstream::stream::Stream,
    js: jetstream::Context,
    subject: String,
    /// This subject's last sequence: the next append expects it (0: empty).
    last: u64,
    /// The partition-stream sequences evaluated and perhaps not yet acknowledged.
    evaluated: BTreeSet<u64>,
    /// The partition's state.
    values: HashMap<String, i64>,
    /// Entries appended since the last roll-up.
    since_snapshot: usize,
    /// The largest message the server takes.
    max_payload: usize,
    /// The last entry's shared-counter adds, when it has some.
    last_adds: Option<Adds>,
}

impl Journal {
    /// Reads partition `partition`'s journal.
    pub(crate) async fn read(
        js: &jetstream::Context,
        config: &ClusterConfig,
        partition: u32,
        max_payload: usize,
    ) -> Result<Self, ClusterError> {
        let what = || format!("stream {}", config.state_stream);
        let stream =
            (js.get_stream(&config.state_stream).await).map_err(|e| ClusterError::js(what(), e))?;
        let subject = format!("{}.{partition}", config.state_subject_prefix);
        let mut journal = Self {
            stream,
            js: js.clone(),
            subject,
            last: 0,
            evaluated: BTreeSet::new(),
            values: HashMap::new(),
            since_snapshot: 0,
            max_payload,
            last_adds: None,
        };
        let entries = super::messages(&journal.stream, &journal.subject, usize::MAX).await;
        for message in entries.map_err(|e| ClusterError::js(what(), e))? {
            let entry: Entry = serde_json::from_slice(&message.payload).map_err(|e| {
                ClusterError::js(format!("{} entry {}", journal.subject, message.sequence), e)
            })?;
            let at_ms = (message.time.unix_timestamp_nanos() / 1_000_000) as i64;
            journal.last_adds = journal.adds_of(&entry, message.sequence, at_ms);
            journal.apply(entry);
            journal.last = message.sequence;
        }
        Ok(journal)
    }

    fn adds_of(&self, entry: &Entry, sequence: u64, at_ms: i64) -> Option<Adds> {
        (!entry.adds.is_empty()).then(|| Adds {
            id: format!("{}:{sequence}", self.subject),
            adds: entry.adds.clone(),
            at_ms,
        })
    }

    /// The last entry's shared-counter adds, which its owner may not have
    /// added (it died in between).
    pub(crate) fn last_adds(&self) -> Option<&Adds> {
        self.last_adds.as_ref()
    }

    fn apply(&mut self, entry: Entry) {
        if entry.snapshot {
            self.values.clear();
            self.evaluated.clear();
            self.since_snapshot = 0;
        } else {
            self.since_snapshot += 1;
        }
        self.values.extend(entry.values);
        self.evaluated.extend(entry.sequences);
    }

    /// True when the message at partition-stream sequence `sequence` was
    /// evaluated and its state is in the journal.
    pub(crate) fn evaluated(&self, sequence: u64) -> bool {
        self.evaluated.contains(&sequence)
    }

    /// True when enough entries were appended since the last roll-up.
    pub(crate) fn roll_up_due(&self) -> bool {
        self.since_snapshot >= SNAPSHOT_EVERY
    }

    /// The partition's state, to put into the handler state.
    pub(crate) fn values(&self) -> Vec<(String, Option<i64>)> {
        (self.values.iter())
            .map(|(key, value)| (key.clone(), Some(*value)))
            .collect()
    }

    /// What `keys` were before changes that could not be appended: their
    /// journal values, or none.
    pub(crate) fn before(&self, keys: &[(String, i64)]) -> Vec<(String, Option<i64>)> {
        (keys.iter())
            .map(|(key, _)| (key.clone(), self.values.get(key).copied()))
            .collect()
    }

    /// Appends `values` and `adds`, from evaluating the messages at
    /// `sequences`; refused when another instance appended since (this one
    /// no longer owns the partition). Returns the adds to add, named by the
    /// entry (stored at `now_ms`).
    pub(crate) async fn append(
        &mut self,
        values: Vec<(String, i64)>,
        sequences: Vec<u64>,
        adds: Vec<(String, i64)>,
        now_ms: i64,
    ) -> Result<Option<Adds>, ClusterError> {
        let entry = Entry {
            sequences,
            snapshot: false,
            values,
            adds,
        };
        self.publish(&entry, false).await?;
        self.last_adds = self.adds_of(&entry, self.last, now_ms);
        self.apply(entry);
        Ok(self.last_adds.clone())
    }

    /// Replaces the journal's entries with one holding the whole state (stale
    /// entries left out) and the sequences above `ack_floor` (the consumer's:
    /// every message at or below it is acknowledged), unless it would not fit
    /// in a message.
    pub(crate) async fn roll_up(
        &mut self,
        ack_floor: u64,
        now_ms: i64,
    ) -> Result<(), ClusterError> {
        let retention = Retention::as_of(now_ms);
        self.values
            .retain(|key, value| !retention.is_stale(key, *value));
        self.evaluated = self.evaluated.split_off(&(ack_floor + 1));
        let entry = Entry {
            sequences: self.evaluated.iter().copied().collect(),
            snapshot: true,
            values: self.values.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            adds: Vec::new(),
        };
        if serde_json::to_vec(&entry).map_or(0, |b| b.len()) > self.max_payload {
            tracing::warn!(
                subject = %self.subject, keys = self.values.len(),
                "a partition's state is larger than a NATS message; its journal is not rolled up (more partitions keep each smaller)"
            );
            self.since_snapshot = 0;
            return Ok(());
        }
        self.publish(&entry, true).await?;
        self.since_snapshot = 0;
        self.last_adds = None;
        Ok(())
    }

    async fn publish(&mut self, entry: &Entry, roll_up: bool) -> Result<(), ClusterError> {
        let payload = serde_json::to_vec(entry).expect("journal entries serialize");
        let mut message = PublishMessage::build()
            .payload(payload.into())
            .expected_last_subject_sequence(self.last);
        if roll_up {
            message = message.header(async_nats::header::NATS_ROLLUP, "sub");
        }
        let what = || format!("journal {}", self.subject);
        let ack = (self.js.send_publish(self.subject.clone(), message).await)
            .map_err(|e| ClusterError::js(what(), e))?
            .await
            .map_err(|e| ClusterError::js(what(), e))?;
        self.last = ack.sequence;
        Ok(())
    }
}
