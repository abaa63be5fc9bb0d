//! Pulling the partitions this instance prefers into its router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use super::publish::ClusterError;
use super::{ActionQueue, ClusterConfig, Members, PartitionSink, owner_of};

/// Beats, follows the members, and pulls the partitions this instance
/// prefers until `shutdown`; then leaves the members list.
pub async fn run(
    js: jetstream::Context,
    config: ClusterConfig,
    members: Members,
    sink: Arc<dyn PartitionSink>,
    actions: ActionQueue,
    shutdown: CancellationToken,
) {
    let mut pulling: BTreeMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    let beat = Duration::from_secs(config.heartbeat_seconds);
    loop {
        match follow(&members).await {
            Ok(live) => {
                let mine: Vec<u32> = (0..config.partitions)
                    .filter(|p| owner_of(*p, &live) == Some(members.node()))
                    .collect();
                pulling.retain(|p, (stop, task)| {
                    if !mine.contains(p) {
                        tracing::info!(partition = p, "partition moves to another instance");
                        stop.cancel();
                        return false;
                    }
                    // A pull that ended (its consumer deleted, a failed start)
                    // starts again below.
                    !task.is_finished()
                });
                for p in mine {
                    pulling.entry(p).or_insert_with(|| {
                        tracing::info!(partition = p, node = members.node(), "pulling partition");
                        let stop = shutdown.child_token();
                        let task = tokio::spawn(super::partition::pull(
                            js.clone(),
                            config.clone(),
                            p,
                            sink.clone(),
                            actions.clone(),
                            stop.clone(),
                        ));
                        (stop, task)
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "cluster membership not updated"),
        }
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, (stop, task)) in pulling {
        stop.cancel();
        let _ = task.await;
    }
    members.leave().await;
}

/// Beats, then lists the live members.
async fn follow(members: &Members) -> Result<Vec<String>, ClusterError> {
    members.beat().await?;
    members.live().await
}
