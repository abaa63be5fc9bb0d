//! Limits shared by every instance:
//!
//! - a family's pace: its next start slot kept in a key-value bucket and
//!   taken with revision-checked updates, so N instances start at most
//!   `per_second` actions of a family per second together;
//! - a family's concurrency: `concurrency` slot keys in another bucket, each
//!   taken by creating it (only one creation of a key succeeds) with a time
//!   to live, and deleted when the action ends: an instance that dies holding
//!   one frees it when it expires.

use async_nats::jetstream::{self, kv};

use super::ClusterConfig;
use super::publish::ClusterError;

/// Where a family's pace is kept when several instances share it.
#[async_trait::async_trait]
pub trait SharedPace: Send + Sync {
    /// Takes the family's next start slot (epoch ms, never before `now_ms`)
    /// and moves it on by `interval_ms`.
    async fn take(&self, family: &str, now_ms: i64, interval_ms: i64) -> Result<i64, ClusterError>;

    /// Holds every instance's starts of the family back until `until_ms`
    /// (what a 429 asked for).
    async fn hold(&self, family: &str, until_ms: i64) -> Result<(), ClusterError>;

    /// Takes one of the family's `limit` slots for the whole cluster;
    /// `None` when every one is taken. Give it back with [`SharedPace::give_back`].
    async fn take_slot(&self, family: &str, limit: usize) -> Result<Option<String>, ClusterError>;

    /// Gives back a slot [`SharedPace::take_slot`] took.
    async fn give_back(&self, slot: &str) -> Result<(), ClusterError>;
}

/// [`SharedPace`] in the buckets `{stream}_LIMITS` (one key per family, its
/// value the next start slot in epoch milliseconds) and `{stream}_SLOTS`
/// (`{family}.{n}` while an instance holds slot `n`).
pub struct KvPace {
    kv: kv::Store,
    slots: kv::Store,
    /// How long a slot stays taken when its holder never gives it back.
    lease: std::time::Duration,
}

impl KvPace {
    /// Opens (creating) the buckets; a slot an instance never gives back
    /// (it died) is free again after `lease`.
    pub async fn open(
        js: &jetstream::Context,
        config: &ClusterConfig,
        lease: std::time::Duration,
    ) -> Result<Self, ClusterError> {
        let bucket = format!("{}_LIMITS", config.stream);
        let kv = super::bucket(js, config, bucket, std::time::Duration::ZERO).await?;
        let name = format!("{}_SLOTS", config.stream);
        let slots = match js.get_key_value(&name).await {
            Ok(slots) => slots,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    num_replicas: config.replicas,
                    limit_markers: Some(lease),
                    ..Default::default()
                })
                .await
                .map_err(|e| ClusterError::js(format!("bucket {name}"), e))?,
        };
        Ok(Self { kv, slots, lease })
    }

    /// Sets the family's slot to `next(current)` unless another instance
    /// changed it meanwhile (then reads and tries again); returns what `next`
    /// was given.
    async fn swap(&self, family: &str, next: impl Fn(i64) -> i64) -> Result<i64, ClusterError> {
        let what = format!("pace of {family}");
        super::compare_and_set(&self.kv, &super::token(family), &what, |value| {
            let current =
                (value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())).unwrap_or(0);
            (Some(next(current).to_string().into_bytes()), current)
        })
        .await
    }
}

#[async_trait::async_trait]
impl SharedPace for KvPace {
    async fn take(&self, family: &str, now_ms: i64, interval_ms: i64) -> Result<i64, ClusterError> {
        let previous = self
            .swap(family, |slot| slot.max(now_ms) + interval_ms)
            .await?;
        Ok(previous.max(now_ms))
    }

    async fn hold(&self, family: &str, until_ms: i64) -> Result<(), ClusterError> {
        self.swap(family, |slot| slot.max(until_ms))
            .await
            .map(|_| ())
    }

    async fn take_slot(&self, family: &str, limit: usize) -> Result<Option<String>, ClusterError> {
        let family = super::token(family);
        for n in 0..limit {
            let key = format!("{family}.{n}");
            match self
                .slots
                .create_with_ttl(&key, "taken".into(), self.lease)
                .await
            {
                Ok(_) => return Ok(Some(key)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ClusterError::js(format!("slot {key}"), e)),
            }
        }
        Ok(None)
    }

    async fn give_back(&self, slot: &str) -> Result<(), ClusterError> {
        (self.slots.purge(slot).await).map_err(|e| ClusterError::js(format!("slot {slot}"), e))
    }
}
