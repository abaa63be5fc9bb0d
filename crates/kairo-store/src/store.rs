//! Opening the database, committing batches and reading state back.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use fjall::Readable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{Delta, Engine, EngineError, Keyspace, NOTHING, WriteTx, int, int_of};
use crate::{
    Batch, BatchResult, DeadLetter, DeadLetterKind, HistoryEntry, PendingAction, StoredEvent,
};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open (it is locked while open).
    #[error("{0}: the store is in use by another process (is `kairo run` running?)")]
    InUse(PathBuf),
    /// The store is being closed and opened again after a failed write.
    #[error("{0}: the store is being reopened after a failed write")]
    Reopening(PathBuf),
    /// The store could not be read or written.
    #[error("{path}: {source}")]
    Database {
        /// The store directory.
        path: PathBuf,
        /// The underlying error.
        source: EngineError,
    },
    /// A store of an earlier version (one redb file) could not be imported.
    #[error("{path}: importing this earlier store failed: {source}")]
    Import {
        /// The earlier store's file.
        path: PathBuf,
        /// The underlying error.
        source: redb::Error,
    },
    /// Dead letters named for a retry do not exist (or are inputs, which cannot be retried).
    #[error("no dead letter with id {}", .0.join(", "))]
    NoSuchDeadLetter(Vec<String>),
    /// What is there is not a usable store: truncated, emptied or corrupt.
    #[error(
        "{path}: the store is damaged ({problem}). Restore it from a backup, or move it \
         aside to start with an empty store (the events, pending actions and dead letters it \
         held are then lost)"
    )]
    Damaged {
        /// The store directory (or an earlier store's file).
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A record could not be decoded.
    #[error("{path}: corrupt {table} record {key:?}: {message}")]
    Corrupt {
        /// The store directory.
        path: PathBuf,
        /// Table name.
        table: &'static str,
        /// Record key.
        key: String,
        /// Decoding error.
        message: String,
    },
}

/// What one bounded pruning step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Records removed.
    pub removed: u64,
    /// The step stopped at its limit: more may be due.
    pub more: bool,
}

impl Pruned {
    pub(crate) fn add(&mut self, removed: usize, limit: usize) {
        self.removed += removed as u64;
        self.more |= removed >= limit;
    }
}

/// The block cache [`Store::open`] gives the database: 32 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The durable state of one Kairo instance.
#[derive(Debug)]
pub struct Store {
    /// `None` only while [`Store::reopen`] swaps it.
    engine: std::sync::RwLock<Option<Engine>>,
    path: PathBuf,
    cache_bytes: usize,
    /// Orders the records of events received in the same millisecond by
    /// when they were evaluated (their arrival order).
    pub(crate) record_seq: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store directory at `path`, with a block
    /// cache of [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a block cache of `cache_bytes`. A store of an
    /// earlier version at `path` (one redb file), or at `path` with the
    /// extension `.redb` when nothing is at `path`, is imported first (see
    /// the `import` module).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
                path: path.clone(),
                source: EngineError::Io(e),
            })?;
        }
        crate::import::import_if_earlier(&path)?;
        let engine = Engine::open(&path, cache_bytes)?;
        Ok(Self {
            record_seq: std::sync::atomic::AtomicU64::new(0),
            engine: std::sync::RwLock::new(Some(engine)),
            path,
            cache_bytes,
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, e: impl Into<EngineError>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Runs `f` on the open engine.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let engine = self.engine.read().unwrap_or_else(|e| e.into_inner());
        f(engine.as_ref().ok_or_else(|| self.closed())?)
    }

    /// Runs `f` in one synced write transaction, then applies the counts it changed.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Engine, &mut WriteTx<'_>, &mut Delta) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|engine| {
            let mut tx = engine.write();
            let mut delta = Delta::default();
            let out = f(engine, &mut tx, &mut delta)?;
            tx.commit().map_err(|e| self.err(e))?;
            engine.counts.apply(delta);
            Ok(out)
        })
    }

    fn closed(&self) -> StoreError {
        StoreError::Reopening(self.path.clone())
    }

    /// Closes the store and opens it again: after a failed write (a full
    /// disk, say) the storage engine refuses every further write until then.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut engine = self.engine.write().unwrap_or_else(|e| e.into_inner());
        // The directory stays locked while the old handle lives: close it first.
        *engine = None;
        *engine = Some(Engine::open(&self.path, self.cache_bytes)?);
        Ok(())
    }

    /// Commits `batch` in one durable transaction. Events whose id was seen at or
    /// after `dedupe_since_ms` are duplicates and are not stored again.
    pub fn commit(
        &self,
        batch: &Batch,
        now_ms: i64,
        dedupe_since_ms: i64,
    ) -> Result<BatchResult, StoreError> {
        self.write(|engine, tx, delta| {
            let t = &engine.t;
            let mut result = BatchResult::default();
            for (key, value) in &batch.state {
                tx.insert(&t.state, key.as_str(), int(*value));
            }
            for (key, value) in &batch.sources {
                tx.insert(&t.sources, key.as_str(), value.as_str());
            }
            let fresh = self.accept(tx, t, batch, now_ms, dedupe_since_ms, &mut result, delta)?;
            let accepted = self.enqueue(tx, t, batch, fresh, now_ms, &mut result, delta)?;
            for action in &batch.reschedule {
                self.put(
                    tx,
                    &t.outbox,
                    &action.key(),
                    encode(action),
                    &mut delta.outbox,
                )?;
            }
            for entry in &batch.finished {
                let key = entry.request.key();
                self.take(tx, &t.outbox, &key, &mut delta.outbox)?;
                let history_key = time_key(entry.finished_at_ms, &key);
                tx.insert(&t.history, history_key.as_str(), encode(entry));
                tx.insert(&t.history_by_action, key.as_str(), history_key.as_str());
            }
            for letter in &batch.dead {
                if letter.kind == DeadLetterKind::Action {
                    self.take(tx, &t.outbox, &letter.id, &mut delta.outbox)?;
                }
                self.put(tx, &t.dead, &letter.id, encode(letter), &mut delta.dead)?;
            }
            self.record_traces(tx, t, &batch.traces, &accepted, delta)?;
            Ok(result)
        })
    }

    /// Accepts the batch's events that are not duplicates: their ids and,
    /// for those not evaluated in this same transaction, their place in the
    /// inbox. Returns the stored JSON of those that skip the inbox.
    #[allow(clippy::too_many_arguments)]
    fn accept<'b>(
        &self,
        tx: &mut WriteTx<'_>,
        t: &crate::engine::Tables,
        batch: &'b Batch,
        now_ms: i64,
        dedupe_since_ms: i64,
        result: &mut BatchResult,
        delta: &mut Delta,
    ) -> Result<HashMap<&'b str, Vec<u8>>, StoreError> {
        let evaluated_here: HashSet<&str> = (batch.evaluated.iter())
            .map(|(id, _)| id.as_str())
            .collect();
        let mut fresh = HashMap::new();
        for event in &batch.accept {
            let id = event.id();
            let previous = tx.get(&t.seen, id).map_err(|e| self.err(e))?;
            let previous = previous.map(|v| int_of(&v));
            if previous.is_some_and(|at| at >= dedupe_since_ms) {
                result.accepted_new.push(false);
                continue;
            }
            if let Some(at) = previous {
                tx.remove(&t.seen_by_time, time_key(at, id));
            }
            tx.insert(&t.seen, id, int(now_ms));
            tx.insert(&t.seen_by_time, time_key(now_ms, id), NOTHING);
            // Evaluated in this same transaction: no inbox round trip.
            if evaluated_here.contains(id) {
                fresh.insert(id, encode(event));
            } else {
                self.put(tx, &t.inbox, id, encode(event), &mut delta.inbox)?;
            }
            result.accepted_new.push(true);
        }
        Ok(fresh)
    }

    /// Takes the evaluated events from the inbox (or `fresh`, accepted in this
    /// transaction) and adds their actions to the outbox. Returns the stored
    /// JSON of each (and when it was accepted) for its trace record.
    #[allow(clippy::too_many_arguments)]
    fn enqueue<'b>(
        &self,
        tx: &mut WriteTx<'_>,
        t: &crate::engine::Tables,
        batch: &'b Batch,
        mut fresh: HashMap<&str, Vec<u8>>,
        now_ms: i64,
        result: &mut BatchResult,
        delta: &mut Delta,
    ) -> Result<HashMap<&'b str, StoredJson>, StoreError> {
        let mut accepted = HashMap::new();
        for (event_id, actions) in &batch.evaluated {
            let stored = match fresh.remove(event_id.as_str()) {
                Some(bytes) => Some((bytes, Some(now_ms))),
                None => self.take_from_inbox(tx, t, event_id, delta)?,
            };
            if let Some(stored) = stored.filter(|_| !batch.traces.is_empty()) {
                accepted.insert(event_id.as_str(), stored);
            }
            for action in actions {
                let key = action.key();
                if tx.contains_key(&t.outbox, &key).map_err(|e| self.err(e))? {
                    continue;
                }
                tx.insert(&t.outbox, key.as_str(), encode(action));
                delta.outbox += 1;
                result.enqueued.push(key);
            }
        }
        Ok(accepted)
    }

    /// Removes event `id` from the inbox: its stored JSON and when it was
    /// accepted, if it was there.
    fn take_from_inbox(
        &self,
        tx: &mut WriteTx<'_>,
        t: &crate::engine::Tables,
        id: &str,
        delta: &mut Delta,
    ) -> Result<Option<StoredJson>, StoreError> {
        let Some(bytes) = self.take(tx, &t.inbox, id, &mut delta.inbox)? else {
            return Ok(None);
        };
        let received = tx.get(&t.seen, id).map_err(|e| self.err(e))?;
        Ok(Some((bytes.to_vec(), received.map(|v| int_of(&v)))))
    }

    /// Inserts `key` in a counted keyspace, counting it when it is new.
    pub(crate) fn put(
        &self,
        tx: &mut WriteTx<'_>,
        ks: &Keyspace,
        key: &str,
        value: Vec<u8>,
        count: &mut i64,
    ) -> Result<(), StoreError> {
        if !tx.contains_key(ks, key).map_err(|e| self.err(e))? {
            *count += 1;
        }
        tx.insert(ks, key, value);
        Ok(())
    }

    /// Removes `key` from a counted keyspace: its value, if it was there.
    pub(crate) fn take(
        &self,
        tx: &mut WriteTx<'_>,
        ks: &Keyspace,
        key: &str,
        count: &mut i64,
    ) -> Result<Option<fjall::Slice>, StoreError> {
        let taken = tx.take(ks, key).map_err(|e| self.err(e))?;
        if taken.is_some() {
            *count -= 1;
        }
        Ok(taken)
    }

    /// Accepted events not yet evaluated, oldest first.
    pub fn inbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events: Vec<StoredEvent> = self.read_all(|t| &t.inbox, "inbox")?;
        events.sort_by_key(|e| e.received_at_ms);
        Ok(events)
    }

    /// Pending actions, soonest due first.
    pub fn outbox(&self) -> Result<Vec<PendingAction>, StoreError> {
        let mut actions: Vec<PendingAction> = self.read_all(|t| &t.outbox, "outbox")?;
        actions.sort_by_key(PendingAction::due_ms);
        Ok(actions)
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters: Vec<DeadLetter> = self.read_all(|t| &t.dead, "dead_letters")?;
        letters.sort_by_key(|l| l.failed_at_ms);
        Ok(letters)
    }

    /// Every source snapshot whose key starts with `prefix`: (key, JSON text).
    pub fn sources(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|engine| {
            let snapshot = engine.db.read_tx();
            let mut found = Vec::new();
            for item in snapshot.prefix(&engine.t.sources, prefix) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                found.push((text(&key), text(&value)));
            }
            Ok(found)
        })
    }

    /// The most recent `limit` finished actions, oldest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.with(|engine| {
            let snapshot = engine.db.read_tx();
            let mut entries = Vec::new();
            for item in snapshot.iter(&engine.t.history).rev().take(limit) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                entries.push(self.decode("history", &text(&key), &value)?);
            }
            entries.reverse();
            Ok(entries)
        })
    }

    /// All event handler state.
    pub fn handler_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|engine| {
            let snapshot = engine.db.read_tx();
            let mut out = Vec::new();
            for item in snapshot.iter(&engine.t.state) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                out.push((text(&key), int_of(&value)));
            }
            Ok(out)
        })
    }

    /// Numbers of (inbox events, pending actions, dead letters).
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        self.with(|engine| {
            let (inbox, outbox, dead, _) = engine.counts.get();
            Ok((inbox, outbox, dead))
        })
    }

    /// Moves the dead letters with `ids` (all action dead letters when `None`)
    /// back to the outbox with a fresh attempt count, due at `now_ms`; returns them.
    /// Input dead letters cannot be retried; naming one, or an unknown id,
    /// retries nothing and fails with [`StoreError::NoSuchDeadLetter`].
    pub fn retry_dead(
        &self,
        ids: Option<&[String]>,
        now_ms: i64,
    ) -> Result<Vec<PendingAction>, StoreError> {
        let letters = self.dead_letters()?;
        let chosen: Vec<DeadLetter> = letters
            .into_iter()
            .filter(|l| ids.is_none_or(|ids| ids.contains(&l.id)))
            .filter(|l| l.kind == DeadLetterKind::Action)
            .collect();
        if let Some(ids) = ids {
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !chosen.iter().any(|l| &l.id == *id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(StoreError::NoSuchDeadLetter(missing));
            }
        }
        self.write(|engine, tx, delta| {
            let t = &engine.t;
            let mut retried = Vec::new();
            for letter in chosen {
                let Some(action) = letter.action.map(|a| a.retried(now_ms)) else {
                    continue;
                };
                self.take(tx, &t.dead, &letter.id, &mut delta.dead)?;
                self.put(
                    tx,
                    &t.outbox,
                    &action.key(),
                    encode(&action),
                    &mut delta.outbox,
                )?;
                retried.push(action);
            }
            Ok(retried)
        })
    }

    /// Deletes the dead letter `id`; returns whether it existed.
    pub fn drop_dead(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|engine, tx, delta| {
            Ok(self
                .take(tx, &engine.t.dead, id, &mut delta.dead)?
                .is_some())
        })
    }

    /// The record at `key` in the keyspace `table` picks, decoded, if there is one.
    pub(crate) fn read_one<T: DeserializeOwned>(
        &self,
        table: impl FnOnce(&crate::engine::Tables) -> &Keyspace,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.with(|engine| {
            let value = engine.db.read_tx().get(table(&engine.t), key);
            let value = value.map_err(|e| self.err(e))?;
            value.map(|v| self.decode(name, key, &v)).transpose()
        })
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        table: impl FnOnce(&crate::engine::Tables) -> &Keyspace,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.with(|engine| {
            let snapshot = engine.db.read_tx();
            let mut out = Vec::new();
            for item in snapshot.iter(table(&engine.t)) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                out.push(self.decode(name, &text(&key), &value)?);
            }
            Ok(out)
        })
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            table,
            key: key.to_string(),
            message: e.to_string(),
        })
    }
}

/// An accepted event's stored JSON, and when it was accepted (ms).
pub(crate) type StoredJson = (Vec<u8>, Option<i64>);

/// Runs `f`, turning a panic into its message without printing it.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the storage library failed while reading it".into())
    })
}

pub(crate) fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

/// A stored key or text value as a string.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A key that sorts by time: zero-padded milliseconds, `/`, then `suffix`.
pub(crate) fn time_key(ms: i64, suffix: &str) -> String {
    format!("{:020}/{suffix}", ms.max(0))
}

/// The start of millisecond `ms` in the records' index, whose keys are
/// `MS.SEQ/ID` (and `MS/ID` for records written before the sequence).
pub(crate) fn record_bound(ms: i64) -> String {
    format!("{:020}.", ms.max(0))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
