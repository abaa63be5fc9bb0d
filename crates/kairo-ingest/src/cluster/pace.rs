//! Paces shared by every instance: a family's next start slot kept in a
//! key-value bucket and taken with revision-checked updates, so N instances
//! start at most `per_second` actions of a family per second together.

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
}

/// [`SharedPace`] in the bucket `{stream}_LIMITS`: one key per family, its
/// value the next start slot in epoch milliseconds.
pub struct KvPace {
    kv: kv::Store,
}

impl KvPace {
    /// Opens (creating) the bucket.
    pub async fn open(
        js: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let bucket = format!("{}_LIMITS", config.stream);
        let kv = super::bucket(js, config, bucket, std::time::Duration::ZERO).await?;
        Ok(Self { kv })
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
}
