//! Paces shared by every instance: a family's next start slot kept in a
//! key-value bucket and taken with revision-checked updates, so N instances
//! start at most `per_second` actions of a family per second together.

use async_nats::jetstream::{self, kv};

use super::ClusterConfig;
use super::publish::ClusterError;

/// Revision conflicts retried before a take gives up.
const TRIES: usize = 32;

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
        let key: String = (family.chars())
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for _ in 0..TRIES {
            let entry =
                (self.kv.entry(&key).await).map_err(|e| ClusterError::js("pace read", e))?;
            let current = (entry.as_ref())
                .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse().ok())
                .unwrap_or(0);
            let value = next(current).to_string().into();
            let written = match &entry {
                Some(entry) => self.kv.update(&key, value, entry.revision).await.is_ok(),
                None => self.kv.create(&key, value).await.is_ok(),
            };
            if written {
                return Ok(current);
            }
        }
        Err(ClusterError::js(
            format!("pace of {family}"),
            format!("{TRIES} conflicting updates in a row"),
        ))
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
