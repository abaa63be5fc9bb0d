//! Tests of the module beside this file.
use super::*;
use crate::HistoryStatus;
use kairo_core::ActionRequest;
use kairo_core::handler::Retention;
use serde_json::json;

fn event(id: &str, at: i64) -> StoredEvent {
    StoredEvent {
        event: json!({"id": id, "simId": "s"}),
        received_at_ms: at,
        source: "test".into(),
    }
}

fn action(event_id: &str, index: u32, now: i64) -> PendingAction {
    PendingAction::new(
        ActionRequest {
            action: "slack".into(),
            params: json!({"text": "x"}),
            event_id: event_id.into(),
            rule: "r".into(),
            index,
            not_before_ms: None,
            shadow: false,
        },
        now,
    )
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("sub/k")).unwrap();
    (dir, store)
}

#[test]
fn accept_dedupes_within_window() {
    let (_dir, store) = open();
    let batch = Batch {
        accept: vec![event("a", 1), event("b", 1), event("a", 1)],
        ..Batch::default()
    };
    let result = store.commit(&batch, 1_000, 0).unwrap();
    assert_eq!(result.accepted_new, vec![true, true, false]);
    assert_eq!(store.inbox().unwrap().len(), 2);
    // Seen at 1000; a window starting at 500 still holds it, one starting at 2000 does not.
    let again = Batch {
        accept: vec![event("a", 2)],
        ..Batch::default()
    };
    assert_eq!(
        store.commit(&again, 3_000, 500).unwrap().accepted_new,
        vec![false]
    );
    assert_eq!(
        store.commit(&again, 3_000, 2_000).unwrap().accepted_new,
        vec![true]
    );
}

#[test]
fn evaluation_moves_event_to_actions_once() {
    let (_dir, store) = open();
    store
        .commit(
            &Batch {
                accept: vec![event("a", 1)],
                ..Batch::default()
            },
            1,
            0,
        )
        .unwrap();
    let evaluated = Batch {
        evaluated: vec![("a".into(), vec![action("a", 0, 5), action("a", 1, 5)])],
        ..Batch::default()
    };
    assert_eq!(
        store.commit(&evaluated, 5, 0).unwrap().enqueued,
        vec!["a/r/0", "a/r/1"]
    );
    assert!(store.inbox().unwrap().is_empty());
    assert!(
        store.commit(&evaluated, 5, 0).unwrap().enqueued.is_empty(),
        "keys are not enqueued twice"
    );
    assert_eq!(store.outbox().unwrap().len(), 2);
}

#[test]
fn finishing_and_dead_lettering_leave_the_outbox() {
    let (_dir, store) = open();
    let (a0, a1) = (action("a", 0, 5), action("a", 1, 5));
    store
        .commit(
            &Batch {
                evaluated: vec![("a".into(), vec![a0.clone(), a1.clone()])],
                ..Batch::default()
            },
            5,
            0,
        )
        .unwrap();
    let done = HistoryEntry {
        request: a0.request.clone(),
        status: HistoryStatus::Succeeded,
        attempts: 1,
        succeeded: true,
        error: None,
        error_class: None,
        detail: json!({}),
        created_at_ms: 5,
        finished_at_ms: 6,
    };
    let dead = DeadLetter {
        id: a1.key(),
        kind: DeadLetterKind::Action,
        action: Some(a1.clone()),
        input: None,
        source: None,
        error: "HTTP 404".into(),
        failed_at_ms: 7,
    };
    store
        .commit(
            &Batch {
                finished: vec![done.clone()],
                dead: vec![dead],
                ..Batch::default()
            },
            7,
            0,
        )
        .unwrap();
    assert!(store.outbox().unwrap().is_empty());
    assert_eq!(store.history(10).unwrap(), vec![done]);
    assert_eq!(store.counts().unwrap(), (0, 0, 1));

    let retried = store.retry_dead(None, 100).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].attempts, retried[0].next_attempt_ms), (0, 100));
    assert_eq!(store.counts().unwrap(), (0, 1, 0));
    assert!(!store.drop_dead("nope").unwrap());
}

#[test]
fn state_survives_reopening_and_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    {
        let store = Store::open(&path).unwrap();
        store
            .commit(
                &Batch {
                    accept: vec![event("a", 1)],
                    reschedule: vec![action("x", 0, 9)],
                    ..Batch::default()
                },
                1,
                0,
            )
            .unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::InUse(_))));
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.inbox().unwrap()[0].id(), "a");
    assert_eq!(store.outbox().unwrap()[0].key(), "x/r/0");
}

#[test]
fn handler_state_persists_and_stale_entries_are_pruned() {
    let (_dir, store) = open();
    let state = vec![
        ("c/sim/s1/d20250101".to_string(), 5),
        ("c/sim/s1/d20250310".to_string(), 6),
        ("c/sim/s1/m202412".to_string(), 7),
        ("c/sim/s1/m202503".to_string(), 8),
        ("c/sim/s1/all".to_string(), 9),
        ("s/h1/sim:s1".to_string(), 100),
        ("s/h1/sim:s2".to_string(), i64::MAX),
    ];
    store
        .commit(
            &Batch {
                state,
                ..Batch::default()
            },
            1,
            0,
        )
        .unwrap();
    assert_eq!(store.handler_state().unwrap().len(), 7);
    let retention = Retention {
        day_before: "20250301".into(),
        month_before: "202501".into(),
        now_ms: 200,
    };
    assert_eq!(store.prune_state(&retention).unwrap(), 3);
    let mut kept: Vec<String> = store
        .handler_state()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            "c/sim/s1/all",
            "c/sim/s1/d20250310",
            "c/sim/s1/m202503",
            "s/h1/sim:s2"
        ]
    );
}

/// A store at `path` holding 300 accepted events.
fn filled(path: &std::path::Path) {
    let store = Store::open(path).unwrap();
    let accept = (0..300).map(|i| event(&format!("e{i}"), 1)).collect();
    let batch = Batch {
        accept,
        ..Batch::default()
    };
    store.commit(&batch, 1, 0).unwrap();
}

/// Every file under `dir` with its length.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files(&entry.path()));
        } else {
            found.push((entry.path(), entry.metadata().unwrap().len()));
        }
    }
    found.sort();
    found
}

#[test]
fn damaged_stores_are_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    filled(&path);
    let version = path.join("version");
    let good = std::fs::read(&version).unwrap();
    let cases: [(&str, Option<&[u8]>); 3] = [
        ("0 bytes", Some(b"")),
        ("no `version` file", None),
        ("InvalidVersion", Some(&[0x5a; 64])),
    ];
    for (problem, content) in cases {
        match content {
            Some(bytes) => std::fs::write(&version, bytes).unwrap(),
            None => std::fs::remove_file(&version).unwrap(),
        }
        let before = files(&path);
        let error = Store::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains(problem), "{problem}: {error}");
        assert!(error.to_string().contains("move it aside"), "{error}");
        assert_eq!(files(&path), before, "{problem}: left as it was");
    }
    std::fs::write(&version, good).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.inbox().unwrap().len(), 300, "nothing was lost");
}

#[test]
fn a_damaged_file_where_the_store_belongs_is_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    std::fs::write(&path, b"").unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(error.to_string().contains("0 bytes"), "{error}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not replaced");

    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5a; 8192]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing else made"
    );
}

#[test]
fn prune_forgets_old_ids_and_history() {
    let (_dir, store) = open();
    store
        .commit(
            &Batch {
                accept: vec![event("old", 1)],
                ..Batch::default()
            },
            10,
            0,
        )
        .unwrap();
    store
        .commit(
            &Batch {
                accept: vec![event("new", 1)],
                ..Batch::default()
            },
            50,
            0,
        )
        .unwrap();
    store.prune(20, 20, 100).unwrap();
    let again = Batch {
        accept: vec![event("old", 1), event("new", 1)],
        ..Batch::default()
    };
    assert_eq!(
        store.commit(&again, 60, 0).unwrap().accepted_new,
        vec![true, false]
    );
}

#[test]
fn prune_removes_at_most_its_limit_a_call_and_says_whether_more_remain() {
    let (_dir, store) = open();
    let old = Batch {
        accept: (0..5).map(|i| event(&format!("old-{i}"), 1)).collect(),
        ..Batch::default()
    };
    store.commit(&old, 10, 0).unwrap();
    let steps: Vec<(u64, bool)> = (0..3)
        .map(|_| store.prune(20, 20, 2).unwrap())
        .map(|p| (p.removed, p.more))
        .collect();
    assert_eq!(steps, [(2, true), (2, true), (1, false)]);
    let again = Batch {
        accept: vec![event("old-4", 1)],
        ..Batch::default()
    };
    assert_eq!(
        store.commit(&again, 60, 0).unwrap().accepted_new,
        vec![true],
        "forgotten"
    );
}
