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
            let ids = self.prune_before(tx, &t.seen_by_time, &t.seen, seen_before_ms, limit)?;
            pruned.add(ids, limit);
            let history = self.prune_before(
                tx,
                &t.history,
                &t.history_by_action,
                history_before_ms,
                limit,
            )?;
            pruned.add(history, limit);
            Ok(pruned)
        })
    }

    /// Removes the first `limit` entries of `by_time` (keys `{time:020}/{name}`)
    /// from before `before_ms`, and each one's `name` from `by_name`; returns
    /// how many.
    fn prune_before(
        &self,
        tx: &mut WriteTx<'_>,
        by_time: &Keyspace,
        by_name: &Keyspace,
        before_ms: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = time_key(before_ms, "");
        let old: Vec<String> = (tx.range(by_time, ..cutoff.as_str()).take(limit))
            .map(|item| item.key().map(|k| text(&k)).map_err(|e| self.err(e)))
            .collect::<Result<_, _>>()?;
        for key in &old {
            if let Some((_, name)) = key.split_once('/') {
                tx.remove(by_name, name);
            }
            tx.remove(by_time, key.as_str());
        }
        Ok(old.len())
    }
}
