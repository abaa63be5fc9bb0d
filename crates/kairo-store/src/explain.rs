//! What the store keeps to explain an event: its record with the trace, kept
//! for a retention of age and count, and its actions wherever they are now.

use std::collections::HashMap;

use fjall::Readable;

use crate::engine::{Delta, NOTHING, Tables, WriteTx};
use crate::store::{StoredJson, record_bound, text, time_key};
use crate::{
    DeadLetter, EventActions, EventRecord, HistoryEntry, PendingAction, Pruned, Store, StoreError,
    StoredEvent, TraceEntry,
};

/// A page of recorded events, in the order they were received.
#[derive(Debug, Default)]
pub struct RecordedPage {
    /// The events with when and where they were received.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts (pass it as `after`), when more may follow.
    pub next: Option<String>,
}

impl Store {
    /// Writes the record of each traced event in `tx`: its stored JSON from
    /// `accepted` (what left the inbox in this commit) with the trace,
    /// replacing an earlier record of the same event. Records are indexed by
    /// the time their event was received (`accepted` gives it, as the dedupe
    /// keyspace holds it), so they can be exported in that order.
    pub(crate) fn record_traces(
        &self,
        tx: &mut WriteTx<'_>,
        t: &Tables,
        entries: &[TraceEntry],
        accepted: &HashMap<&str, StoredJson>,
        delta: &mut Delta,
    ) -> Result<(), StoreError> {
        for entry in entries {
            let id = entry.event_id.as_str();
            let Some((event, received_at)) = accepted.get(id) else {
                continue;
            };
            let previous = tx.get(&t.traces, id).map_err(|e| self.err(e))?;
            let previous = previous.map(|old| {
                self.decode::<EventRecord>("traces", id, &old)
                    .map(|old| match old.order {
                        Some(order) => vec![format!("{order}/{id}")],
                        // Records from before the sequence were indexed by
                        // receive or by evaluation time.
                        None => vec![
                            time_key(old.accepted.received_at_ms, id),
                            time_key(old.evaluated_at_ms, id),
                        ],
                    })
            });
            match previous.transpose()? {
                Some(keys) => keys
                    .into_iter()
                    .for_each(|key| tx.remove(&t.traces_by_time, key)),
                None => delta.records += 1,
            }
            let received = received_at.unwrap_or(entry.evaluated_at_ms);
            let seq = self
                .record_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let order = format!("{}{seq:012}", record_bound(received));
            let mut record = Vec::with_capacity(event.len() + entry.trace.as_str().len() + 96);
            record.extend_from_slice(b"{\"accepted\":");
            record.extend_from_slice(event);
            let evaluated = entry.evaluated_at_ms;
            let middle = format!(",\"evaluatedAtMs\":{evaluated},\"order\":\"{order}\",\"trace\":");
            record.extend_from_slice(middle.as_bytes());
            record.extend_from_slice(entry.trace.as_str().as_bytes());
            record.push(b'}');
            tx.insert(&t.traces, id, record);
            tx.insert(&t.traces_by_time, format!("{order}/{id}"), NOTHING);
        }
        Ok(())
    }

    /// The record of event `id`, if it is still kept.
    pub fn event_record(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.read_one(|t| &t.traces, "traces", id)
    }

    /// The pending action with idempotency key `key`, if it is in the outbox.
    pub fn pending_action(&self, key: &str) -> Result<Option<PendingAction>, StoreError> {
        self.read_one(|t| &t.outbox, "outbox", key)
    }

    /// Event `id`'s actions: pending, finished and dead.
    pub fn actions_of(&self, id: &str) -> Result<EventActions, StoreError> {
        self.with(|engine| {
            let (t, snapshot) = (&engine.t, engine.db.read_tx());
            let prefix = format!("{id}/");
            let mut actions = EventActions::default();
            for item in snapshot.prefix(&t.outbox, &prefix) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                let action: PendingAction = self.decode("outbox", &text(&key), &value)?;
                actions.pending.push(action);
            }
            for item in snapshot.prefix(&t.dead, &prefix) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                let letter: DeadLetter = self.decode("dead_letters", &text(&key), &value)?;
                actions.dead.push(letter);
            }
            for item in snapshot.prefix(&t.history_by_action, &prefix) {
                let history_key = item.value().map_err(|e| self.err(e))?;
                let value = snapshot.get(&t.history, &history_key);
                if let Some(value) = value.map_err(|e| self.err(e))? {
                    let entry: HistoryEntry =
                        self.decode("history", &text(&history_key), &value)?;
                    actions.finished.push(entry);
                }
            }
            actions.pending.retain(|a| a.request.event_id == id);
            actions.finished.retain(|h| h.request.event_id == id);
            actions
                .dead
                .retain(|d| d.action.as_ref().is_some_and(|a| a.request.event_id == id));
            Ok(actions)
        })
    }

    /// Up to `limit` recorded events received in `[since_ms, until_ms)`, in
    /// the order they were received, starting after `after` (the cursor of
    /// the previous page); the cursor of the next page when more may follow.
    pub fn recorded_events(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RecordedPage, StoreError> {
        self.with(|engine| {
            let (t, snapshot) = (&engine.t, engine.db.read_tx());
            let (start, end) = (record_bound(since_ms), record_bound(until_ms));
            let mut page = RecordedPage::default();
            let mut last: Option<String> = None;
            for item in snapshot.range(&t.traces_by_time, start.as_str()..end.as_str()) {
                let key = text(&item.key().map_err(|e| self.err(e))?);
                if after.is_some_and(|after| key.as_str() <= after) {
                    continue;
                }
                if page.events.len() == limit {
                    page.next = last;
                    break;
                }
                page.events.extend(self.recorded_at(&snapshot, t, &key)?);
                last = Some(key);
            }
            Ok(page)
        })
    }

    /// The `limit` most recently received recorded events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.with(|engine| {
            let (t, snapshot) = (&engine.t, engine.db.read_tx());
            let mut events = Vec::new();
            for item in snapshot.iter(&t.traces_by_time).rev() {
                if events.len() == limit {
                    break;
                }
                let key = text(&item.key().map_err(|e| self.err(e))?);
                events.extend(self.recorded_at(&snapshot, t, &key)?);
            }
            Ok(events)
        })
    }

    /// The event recorded under index key `key` (`ORDER/ID`), if its record is kept.
    fn recorded_at(
        &self,
        snapshot: &fjall::Snapshot,
        t: &Tables,
        key: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let Some((_, id)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(value) = snapshot.get(&t.traces, id).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let record: EventRecord = self.decode("traces", id, &value)?;
        Ok(Some(record.accepted))
    }

    /// Forgets the oldest records beyond `max_count`, and those of events
    /// received before `before_ms`, at most `limit` in this transaction;
    /// [`Pruned::more`] says to call again.
    pub fn prune_traces(
        &self,
        before_ms: i64,
        max_count: u64,
        limit: usize,
    ) -> Result<Pruned, StoreError> {
        self.write(|engine, tx, delta| {
            let t = &engine.t;
            let excess = engine.counts.get().3.saturating_sub(max_count);
            let cutoff = record_bound(before_ms);
            // Oldest first: the excess over the count, then whatever is too old.
            let mut keys = Vec::new();
            for (i, item) in tx.iter(&t.traces_by_time).enumerate().take(limit) {
                let key = text(&item.key().map_err(|e| self.err(e))?);
                if (i as u64) >= excess && key >= cutoff {
                    break;
                }
                keys.push(key);
            }
            let mut pruned = Pruned::default();
            pruned.add(keys.len(), limit);
            for key in keys {
                if let Some((_, id)) = key.split_once('/') {
                    tx.remove(&t.traces, id);
                }
                tx.remove(&t.traces_by_time, key);
                delta.records -= 1;
            }
            Ok(pruned)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, StoredEvent, TraceJson};
    use serde_json::json;

    fn accepted(id: &str, at: i64) -> StoredEvent {
        StoredEvent {
            event: json!({"id": id}),
            received_at_ms: at,
            source: "webhook".into(),
        }
    }

    fn traced(id: &str, at: i64) -> TraceEntry {
        TraceEntry {
            event_id: id.into(),
            evaluated_at_ms: at,
            trace: TraceJson::of(&json!({"rules": []})).unwrap(),
        }
    }

    /// A store holding events e1..e5 received at 10, 20, .. 50 and
    /// evaluated (in reverse order) at 100.
    fn five_recorded(dir: &std::path::Path) -> Store {
        let store = Store::open(dir.join("k")).unwrap();
        let ids: Vec<String> = (1..=5).map(|i| format!("e{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let at = (i as i64 + 1) * 10;
            let accept = Batch {
                accept: vec![accepted(id, at)],
                ..Batch::default()
            };
            store.commit(&accept, at, 0).unwrap();
        }
        let evaluated = Batch {
            evaluated: ids
                .iter()
                .rev()
                .map(|id| (id.clone(), Vec::new()))
                .collect(),
            traces: ids.iter().rev().map(|id| traced(id, 100)).collect(),
            ..Batch::default()
        };
        store.commit(&evaluated, 100, 0).unwrap();
        store
    }

    #[test]
    fn recorded_events_come_in_receive_order_by_pages_within_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = five_recorded(dir.path());
        let ids = |page: &RecordedPage| -> Vec<String> {
            page.events.iter().map(|e| e.id().to_string()).collect()
        };
        let first = store.recorded_events(15, 50, None, 2).unwrap();
        assert_eq!(ids(&first), ["e2", "e3"]);
        let second = store
            .recorded_events(15, 50, first.next.as_deref(), 2)
            .unwrap();
        assert_eq!(ids(&second), ["e4"], "e5 was received at 50, the end");
        assert_eq!(second.next, None);
        assert_eq!(second.events[0].received_at_ms, 40);
        assert_eq!(
            store
                .recorded_events(0, i64::MAX, None, 10)
                .unwrap()
                .events
                .len(),
            5
        );
    }

    #[test]
    fn events_received_in_the_same_millisecond_keep_their_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("k")).unwrap();
        let ids = ["z", "b", "m"];
        let accept = Batch {
            accept: ids.iter().map(|id| accepted(id, 7)).collect(),
            ..Batch::default()
        };
        store.commit(&accept, 7, 0).unwrap();
        for id in ids {
            let evaluated = Batch {
                evaluated: vec![(id.to_string(), Vec::new())],
                traces: vec![traced(id, 9)],
                ..Batch::default()
            };
            store.commit(&evaluated, 9, 0).unwrap();
        }
        let page = store.recorded_events(7, 8, None, 10).unwrap();
        let order: Vec<&str> = page.events.iter().map(|e| e.id()).collect();
        assert_eq!(order, ids, "not in id order");
        assert_eq!(
            store.prune_traces(7, 10, 100).unwrap().removed,
            0,
            "received at 7 is not before 7"
        );
        assert_eq!(store.prune_traces(8, 10, 100).unwrap().removed, 3);
    }

    #[test]
    fn records_are_kept_by_age_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = five_recorded(dir.path());
        let record = store.event_record("e1").unwrap().unwrap();
        assert_eq!(record.accepted.event, json!({"id": "e1"}));
        assert_eq!(record.accepted.source, "webhook");
        assert_eq!(
            store.event_record("e3").unwrap().unwrap().evaluated_at_ms,
            100
        );
        assert_eq!(
            store.prune_traces(25, 100, 100).unwrap().removed,
            2,
            "e1 and e2 are too old"
        );
        assert!(store.event_record("e2").unwrap().is_none());
        assert_eq!(
            store.prune_traces(0, 1, 100).unwrap().removed,
            2,
            "only the newest one stays"
        );
        assert!(store.event_record("e4").unwrap().is_none());
        assert!(store.event_record("e5").unwrap().is_some());
    }

    #[test]
    fn the_most_recent_events_come_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = five_recorded(dir.path());
        let recent: Vec<String> = (store.recent_events(2).unwrap().iter())
            .map(|e| e.id().to_string())
            .collect();
        assert_eq!(recent, ["e5", "e4"]);
        assert_eq!(store.recent_events(10).unwrap().len(), 5);
    }

    #[test]
    fn pruning_removes_at_most_its_limit_a_call_and_says_whether_more_remain() {
        let dir = tempfile::tempdir().unwrap();
        let store = five_recorded(dir.path());
        // All five are too old: three calls of at most two each.
        let steps: Vec<(u64, bool)> = (0..3)
            .map(|_| store.prune_traces(1_000, 100, 2).unwrap())
            .map(|p| (p.removed, p.more))
            .collect();
        assert_eq!(steps, [(2, true), (2, true), (1, false)]);
        assert!(store.event_record("e5").unwrap().is_none());
        let done = store.prune_traces(1_000, 100, 2).unwrap();
        assert_eq!((done.removed, done.more), (0, false));
    }
}
