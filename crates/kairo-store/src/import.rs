//! Importing a store of an earlier version: one redb file, whose tables
//! become the keyspaces of the same names.
//!
//! The import is written to `PATH.importing`, synced and marked complete;
//! then the earlier file is renamed `FILE.imported` (kept until the operator
//! removes it) and the new directory takes the store's path. A crash at any
//! point leaves either the earlier file untouched (the import starts over) or
//! a complete import that the next open puts in place.

use std::path::{Path, PathBuf};

use fjall::PersistMode;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::StoreError;
use crate::engine::{Engine, NOTHING, int};
use crate::store::quietly;

/// Marks an import directory as complete.
const COMPLETE: &str = "import-complete";
/// Records written per transaction while importing.
const CHUNK: usize = 10_000;

/// Tables of byte values (each keyspace has its table's name).
const BYTES: [&str; 5] = ["inbox", "outbox", "dead_letters", "history", "traces"];
/// Tables of integer values.
const INTS: [&str; 2] = ["seen", "handler_state"];
/// Index tables, whose keys say everything.
const INDEXES: [&str; 2] = ["seen_by_time", "traces_by_time"];
/// Tables of text values.
const TEXTS: [&str; 2] = ["history_by_action", "sources"];

/// Imports the earlier store that belongs at `path`, if there is one: a
/// redb file at `path` itself, or at `path` with the extension `.redb` when
/// nothing is at `path` (the default path of earlier versions).
pub(crate) fn import_if_earlier(path: &Path) -> Result<(), StoreError> {
    let staging = sibling(path, "importing");
    if !path.exists() && staging.join(COMPLETE).is_file() {
        return finish(path, &staging);
    }
    let earlier = if path.is_file() {
        path.to_path_buf()
    } else {
        match path.with_extension("redb") {
            file if !path.exists() && file != path && file.is_file() => file,
            _ => return Ok(()),
        }
    };
    tracing::warn!(from = %earlier.display(), into = %path.display(), "importing the store of an earlier version");
    let db = open_redb(&earlier)?;
    if staging.exists() {
        // An import that did not complete: start over.
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    copy(&db, &earlier, &staging)?;
    drop(db);
    std::fs::rename(&earlier, sibling(&earlier, "imported")).map_err(|e| io(&earlier, e))?;
    finish(path, &staging)
}

/// Puts a complete import in place.
fn finish(path: &Path, staging: &Path) -> Result<(), StoreError> {
    std::fs::remove_file(staging.join(COMPLETE)).map_err(|e| io(staging, e))?;
    std::fs::rename(staging, path).map_err(|e| io(path, e))
}

/// Copies every table of `db` into a new database at `staging`, synced, and
/// marks it complete.
fn copy(db: &redb::Database, earlier: &Path, staging: &Path) -> Result<(), StoreError> {
    let into = Engine::open(staging, crate::store::DEFAULT_CACHE_BYTES)?;
    let tx = db.begin_read().map_err(|e| failed(earlier, e))?;
    let mut copied = 0;
    for name in BYTES {
        copied += copy_table::<&[u8]>(&tx, name, &into, earlier, |v| v.to_vec())?;
    }
    for name in INTS {
        copied += copy_table::<i64>(&tx, name, &into, earlier, |v| int(v).to_vec())?;
    }
    for name in INDEXES {
        copied += copy_table::<u8>(&tx, name, &into, earlier, |_| NOTHING.to_vec())?;
    }
    for name in TEXTS {
        copied += copy_table::<&str>(&tx, name, &into, earlier, |v| v.as_bytes().to_vec())?;
    }
    into.db
        .persist(PersistMode::SyncAll)
        .map_err(|e| engine_error(staging, e))?;
    drop(into);
    std::fs::write(staging.join(COMPLETE), b"").map_err(|e| io(staging, e))?;
    tracing::info!(records = copied, from = %earlier.display(), "imported an earlier store");
    Ok(())
}

/// Copies redb table `name` (if it exists) into the keyspace of the same
/// name, `CHUNK` records a transaction; returns how many.
fn copy_table<V: redb::Value + 'static>(
    tx: &redb::ReadTransaction,
    name: &str,
    into: &Engine,
    earlier: &Path,
    convert: impl for<'a> Fn(V::SelfType<'a>) -> Vec<u8>,
) -> Result<usize, StoreError> {
    let table = match tx.open_table(TableDefinition::<&str, V>::new(name)) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(failed(earlier, e)),
    };
    let staging = &into.path;
    let keyspace =
        (into.db.keyspace(name, Default::default)).map_err(|e| engine_error(staging, e))?;
    let mut write = into.db.write_tx();
    let mut count = 0;
    for item in table.iter().map_err(|e| failed(earlier, e))? {
        let (key, value) = item.map_err(|e| failed(earlier, e))?;
        write.insert(&keyspace, key.value(), convert(value.value()));
        count += 1;
        if count % CHUNK == 0 {
            write.commit().map_err(|e| engine_error(staging, e))?;
            write = into.db.write_tx();
        }
    }
    write.commit().map_err(|e| engine_error(staging, e))?;
    Ok(count)
}

fn failed(earlier: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Import {
        path: earlier.to_path_buf(),
        source: e.into(),
    }
}

fn engine_error(path: &Path, e: fjall::Error) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Opens an earlier store's file: in use, damaged or unreadable files are
/// named, never replaced.
fn open_redb(path: &Path) -> Result<redb::Database, StoreError> {
    let damaged = |problem: String| StoreError::Damaged {
        path: path.to_path_buf(),
        problem,
    };
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(damaged("the file is empty, 0 bytes".into()));
    }
    // The storage library asserts on some kinds of damage; such a panic is
    // caught here and reported like any other damage.
    match quietly(|| redb::Database::open(path)) {
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
        Ok(Err(e)) => Err(StoreError::Import {
            path: path.to_path_buf(),
            source: e.into(),
        }),
        Err(panic) => Err(damaged(panic)),
    }
}

/// `path` with `.suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        source: crate::engine::EngineError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::encode;
    use crate::{Batch, Store, StoredEvent};
    use kairo_core::ActionRequest;
    use serde_json::json;

    fn event(id: &str) -> StoredEvent {
        StoredEvent {
            event: json!({"id": id}),
            received_at_ms: 5,
            source: "webhook".into(),
        }
    }

    fn action(event_id: &str) -> crate::PendingAction {
        let request = ActionRequest {
            action: "slack".into(),
            params: json!({"text": "x"}),
            event_id: event_id.into(),
            rule: "r".into(),
            index: 0,
            not_before_ms: None,
            shadow: false,
        };
        crate::PendingAction::new(request, 7)
    }

    /// Writes a store as earlier versions did: one redb file with these tables.
    fn earlier_store(path: &Path) {
        let db = redb::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let bytes = |name| TableDefinition::<&str, &[u8]>::new(name);
            let mut inbox = tx.open_table(bytes("inbox")).unwrap();
            inbox
                .insert("waiting", encode(&event("waiting")).as_slice())
                .unwrap();
            let mut outbox = tx.open_table(bytes("outbox")).unwrap();
            let pending = action("done");
            outbox
                .insert(pending.key().as_str(), encode(&pending).as_slice())
                .unwrap();
            let mut seen = tx
                .open_table(TableDefinition::<&str, i64>::new("seen"))
                .unwrap();
            seen.insert("waiting", 5).unwrap();
            seen.insert("done", 5).unwrap();
            let by_time = TableDefinition::<&str, u8>::new("seen_by_time");
            let mut by_time = tx.open_table(by_time).unwrap();
            by_time.insert("00000000000000000005/done", 0).unwrap();
            let state = TableDefinition::<&str, i64>::new("handler_state");
            tx.open_table(state)
                .unwrap()
                .insert("c/sim/s1/all", 42)
                .unwrap();
            let sources = TableDefinition::<&str, &str>::new("sources");
            let mut sources = tx.open_table(sources).unwrap();
            sources
                .insert("watch/sim/s1", r#"{"status":"active"}"#)
                .unwrap();
        }
        tx.commit().unwrap();
    }

    fn check_imported(store: &Store) {
        assert_eq!(store.inbox().unwrap()[0].id(), "waiting");
        assert_eq!(store.outbox().unwrap()[0].key(), "done/r/0");
        assert_eq!(store.counts().unwrap(), (1, 1, 0));
        assert_eq!(
            store.seen_since(&["waiting", "done", "no"], 0).unwrap(),
            [true, true, false]
        );
        assert_eq!(
            store.handler_state().unwrap(),
            [("c/sim/s1/all".to_string(), 42)]
        );
        let sources = store.sources("watch/").unwrap();
        assert_eq!(sources[0].1, r#"{"status":"active"}"#);
        // Ids keep their place in the pruning order.
        assert_eq!(store.prune(6, 0, 10).unwrap().removed, 1);
        assert_eq!(store.seen_since(&["done"], 0).unwrap(), [false]);
    }

    #[test]
    fn an_earlier_store_file_is_imported_in_place_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.redb");
        earlier_store(&path);
        {
            let store = Store::open(&path).unwrap();
            assert!(path.is_dir());
            check_imported(&store);
            let batch = Batch {
                accept: vec![event("new")],
                ..Batch::default()
            };
            store.commit(&batch, 9, 0).unwrap();
        }
        let kept = dir.path().join("kairo.redb.imported");
        assert!(kept.is_file(), "the earlier file is kept");
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.inbox().unwrap().len(),
            2,
            "opened again, not imported again"
        );
    }

    #[test]
    fn the_earlier_default_file_beside_the_store_path_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        earlier_store(&dir.path().join("kairo.redb"));
        let store = Store::open(dir.path().join("kairo")).unwrap();
        check_imported(&store);
        assert!(dir.path().join("kairo.redb.imported").is_file());
    }

    #[test]
    fn an_interrupted_import_starts_over_or_is_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.redb");
        earlier_store(&path);
        // Interrupted while copying: a partial directory, the file untouched.
        let staging = sibling(&path, "importing");
        std::fs::create_dir_all(staging.join("partial")).unwrap();
        check_imported(&Store::open(&path).unwrap());

        // Interrupted after copying and setting the file aside.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.redb");
        earlier_store(&path);
        let staging = sibling(&path, "importing");
        copy(&open_redb(&path).unwrap(), &path, &staging).unwrap();
        std::fs::rename(&path, sibling(&path, "imported")).unwrap();
        let store = Store::open(&path).unwrap();
        check_imported(&store);
        assert!(!staging.exists());
    }

    #[test]
    fn an_earlier_store_in_use_is_named_not_imported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.redb");
        earlier_store(&path);
        let open = redb::Database::open(&path).unwrap();
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::InUse(_)), "{error}");
        drop(open);
        assert!(path.is_file());
    }
}
