//! The store's write path alone, on its engine (fjall, through
//! `kairo_store::Store`) against redb, the engine of earlier versions, doing
//! the same key writes, in one run: what the engine costs per event.
//! Single-threaded, every commit synced (fsync).
//!
//! `cargo bench --bench store_engine [-- EVENTS]` prints events/s per group
//! size (the events one commit carries) and the ratios:
//!
//! - `store`: `kairo_store::Store` accepting and recording each event with
//!   its trace in one commit (evaluated before the commit, as the router does);
//! - `store, two commits`: accept (id, time index, inbox), then evaluation
//!   (inbox removal, record, record index), as earlier versions did;
//! - `redb`: redb doing the store's key writes of one commit (dedupe lookup,
//!   id, time index, previous-record lookup, record, record index);
//! - `fjall, raw`: the same keys in one synced fjall batch, without the
//!   store's transaction (no lookups, no read-your-writes memtable).

use std::time::Instant;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use kairo_store::{Batch, Store, StoredEvent, TraceEntry, TraceJson};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRACE: &str =
    r#"{"rules":[{"rule":"ota_finished_set_group","outcome":"not_matched"}],"handlers":[]}"#;

/// The same SORACOM-style event as `benches/http/events.lua`.
fn event(i: u64) -> StoredEvent {
    StoredEvent {
        event: json!({
            "id": id(i), "eventType": "SimSubscriptionStatus",
            "simId": format!("89811000{:011}", i % 100_000), "imsi": "440100000012345",
            "operatorId": "OP0012345678", "timestamp": 1_764_590_000_000u64, "groupId": "group-3",
            "payload": {"otaStatus": "started", "subscription": "planX3",
                        "primaryImsi": "440100000000001", "iccid": "8981100000000000001",
                        "tags": {"name": "device-1", "site": "tokyo-3"},
                        "note": "bench event padded to a realistic size"}}),
        received_at_ms: 1_000,
        source: "webhook".into(),
    }
}

fn id(i: u64) -> String {
    format!("ev-{i:012}")
}

/// Events/s of `kairo_store::Store` committing accepts and evaluations
/// together (or, `two_commits`, one after the other).
fn store(total: u64, group: u64, two_commits: bool) -> f64 {
    let dir = tempfile::tempdir_in(".").expect("a directory on the disk under test");
    let store = Store::open(dir.path().join("kairo")).unwrap();
    let trace = TraceJson::of(&serde_json::from_str::<serde_json::Value>(TRACE).unwrap()).unwrap();
    let start = Instant::now();
    for first in (0..total).step_by(group as usize) {
        let ids = first..first + group;
        let accept = Batch {
            accept: ids.clone().map(event).collect(),
            ..Batch::default()
        };
        let mut evaluated = Batch {
            evaluated: ids.clone().map(|i| (id(i), Vec::new())).collect(),
            traces: ids
                .map(|i| TraceEntry {
                    event_id: id(i),
                    evaluated_at_ms: 1_001,
                    trace: trace.clone(),
                })
                .collect(),
            ..Batch::default()
        };
        if two_commits {
            store.commit(&accept, 1_000, 0).unwrap();
        } else {
            evaluated.accept = accept.accept;
        }
        store.commit(&evaluated, 1_001, 0).unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The record of event `i` with its trace, as the store writes it.
fn record_of(accepted: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(accepted.len() + TRACE.len() + 64);
    record.extend_from_slice(b"{\"accepted\":");
    record.extend_from_slice(accepted);
    record.extend_from_slice(b",\"evaluatedAtMs\":1001,\"trace\":");
    record.extend_from_slice(TRACE.as_bytes());
    record.push(b'}');
    record
}

/// Events/s of redb doing the store's key writes, one commit per group.
fn redb_writes(total: u64, group: u64) -> f64 {
    use redb::{ReadableTable, TableDefinition};
    let seen = TableDefinition::<&str, i64>::new("seen");
    let seen_by_time = TableDefinition::<&str, u8>::new("seen_by_time");
    let records = TableDefinition::<&str, &[u8]>::new("traces");
    let records_by_time = TableDefinition::<&str, u8>::new("traces_by_time");
    let dir = tempfile::tempdir_in(".").expect("a directory on the disk under test");
    let mut builder = redb::Builder::new();
    builder.set_cache_size(32 << 20);
    let db = builder.create(dir.path().join("kairo.redb")).unwrap();
    let start = Instant::now();
    for first in (0..total).step_by(group as usize) {
        let tx = db.begin_write().unwrap();
        {
            let mut seen = tx.open_table(seen).unwrap();
            let mut seen_by_time = tx.open_table(seen_by_time).unwrap();
            let mut records = tx.open_table(records).unwrap();
            let mut records_by_time = tx.open_table(records_by_time).unwrap();
            for i in first..first + group {
                let id = id(i);
                assert!(seen.get(id.as_str()).unwrap().is_none());
                seen.insert(id.as_str(), 1_000).unwrap();
                seen_by_time
                    .insert(format!("{:020}/{id}", 1_000).as_str(), 0)
                    .unwrap();
                assert!(records.get(id.as_str()).unwrap().is_none());
                let record = record_of(&serde_json::to_vec(&event(i)).unwrap());
                records.insert(id.as_str(), record.as_slice()).unwrap();
                let order = format!("{:020}.{i:012}/{id}", 1_000);
                records_by_time.insert(order.as_str(), 0).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The store's tables as fjall keyspaces.
struct Lsm {
    db: Database,
    seen: Keyspace,
    seen_by_time: Keyspace,
    records: Keyspace,
    records_by_time: Keyspace,
    _dir: tempfile::TempDir,
}

impl Lsm {
    fn open() -> Self {
        let dir = tempfile::tempdir_in(".").expect("a directory on the disk under test");
        let db = Database::builder(dir.path()).open().unwrap();
        let table = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
        Self {
            seen: table("seen"),
            seen_by_time: table("seen_by_time"),
            records: table("records"),
            records_by_time: table("records_by_time"),
            db,
            _dir: dir,
        }
    }

    /// Dedupe lookup, id and time index; the event's JSON.
    fn accept(&self, batch: &mut fjall::OwnedWriteBatch, i: u64) -> Vec<u8> {
        let id = id(i);
        assert!(self.seen.get(&id).unwrap().is_none());
        batch.insert(&self.seen, id.as_str(), 1_000i64.to_be_bytes());
        batch.insert(&self.seen_by_time, format!("{:020}/{id}", 1_000), [0u8]);
        serde_json::to_vec(&event(i)).unwrap()
    }

    /// The record of event `i` with its trace, and its index entry.
    fn record(&self, batch: &mut fjall::OwnedWriteBatch, i: u64, accepted: &[u8]) {
        let record = record_of(accepted);
        let id = id(i);
        batch.insert(&self.records, id.as_str(), record);
        batch.insert(
            &self.records_by_time,
            format!("{:020}{i:012}/{id}", 1_000),
            [0u8],
        );
    }

    fn synced(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(PersistMode::SyncData))
    }
}

/// Events/s of fjall accepting and recording each event in one synced
/// batch per group, without the store's transaction.
fn fjall(total: u64, group: u64) -> f64 {
    let lsm = Lsm::open();
    let start = Instant::now();
    for first in (0..total).step_by(group as usize) {
        let mut batch = lsm.synced();
        for i in first..first + group {
            let event = lsm.accept(&mut batch, i);
            lsm.record(&mut batch, i, &event);
        }
        batch.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    println!("{total} events, every commit synced; events/s");
    println!(
        "{:>6} {:>10} {:>19} {:>10} {:>11} {:>11}",
        "group", "store", "store, two commits", "redb", "fjall, raw", "store/redb"
    );
    for group in [32u64, 320, 3_200] {
        let (s, s2) = (store(total, group, false), store(total, group, true));
        let (r, f) = (redb_writes(total, group), fjall(total, group));
        println!(
            "{group:>6} {s:>10.0} {s2:>19.0} {r:>10.0} {f:>11.0} {:>10.1}x",
            s / r
        );
    }
}
