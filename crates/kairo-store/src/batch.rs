//! A batch of changes committed in one write transaction.

use crate::{DeadLetter, HistoryEntry, PendingAction, StoredEvent, TraceEntry};

/// Changes to commit together. Applied in field order: events are accepted
/// before evaluations of the same batch are recorded, and so on.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Events to accept; ids already seen within the dedupe window are skipped.
    pub accept: Vec<StoredEvent>,
    /// Evaluated events: removed from the inbox, their actions added to the outbox.
    pub evaluated: Vec<(String, Vec<PendingAction>)>,
    /// Pending actions to store again (after a failed attempt, or a retried dead letter).
    pub reschedule: Vec<PendingAction>,
    /// Finished actions: removed from the outbox, added to the history.
    pub finished: Vec<HistoryEntry>,
    /// Dead letters to add; action dead letters leave the outbox.
    pub dead: Vec<DeadLetter>,
    /// Event handler state to set (counters, suppression times).
    pub state: Vec<(String, i64)>,
    /// Traces of events evaluated in this batch (listed in `evaluated`).
    pub traces: Vec<TraceEntry>,
    /// Source snapshots to keep: (key, JSON text), e.g. what the SORACOM
    /// watcher last saw of a SIM.
    pub sources: Vec<(String, String)>,
}

impl Batch {
    /// True when there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.accept.is_empty()
            && self.evaluated.is_empty()
            && self.reschedule.is_empty()
            && self.finished.is_empty()
            && self.dead.is_empty()
            && self.state.is_empty()
            && self.traces.is_empty()
            && self.sources.is_empty()
    }

    /// Moves everything from `other` into this batch.
    pub fn append(&mut self, other: &mut Batch) {
        self.accept.append(&mut other.accept);
        self.evaluated.append(&mut other.evaluated);
        self.reschedule.append(&mut other.reschedule);
        self.finished.append(&mut other.finished);
        self.dead.append(&mut other.dead);
        self.state.append(&mut other.state);
        self.traces.append(&mut other.traces);
        self.sources.append(&mut other.sources);
    }
}

/// What a commit decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// For each accepted event, in order: true when new, false when a duplicate.
    pub accepted_new: Vec<bool>,
    /// Actions added to the outbox (keys already present are not added again).
    pub enqueued: Vec<String>,
}
