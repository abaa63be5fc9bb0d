//! The store's write path on its engine (redb, through `kairo_store::Store`)
//! against an LSM engine (fjall) doing the same key writes, in one run:
//! where durable ingest's time goes, and what another engine or one write per
//! event would give. Single-threaded, every commit synced (fsync).
//!
//! `cargo bench --bench store_engine [-- EVENTS]` prints events/s per group
//! size (the events one commit carries) and the ratios:
//!
//! - `redb`: today's two commits per group: accept (dedupe lookup, id, time
//!   index, inbox), then evaluation (inbox removal, record with its trace,
//!   record index);
//! - `fjall`: the same keys and values, two synced batches per group;
//! - `redb, one commit`: accept and evaluation in one commit (as if events
//!   were evaluated before their commit);
//! - `fjall, one write`: the event accepted and recorded with its trace in one
//!   synced batch (evaluated before the commit; no inbox round trip).

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

/// Events/s of `kairo_store::Store` committing accepts, then evaluations
/// (or, `together`, both in one commit).
fn redb(total: u64, group: u64, together: bool) -> f64 {
    let dir = tempfile::tempdir_in(".").expect("a directory on the disk under test");
    let store = Store::open(dir.path().join("kairo.redb")).unwrap();
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
        if together {
            evaluated.accept = accept.accept;
        } else {
            store.commit(&accept, 1_000, 0).unwrap();
        }
        store.commit(&evaluated, 1_001, 0).unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The store's tables as fjall keyspaces.
struct Lsm {
    db: Database,
    seen: Keyspace,
    seen_by_time: Keyspace,
    inbox: Keyspace,
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
            inbox: table("inbox"),
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
        let mut record = Vec::with_capacity(accepted.len() + TRACE.len() + 64);
        record.extend_from_slice(b"{\"accepted\":");
        record.extend_from_slice(accepted);
        record.extend_from_slice(b",\"evaluatedAtMs\":1001,\"trace\":");
        record.extend_from_slice(TRACE.as_bytes());
        record.push(b'}');
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

/// Events/s of fjall doing the store's two commits per group, or (`one_write`)
/// accepting and recording each event in one synced batch.
fn fjall(total: u64, group: u64, one_write: bool) -> f64 {
    let lsm = Lsm::open();
    let start = Instant::now();
    for first in (0..total).step_by(group as usize) {
        let mut batch = lsm.synced();
        let mut accepted = Vec::with_capacity(group as usize);
        for i in first..first + group {
            let event = lsm.accept(&mut batch, i);
            if one_write {
                lsm.record(&mut batch, i, &event);
            } else {
                batch.insert(&lsm.inbox, id(i).as_str(), event);
                accepted.push(i);
            }
        }
        batch.commit().unwrap();
        if one_write {
            continue;
        }
        let mut batch = lsm.synced();
        for i in accepted {
            let event = lsm.inbox.get(id(i)).unwrap().unwrap();
            batch.remove(&lsm.inbox, id(i).as_str());
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
        "{:>6} {:>10} {:>16} {:>10} {:>16} {:>11} {:>16}",
        "group",
        "redb",
        "redb, one commit",
        "fjall",
        "fjall, one write",
        "fjall/redb",
        "one write/redb"
    );
    for group in [32u64, 320, 3_200] {
        let (r, r1) = (redb(total, group, false), redb(total, group, true));
        let (f, o) = (fjall(total, group, false), fjall(total, group, true));
        println!(
            "{group:>6} {r:>10.0} {r1:>16.0} {f:>10.0} {o:>16.0} {:>10.1}x {:>15.1}x",
            f / r,
            o / r
        );
    }
}
