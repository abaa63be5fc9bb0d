//! Performing actions: concurrency limit, per-attempt deadline, retries with
//! exponential backoff and jitter for retryable failures, and a record of
//! every outcome.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairo_plugin::{ActionContext, ActionError, ActionRequest, ErrorClass, Registry};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DispatchConfig;
use crate::metrics::{ActionLabels, Metrics};

/// The longest server-requested wait (`Retry-After`) that is honoured as is.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(15 * 60);

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    /// Idempotency key `event_id/rule/index`.
    pub key: String,
    /// The request.
    pub request: ActionRequest,
    /// Attempts made.
    pub attempts: u32,
    /// True when an attempt succeeded.
    pub succeeded: bool,
    /// The last error, when it failed.
    pub error: Option<String>,
    /// Class of the last error.
    pub error_class: Option<ErrorClass>,
    /// What the plugin reported on success.
    pub detail: serde_json::Value,
    /// Duration of the last attempt, milliseconds.
    pub latency_ms: u64,
}

/// The most recent action outcomes, oldest first, bounded.
#[derive(Debug, Default)]
pub struct History {
    records: Mutex<VecDeque<ActionRecord>>,
}

/// How many outcomes [`History`] keeps.
const HISTORY_LIMIT: usize = 10_000;

impl History {
    fn push(&self, record: ActionRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() == HISTORY_LIMIT {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// A copy of the kept outcomes, oldest first.
    pub fn snapshot(&self) -> Vec<ActionRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

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

/// Performs action requests in background tasks.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http: reqwest::Client,
    config: DispatchConfig,
    metrics: Arc<Metrics>,
    history: Arc<History>,
    in_flight: Arc<InFlight>,
    permits: Semaphore,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// A dispatcher performing actions from `registry`.
    pub fn new(
        registry: Registry,
        http: reqwest::Client,
        config: DispatchConfig,
        metrics: Arc<Metrics>,
        history: Arc<History>,
        in_flight: Arc<InFlight>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                http,
                permits: Semaphore::new(config.concurrency),
                config,
                metrics,
                history,
                in_flight,
                cancel,
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Starts performing `request` on `runtime`; the caller has counted it in [`InFlight`].
    pub fn submit(&self, request: ActionRequest, runtime: &tokio::runtime::Handle) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn_on(
            async move {
                let record = inner.perform(request).await;
                inner.history.push(record);
                inner.in_flight.done(1);
            },
            runtime,
        );
    }

    /// Stops taking work and waits up to `deadline` for in-flight actions; returns how many were left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.inner.tasks.close();
        if tokio::time::timeout(deadline, self.inner.tasks.wait())
            .await
            .is_err()
        {
            return self.inner.tasks.len();
        }
        0
    }
}

impl Inner {
    async fn perform(&self, request: ActionRequest) -> ActionRecord {
        let key = request.key();
        let mut record = ActionRecord {
            key,
            request,
            attempts: 0,
            succeeded: false,
            error: None,
            error_class: None,
            detail: serde_json::Value::Null,
            latency_ms: 0,
        };
        let request = &record.request;
        let Some(action) = self.registry.get(&request.action).cloned() else {
            let error = ActionError::permanent(format!(
                "unknown action `{}` (known: {})",
                request.action,
                self.registry.names().join(", ")
            ));
            self.finish_failed(&mut record, error);
            return record;
        };
        let timeout = Duration::from_millis(self.config.action_timeout_ms);
        for attempt in 1..=self.config.max_attempts {
            record.attempts = attempt;
            let permit = self
                .permits
                .acquire()
                .await
                .expect("semaphore never closed");
            let cx = ActionContext::new(
                self.http.clone(),
                timeout,
                self.cancel.child_token(),
                attempt,
            );
            let started = Instant::now();
            let result = tokio::time::timeout(timeout, action.execute(&record.request, &cx))
                .await
                .unwrap_or_else(|_| {
                    Err(ActionError::retryable(format!(
                        "timed out after {timeout:?}"
                    )))
                });
            drop(permit);
            let latency = started.elapsed();
            record.latency_ms = latency.as_millis() as u64;
            self.metrics.action_latency.observe(latency.as_secs_f64());
            let request = &record.request;
            match result {
                Ok(outcome) => {
                    self.count(&request.action, "succeeded");
                    tracing::info!(
                        event_id = %request.event_id, rule = %request.rule, action = %request.action,
                        attempt, latency_ms = record.latency_ms, "action succeeded"
                    );
                    record.succeeded = true;
                    record.detail = outcome.detail;
                    return record;
                }
                Err(error) if error.is_retryable() && attempt < self.config.max_attempts => {
                    self.count(&request.action, "retried");
                    let wait = self.backoff(attempt, error.retry_after);
                    tracing::warn!(
                        event_id = %request.event_id, rule = %request.rule, action = %request.action,
                        attempt, latency_ms = record.latency_ms, retry_in_ms = wait.as_millis() as u64,
                        error = %error, "action failed; will retry"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    self.finish_failed(&mut record, error);
                    return record;
                }
            }
        }
        unreachable!("the last attempt either succeeds or fails permanently")
    }

    fn finish_failed(&self, record: &mut ActionRecord, error: ActionError) {
        let request = &record.request;
        self.count(&request.action, "failed");
        tracing::error!(
            event_id = %request.event_id, rule = %request.rule, action = %request.action,
            attempt = record.attempts, latency_ms = record.latency_ms, class = ?error.class,
            error = %error, "action failed; giving up"
        );
        record.error = Some(error.message);
        record.error_class = Some(error.class);
    }

    fn count(&self, action: &str, outcome: &'static str) {
        self.metrics
            .action_attempts
            .get_or_create(&ActionLabels {
                action: action.to_string(),
                outcome,
            })
            .inc();
    }

    /// The wait before attempt `attempt + 1`: the server's `Retry-After` when
    /// given, else exponential backoff with equal jitter.
    fn backoff(&self, attempt: u32, server_wait: Option<Duration>) -> Duration {
        if let Some(wait) = server_wait {
            return wait.min(MAX_SERVER_WAIT);
        }
        backoff_with_jitter(&self.config, attempt, rand::random::<f64>())
    }
}

/// Exponential backoff for `attempt` (1-based) with equal jitter: a uniform
/// point (`unit` in 0..1) in the upper half of the capped exponential delay.
pub fn backoff_with_jitter(config: &DispatchConfig, attempt: u32, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = config
        .backoff_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(config.backoff_max_ms);
    let half = full / 2;
    Duration::from_millis(half + (half as f64 * unit.clamp(0.0, 1.0)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let config = DispatchConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..DispatchConfig::default()
        };
        assert_eq!(
            backoff_with_jitter(&config, 1, 1.0),
            Duration::from_millis(100)
        );
        assert_eq!(
            backoff_with_jitter(&config, 1, 0.0),
            Duration::from_millis(50)
        );
        assert_eq!(
            backoff_with_jitter(&config, 3, 1.0),
            Duration::from_millis(400)
        );
        assert_eq!(
            backoff_with_jitter(&config, 10, 1.0),
            Duration::from_millis(1_000)
        );
        assert_eq!(
            backoff_with_jitter(&config, 10, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            backoff_with_jitter(&config, 99, 0.5),
            Duration::from_millis(750)
        );
    }

    #[tokio::test]
    async fn in_flight_wakes_waiters_at_zero() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.add(2);
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.wait_idle().await }
        });
        in_flight.done(1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        in_flight.done(1);
        waiter.await.unwrap();
    }
}
