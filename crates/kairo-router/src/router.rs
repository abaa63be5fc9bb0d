//! The running router: ingest → durable inbox → rule evaluation → durable
//! outbox → dispatcher, with recovery on start and graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use kairo_core::handler::MemoryState;
use kairo_core::{Clock, Event, SystemClock};
use kairo_ingest::{EventSink, webhook_router};
use kairo_plugin::{Action, Registry};
use kairo_script::{DirWatcher, RuleStore, RuleWatcher};
use kairo_store::{HistoryEntry, Store};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::builtin::Clients;
use crate::config::KairoConfig;
use crate::directory::Directory;
use crate::dispatch::{DispatchContext, Dispatcher, InFlight};
use crate::error::RouterError;
use crate::limits::Gates;
use crate::matcher::{Matcher, Work};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::plan::Plan;
use crate::sink::RouterSink;
use crate::writer::{Retention, StoreWriter};

/// Events accepted but not yet evaluated, at most, in memory; senders wait beyond that.
const QUEUE_CAPACITY: usize = 10_000;

/// Entry point for embedding Kairo: `Router::builder().plugin(MyAction::new()).run()`.
pub struct Router;

impl Router {
    /// A builder with the default configuration and the built-in actions.
    pub fn builder() -> RouterBuilder {
        RouterBuilder {
            config: KairoConfig::default(),
            extra: Vec::new(),
            cancel: CancellationToken::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Configures and starts a router.
pub struct RouterBuilder {
    config: KairoConfig,
    extra: Vec<Arc<dyn Action>>,
    cancel: CancellationToken,
    clock: Arc<dyn Clock>,
}

impl RouterBuilder {
    /// Uses `config` instead of the defaults.
    pub fn config(mut self, config: KairoConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds an action; it replaces a built-in action of the same name.
    pub fn plugin(mut self, action: impl Action) -> Self {
        self.extra.push(Arc::new(action));
        self
    }

    /// Stops the router when `token` is cancelled (as well as on signals with [`RouterBuilder::run`]).
    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Uses `clock` for time (tests inject a manual clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts serving and runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> Result<(), RouterError> {
        crate::shutdown::cancel_on_signal(self.cancel.clone());
        self.start().await?.wait().await
    }

    /// Opens the store, recovers unfinished work, loads rules and starts every task.
    pub async fn start(self) -> Result<RunningRouter, RouterError> {
        let config = self.config.clone();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kairo/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(RouterError::HttpClient)?;
        let plan = Plan::compile(
            &config,
            &config.rules.dir,
            &config.handlers.dir,
            &self.extra,
            http.clone(),
        )?;
        crate::rules::log_reload(&plan.rules_report);
        for error in &plan.handler_errors {
            tracing::error!(target: "kairo::handlers", "{error}");
        }
        let Plan {
            clients,
            registry,
            plugins,
            rules,
            handlers,
            ..
        } = plan;
        tracing::info!(
            rules = rules.snapshot().len(),
            handlers = handlers.snapshot().handlers().len(),
            "rules and event handlers loaded"
        );
        let missing = config.soracom.missing_credentials();
        if !missing.is_empty() {
            tracing::warn!(
                "SORACOM actions will be refused until {} are set",
                missing.join(" and ")
            );
        }
        let clock = self.clock;

        let store_path = config.store.path.clone();
        let store = tokio::task::spawn_blocking(move || {
            Store::open_with_cache(store_path, config.store.cache_mib << 20)
        })
        .await
        .map_err(|e| RouterError::Task("store opening", e))?
        .map_err(|source| RouterError::Store {
            path: config.store.path.clone(),
            source: Box::new(source),
        })?;
        let store = Arc::new(store);
        let retention = Retention {
            dedupe_window_ms: (config.store.dedupe_window_seconds * 1000) as i64,
            history_ms: (config.store.history_retention_seconds * 1000) as i64,
            event_ms: (config.store.event_retention_seconds * 1000) as i64,
            event_count: config.store.event_retention_count,
        };
        let (writer, writer_thread) =
            StoreWriter::start(store.clone(), clock.clone(), retention, self.cancel.clone());

        let registry = Arc::new(ArcSwap::from_pointee(registry));
        let plugin_watcher = match &config.plugins.dir {
            Some(dir) if config.rules.watch && dir.is_dir() => {
                let reload = PluginReload {
                    plugins: plugins.clone(),
                    config: config.clone(),
                    clients: clients.clone(),
                    extra: self.extra.clone(),
                    registry: registry.clone(),
                    rules: rules.clone(),
                    runtime: tokio::runtime::Handle::current(),
                };
                Some(
                    DirWatcher::start(dir, move || reload.run())
                        .map_err(|source| watch_error("plugins", dir, source))?,
                )
            }
            _ => None,
        };
        let handler_watcher = if config.rules.watch && config.handlers.dir.is_dir() {
            let watched = handlers.clone();
            Some(
                DirWatcher::start(&config.handlers.dir, move || watched.reload_and_log())
                    .map_err(|source| watch_error("handlers", &config.handlers.dir, source))?,
            )
        } else {
            None
        };
        let watcher = if config.rules.watch {
            Some(
                RuleWatcher::start(rules.clone(), crate::rules::log_reload)
                    .map_err(|source| watch_error("rules", &config.rules.dir, source))?,
            )
        } else {
            None
        };

        let metrics = Arc::new(Metrics::default());
        let stats = Arc::new(crate::stats::Stats::default());
        let in_flight = Arc::new(InFlight::default());
        let cancel = self.cancel;
        let drain = CancellationToken::new();
        let gates = Gates::new(&config.dispatch.limits, config.dispatch.family_concurrency);
        let shared_pace = gates.shared_pace();
        // SIM lookups go through the SORACOM actions' gate: one budget for the API.
        let soracom_gate = gates.get(kairo_plugin_soracom::FAMILY);
        let link = crate::cluster::connect(&config).await?;
        let (dispatcher, scheduler) = Dispatcher::start(
            DispatchContext {
                registry,
                http,
                gates,
                config: config.dispatch.clone(),
                metrics: metrics.clone(),
                writer: writer.clone(),
                in_flight: in_flight.clone(),
                clock: clock.clone(),
                cancel: cancel.child_token(),
                redactor: config.redactor(),
                outcomes: (link.as_ref()).map(|link| link.outcomes.clone() as Arc<_>),
            },
            drain.clone(),
        );

        let (work_tx, work_rx) = mpsc::channel::<Work>(QUEUE_CAPACITY);
        recover(&store, &dispatcher, &work_tx, &in_flight).await?;
        let state = MemoryState::of(
            store
                .handler_state()
                .map_err(|source| RouterError::Store {
                    path: config.store.path.clone(),
                    source: Box::new(source),
                })?
                .into_iter()
                .collect(),
        );
        let matcher = Matcher {
            landing: Default::default(),
            shared: link.as_ref().map(|link| crate::partition::Shared {
                state: link.shared.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
            rules: rules.clone(),
            handlers: handlers.clone(),
            pipeline: Pipeline {
                directory: Directory::new(
                    clients.soracom.clone(),
                    soracom_gate,
                    tokio::runtime::Handle::current(),
                ),
                state: Arc::new(RwLock::new(state)),
            },
            last_prune: std::time::Instant::now(),
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            writer: writer.clone(),
            dedupe_window_ms: retention.dedupe_window_ms,
            metrics: metrics.clone(),
            in_flight: in_flight.clone(),
            clock: clock.clone(),
            stats: stats.clone(),
            per_rule_metrics: config.server.metrics_per_rule,
        }
        .spawn(work_rx);

        let sink = Arc::new(RouterSink {
            work: work_tx,
            writer: writer.clone(),
            metrics: metrics.clone(),
            in_flight: in_flight.clone(),
            clock: clock.clone(),
            source: "webhook".into(),
            dead_letters: None,
        });
        let watch_status = Arc::new(std::sync::Mutex::new(crate::watcher::WatchStatus {
            enabled: config.soracom.watch.enabled,
            interval_seconds: config.soracom.watch.interval_seconds,
            ..Default::default()
        }));
        // In cluster mode every source stores its events in the partition
        // stream, and the partitions this instance holds come back to `sink`.
        let cluster = match &link {
            Some(link) => Some(
                crate::cluster::start(
                    link,
                    &config,
                    &sink,
                    dispatcher.clone(),
                    &shared_pace,
                    &cancel,
                )
                .await?,
            ),
            None => None,
        };
        let intake: Arc<dyn EventSink> = match &cluster {
            Some(started) => started.intake.clone(),
            None => sink.clone(),
        };
        let cluster_actions = link.as_ref().map(|link| link.actions.clone());
        let held = link.map(|link| link.outcomes);
        let watch_task = config.soracom.watch.enabled.then(|| {
            let watcher = crate::watcher::Watcher {
                client: clients.soracom.clone(),
                config: config.soracom.watch.clone(),
                store: store.clone(),
                writer: writer.clone(),
                sink: match &cluster {
                    Some(started) => started.intake.clone(),
                    None => Arc::new(RouterSink {
                        source: "soracom-watch".into(),
                        ..sink.as_ref().clone()
                    }),
                },
                clock: clock.clone(),
                metrics: metrics.clone(),
                status: watch_status.clone(),
            };
            tokio::spawn(watcher.run(cancel.clone()))
        });
        let nats = match &config.nats.url {
            Some(url) => Some(subscribe_nats(url, &config).await?),
            None => None,
        };
        let nats_task = nats.map(|source| {
            let sink: Arc<dyn EventSink> = match &cluster {
                Some(started) => started.intake.clone(),
                None => Arc::new(RouterSink {
                    source: match &config.nats.stream {
                        Some(stream) => format!("jetstream:{stream}"),
                        None => format!("nats:{}", config.nats.subject),
                    },
                    ..sink.as_ref().clone()
                }),
            };
            tokio::spawn(kairo_ingest::nats::run(source, sink, cancel.clone()))
        });
        let cluster_task = cluster.map(|started| started.task);
        let app = webhook_router(intake, config.server.clone())
            .merge(admin::router(admin::AdminState {
                store: store.clone(),
                dispatcher: dispatcher.clone(),
                clock: clock.clone(),
                token: config.server.token.clone(),
                rules: rules.clone(),
                handlers: handlers.clone(),
                stats,
                watch: watch_status,
                started: std::time::Instant::now(),
                health: writer.health().clone(),
                cluster_actions,
            }))
            .merge(crate::console::router());
        drop(dispatcher);
        drop(writer);
        let listen = config.listen_addr().ok_or_else(|| {
            RouterError::Config(vec!["server.listen: not a socket address".into()])
        })?;
        let bind_error = |source| RouterError::Bind {
            addr: listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        tracing::info!(%addr, store = %store.path().display(), "webhook listening: POST /v1/events, GET /healthz, GET /metrics");

        let server_cancel = cancel.clone();
        let server_config = config.server.clone();
        let task = tokio::spawn(async move {
            kairo_ingest::server::serve(listener, app, &server_config, server_cancel).await;
            if let Some(nats_task) = nats_task {
                nats_task
                    .await
                    .map_err(|e| RouterError::Task("NATS ingest", e))?;
            }
            if let Some(watch_task) = watch_task {
                watch_task
                    .await
                    .map_err(|e| RouterError::Task("SORACOM watcher", e))?;
            }
            if let Some(cluster_task) = cluster_task {
                cluster_task
                    .await
                    .map_err(|e| RouterError::Task("cluster partitions", e))?;
            }
            // Ingest has stopped: evaluate what was accepted, then let the
            // dispatcher finish due work within its grace period.
            tracing::info!("ingest stopped");
            matcher.await.map_err(|e| RouterError::Task("matcher", e))?;
            tracing::info!("accepted events evaluated");
            drain.cancel();
            scheduler
                .await
                .map_err(|e| RouterError::Task("dispatcher", e))?;
            if let Some(held) = held {
                // Actions pulled but not performed: the other instances take them now.
                held.release_all().await;
            }
            tracing::info!("dispatcher stopped");
            tokio::task::spawn_blocking(move || writer_thread.join())
                .await
                .map_err(|e| RouterError::Task("store writer", e))?
                .map_err(|_| RouterError::WriterPanicked)?;
            drop(watcher);
            drop(handler_watcher);
            drop(plugin_watcher);
            tracing::info!("stopped");
            Ok(())
        });
        Ok(RunningRouter {
            addr,
            rules,
            store,
            in_flight,
            metrics,
            cancel,
            task,
        })
    }
}

/// Connects to NATS and subscribes as `[nats]` says; any problem fails the start.
async fn subscribe_nats(
    url: &str,
    config: &KairoConfig,
) -> Result<kairo_ingest::nats::NatsSource, RouterError> {
    let client = crate::cluster::connect_nats(url, config).await?;
    let pinned =
        (config.cluster.enabled()).then(|| Duration::from_secs(config.cluster.takeover_seconds));
    kairo_ingest::nats::subscribe(client, &config.nats, pinned)
        .await
        .map_err(|e| RouterError::NatsIngest(Box::new(e)))
}

/// Reloads dynamic plugins when `[plugins] dir` changes: loads new and
/// changed libraries (one that no longer loads keeps its previous version,
/// as rules and handlers do), builds the registry anew, swaps it in for the
/// dispatcher, and recompiles the rules with an engine that knows every
/// plugin's function. A section a plugin refuses leaves the running set as it was.
struct PluginReload {
    plugins: Arc<crate::plugins::PluginDir>,
    config: KairoConfig,
    clients: Clients,
    extra: Vec<Arc<dyn Action>>,
    registry: Arc<ArcSwap<Registry>>,
    rules: Arc<RuleStore>,
    runtime: tokio::runtime::Handle,
}

impl PluginReload {
    fn run(&self) {
        // Plugins (the email transport's pool, say) need the async runtime
        // when built and dropped; the watcher calls this from its own thread.
        let _runtime = self.runtime.enter();
        let (dynamic, problems) = self.plugins.rescan();
        for problem in problems {
            tracing::error!(target: "kairo::plugins", "{problem} (previous version, if any, kept)");
        }
        match crate::plugins::assemble(&self.config, &self.clients, &self.extra, dynamic) {
            Ok(registry) => {
                let engine = Arc::new(crate::rules::engine(&self.config, &registry));
                tracing::info!(target: "kairo::plugins", plugins = ?registry.names(), "plugins reloaded");
                self.registry.store(Arc::new(registry));
                crate::rules::log_reload(&self.rules.replace_engine(engine));
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!(target: "kairo::plugins", "{error} (plugins unchanged)");
                }
            }
        }
    }
}

fn watch_error(what: &'static str, path: &std::path::Path, source: notify::Error) -> RouterError {
    RouterError::Watch {
        what,
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// Hands the previous run's unfinished work back: pending actions to the
/// dispatcher, accepted but unevaluated events to the matcher.
async fn recover(
    store: &Arc<Store>,
    dispatcher: &Dispatcher,
    work: &mpsc::Sender<Work>,
    in_flight: &Arc<InFlight>,
) -> Result<(), RouterError> {
    let reader = store.clone();
    let (outbox, inbox) = tokio::task::spawn_blocking(move || {
        Ok::<_, kairo_store::StoreError>((reader.outbox()?, reader.inbox()?))
    })
    .await
    .map_err(|e| RouterError::Task("recovery", e))?
    .map_err(|source| RouterError::Store {
        path: store.path().to_path_buf(),
        source: Box::new(source),
    })?;
    if !(outbox.is_empty() && inbox.is_empty()) {
        tracing::info!(
            actions = outbox.len(),
            events = inbox.len(),
            "resuming unfinished work from the store"
        );
    }
    dispatcher.enqueue(outbox);
    let mut recovered = Vec::with_capacity(inbox.len());
    for stored in inbox {
        let id = stored.id().to_string();
        match Event::from_value(stored.event) {
            Ok(event) => recovered.push(event),
            Err(error) => {
                tracing::error!(id, %error, "stored event no longer parses; left in the inbox")
            }
        }
    }
    in_flight.add(recovered.len());
    let work = work.clone();
    tokio::spawn(async move {
        for event in recovered {
            if work.send(Work::Accepted(event)).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// A started router.
pub struct RunningRouter {
    addr: SocketAddr,
    rules: Arc<RuleStore>,
    store: Arc<Store>,
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), RouterError>>,
}

impl RunningRouter {
    /// The address the webhook listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The rule store (for reloading by hand).
    pub fn rules(&self) -> &Arc<RuleStore> {
        &self.rules
    }

    /// The durable store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Finished actions (succeeded or given up), oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.store.history(usize::MAX).unwrap_or_default()
    }

    /// The router's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Waits until every accepted event has been evaluated and its actions finished.
    pub async fn idle(&self) {
        self.in_flight.wait_idle().await
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn shutdown(self) -> Result<(), RouterError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the router has stopped.
    pub async fn wait(self) -> Result<(), RouterError> {
        self.task
            .await
            .map_err(|e| RouterError::Task("router", e))?
    }
}
