//! Opening the database, committing batches and reading state back.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Batch, BatchResult, DeadLetter, DeadLetterKind, HistoryEntry, PendingAction, StoredEvent,
};

/// Accepted events not yet evaluated: event id → [`StoredEvent`].
pub(crate) const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("inbox");
/// Event ids seen: id → accepted time (ms).
pub(crate) const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
/// The same ids ordered by time, for pruning: `{time:020}/{id}` → 0.
pub(crate) const SEEN_BY_TIME: TableDefinition<&str, u8> = TableDefinition::new("seen_by_time");
/// Pending actions: action key → [`PendingAction`].
pub(crate) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// Dead letters: id → [`DeadLetter`].
pub(crate) const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead_letters");
/// Event handler state: key → integer (counters in bytes, suppression times in ms).
pub(crate) const STATE: TableDefinition<&str, i64> = TableDefinition::new("handler_state");
/// Finished actions: `{finished:020}/{key}` → [`HistoryEntry`].
pub(crate) const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");
/// The history key of each finished action: action key → `{finished:020}/{key}`.
pub(crate) const HISTORY_BY_ACTION: TableDefinition<&str, &str> =
    TableDefinition::new("history_by_action");
/// Evaluated events with their traces: event id → [`EventRecord`].
pub(crate) const TRACES: TableDefinition<&str, &[u8]> = TableDefinition::new("traces");
/// The same ids by evaluation time, for pruning: `{time:020}/{id}` → 0.
pub(crate) const TRACES_BY_TIME: TableDefinition<&str, u8> = TableDefinition::new("traces_by_time");
/// What sources (the SORACOM watcher) last saw, by key: JSON text.
pub(crate) const SOURCES: TableDefinition<&str, &str> = TableDefinition::new("sources");

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the database open (redb holds an exclusive lock).
    #[error("{0}: the database is in use by another process (is `kairo run` running?)")]
    InUse(PathBuf),
    /// The database is being closed and opened again after a failed write.
    #[error("{0}: the database is being reopened after a failed write")]
    Reopening(PathBuf),
    /// The database could not be read or written.
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: redb::Error,
    },
    /// Dead letters named for a retry do not exist (or are inputs, which cannot be retried).
    #[error("no dead letter with id {}", .0.join(", "))]
    NoSuchDeadLetter(Vec<String>),
    /// The file exists but is not a usable database: truncated, emptied or corrupt.
    #[error(
        "{path}: the store file is damaged ({problem}). Restore it from a backup, or move it \
         aside to start with an empty store (the events, pending actions and dead letters it \
         held are then lost)"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A record could not be decoded.
    #[error("{path}: corrupt {table} record {key:?}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Table name.
        table: &'static str,
        /// Record key.
        key: String,
        /// Decoding error.
        message: String,
    },
}

/// An accepted event's stored JSON, and when it was accepted (ms).
type StoredJson = (Vec<u8>, Option<i64>);

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

/// The page cache [`Store::open`] gives the database: 32 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The durable state of one Kairo instance.
#[derive(Debug)]
pub struct Store {
    /// `None` only while [`Store::reopen`] swaps it.
    db: std::sync::RwLock<Option<Database>>,
    path: PathBuf,
    cache_bytes: usize,
    /// Orders the records of events received in the same millisecond by
    /// when they were evaluated (their arrival order).
    pub(crate) record_seq: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, and its tables, with
    /// a page cache of [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with a page cache of `cache_bytes` (memory held for
    /// reading and writing pages; the storage library's own default is 1 GiB).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Database {
                path: path.clone(),
                source: redb::Error::Io(e),
            })?;
        }
        let db = open_database(&path, cache_bytes)?;
        let store = Self {
            record_seq: std::sync::atomic::AtomicU64::new(0),
            db: std::sync::RwLock::new(Some(db)),
            path,
            cache_bytes,
        };
        let tx = store.write()?;
        for table in [INBOX, OUTBOX, DEAD, HISTORY] {
            tx.open_table(table).map_err(|e| store.err(e))?;
        }
        tx.open_table(SEEN).map_err(|e| store.err(e))?;
        tx.open_table(SEEN_BY_TIME).map_err(|e| store.err(e))?;
        tx.open_table(TRACES).map_err(|e| store.err(e))?;
        tx.open_table(TRACES_BY_TIME).map_err(|e| store.err(e))?;
        tx.open_table(HISTORY_BY_ACTION).map_err(|e| store.err(e))?;
        tx.open_table(STATE).map_err(|e| store.err(e))?;
        tx.open_table(SOURCES).map_err(|e| store.err(e))?;
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    pub(crate) fn write(&self) -> Result<WriteTransaction, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        db.begin_write().map_err(|e| self.err(e))
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        db.begin_read().map_err(|e| self.err(e))
    }

    fn closed(&self) -> StoreError {
        StoreError::Reopening(self.path.clone())
    }

    /// Closes the database and opens it again: after a failed write (a full
    /// disk, say) the storage library refuses every further write until then.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        // The file stays locked while the old handle lives: close it first.
        *db = None;
        *db = Some(open_database(&self.path, self.cache_bytes)?);
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
        let mut result = BatchResult::default();
        let tx = self.write()?;
        {
            let mut inbox = tx.open_table(INBOX).map_err(|e| self.err(e))?;
            let mut seen = tx.open_table(SEEN).map_err(|e| self.err(e))?;
            let mut seen_by_time = tx.open_table(SEEN_BY_TIME).map_err(|e| self.err(e))?;
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
            let mut dead = tx.open_table(DEAD).map_err(|e| self.err(e))?;
            let mut history = tx.open_table(HISTORY).map_err(|e| self.err(e))?;
            let mut state = tx.open_table(STATE).map_err(|e| self.err(e))?;

            for (key, value) in &batch.state {
                state
                    .insert(key.as_str(), *value)
                    .map_err(|e| self.err(e))?;
            }
            if !batch.sources.is_empty() {
                let mut sources = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
                for (key, value) in &batch.sources {
                    sources
                        .insert(key.as_str(), value.as_str())
                        .map_err(|e| self.err(e))?;
                }
            }
            let evaluated_here: std::collections::HashSet<&str> = (batch.evaluated.iter())
                .map(|(id, _)| id.as_str())
                .collect();
            let mut fresh = std::collections::HashMap::new();
            for event in &batch.accept {
                let id = event.id();
                let previous = seen.get(id).map_err(|e| self.err(e))?.map(|v| v.value());
                if previous.is_some_and(|at| at >= dedupe_since_ms) {
                    result.accepted_new.push(false);
                    continue;
                }
                if let Some(at) = previous {
                    seen_by_time
                        .remove(time_key(at, id).as_str())
                        .map_err(|e| self.err(e))?;
                }
                seen.insert(id, now_ms).map_err(|e| self.err(e))?;
                seen_by_time
                    .insert(time_key(now_ms, id).as_str(), 0)
                    .map_err(|e| self.err(e))?;
                // Evaluated in this same transaction: no inbox round trip.
                if evaluated_here.contains(id) {
                    fresh.insert(id, encode(event));
                } else {
                    inbox
                        .insert(id, encode(event).as_slice())
                        .map_err(|e| self.err(e))?;
                }
                result.accepted_new.push(true);
            }
            // The evaluated events' stored JSON, for their trace records.
            let mut accepted = std::collections::HashMap::new();
            for (event_id, actions) in &batch.evaluated {
                let stored = match fresh.remove(event_id.as_str()) {
                    Some(bytes) => Some((bytes, Some(now_ms))),
                    None => self.take_from_inbox(&mut inbox, &seen, event_id)?,
                };
                if let Some(stored) = stored.filter(|_| !batch.traces.is_empty()) {
                    accepted.insert(event_id.as_str(), stored);
                }
                for action in actions {
                    let key = action.key();
                    if outbox.get(key.as_str()).map_err(|e| self.err(e))?.is_some() {
                        continue;
                    }
                    outbox
                        .insert(key.as_str(), encode(action).as_slice())
                        .map_err(|e| self.err(e))?;
                    result.enqueued.push(key);
                }
            }
            for action in &batch.reschedule {
                outbox
                    .insert(action.key().as_str(), encode(action).as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let mut by_action = tx.open_table(HISTORY_BY_ACTION).map_err(|e| self.err(e))?;
            for entry in &batch.finished {
                let key = entry.request.key();
                outbox.remove(key.as_str()).map_err(|e| self.err(e))?;
                let history_key = time_key(entry.finished_at_ms, &key);
                history
                    .insert(history_key.as_str(), encode(entry).as_slice())
                    .map_err(|e| self.err(e))?;
                by_action
                    .insert(key.as_str(), history_key.as_str())
                    .map_err(|e| self.err(e))?;
            }
            for letter in &batch.dead {
                if letter.kind == DeadLetterKind::Action {
                    outbox.remove(letter.id.as_str()).map_err(|e| self.err(e))?;
                }
                dead.insert(letter.id.as_str(), encode(letter).as_slice())
                    .map_err(|e| self.err(e))?;
            }
            self.record_traces(&tx, &batch.traces, &accepted)?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(result)
    }

    /// Removes event `id` from the inbox: its stored JSON and when it was
    /// accepted, if it was there.
    fn take_from_inbox(
        &self,
        inbox: &mut redb::Table<&str, &[u8]>,
        seen: &redb::Table<&str, i64>,
        id: &str,
    ) -> Result<Option<StoredJson>, StoreError> {
        let Some(bytes) = inbox.remove(id).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let received = seen.get(id).map_err(|e| self.err(e))?.map(|v| v.value());
        Ok(Some((bytes.value().to_vec(), received)))
    }

    /// Accepted events not yet evaluated, oldest first.
    pub fn inbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events: Vec<StoredEvent> = self.read_all(INBOX, "inbox")?;
        events.sort_by_key(|e| e.received_at_ms);
        Ok(events)
    }

    /// Pending actions, soonest due first.
    pub fn outbox(&self) -> Result<Vec<PendingAction>, StoreError> {
        let mut actions: Vec<PendingAction> = self.read_all(OUTBOX, "outbox")?;
        actions.sort_by_key(PendingAction::due_ms);
        Ok(actions)
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters: Vec<DeadLetter> = self.read_all(DEAD, "dead_letters")?;
        letters.sort_by_key(|l| l.failed_at_ms);
        Ok(letters)
    }

    /// Every source snapshot whose key starts with `prefix`: (key, JSON text).
    pub fn sources(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let mut found = Vec::new();
        for item in table.range(prefix..).map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            if !key.value().starts_with(prefix) {
                break;
            }
            found.push((key.value().to_string(), value.value().to_string()));
        }
        Ok(found)
    }

    /// The most recent `limit` finished actions, oldest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(HISTORY).map_err(|e| self.err(e))?;
        let mut entries = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))?.rev().take(limit) {
            let (key, value) = item.map_err(|e| self.err(e))?;
            entries.push(self.decode("history", key.value(), value.value())?);
        }
        entries.reverse();
        Ok(entries)
    }

    /// All event handler state.
    pub fn handler_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(STATE).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            out.push((key.value().to_string(), value.value()));
        }
        Ok(out)
    }

    /// Numbers of (inbox events, pending actions, dead letters).
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let tx = self.read()?;
        let count = |table| -> Result<u64, StoreError> {
            tx.open_table(table)
                .map_err(|e| self.err(e))?
                .len()
                .map_err(|e| self.err(e))
        };
        Ok((count(INBOX)?, count(OUTBOX)?, count(DEAD)?))
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
        let mut retried = Vec::new();
        let tx = self.write()?;
        {
            let mut dead = tx.open_table(DEAD).map_err(|e| self.err(e))?;
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.err(e))?;
            for letter in chosen {
                let Some(mut action) = letter.action else {
                    continue;
                };
                action.attempts = 0;
                action.next_attempt_ms = now_ms;
                action.request.not_before_ms = None;
                dead.remove(letter.id.as_str()).map_err(|e| self.err(e))?;
                outbox
                    .insert(action.key().as_str(), encode(&action).as_slice())
                    .map_err(|e| self.err(e))?;
                retried.push(action);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(retried)
    }

    /// Deletes the dead letter `id`; returns whether it existed.
    pub fn drop_dead(&self, id: &str) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let existed = {
            let mut dead = tx.open_table(DEAD).map_err(|e| self.err(e))?;
            dead.remove(id).map_err(|e| self.err(e))?.is_some()
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(existed)
    }

    /// The record at `key` in `table`, decoded, if there is one.
    pub(crate) fn read_one<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(table).map_err(|e| self.err(e))?;
        let value = table.get(key).map_err(|e| self.err(e))?;
        value.map(|v| self.decode(name, key, v.value())).transpose()
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            out.push(self.decode(name, key.value(), value.value())?);
        }
        Ok(out)
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

/// Opens the database at `path`, creating it only when no file is there: an
/// existing file that is empty, truncated or corrupt is reported as
/// [`StoreError::Damaged`], never silently replaced or left to panic.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        path: path.to_path_buf(),
        problem,
    };
    let existing = match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => return Err(damaged("the file is empty, 0 bytes".into())),
        Ok(_) => true,
        Err(_) => false,
    };
    // The storage library asserts on some kinds of damage; such a panic is
    // caught here and reported like any other damage.
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_bytes);
    let opened = quietly(|| {
        if existing {
            builder.open(path)
        } else {
            builder.create(path)
        }
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            Err(StoreError::InUse(path.to_path_buf()))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(problem)))) => {
            Err(damaged(problem))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(damaged(format!("not a store file: {e}")))
        }
        Ok(Err(e)) => Err(StoreError::Database {
            path: path.to_path_buf(),
            source: e.into(),
        }),
        Err(panic) => Err(damaged(panic)),
    }
}

/// Runs `f`, turning a panic into its message without printing it.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
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
