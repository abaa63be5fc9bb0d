//! Pruning: event ids past the dedupe window, old history and stale handler
//! state, in bounded steps.

use kairo_core::handler::Retention;
use redb::{ReadableTable, ReadableTableMetadata};

use crate::store::{HISTORY, HISTORY_BY_ACTION, SEEN, SEEN_BY_TIME, STATE, time_key};
use crate::{Pruned, Store, StoreError};

impl Store {
    /// Forgets handler state that can no longer matter (see [`Retention`]).
    pub fn prune_state(&self, retention: &Retention) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let removed = {
            let mut state = tx.open_table(STATE).map_err(|e| self.err(e))?;
            let before = state.len().map_err(|e| self.err(e))?;
            state
                .retain(|key, value| !retention.is_stale(key, value))
                .map_err(|e| self.err(e))?;
            before - state.len().map_err(|e| self.err(e))?
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(removed as usize)
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
        let tx = self.write()?;
        let mut pruned = Pruned::default();
        {
            let mut seen = tx.open_table(SEEN).map_err(|e| self.err(e))?;
            let mut seen_by_time = tx.open_table(SEEN_BY_TIME).map_err(|e| self.err(e))?;
            let cutoff = time_key(seen_before_ms, "");
            let old = self.first_keys(&seen_by_time, ..cutoff.as_str(), limit)?;
            pruned.add(old.len(), limit);
            for key in old {
                seen_by_time.remove(key.as_str()).map_err(|e| self.err(e))?;
                if let Some((_, id)) = key.split_once('/') {
                    seen.remove(id).map_err(|e| self.err(e))?;
                }
            }
            let mut history = tx.open_table(HISTORY).map_err(|e| self.err(e))?;
            let mut by_action = tx.open_table(HISTORY_BY_ACTION).map_err(|e| self.err(e))?;
            let cutoff = time_key(history_before_ms, "");
            let old = self.first_keys(&history, ..cutoff.as_str(), limit)?;
            pruned.add(old.len(), limit);
            for key in old {
                history.remove(key.as_str()).map_err(|e| self.err(e))?;
                if let Some((_, action)) = key.split_once('/') {
                    by_action.remove(action).map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(pruned)
    }

    /// The first `limit` keys of `table` in `range`.
    fn first_keys<V: redb::Value + 'static>(
        &self,
        table: &impl ReadableTable<&'static str, V>,
        range: std::ops::RangeTo<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        table
            .range(range)
            .map_err(|e| self.err(e))?
            .take(limit)
            .map(|item| item.map(|(k, _)| k.value().to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}
