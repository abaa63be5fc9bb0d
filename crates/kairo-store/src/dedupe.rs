//! Which event ids were seen recently: read before events are evaluated, so
//! a redelivery is answered as a duplicate without being evaluated again.

use fjall::Readable;

use crate::engine::int_of;
use crate::{Store, StoreError};

impl Store {
    /// For each of `ids`, whether it was accepted at or after `since_ms`.
    pub fn seen_since(&self, ids: &[&str], since_ms: i64) -> Result<Vec<bool>, StoreError> {
        self.with(|engine| {
            let snapshot = engine.db.read_tx();
            ids.iter()
                .map(|id| {
                    let at = snapshot.get(&engine.t.seen, id).map_err(|e| self.err(e))?;
                    Ok(at.is_some_and(|at| int_of(&at) >= since_ms))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Batch, Store, StoredEvent};
    use serde_json::json;

    #[test]
    fn ids_accepted_within_the_window_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("k")).unwrap();
        let accept = |id: &str| StoredEvent {
            event: json!({"id": id}),
            received_at_ms: 0,
            source: "webhook".into(),
        };
        let batch = Batch {
            accept: vec![accept("old")],
            ..Batch::default()
        };
        store.commit(&batch, 10, 0).unwrap();
        let batch = Batch {
            accept: vec![accept("new")],
            ..Batch::default()
        };
        store.commit(&batch, 50, 0).unwrap();
        let seen = store.seen_since(&["old", "new", "never"], 20).unwrap();
        assert_eq!(seen, [false, true, false]);
    }
}
