//! `[dispatch]` settings, the retry backoff, and per-family limits: how many
//! actions of one family (e.g. every SORACOM API action) run at once and how
//! fast they start, and a shared pause when the service answers 429, so one
//! rate-limited call slows the family for everyone.
//!
//! The pacing is a few lines (a next-start slot advanced by `1/per_second`);
//! a rate-limiter crate would not give the shared pause-on-429 by itself. In
//! cluster mode the slot lives in JetStream and every instance takes from it
//! ([`kairo_ingest::cluster::SharedPace`]), so the limit holds for the cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairo_ingest::cluster::SharedPace;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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

/// `[dispatch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Attempts per action before it is given up (including the first).
    pub max_attempts: u32,
    /// Backoff before the second attempt, milliseconds; doubles each retry.
    pub backoff_initial_ms: u64,
    /// Longest backoff between attempts, milliseconds.
    pub backoff_max_ms: u64,
    /// Deadline for one attempt, milliseconds.
    pub action_timeout_ms: u64,
    /// Actions performed at the same time, at most.
    pub concurrency: usize,
    /// Actions of one family performed at the same time, at most, for every
    /// family without its own `[dispatch.limits.<family>]`: a hanging target
    /// holds at most this many of the `concurrency` slots.
    pub family_concurrency: usize,
    /// On shutdown, how long due actions are still performed before the rest is left in the outbox.
    pub shutdown_grace_ms: u64,
    /// `[dispatch.limits.<family>]`: concurrency and pace per action family.
    pub limits: BTreeMap<String, FamilyLimit>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            action_timeout_ms: 10_000,
            concurrency: 64,
            family_concurrency: 16,
            shutdown_grace_ms: 10_000,
            limits: BTreeMap::from([(
                "soracom".to_string(),
                FamilyLimit {
                    concurrency: 8,
                    per_second: Some(20.0),
                },
            )]),
        }
    }
}

/// `[dispatch.limits.<family>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyLimit {
    /// Actions of this family running at once, at most.
    pub concurrency: usize,
    /// Action starts per second, at most; unset means unpaced.
    #[serde(default)]
    pub per_second: Option<f64>,
}

/// The pace every instance shares in cluster mode, set once the cluster is
/// joined; unset, each gate paces its own instance.
pub type SharedPaceSlot = Arc<std::sync::OnceLock<Arc<dyn SharedPace>>>;

/// Admission control for one family.
pub struct Gate {
    family: String,
    permits: Arc<Semaphore>,
    /// Its configured concurrency, held for the whole cluster in cluster
    /// mode; `None` for a family without `[dispatch.limits]` (its bound is
    /// this instance's protection, not the target's limit).
    cluster_concurrency: Option<usize>,
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
    paused_until: Mutex<Option<Instant>>,
    shared: SharedPaceSlot,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("family", &self.family)
            .field("interval", &self.interval)
            .field("shared", &self.shared.get().is_some())
            .finish()
    }
}

impl Gate {
    /// A gate for `limit`, paced by this instance alone.
    pub fn new(limit: &FamilyLimit) -> Self {
        Self::shared(String::new(), limit, SharedPaceSlot::default(), false)
    }

    /// A gate for `family` under `limit`, paced with every instance when
    /// `shared` is set, and its concurrency then held for the whole cluster
    /// when `configured`.
    fn shared(
        family: String,
        limit: &FamilyLimit,
        shared: SharedPaceSlot,
        configured: bool,
    ) -> Self {
        Self {
            family,
            shared,
            cluster_concurrency: configured.then_some(limit.concurrency.max(1)),
            permits: Arc::new(Semaphore::new(limit.concurrency.max(1))),
            interval: limit
                .per_second
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
        }
    }

    /// When the family's pause (after a 429) ends, if it is paused now.
    pub fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|until| *until > Instant::now())
    }

    /// A slot now, unless the family is paused or every slot is taken; the
    /// caller holds the permit while the action runs and waits [`Gate::pace`] first.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        if self.paused_until().is_some() {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Waits out any pause, for a free slot, and for the pace; hold the permit while running.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        while let Some(until) = self.paused_until() {
            tokio::time::sleep_until(until).await;
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("gate semaphore is never closed");
        self.pace().await;
        permit
    }

    /// Waits for this start's turn under `per_second`: among every instance
    /// in cluster mode, else in this one.
    pub async fn pace(&self) {
        if let (Some(interval), Some(shared)) = (self.interval, self.shared.get()) {
            let interval_ms = (interval.as_millis() as i64).max(1);
            match shared.take(&self.family, epoch_ms(), interval_ms).await {
                Ok(slot) => {
                    let wait = (slot - epoch_ms()).max(0) as u64;
                    return tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, family = %self.family, "shared pace unavailable; pacing this instance alone");
                }
            }
        }
        if let Some(interval) = self.interval {
            let slot = {
                let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
                let slot = (*next).max(Instant::now());
                *next = slot + interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
    }

    /// In cluster mode, for a family with configured limits: waits for one
    /// of its `concurrency` slots among every instance (polling while all are
    /// taken); hold the answer while the action runs. `None` otherwise, or
    /// when the slots cannot be reached (then this instance's bound alone
    /// holds, and why is logged).
    pub async fn cluster_slot(&self) -> Option<ClusterSlot> {
        let (Some(limit), Some(shared)) = (self.cluster_concurrency, self.shared.get()) else {
            return None;
        };
        loop {
            match shared.take_slot(&self.family, limit).await {
                Ok(Some(key)) => {
                    return Some(ClusterSlot {
                        key,
                        shared: shared.clone(),
                    });
                }
                Ok(None) => tokio::time::sleep(SLOT_POLL).await,
                Err(error) => {
                    tracing::warn!(%error, family = %self.family, "shared concurrency unavailable; bounding this instance alone");
                    return None;
                }
            }
        }
    }

    /// Holds back every action of the family for `wait` (in cluster mode,
    /// every instance's: the shared pace moves past it).
    pub fn pause(&self, wait: Duration) {
        if let Some(shared) = self.shared.get().cloned() {
            let (family, until) = (self.family.clone(), epoch_ms() + wait.as_millis() as i64);
            tokio::spawn(async move {
                if let Err(error) = shared.hold(&family, until).await {
                    tracing::warn!(%error, %family, "could not hold the other instances back");
                }
            });
        }
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// How often a start waiting for a cluster-wide slot tries again.
const SLOT_POLL: Duration = Duration::from_millis(50);

/// One of a family's slots among every instance; given back when dropped.
pub struct ClusterSlot {
    key: String,
    shared: Arc<dyn SharedPace>,
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let (key, shared) = (std::mem::take(&mut self.key), self.shared.clone());
        tokio::spawn(async move {
            if let Err(error) = shared.give_back(&key).await {
                tracing::warn!(%error, "a family slot was not given back; it frees itself when its lease ends");
            }
        });
    }
}

/// Now in epoch milliseconds: shared paces are wall-clock slots, since the
/// instances sharing them do not share a monotonic clock.
fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Gates by family name. A family without a configured limit gets a gate of
/// its own with `default_concurrency` slots, so one slow or dead target can
/// hold at most that many of the dispatcher's slots.
pub struct Gates {
    by_family: Mutex<HashMap<String, Arc<Gate>>>,
    default_concurrency: usize,
    shared: SharedPaceSlot,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("default_concurrency", &self.default_concurrency)
            .field("shared", &self.shared.get().is_some())
            .finish()
    }
}

impl Gates {
    /// Gates for the configured limits; other families get `default_concurrency` each.
    pub fn new(limits: &BTreeMap<String, FamilyLimit>, default_concurrency: usize) -> Self {
        let shared = SharedPaceSlot::default();
        let gate = |(family, limit): (&String, &FamilyLimit)| {
            let gate = Gate::shared(family.clone(), limit, shared.clone(), true);
            (family.clone(), Arc::new(gate))
        };
        Self {
            by_family: Mutex::new(limits.iter().map(gate).collect()),
            default_concurrency,
            shared,
        }
    }

    /// Where the pace every instance shares goes once the cluster is joined.
    pub fn shared_pace(&self) -> SharedPaceSlot {
        self.shared.clone()
    }

    /// The gate for `family`.
    pub fn get(&self, family: &str) -> Arc<Gate> {
        let mut gates = self.by_family.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(family.to_string())
            .or_insert_with(|| {
                let limit = FamilyLimit {
                    concurrency: self.default_concurrency,
                    per_second: None,
                };
                Arc::new(Gate::shared(
                    family.to_string(),
                    &limit,
                    self.shared.clone(),
                    false,
                ))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacing_spaces_starts() {
        let gate = Gate::new(&FamilyLimit {
            concurrency: 10,
            per_second: Some(10.0),
        });
        let start = Instant::now();
        for _ in 0..5 {
            drop(gate.acquire().await);
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_back_the_family() {
        let gate = Gate::new(&FamilyLimit {
            concurrency: 1,
            per_second: None,
        });
        gate.pause(Duration::from_secs(3));
        gate.pause(Duration::from_secs(1));
        let start = Instant::now();
        drop(gate.acquire().await);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "the longer pause wins"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let gate = Arc::new(Gate::new(&FamilyLimit {
            concurrency: 2,
            per_second: None,
        }));
        assert!(gate.try_acquire().is_some(), "a slot is free");
        let first = gate.acquire().await;
        let _second = gate.acquire().await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { drop(gate.acquire().await) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        assert!(gate.try_acquire().is_none(), "every slot is taken");
        drop(first);
        waiter.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn unconfigured_families_get_their_own_bound() {
        let gates = Gates::new(&BTreeMap::new(), 2);
        let webhook = gates.get("webhook");
        let _held = (
            webhook.try_acquire().unwrap(),
            webhook.try_acquire().unwrap(),
        );
        assert!(gates.get("webhook").try_acquire().is_none());
        assert!(
            gates.get("slack").try_acquire().is_some(),
            "other families are unaffected"
        );
        gates.get("slack").pause(Duration::from_secs(1));
        assert!(
            gates.get("slack").try_acquire().is_none(),
            "a paused family starts nothing"
        );
    }
}
