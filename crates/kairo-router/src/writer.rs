//! Group commit: one thread owns all writes to the store and commits whatever
//! has queued up in a single durable transaction, so fsync cost is shared by
//! every event and outcome in the batch.
//!
//! When a commit fails (a full disk, say), the store is marked unusable, new
//! events are refused at once (the webhook answers 503 and `/readyz` says
//! why), and the writer reopens the database every second until it can
//! commit again. Evaluations and action outcomes are never dropped: their
//! commits are retried until they land, and no new action starts meanwhile.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kairo_core::Clock;
use kairo_store::{Batch, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Most write requests merged into one transaction.
const MAX_MERGED: usize = 1_024;
/// How often old dedupe ids, history and event records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Records of each kind removed in one pruning transaction, at most; a
/// backlog is pruned step by step between commits, so no commit waits for
/// more than one step.
const PRUNE_STEP: usize = 2_000;
/// How often an unusable store is reopened.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// How often a commit that must land is retried while the store is unusable.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Retention settings for pruning.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Event ids are remembered this long, milliseconds.
    pub dedupe_window_ms: i64,
    /// Finished actions are kept this long, milliseconds.
    pub history_ms: i64,
    /// Evaluated events and their traces are kept this long, milliseconds.
    pub event_ms: i64,
    /// At most this many evaluated events and traces are kept.
    pub event_count: u64,
}

/// A commit that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The writer thread has stopped (the router is shutting down).
    #[error("the store writer has stopped")]
    Stopped,
    /// A previous commit failed and the store has not been reopened yet.
    #[error("the store cannot commit: {0}")]
    Unusable(String),
    /// This commit failed.
    #[error("store commit failed")]
    Failed(#[source] Arc<kairo_store::StoreError>),
    /// Cluster mode: the state the instances share could not be read or written.
    #[error("the cluster's shared handler state is out of reach")]
    Cluster(#[source] Arc<kairo_ingest::cluster::ClusterError>),
}

/// A commit's outcome: per accepted event, whether it was new.
pub(crate) type Reply = Result<Vec<bool>, CommitError>;

struct WriteRequest {
    batch: Batch,
    reply: oneshot::Sender<Reply>,
}

/// Whether the store can commit, and if not, why.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: AtomicBool,
    problem: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Why the store cannot commit now, or `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, problem: String) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(problem);
        self.failing.store(true, Ordering::Release);
    }

    fn recover(&self) {
        self.failing.store(false, Ordering::Release);
    }
}

/// A handle for submitting batches to the writer thread.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<WriteRequest>,
    health: Arc<StoreHealth>,
    give_up: CancellationToken,
}

impl StoreWriter {
    /// Starts the writer thread; it stops when every handle is dropped. Once
    /// `give_up` is cancelled (shutdown), commits that must land stop retrying.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        retention: Retention,
        give_up: CancellationToken,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(StoreHealth::default());
        let writer = Writer {
            store,
            clock,
            retention,
            health: health.clone(),
            give_up: give_up.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kairo-store-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn the store writer thread");
        (
            Self {
                tx,
                health,
                give_up,
            },
            thread,
        )
    }

    /// Whether the store can commit.
    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// Queues `batch` for the writer thread; its outcome arrives on the receiver.
    pub(crate) fn submit(&self, batch: Batch) -> Result<oneshot::Receiver<Reply>, CommitError> {
        if let Some(problem) = self.health.problem() {
            return Err(CommitError::Unusable(problem));
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(WriteRequest { batch, reply })
            .map_err(|_| CommitError::Stopped)?;
        Ok(answer)
    }

    /// Commits `batch` durably; returns, per accepted event, whether it was new.
    /// Fails at once while the store cannot commit.
    pub async fn commit(&self, batch: Batch) -> Reply {
        self.submit(batch)?
            .await
            .map_err(|_| CommitError::Stopped)?
    }

    /// Commits `batch`, retrying while the store cannot commit, until it lands
    /// or shutdown begins.
    pub async fn commit_until_done(&self, batch: Batch) -> Reply {
        let mut warned = false;
        loop {
            match self.commit(batch.clone()).await {
                Ok(result) => return Ok(result),
                Err(error) if self.give_up.is_cancelled() => return Err(error),
                Err(error) => warn_once(&mut warned, &error),
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Waits for a [`StoreWriter::submit`]ted commit from a synchronous
    /// caller: a thread of the runtime's blocking pool (the matcher's).
    pub(crate) fn outcome_blocking(outcome: oneshot::Receiver<Reply>) -> Reply {
        tokio::runtime::Handle::current()
            .block_on(outcome)
            .map_err(|_| CommitError::Stopped)?
    }

    /// [`StoreWriter::commit_until_done`] for synchronous callers: a thread
    /// of the runtime's blocking pool (the matcher's), never an async task.
    pub fn commit_until_done_blocking(&self, batch: Batch) -> Reply {
        tokio::runtime::Handle::current().block_on(self.commit_until_done(batch))
    }
}

fn warn_once(warned: &mut bool, error: &CommitError) {
    if !*warned {
        *warned = true;
        let error = kairo_core::error_chain(error);
        tracing::warn!(%error, "a commit failed; retrying until the store can commit again");
    }
}

/// The writer thread's state.
struct Writer {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    health: Arc<StoreHealth>,
    give_up: CancellationToken,
}

impl Writer {
    fn run(self, mut rx: mpsc::UnboundedReceiver<WriteRequest>) {
        let mut last_prune = Instant::now();
        let mut pruning = false;
        loop {
            // While a pruning backlog remains, only look at what is queued.
            let first = if pruning {
                match rx.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.blocking_recv() {
                    Some(request) => Some(request),
                    None => break,
                }
            };
            if let Some(first) = first {
                let mut requests = vec![first];
                while requests.len() < MAX_MERGED {
                    match rx.try_recv() {
                        Ok(request) => requests.push(request),
                        Err(_) => break,
                    }
                }
                if !self.commit(requests) {
                    self.reopen();
                    continue;
                }
            }
            if pruning || last_prune.elapsed() >= PRUNE_EVERY {
                if !pruning {
                    last_prune = Instant::now();
                    self.prune_state();
                }
                pruning = self.prune_step();
            }
        }
    }

    /// Commits the merged requests and answers each; false when the commit failed.
    fn commit(&self, requests: Vec<WriteRequest>) -> bool {
        let mut merged = Batch::default();
        let mut accept_counts = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for mut request in requests {
            accept_counts.push(request.batch.accept.len());
            merged.append(&mut request.batch);
            replies.push(request.reply);
        }
        let now = self.clock.now_ms();
        match self
            .store
            .commit(&merged, now, now - self.retention.dedupe_window_ms)
        {
            Ok(result) => {
                let mut flags = result.accepted_new.into_iter();
                for (reply, count) in replies.into_iter().zip(accept_counts) {
                    let _ = reply.send(Ok(flags.by_ref().take(count).collect()));
                }
                true
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed; refusing new events until it can commit again");
                self.health.fail(error.to_string());
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(CommitError::Failed(error.clone())));
                }
                false
            }
        }
    }

    /// Reopens the store until it opens (or shutdown begins), then marks it usable.
    fn reopen(&self) {
        loop {
            std::thread::sleep(REOPEN_EVERY);
            match self.store.reopen() {
                Ok(()) => {
                    tracing::info!(store = %self.store.path().display(), "store reopened; accepting events again");
                    self.health.recover();
                    return;
                }
                Err(error) if self.give_up.is_cancelled() => {
                    tracing::error!(%error, "store could not be reopened before shutdown");
                    return;
                }
                Err(error) => tracing::warn!(%error, "store could not be reopened yet"),
            }
        }
    }

    /// One bounded step of pruning ids, history and event records; true
    /// when more is due.
    fn prune_step(&self) -> bool {
        let now = self.clock.now_ms();
        let retention = &self.retention;
        let seen = self.store.prune(
            now - retention.dedupe_window_ms,
            now - retention.history_ms,
            PRUNE_STEP,
        );
        let records =
            self.store
                .prune_traces(now - retention.event_ms, retention.event_count, PRUNE_STEP);
        let mut more = false;
        for (what, result) in [("event ids and history", seen), ("event records", records)] {
            match result {
                Ok(pruned) => more |= pruned.more,
                Err(error) => tracing::warn!(%error, "pruning {what} failed"),
            }
        }
        more
    }

    fn prune_state(&self) {
        let retention = kairo_core::handler::Retention::as_of(self.clock.now_ms());
        if let Err(error) = self.store.prune_state(&retention) {
            tracing::warn!(%error, "pruning event handler state failed");
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Path of the embedded state database.
    pub path: PathBuf,
    /// An event id seen within this many seconds triggers nothing new.
    pub dedupe_window_seconds: u64,
    /// Finished actions are kept in the history this many seconds.
    pub history_retention_seconds: u64,
    /// Memory for the database's block cache, MiB.
    pub cache_mib: usize,
    /// Received events are kept (with when and where they came from, and
    /// their traces) this many seconds, for explaining, export and replay.
    pub event_retention_seconds: u64,
    /// At most this many received events are kept (the oldest go first).
    pub event_retention_count: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: "data/kairo".into(),
            dedupe_window_seconds: 24 * 3600,
            history_retention_seconds: 7 * 24 * 3600,
            cache_mib: 32,
            event_retention_seconds: 7 * 24 * 3600,
            event_retention_count: 100_000,
        }
    }
}
