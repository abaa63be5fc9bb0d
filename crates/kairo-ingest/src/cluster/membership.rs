//! Which instances are alive, and which partitions each prefers.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;

use super::publish::ClusterError;
use super::{ClusterConfig, fnv1a};

/// This instance's entry in the members bucket.
pub struct Members {
    kv: kv::Store,
    node: String,
}

impl Members {
    /// Opens (creating) the members bucket, whose entries expire after the
    /// member lifetime, and names this instance.
    pub async fn join(
        js: &jetstream::Context,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let kv = super::bucket(
            js,
            config,
            config.members_bucket.clone(),
            config.member_ttl(),
        )
        .await?;
        let node = config.node.clone().unwrap_or_else(default_node);
        Ok(Self { kv, node })
    }

    /// This instance's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Says this instance is alive.
    pub async fn beat(&self) -> Result<(), ClusterError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        (self.kv.put(&self.node, now.to_string().into()).await)
            .map(|_| ())
            .map_err(|e| ClusterError::js("members beat", e))
    }

    /// The members alive now (this one included once it has beaten), sorted.
    pub async fn live(&self) -> Result<Vec<String>, ClusterError> {
        let keys = (self.kv.keys().await).map_err(|e| ClusterError::js("members list", e))?;
        let mut members: Vec<String> =
            (keys.try_collect().await).map_err(|e| ClusterError::js("members list", e))?;
        members.sort();
        Ok(members)
    }

    /// Leaves the list at once (on shutdown), so others take over without
    /// waiting for the entry to expire.
    pub async fn leave(&self) {
        if let Err(error) = self.kv.purge(&self.node).await {
            tracing::warn!(%error, "could not leave the cluster members list");
        }
    }
}

/// The member that prefers `partition` (rendezvous hashing: the highest
/// hash of member and partition), so partitions spread evenly and only the
/// partitions of a member that comes or goes move.
pub fn owner_of(partition: u32, members: &[String]) -> Option<&str> {
    members
        .iter()
        .max_by_key(|member| mix(fnv1a(format!("{member}/{partition}").as_bytes())))
        .map(String::as_str)
}

/// Spreads the bits of a hash (MurmurHash3's finalizer): FNV-1a alone ranks
/// similar short names by their last byte.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Host name, process id and a random suffix.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kairo".into());
    let random = fnv1a(format!("{:?}", std::time::Instant::now()).as_bytes()) & 0xffff;
    let name = format!("{host}-{}-{random:04x}", std::process::id());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_and_only_a_leavers_move() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let owners: Vec<&str> = (0..64).map(|p| owner_of(p, &three).unwrap()).collect();
        for member in &three {
            let n = owners.iter().filter(|o| *o == member).count();
            assert!((12..=32).contains(&n), "{member}: {n} of 64");
        }
        let two: Vec<String> = ["a", "c"].map(String::from).to_vec();
        for p in 0..64 {
            if owners[p as usize] != "b" {
                assert_eq!(
                    owner_of(p, &two),
                    Some(owners[p as usize]),
                    "partition {p} moved"
                );
            }
        }
        assert_eq!(owner_of(0, &[]), None);
    }
}
