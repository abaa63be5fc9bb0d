//! Which event ids were seen recently: read before events are evaluated, so
//! a redelivery is answered as a duplicate without being evaluated again.

use crate::store::SEEN;
use crate::{Store, StoreError};

impl Store {
    /// For each of `ids`, whether it was accepted at or after `since_ms`.
    pub fn seen_since(&self, ids: &[&str], since_ms: i64) -> Result<Vec<bool>, StoreError> {
        let tx = self.read()?;
        let seen = tx.open_table(SEEN).map_err(|e| self.err(e))?;
        ids.iter()
            .map(|id| {
                let at = seen.get(*id).map_err(|e| self.err(e))?;
                Ok(at.is_some_and(|at| at.value() >= since_ms))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Batch, Store, StoredEvent};
    use serde_json::json;

    #[test]
    fn ids_accepted_within_the_window_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("k.redb")).unwrap();
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
