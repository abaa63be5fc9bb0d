//! Pruning: event ids past the dedupe window, old history and stale handler
//! state, in bounded steps.

use fjall::Readable;
use kairo_core::handler::Retention;

use crate::engine::{Keyspace, WriteTx, int_of};
use crate::store::{text, time_key};
use crate::{Pruned, Store, StoreError};

impl Store {
    /// Forgets handler state that can no longer matter (see [`Retention`]).
    pub fn prune_state(&self, retention: &Retention) -> Result<usize, StoreError> {
        self.write(|engine, tx, _| {
            let mut stale = Vec::new();
            for item in tx.iter(&engine.t.state) {
                let (key, value) = item.into_inner().map_err(|e| self.err(e))?;
                if retention.is_stale(&text(&key), int_of(&value)) {
                    stale.push(key);
                }
            }
            let removed = stale.len();
            stale
                .into_iter()
                .for_each(|key| tx.remove(&engine.t.state, key));
            Ok(removed)
        })
    }

    /// Forgets event ids seen before `seen_before_ms` and history older than
    /// `history_before_ms`, at most `limit` of each in this transaction (so
    /// the commits queued behind it wait for one bounded step, never for a
    /// day's backlog); [`Pruned::more`] says to call again.
    pub fn prune(
        &self,
        seen_before_ms: i64,
        history_before_ms: i64,
        limit: usize,
    ) -> Result<Pruned, StoreError> {
        self.write(|engine, tx, _| {
            let t = &engine.t;
            let mut pruned = Pruned::default();
            let cutoff = time_key(seen_before_ms, "");
            let old = self.first_keys(tx, &t.seen_by_time, &cutoff, limit)?;
            pruned.add(old.len(), limit);
            for key in old {
                if let Some((_, id)) = key.split_once('/') {
                    tx.remove(&t.seen, id);
                }
                tx.remove(&t.seen_by_time, key);
            }
            let cutoff = time_key(history_before_ms, "");
            let old = self.first_keys(tx, &t.history, &cutoff, limit)?;
            pruned.add(old.len(), limit);
            for key in old {
                if let Some((_, action)) = key.split_once('/') {
                    tx.remove(&t.history_by_action, action);
                }
                tx.remove(&t.history, key);
            }
            Ok(pruned)
        })
    }

    /// The first `limit` keys of `keyspace` before `end`.
    fn first_keys(
        &self,
        tx: &WriteTx<'_>,
        keyspace: &Keyspace,
        end: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        tx.range(keyspace, ..end)
            .take(limit)
            .map(|item| item.key().map(|k| text(&k)).map_err(|e| self.err(e)))
            .collect()
    }
}
