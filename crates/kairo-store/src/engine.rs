//! The storage engine under the store: fjall, a log-structured merge tree
//! with a write-ahead journal. One keyspace per kind of record; every write
//! transaction is synced to the journal before it returns, and a write
//! appends to the journal instead of rewriting B-tree pages.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
    SingleWriterWriteTx,
};

use crate::StoreError;

/// One kind of record.
pub(crate) type Keyspace = SingleWriterTxKeyspace;
/// A write transaction, synced to the journal when committed.
pub(crate) type WriteTx<'a> = SingleWriterWriteTx<'a>;

/// A keyspace's memtable is flushed to a table file at this size (memory
/// stays bounded by it times the keyspaces written, 11 at most).
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;
/// Record values from this size are kept in blob files, apart from keys.
const SEPARATE_FROM_BYTES: u32 = 256;
/// Journals kept before memtables are flushed to free them.
const JOURNAL_BYTES: u64 = 128 * 1024 * 1024;
/// The file a fjall database keeps its format version in.
const VERSION_FILE: &str = "version";

/// An error of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading or writing a file failed (a full disk, say).
    #[error(transparent)]
    Io(std::io::Error),
    /// An earlier write failed; the engine refuses writes until it is reopened.
    #[error("an earlier write failed; the store is reopened before it writes again")]
    Poisoned,
    /// Anything else the engine reports.
    #[error("storage engine: {0:?}")]
    Other(fjall::Error),
}

impl From<fjall::Error> for EngineError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Io(e) => Self::Io(e),
            fjall::Error::Poisoned => Self::Poisoned,
            other => Self::Other(other),
        }
    }
}

/// The keyspaces, one per kind of record (the tables of earlier, redb-based stores).
pub(crate) struct Tables {
    /// Accepted events not yet evaluated: event id → [`crate::StoredEvent`].
    pub inbox: Keyspace,
    /// Event ids seen: id → accepted time (ms, 8 bytes big-endian).
    pub seen: Keyspace,
    /// The same ids ordered by time, for pruning: `{time:020}/{id}` → nothing.
    pub seen_by_time: Keyspace,
    /// Pending actions: action key → [`crate::PendingAction`].
    pub outbox: Keyspace,
    /// Dead letters: id → [`crate::DeadLetter`].
    pub dead: Keyspace,
    /// Event handler state: key → integer (8 bytes big-endian).
    pub state: Keyspace,
    /// Finished actions: `{finished:020}/{key}` → [`crate::HistoryEntry`].
    pub history: Keyspace,
    /// The history key of each finished action: action key → history key.
    pub history_by_action: Keyspace,
    /// Evaluated events with their traces: event id → [`crate::EventRecord`].
    pub traces: Keyspace,
    /// The same ids by receive order: `{order}/{id}` → nothing.
    pub traces_by_time: Keyspace,
    /// What sources (the SORACOM watcher) last saw, by key: JSON text.
    pub sources: Keyspace,
}

/// Numbers of records the status reports and pruning needs, kept as records
/// come and go instead of counted by a scan each time.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    inbox: AtomicI64,
    outbox: AtomicI64,
    dead: AtomicI64,
    records: AtomicI64,
}

/// Changes to [`Counts`] made by one transaction, applied once it commits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delta {
    pub inbox: i64,
    pub outbox: i64,
    pub dead: i64,
    pub records: i64,
}

impl Counts {
    /// (inbox events, pending actions, dead letters, event records).
    pub fn get(&self) -> (u64, u64, u64, u64) {
        let n = |c: &AtomicI64| c.load(Ordering::Relaxed).max(0) as u64;
        (
            n(&self.inbox),
            n(&self.outbox),
            n(&self.dead),
            n(&self.records),
        )
    }

    pub fn apply(&self, d: Delta) {
        self.inbox.fetch_add(d.inbox, Ordering::Relaxed);
        self.outbox.fetch_add(d.outbox, Ordering::Relaxed);
        self.dead.fetch_add(d.dead, Ordering::Relaxed);
        self.records.fetch_add(d.records, Ordering::Relaxed);
    }
}

/// An open database with its keyspaces and counts.
pub(crate) struct Engine {
    pub db: SingleWriterTxDatabase,
    pub path: std::path::PathBuf,
    pub t: Tables,
    pub counts: Counts,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("counts", &self.counts)
            .finish()
    }
}

impl Engine {
    /// Opens (creating when nothing is there) the database directory `path`.
    /// A directory holding files but no database is reported as damaged,
    /// never started afresh over what it holds.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = open_database(path, cache_bytes)?;
        let err = |e: fjall::Error| StoreError::Database {
            path: path.to_path_buf(),
            source: e.into(),
        };
        let t = Tables::open(&db).map_err(err)?;
        let counts = Counts::default();
        let snapshot = db.read_tx();
        let count = |ks: &Keyspace| snapshot.len(ks).map(|n| n as i64).map_err(err);
        counts.apply(Delta {
            inbox: count(&t.inbox)?,
            outbox: count(&t.outbox)?,
            dead: count(&t.dead)?,
            records: count(&t.traces_by_time)?,
        });
        drop(snapshot);
        Ok(Self {
            db,
            path: path.to_path_buf(),
            t,
            counts,
        })
    }

    /// A write transaction that is synced to the journal when it commits.
    pub fn write(&self) -> WriteTx<'_> {
        self.db.write_tx().durability(Some(PersistMode::SyncData))
    }
}

impl Tables {
    /// Opens (creating) every keyspace.
    fn open(db: &SingleWriterTxDatabase) -> Result<Self, fjall::Error> {
        let options = |name: &str| {
            let options = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
            if name != "traces" {
                return options;
            }
            // Records (the event with its trace) go to blob files; compaction
            // then moves only their keys.
            let blobs =
                fjall::KvSeparationOptions::default().separation_threshold(SEPARATE_FROM_BYTES);
            options.with_kv_separation(Some(blobs))
        };
        let table = |name: &str| db.keyspace(name, || options(name));
        Ok(Self {
            inbox: table("inbox")?,
            seen: table("seen")?,
            seen_by_time: table("seen_by_time")?,
            outbox: table("outbox")?,
            dead: table("dead_letters")?,
            state: table("handler_state")?,
            history: table("history")?,
            history_by_action: table("history_by_action")?,
            traces: table("traces")?,
            traces_by_time: table("traces_by_time")?,
            sources: table("sources")?,
        })
    }
}

/// Opens the database directory `path`: in use, damaged or unreadable
/// directories are named, never replaced or left to panic.
fn open_database(path: &Path, cache_bytes: usize) -> Result<SingleWriterTxDatabase, StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        path: path.to_path_buf(),
        problem,
    };
    let holds_files = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
    if holds_files && !path.join(VERSION_FILE).is_file() {
        return Err(damaged(format!(
            "the directory holds files but no `{VERSION_FILE}` file: it is not a store, or its \
             version file was lost"
        )));
    }
    if path
        .join(VERSION_FILE)
        .metadata()
        .is_ok_and(|m| m.len() == 0)
    {
        return Err(damaged(format!(
            "its `{VERSION_FILE}` file is empty, 0 bytes"
        )));
    }
    let builder = SingleWriterTxDatabase::builder(path)
        .cache_size(cache_bytes as u64)
        .max_journaling_size(JOURNAL_BYTES)
        // One worker flushes and compacts. With more, the first passes every
        // compaction request back to the queue and spins on it while another
        // compacts (a fifth of the router's CPU time in a profile).
        .worker_threads(1);
    // The engine may assert on some kinds of damage; such a panic is caught
    // here and reported like any other damage.
    match crate::store::quietly(|| builder.open()) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(fjall::Error::Locked)) => Err(StoreError::InUse(path.to_path_buf())),
        Ok(Err(fjall::Error::Io(e))) if e.kind() != std::io::ErrorKind::InvalidData => {
            Err(StoreError::Database {
                path: path.to_path_buf(),
                source: EngineError::Io(e),
            })
        }
        Ok(Err(e)) => Err(damaged(format!("{e:?}"))),
        Err(panic) => Err(damaged(panic)),
    }
}

/// An integer value as stored.
pub(crate) fn int(value: i64) -> [u8; 8] {
    value.to_be_bytes()
}

/// A stored integer value (0 when it is not 8 bytes).
pub(crate) fn int_of(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// The value of index entries, whose keys say everything.
pub(crate) const NOTHING: [u8; 0] = [];
