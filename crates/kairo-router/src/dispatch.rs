//! Performing actions durably: a scheduler releases pending actions from the
//! outbox when they are due; each attempt runs under the global and
//! per-family limits with a deadline; its outcome (finished, rescheduled with
//! backoff, or dead-lettered) is committed to the store before the scheduler
//! forgets the action.
//!
//! An action is removed from the outbox only in the same transaction that
//! records its outcome, so a crash can repeat only the attempts that were
//! running at that moment.

pub use crate::limits::{DispatchConfig, backoff_with_jitter};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kairo_core::Clock;
use kairo_plugin::{ActionContext, ActionError, Registry};
use kairo_store::{Batch, DeadLetter, DeadLetterKind, HistoryEntry, HistoryStatus, PendingAction};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limits::{Gate, Gates};
use crate::metrics::{ActionLabels, Metrics};
use crate::writer::StoreWriter;

/// The longest server-requested wait (`Retry-After`) that is honoured as is.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(15 * 60);

/// Counts accepted work not yet finished, so callers can wait until the router is idle.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Notes `n` more units of work.
    pub fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    /// Notes `n` units finished.
    pub fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.idle.notify_waiters();
        }
    }

    /// Units not yet finished.
    pub fn pending(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until no work is pending.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What the dispatcher needs, shared by the scheduler and every attempt.
pub struct DispatchContext {
    /// Actions by name (swapped when dynamic plugins are reloaded).
    pub registry: Arc<arc_swap::ArcSwap<Registry>>,
    /// Shared HTTP client for plugins.
    pub http: reqwest::Client,
    /// `[dispatch]`.
    pub config: DispatchConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where outcomes are committed.
    pub writer: StoreWriter,
    /// Accepted-work counter.
    pub in_flight: Arc<InFlight>,
    /// Per-family limits.
    pub gates: Gates,
    /// Time source for due times and records.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when attempts should give up early (hard stop).
    pub cancel: CancellationToken,
    /// Masks secrets in error messages before they are logged or stored.
    pub redactor: kairo_core::Redactor,
    /// Where outcomes go besides the store (cluster mode: back to JetStream).
    pub outcomes: Option<Arc<dyn OutcomeHook>>,
}

/// Told each attempt's outcome once the store has it; in cluster mode it
/// acknowledges the action's message, sends it back for a retry, and
/// records the outcome in JetStream.
#[async_trait::async_trait]
pub trait OutcomeHook: Send + Sync {
    /// The action was performed (`entry` is in the history).
    async fn finished(&self, entry: &HistoryEntry);
    /// The action failed for good (`letter` is its dead letter): true when
    /// the letter is kept elsewhere, so the store need not keep it.
    async fn dead(&self, letter: &DeadLetter) -> bool;
    /// The action failed and is to be tried again after `wait`: true when
    /// that retry is taken care of elsewhere, so neither the outbox nor the
    /// scheduler keeps it.
    async fn retry(&self, action: &PendingAction, wait: Duration) -> bool;
}

enum Message {
    Enqueue(Vec<PendingAction>),
    Cancel(String, tokio::sync::oneshot::Sender<Cancelled>),
}

/// What cancelling a scheduled action found in the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting (pending, delayed or between retries) and will not start.
    Removed,
    /// An attempt is running now; it cannot be cancelled.
    Running,
    /// The scheduler did not have it yet; it will be dropped when it arrives.
    NotQueued,
}

/// Hands pending actions to the scheduler.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Message>,
    in_flight: Arc<InFlight>,
}

impl Dispatcher {
    /// Starts the scheduler; it runs until `drain` is cancelled and then finishes
    /// due work for at most `config.shutdown_grace_ms`.
    pub fn start(
        cx: DispatchContext,
        drain: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = cx.in_flight.clone();
        let task = tokio::spawn(Scheduler::new(Arc::new(cx), rx).run(drain));
        (Self { tx, in_flight }, task)
    }

    /// Schedules `actions` (already in the outbox); duplicates of known keys are ignored.
    pub fn enqueue(&self, actions: Vec<PendingAction>) {
        if actions.is_empty() {
            return;
        }
        self.in_flight.add(actions.len());
        let count = actions.len();
        if self.tx.send(Message::Enqueue(actions)).is_err() {
            // Stopped: they stay in the outbox for the next start.
            self.in_flight.done(count);
        }
    }

    /// Takes the action with key `key` off the schedule unless an attempt is
    /// running; `None` when the scheduler has stopped.
    pub async fn cancel(&self, key: String) -> Option<Cancelled> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.send(Message::Cancel(key, reply)).ok()?;
        answer.await.ok()
    }
}

/// Result of one attempt, reported back to the scheduler.
enum Attempted {
    Finished(String),
    Requeue(PendingAction),
}

struct Scheduler {
    cx: Arc<DispatchContext>,
    rx: mpsc::UnboundedReceiver<Message>,
    /// Waiting actions per family, soonest due first: a family at its bound
    /// (a hanging target, say) never holds up another family's actions.
    queues: HashMap<String, BTreeMap<(i64, String), PendingAction>>,
    known: HashSet<String>,
    /// Keys cancelled before they reached the scheduler: dropped on arrival.
    cancelled: HashSet<String>,
    running: JoinSet<Attempted>,
    global: Arc<Semaphore>,
    /// Cancelled when the grace period is over: attempts not yet started give up their turn.
    halt: CancellationToken,
}

impl Scheduler {
    fn new(cx: Arc<DispatchContext>, rx: mpsc::UnboundedReceiver<Message>) -> Self {
        let global = Arc::new(Semaphore::new(cx.config.concurrency));
        Self {
            cx,
            rx,
            queues: HashMap::new(),
            known: HashSet::new(),
            cancelled: HashSet::new(),
            running: JoinSet::new(),
            global,
            halt: CancellationToken::new(),
        }
    }

    /// Runs until drained: after `drain` is cancelled, due actions keep starting
    /// for the grace period; attempts already running always finish (each has
    /// its deadline) and record their outcome, so a graceful stop repeats nothing.
    async fn run(mut self, drain: CancellationToken) {
        let mut grace_deadline: Option<Instant> = None;
        let mut receiving = true;
        loop {
            let past_grace = grace_deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if past_grace {
                self.halt.cancel();
            } else {
                self.start_due();
            }

            if grace_deadline.is_some() && !receiving && self.running.is_empty() {
                let nothing_due = self
                    .next_due()
                    .is_none_or(|due| due > self.cx.clock.now_ms());
                if past_grace || nothing_due {
                    break;
                }
            }
            let wake = self.next_wake(grace_deadline);
            tokio::select! {
                message = self.rx.recv(), if receiving => match message {
                    Some(Message::Enqueue(actions)) => self.add(actions),
                    Some(Message::Cancel(key, reply)) => {
                        let _ = reply.send(self.cancel(&key));
                    }
                    None => receiving = false,
                },
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => match joined {
                    Ok(Attempted::Finished(key)) => self.forget(&key),
                    Ok(Attempted::Requeue(action)) => self.queue(action),
                    Err(error) => tracing::error!(%error, "action task failed"),
                },
                _ = drain.cancelled(), if grace_deadline.is_none() => {
                    grace_deadline = Some(Instant::now() + Duration::from_millis(self.cx.config.shutdown_grace_ms));
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        let left: usize = self.queues.values().map(BTreeMap::len).sum();
        if left > 0 {
            tracing::info!(
                left,
                "dispatcher stopped; unfinished actions stay in the outbox for the next start"
            );
        }
    }

    /// When the next waiting action may start: its due time, or the end of its family's pause.
    fn next_due(&self) -> Option<i64> {
        let now_ms = self.cx.clock.now_ms();
        self.queues
            .iter()
            .filter_map(|(family, queue)| {
                let due = queue.first_key_value()?.0.0;
                let paused = self.cx.gates.get(family).paused_until().map(|until| {
                    now_ms + until.saturating_duration_since(Instant::now()).as_millis() as i64
                });
                Some(paused.map_or(due, |p| p.max(due)))
            })
            .min()
    }

    fn next_wake(&self, grace_deadline: Option<Instant>) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let due = self.next_due().map_or(far, |due| {
            let wait = (due - self.cx.clock.now_ms()).max(0) as u64;
            Instant::now() + Duration::from_millis(wait)
        });
        let due = match self.cx.writer.health().problem() {
            Some(_) => due.min(Instant::now() + crate::writer::RETRY_EVERY),
            None => due,
        };
        grace_deadline.map_or(due, |g| due.min(g))
    }

    fn add(&mut self, actions: Vec<PendingAction>) {
        for action in actions {
            if self.cancelled.remove(&action.key()) {
                self.cx.in_flight.done(1);
            } else if self.known.insert(action.key()) {
                self.queue(action);
            } else {
                self.cx.in_flight.done(1);
            }
        }
    }

    /// Puts `action` in its family's queue.
    fn queue(&mut self, action: PendingAction) {
        let family = self
            .cx
            .registry
            .load()
            .get(&action.request.action)
            .map(|plugin| plugin.family().to_string())
            .unwrap_or_default();
        self.queues
            .entry(family)
            .or_default()
            .insert((action.due_ms(), action.key()), action);
    }

    /// Takes `key` out of its family's queue, unless it is running.
    fn cancel(&mut self, key: &str) -> Cancelled {
        for queue in self.queues.values_mut() {
            let found = queue.keys().find(|(_, k)| k == key).cloned();
            if let Some(entry) = found {
                queue.remove(&entry);
                self.forget(key);
                return Cancelled::Removed;
            }
        }
        if self.known.contains(key) {
            return Cancelled::Running;
        }
        self.cancelled.insert(key.to_string());
        Cancelled::NotQueued
    }

    fn forget(&mut self, key: &str) {
        if self.known.remove(key) {
            self.cx.in_flight.done(1);
        }
    }

    /// Starts due actions while global slots are free, each family up to its
    /// own bound; the rest wait in their queues.
    fn start_due(&mut self) {
        if self.cx.writer.health().problem().is_some() {
            // An outcome could not be recorded: performing more would only
            // make more repeats after a restart. Wait for the store.
            return;
        }
        let now = self.cx.clock.now_ms();
        for (family, queue) in &mut self.queues {
            let gate = self.cx.gates.get(family);
            while let Some(entry) = queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let Some(family_slot) = gate.try_acquire() else {
                    break;
                };
                let Ok(slot) = self.global.clone().try_acquire_owned() else {
                    return;
                };
                let action = entry.remove();
                let (cx, halt, gate) = (self.cx.clone(), self.halt.clone(), gate.clone());
                self.running.spawn(async move {
                    let _slots = (slot, family_slot);
                    attempt(cx, halt, gate, action).await
                });
            }
        }
        self.queues.retain(|_, queue| !queue.is_empty());
    }
}

/// Performs one attempt of `action` and commits its outcome; gives its turn
/// back untouched when `halt` is cancelled before the attempt could start.
async fn attempt(
    cx: Arc<DispatchContext>,
    halt: CancellationToken,
    gate: Arc<Gate>,
    mut action: PendingAction,
) -> Attempted {
    let registry = cx.registry.load_full();
    let Some(plugin) = registry.get(&action.request.action).cloned() else {
        action.attempts += 1;
        let error = ActionError::permanent(format!(
            "unknown action `{}` (known: {})",
            action.request.action,
            registry.names().join(", ")
        ));
        return give_up(&cx, action, error, 0).await;
    };
    let _cluster_slot = tokio::select! {
        slot = async { gate.pace().await; gate.cluster_slot().await } => slot,
        () = halt.cancelled() => return Attempted::Requeue(action),
    };
    if halt.is_cancelled() {
        return Attempted::Requeue(action);
    }
    action.attempts += 1;
    let timeout = Duration::from_millis(cx.config.action_timeout_ms);
    let context = ActionContext::new(
        cx.http.clone(),
        timeout,
        cx.cancel.child_token(),
        action.attempts,
    )
    .with_config(registry.config(&action.request.action));
    let started = Instant::now();
    // A panic inside a compiled-in action fails the attempt for good, as a
    // dynamic plugin's panic does at the ABI boundary.
    let execution = std::panic::AssertUnwindSafe(plugin.execute(&action.request, &context));
    let result = tokio::time::timeout(timeout, futures::FutureExt::catch_unwind(execution))
        .await
        .unwrap_or_else(|_| {
            Ok(Err(ActionError::retryable(format!(
                "timed out after {timeout:?}"
            ))))
        })
        .unwrap_or_else(|panic| Err(ActionError::permanent(panic_message(panic.as_ref()))))
        .map_err(|error| redacted(&cx.redactor, error).bounded());
    let latency = started.elapsed();
    let latency_ms = latency.as_millis() as u64;
    cx.metrics.action_latency.observe(latency.as_secs_f64());
    let request = &action.request;
    match result {
        Ok(outcome) => succeeded(&cx, action, outcome, latency_ms).await,
        Err(error) if error.is_retryable() && action.attempts < cx.config.max_attempts => {
            count(&cx, &request.action, "retried");
            if let Some(wait) = error.retry_after {
                gate.pause(wait.min(MAX_SERVER_WAIT));
            }
            let wait = backoff(&cx.config, action.attempts, error.retry_after);
            tracing::warn!(
                event_id = %request.event_id, rule = %request.rule, action = %request.action,
                attempt = action.attempts, latency_ms, retry_in_ms = wait.as_millis() as u64,
                error = %error, "action failed; will retry"
            );
            action.next_attempt_ms = cx.clock.now_ms() + wait.as_millis() as i64;
            action.last_error = Some(error.message);
            if let Some(hook) = &cx.outcomes
                && hook.retry(&action, wait).await
            {
                return Attempted::Finished(action.key());
            }
            commit(
                &cx,
                Batch {
                    reschedule: vec![action.clone()],
                    ..Batch::default()
                },
            )
            .await;
            Attempted::Requeue(action)
        }
        Err(error) => give_up(&cx, action, error, latency_ms).await,
    }
}

/// Records a successful attempt in the history.
async fn succeeded(
    cx: &DispatchContext,
    action: PendingAction,
    outcome: kairo_plugin::ActionOutcome,
    latency_ms: u64,
) -> Attempted {
    let request = &action.request;
    count(cx, &request.action, "succeeded");
    tracing::info!(
        event_id = %request.event_id, rule = %request.rule, action = %request.action,
        attempt = action.attempts, latency_ms, "action succeeded"
    );
    let entry = HistoryEntry {
        request: request.clone(),
        status: HistoryStatus::Succeeded,
        attempts: action.attempts,
        succeeded: true,
        error: None,
        error_class: None,
        detail: outcome.detail,
        created_at_ms: action.created_at_ms,
        finished_at_ms: cx.clock.now_ms(),
    };
    commit(
        cx,
        Batch {
            finished: vec![entry.clone()],
            ..Batch::default()
        },
    )
    .await;
    if let Some(hook) = &cx.outcomes {
        hook.finished(&entry).await;
    }
    Attempted::Finished(action.key())
}

/// `error` with any secret in its message masked.
fn redacted(redactor: &kairo_core::Redactor, mut error: ActionError) -> ActionError {
    if let std::borrow::Cow::Owned(message) = redactor.redact(&error.message) {
        error.message = message;
    }
    error
}

/// What a caught panic said.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into());
    format!("the action panicked: {text}")
}

/// Records a final failure: history entry plus dead letter, in one commit.
async fn give_up(
    cx: &DispatchContext,
    action: PendingAction,
    error: ActionError,
    latency_ms: u64,
) -> Attempted {
    let request = &action.request;
    count(cx, &request.action, "failed");
    tracing::error!(
        event_id = %request.event_id, rule = %request.rule, action = %request.action,
        attempt = action.attempts, latency_ms, class = ?error.class, error = %error,
        "action failed; moved to dead letters"
    );
    let now = cx.clock.now_ms();
    let class = match error.class {
        kairo_plugin::ErrorClass::Retryable => "retryable",
        kairo_plugin::ErrorClass::Permanent => "permanent",
    };
    let entry = HistoryEntry {
        request: request.clone(),
        status: HistoryStatus::Failed,
        attempts: action.attempts,
        succeeded: false,
        error: Some(error.message.clone()),
        error_class: Some(class.into()),
        detail: serde_json::Value::Null,
        created_at_ms: action.created_at_ms,
        finished_at_ms: now,
    };
    let key = action.key();
    let letter = DeadLetter {
        id: key.clone(),
        kind: DeadLetterKind::Action,
        action: Some(PendingAction {
            last_error: Some(error.message.clone()),
            ..action
        }),
        input: None,
        source: None,
        error: error.message,
        failed_at_ms: now,
    };
    // In cluster mode the letter is kept in the cluster, where any instance
    // lists, retries or drops it; here only when that failed.
    let kept_elsewhere = match &cx.outcomes {
        Some(hook) => hook.dead(&letter).await,
        None => false,
    };
    commit(
        cx,
        Batch {
            finished: vec![entry],
            dead: (!kept_elsewhere).then_some(letter).into_iter().collect(),
            ..Batch::default()
        },
    )
    .await;
    Attempted::Finished(key)
}

/// Records an outcome, retrying while the store cannot commit: the attempt
/// keeps its slots meanwhile, so unrecorded attempts never exceed the bounds.
async fn commit(cx: &DispatchContext, batch: Batch) {
    if let Err(error) = cx.writer.commit_until_done(batch).await {
        // The outbox still holds the action, so it will be attempted again after a restart.
        let error = kairo_core::error_chain(&error);
        tracing::error!(%error, "could not record an action outcome before shutdown");
    }
}

fn count(cx: &DispatchContext, action: &str, outcome: &'static str) {
    cx.metrics
        .action_attempts
        .get_or_create(&ActionLabels {
            action: action.to_string(),
            outcome,
        })
        .inc();
}

/// The wait before the next attempt: the server's `Retry-After` when given,
/// else exponential backoff with jitter.
fn backoff(config: &DispatchConfig, attempt: u32, server_wait: Option<Duration>) -> Duration {
    match server_wait {
        Some(wait) => wait.min(MAX_SERVER_WAIT),
        None => backoff_with_jitter(config, attempt, rand::random::<f64>()),
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
