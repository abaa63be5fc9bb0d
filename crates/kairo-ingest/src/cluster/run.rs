//! Pulling the partitions this instance prefers into its router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use tokio_util::sync::CancellationToken;

use super::publish::ClusterError;
use super::{ClusterConfig, Members, owner_of};
use crate::EventSink;
use crate::nats::PINNED_GROUP as GROUP;

/// Partition `p`'s durable consumer: one per partition, pinned to one
/// instance at a time; a partition moves when its instance has not pulled
/// for `takeover_seconds` (also how long a message waits for its
/// acknowledgement before it is delivered again).
async fn consumer(
    js: &jetstream::Context,
    config: &ClusterConfig,
    partition: u32,
) -> Result<jetstream::consumer::PullConsumer, ClusterError> {
    let name = format!("kairo-p{partition}");
    let takeover = Duration::from_secs(config.takeover_seconds);
    let stream = (js.get_stream(&config.stream).await)
        .map_err(|e| ClusterError::js(format!("stream {}", config.stream), e))?;
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: config.subject(partition),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: takeover,
                max_ack_pending: 1_000,
                priority_policy: jetstream::consumer::PriorityPolicy::PinnedClient,
                priority_groups: vec![GROUP.into()],
                priority_timeout: takeover,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::js(format!("consumer {name}"), e))
}

/// Pulls partition `p` into `sink` until `stop`, one chunk at a time, each
/// acknowledged once its events are committed.
async fn pull_partition(
    js: jetstream::Context,
    config: ClusterConfig,
    partition: u32,
    sink: Arc<dyn EventSink>,
    stop: CancellationToken,
) {
    let messages = match consumer(&js, &config, partition).await {
        Ok(consumer) => consumer.stream().group(GROUP).messages().await,
        Err(error) => {
            tracing::error!(%error, partition, "cannot pull this partition");
            return;
        }
    };
    match messages {
        Ok(messages) => crate::nats::run_jetstream(messages, sink, stop).await,
        Err(error) => tracing::error!(%error, partition, "cannot pull this partition"),
    }
}

/// Beats, follows the members, and pulls the partitions this instance
/// prefers until `shutdown`; then leaves the members list.
pub async fn run(
    js: jetstream::Context,
    config: ClusterConfig,
    members: Members,
    sink: Arc<dyn EventSink>,
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
                        let task = tokio::spawn(pull_partition(
                            js.clone(),
                            config.clone(),
                            p,
                            sink.clone(),
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
