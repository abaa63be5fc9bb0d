//! The router in cluster mode: its link to NATS JetStream, the partitions
//! it pulls, the actions it pulls from the cluster's actions stream, and
//! the state it shares with the other instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kairo_core::Clock;
use kairo_ingest::EventSink;
use kairo_ingest::cluster::{ActionQueue, Job, KvPace, Members, PartitionPublisher, SharedState};
use kairo_store::{DeadLetter, HistoryEntry, PendingAction};
use tokio_util::sync::CancellationToken;

use crate::config::KairoConfig;
use crate::dispatch::{Dispatcher, OutcomeHook};
use crate::error::RouterError;
use crate::sink::RouterSink;

/// An instance's link to the cluster, made before the dispatcher starts.
pub(crate) struct ClusterLink {
    js: async_nats::jetstream::Context,
    /// The actions stream.
    pub(crate) actions: ActionQueue,
    /// The actions pulled here, until their outcome is known.
    pub(crate) outcomes: Arc<ClusterOutcomes>,
    /// The handler state many SIMs' events change.
    pub(crate) shared: SharedState,
}

fn cluster_error(e: kairo_ingest::cluster::ClusterError) -> RouterError {
    RouterError::Cluster(Box::new(e))
}

/// In cluster mode: connects to NATS and opens the actions streams.
pub(crate) async fn connect(config: &KairoConfig) -> Result<Option<ClusterLink>, RouterError> {
    let (cluster, Some(url)) = (&config.cluster, &config.nats.url) else {
        return Ok(None);
    };
    if !cluster.enabled() {
        return Ok(None);
    }
    let js = async_nats::jetstream::new(connect_nats(url, config).await?);
    let actions = ActionQueue::open(
        js.clone(),
        cluster.clone(),
        Duration::from_secs(config.store.dedupe_window_seconds),
        Duration::from_secs(config.store.history_retention_seconds),
    )
    .await
    .map_err(cluster_error)?;
    let shared = (SharedState::open(js.clone(), cluster.clone()).await).map_err(cluster_error)?;
    let outcomes = Arc::new(ClusterOutcomes {
        actions: actions.clone(),
        held: Mutex::default(),
    });
    Ok(Some(ClusterLink {
        js,
        actions,
        outcomes,
        shared,
    }))
}

/// What a started cluster link gives the router.
pub(crate) struct Started {
    /// Every source's sink: the partition stream's publisher.
    pub(crate) intake: Arc<dyn EventSink>,
    /// Pulls partitions and actions until the router stops.
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// Joins the cluster: publishes every source's events to the partitions,
/// pulls the partitions this instance prefers into `sink`, and pulls due
/// actions into `dispatcher`.
pub(crate) async fn start(
    link: &ClusterLink,
    config: &KairoConfig,
    sink: &RouterSink,
    dispatcher: Dispatcher,
    shared_pace: &crate::limits::SharedPaceSlot,
    cancel: &CancellationToken,
) -> Result<Started, RouterError> {
    let cluster = &config.cluster;
    let window = Duration::from_secs(config.store.dedupe_window_seconds);
    let local = Arc::new(RouterSink {
        source: format!("cluster:{}", cluster.stream),
        dead_letters: Some(link.outcomes.clone()),
        ..sink.clone()
    });
    let js = link.js.clone();
    let publisher = PartitionPublisher::open(js.clone(), cluster.clone(), window, local.clone())
        .await
        .map_err(cluster_error)?;
    let members = Members::join(&js, cluster).await.map_err(cluster_error)?;
    // A slot lasts an attempt at most (plus a margin) if its holder dies.
    let lease = Duration::from_millis(config.dispatch.action_timeout_ms) + Duration::from_secs(5);
    let pace = (KvPace::open(&js, cluster, lease).await).map_err(cluster_error)?;
    let _ = shared_pace.set(Arc::new(pace));
    tracing::info!(node = members.node(), partitions = cluster.partitions, stream = %cluster.stream, "cluster mode on NATS JetStream");
    let partitions = tokio::spawn(kairo_ingest::cluster::run(
        js,
        cluster.clone(),
        members,
        local.clone(),
        link.actions.clone(),
        cancel.clone(),
    ));
    let actions = tokio::spawn(pull_actions(
        link.actions.clone(),
        link.outcomes.clone(),
        dispatcher,
        sink.clock.clone(),
        Duration::from_secs(cluster.takeover_seconds),
        cancel.clone(),
    ));
    let task = tokio::spawn(async move {
        let _ = partitions.await;
        let _ = actions.await;
    });
    Ok(Started {
        intake: Arc::new(publisher),
        task,
    })
}

/// Connects to the NATS server at `url` within 10 s.
pub(crate) async fn connect_nats(
    url: &str,
    config: &KairoConfig,
) -> Result<async_nats::Client, RouterError> {
    let shown = config.redactor().redact(url).into_owned();
    tokio::time::timeout(Duration::from_secs(10), kairo_plugin_nats::connect(url))
        .await
        .map_err(|_| RouterError::NatsTimeout(shown.clone()))?
        .map_err(|source| RouterError::NatsConnect {
            url: shown,
            source: Box::new(source),
        })
}

/// Pulls due actions into the dispatcher until `stop`, and keeps the
/// messages of those waiting here alive (every third of `ack_wait`).
async fn pull_actions(
    actions: ActionQueue,
    outcomes: Arc<ClusterOutcomes>,
    dispatcher: Dispatcher,
    clock: Arc<dyn Clock>,
    ack_wait: Duration,
    stop: CancellationToken,
) {
    let jobs = loop {
        match actions.pull().await {
            Ok(jobs) => break jobs,
            Err(error) => tracing::error!(%error, "cannot pull due actions; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
    };
    tokio::pin!(jobs);
    let mut keep_alive = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(500)));
    loop {
        tokio::select! {
            job = jobs.next() => match job {
                Some(job) => take(job, &outcomes, &dispatcher, clock.now_ms()).await,
                None => break,
            },
            _ = keep_alive.tick() => outcomes.keep_alive().await,
            _ = stop.cancelled() => break,
        }
    }
}

/// Hands a pulled action to the dispatcher, holding its message until its
/// outcome is known; one that cannot be read is dropped for good.
async fn take(job: Job, outcomes: &ClusterOutcomes, dispatcher: &Dispatcher, now_ms: i64) {
    let mut action: PendingAction = match serde_json::from_slice(job.body()) {
        Ok(action) => action,
        Err(error) => {
            tracing::error!(%error, "an action in the actions stream cannot be read; dropped");
            job.drop_for_good().await;
            return;
        }
    };
    action.attempts = job.delivered() - 1;
    action.next_attempt_ms = action.next_attempt_ms.min(now_ms);
    let key = action.key();
    outcomes.lock().insert(key, Arc::new(job));
    dispatcher.enqueue(vec![action]);
}

/// The messages of the actions this instance pulled, until their outcome is
/// known: each is acknowledged, sent back for a retry, or, when the instance
/// stops before performing it, released to the others.
pub(crate) struct ClusterOutcomes {
    actions: ActionQueue,
    held: Mutex<HashMap<String, Arc<Job>>>,
}

impl ClusterOutcomes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, key: &str) -> Option<Arc<Job>> {
        self.lock().remove(key)
    }

    /// Tells JetStream that the actions waiting here are still being worked on.
    async fn keep_alive(&self) {
        let held: Vec<Arc<Job>> = self.lock().values().cloned().collect();
        for job in held {
            job.working().await;
        }
    }

    /// Sends every action still held back to the others (this instance stops).
    pub(crate) async fn release_all(&self) {
        let held: Vec<Arc<Job>> = self.lock().drain().map(|(_, job)| job).collect();
        for job in held {
            job.release().await;
        }
    }
}

#[async_trait::async_trait]
impl OutcomeHook for ClusterOutcomes {
    async fn finished(&self, entry: &HistoryEntry) {
        let body = serde_json::to_vec(entry).expect("history entries serialize");
        if let Err(error) = self.actions.record_done(body).await {
            tracing::warn!(%error, "a finished action was not recorded in JetStream (it is in this instance's history)");
        }
        if let Some(job) = self.take(&entry.request.key()) {
            job.done().await;
        }
    }

    async fn dead(&self, letter: &DeadLetter) -> bool {
        let body = serde_json::to_vec(letter).expect("dead letters serialize");
        let kept = self.actions.record_dead(&letter.id, body).await;
        if let Err(error) = &kept {
            tracing::warn!(%error, id = %letter.id, "a dead letter could not be kept in JetStream; this instance's store keeps it");
        }
        if let Some(job) = self.take(&letter.id) {
            job.done().await;
        }
        kept.is_ok()
    }

    async fn retry(&self, action: &PendingAction, wait: Duration) -> bool {
        match self.take(&action.key()) {
            Some(job) => {
                job.retry(wait).await;
                true
            }
            None => false,
        }
    }
}
