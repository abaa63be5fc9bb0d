//! Group commit: one thread owns all writes to the store and commits whatever
//! has queued up in a single durable transaction, so fsync cost is shared by
//! every event and outcome in the batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kairo_core::Clock;
use kairo_store::{Batch, Store};
use tokio::sync::{mpsc, oneshot};

/// Most write requests merged into one transaction.
const MAX_MERGED: usize = 1_024;
/// How often old dedupe ids and history are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Retention settings for pruning.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Event ids are remembered this long, milliseconds.
    pub dedupe_window_ms: i64,
    /// Finished actions are kept this long, milliseconds.
    pub history_ms: i64,
}

struct WriteRequest {
    batch: Batch,
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

/// A handle for submitting batches to the writer thread.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<WriteRequest>,
}

impl StoreWriter {
    /// Starts the writer thread; it stops when every handle is dropped.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("kairo-store-writer".into())
            .spawn(move || run(store, clock, retention, rx))
            .expect("spawn the store writer thread");
        (Self { tx }, thread)
    }

    /// Commits `batch` durably; returns, per accepted event, whether it was new.
    pub async fn commit(&self, batch: Batch) -> Result<Vec<bool>, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteRequest { batch, reply })
            .map_err(|_| "the store writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the store writer has stopped".to_string())?
    }

    /// [`StoreWriter::commit`] for synchronous callers (not on an async runtime thread).
    pub fn commit_blocking(&self, batch: Batch) -> Result<Vec<bool>, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteRequest { batch, reply })
            .map_err(|_| "the store writer has stopped".to_string())?;
        answer
            .blocking_recv()
            .map_err(|_| "the store writer has stopped".to_string())?
    }
}

fn run(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    mut rx: mpsc::UnboundedReceiver<WriteRequest>,
) {
    let mut last_prune = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        let mut requests = vec![first];
        while requests.len() < MAX_MERGED {
            match rx.try_recv() {
                Ok(request) => requests.push(request),
                Err(_) => break,
            }
        }
        let mut merged = Batch::default();
        let mut accept_counts = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for mut request in requests {
            accept_counts.push(request.batch.accept.len());
            merged.append(&mut request.batch);
            replies.push(request.reply);
        }
        let now = clock.now_ms();
        match store.commit(&merged, now, now - retention.dedupe_window_ms) {
            Ok(result) => {
                let mut flags = result.accepted_new.into_iter();
                for (reply, count) in replies.into_iter().zip(accept_counts) {
                    let _ = reply.send(Ok(flags.by_ref().take(count).collect()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let now = clock.now_ms();
            if let Err(error) =
                store.prune(now - retention.dedupe_window_ms, now - retention.history_ms)
            {
                tracing::warn!(%error, "pruning the store failed");
            }
            if let Err(error) = store.prune_state(&kairo_core::handler::Retention::as_of(now)) {
                tracing::warn!(%error, "pruning event handler state failed");
            }
        }
    }
}
