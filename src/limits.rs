//! Per-family limits: how many actions of one family (e.g. every SORACOM API
//! action) run at once and how fast they start, and a shared pause when the
//! service answers 429, so one rate-limited call slows the family for everyone.
//!
//! The pacing is a few lines (a next-start slot advanced by `1/per_second`);
//! a rate-limiter crate would not give the shared pause-on-429 by itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

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

/// Admission control for one family.
#[derive(Debug)]
pub struct Gate {
    permits: Semaphore,
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    /// A gate for `limit`.
    pub fn new(limit: &FamilyLimit) -> Self {
        Self {
            permits: Semaphore::new(limit.concurrency.max(1)),
            interval: limit
                .per_second
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits out any pause, for a free slot, and for the pace; hold the permit while running.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        let permit = self
            .permits
            .acquire()
            .await
            .expect("gate semaphore is never closed");
        if let Some(interval) = self.interval {
            let slot = {
                let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
                let slot = (*next).max(Instant::now());
                *next = slot + interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
        permit
    }

    /// Holds back every action of the family for `wait`.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// Gates by family name; families without a configured limit share an unlimited gate.
#[derive(Debug)]
pub struct Gates {
    by_family: HashMap<String, Arc<Gate>>,
    unlimited: Arc<Gate>,
}

impl Gates {
    /// Gates for the configured limits.
    pub fn new(limits: &BTreeMap<String, FamilyLimit>) -> Self {
        Self {
            by_family: limits
                .iter()
                .map(|(f, l)| (f.clone(), Arc::new(Gate::new(l))))
                .collect(),
            unlimited: Arc::new(Gate::new(&FamilyLimit {
                concurrency: Semaphore::MAX_PERMITS,
                per_second: None,
            })),
        }
    }

    /// The gate for `family`.
    pub fn get(&self, family: &str) -> &Gate {
        self.by_family.get(family).unwrap_or(&self.unlimited)
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
        let first = gate.acquire().await;
        let _second = gate.acquire().await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { drop(gate.acquire().await) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
    }
}
