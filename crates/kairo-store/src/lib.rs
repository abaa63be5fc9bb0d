//! Kairo's durable state, embedded on fjall (an LSM tree with a journal):
//! accepted events (inbox), pending
//! actions (outbox, with retry and `not_before` times), dead letters, an
//! action history, and the event ids seen for deduplication.
//!
//! Every change goes through [`Store::commit`] with a [`Batch`], so many
//! events and outcomes share one durable write transaction (group commit).
//!
//! - [`model`]: the records kept ([`StoredEvent`], [`PendingAction`], [`DeadLetter`], [`HistoryEntry`])
//! - [`batch`]: [`Batch`], the unit of one write transaction
//! - [`store`]: [`Store`], opening, committing and reading

pub mod batch;
mod dedupe;
mod engine;
pub use engine::EngineError;
mod explain;
mod import;
pub use explain::RecordedPage;
pub mod model;
mod prune;
pub mod store;

pub use batch::{Batch, BatchResult};
pub use model::{
    DeadLetter, DeadLetterKind, EventActions, EventRecord, HistoryEntry, HistoryStatus,
    PendingAction, StoredEvent, TraceEntry, TraceJson,
};
pub use store::{Pruned, Store, StoreError};
