//! The running router: ingest → durable inbox → rule evaluation → durable
//! outbox → dispatcher, with recovery on start and graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use kairo_core::handler::MemoryState;
use kairo_core::{Clock, Event, SystemClock};
use kairo_ingest::{EventSink, SinkError, webhook_router};
use kairo_plugin::{Action, Registry};
use kairo_script::{DirWatcher, ReloadReport, RuleStore, RuleWatcher};
use kairo_store::{
    Batch, DeadLetter, DeadLetterKind, HistoryEntry, PendingAction, Store, StoredEvent,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::builtin::Clients;
use crate::config::KairoConfig;
use crate::dispatch::{DispatchContext, Dispatcher, InFlight};
use crate::handlers::HandlerStore;
use crate::limits::Gates;
use crate::metrics::{Metrics, RejectLabels};
use crate::writer::{Retention, StoreWriter};

/// Events accepted but not yet evaluated, at most, in memory; senders wait beyond that.
const QUEUE_CAPACITY: usize = 10_000;
/// How often the matcher drops stale handler state from memory.
const STATE_PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Events evaluated together and committed in one transaction, at most.
const EVALUATION_BATCH: usize = 256;

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

    /// The actions this router will have: built-ins, added plugins and dynamic
    /// plugins from `[plugins] dir`, each configured from its section.
    pub fn registry(&self, clients: &Clients) -> anyhow::Result<Registry> {
        crate::plugins::registry(&self.config, clients, &self.extra)
            .map_err(|errors| anyhow::anyhow!("plugins:\n  {}", errors.join("\n  ")))
    }

    /// Starts serving and runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::shutdown::cancel_on_signal(self.cancel.clone());
        self.start().await?.wait().await
    }

    /// Opens the store, recovers unfinished work, loads rules and starts every task.
    pub async fn start(self) -> anyhow::Result<RunningRouter> {
        let config = self.config.clone();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kairo/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let clients = Clients::new(&config, http.clone());
        let registry = self.registry(&clients)?;
        let missing = crate::builtin::soracom_client_config(&config).missing_credentials();
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
        .await?
        .with_context(|| format!("opening store.path {}", config.store.path.display()))?;
        let store = Arc::new(store);
        let retention = Retention {
            dedupe_window_ms: (config.store.dedupe_window_seconds * 1000) as i64,
            history_ms: (config.store.history_retention_seconds * 1000) as i64,
        };
        let (writer, writer_thread) =
            StoreWriter::start(store.clone(), clock.clone(), retention, self.cancel.clone());

        let rules = load_rules(&config, &registry)?;
        let registry = Arc::new(ArcSwap::from_pointee(registry));
        let plugin_watcher = match &config.plugins.dir {
            Some(dir) if config.rules.watch && dir.is_dir() => {
                let reload = PluginReload {
                    config: config.clone(),
                    clients: clients.clone(),
                    extra: self.extra.clone(),
                    registry: registry.clone(),
                    rules: rules.clone(),
                    runtime: tokio::runtime::Handle::current(),
                };
                Some(
                    DirWatcher::start(dir, move || reload.run())
                        .with_context(|| format!("watching plugins directory {}", dir.display()))?,
                )
            }
            _ => None,
        };
        let (handlers, handler_errors) = HandlerStore::load(
            &config.handlers.dir,
            config.plugins.email.operator_address.clone(),
        );
        for error in &handler_errors {
            tracing::error!(target: "kairo::handlers", "{error}");
        }
        let handlers = Arc::new(handlers);
        tracing::info!(dir = %config.handlers.dir.display(), handlers = handlers.snapshot().handlers().len(), "event handlers loaded");
        let handler_watcher = if config.rules.watch && config.handlers.dir.is_dir() {
            let watched = handlers.clone();
            Some(
                DirWatcher::start(&config.handlers.dir, move || {
                    let report = watched.reload();
                    for error in &report.errors {
                        tracing::error!(target: "kairo::handlers", "{error} (previous version, if any, kept)");
                    }
                    if !report.changed.is_empty() {
                        tracing::info!(
                            target: "kairo::handlers",
                            files = ?report.changed, handlers = watched.snapshot().handlers().len(),
                            "handlers reloaded"
                        );
                    }
                })
                .with_context(|| format!("watching handlers directory {}", config.handlers.dir.display()))?,
            )
        } else {
            None
        };
        let watcher = if config.rules.watch {
            Some(
                RuleWatcher::start(rules.clone(), log_reload).with_context(|| {
                    format!("watching rules directory {}", config.rules.dir.display())
                })?,
            )
        } else {
            None
        };

        let metrics = Arc::new(Metrics::default());
        let in_flight = Arc::new(InFlight::default());
        let cancel = self.cancel;
        let drain = CancellationToken::new();
        let gates = Gates::new(&config.dispatch.limits, config.dispatch.family_concurrency);
        // SIM lookups go through the SORACOM actions' gate: one budget for the API.
        let soracom_gate = gates.get(kairo_plugin_soracom::FAMILY);
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
            },
            drain.clone(),
        );

        let (events_tx, events_rx) = mpsc::channel::<Event>(QUEUE_CAPACITY);
        recover(&store, &dispatcher, &events_tx, &in_flight).await?;
        let state = Arc::new(RwLock::new(MemoryState {
            values: store.handler_state()?.into_iter().collect(),
            changed: Vec::new(),
        }));
        let matcher = Matcher {
            rules: rules.clone(),
            handlers: handlers.clone(),
            directory: crate::directory::Directory::new(
                Some(clients.soracom.clone()),
                soracom_gate,
                tokio::runtime::Handle::current(),
            ),
            state,
            last_prune: std::time::Instant::now(),
            dispatcher: dispatcher.clone(),
            writer: writer.clone(),
            metrics: metrics.clone(),
            in_flight: in_flight.clone(),
            clock: clock.clone(),
        }
        .spawn(events_rx);

        let sink = Arc::new(RouterSink {
            events: events_tx,
            writer: writer.clone(),
            metrics: metrics.clone(),
            in_flight: in_flight.clone(),
            clock: clock.clone(),
            source: "webhook".into(),
        });
        let nats = match &config.nats.url {
            Some(url) => Some(subscribe_nats(url, &config).await?),
            None => None,
        };
        let nats_task = nats.map(|source| {
            let sink: Arc<dyn EventSink> = Arc::new(RouterSink {
                source: match &config.nats.stream {
                    Some(stream) => format!("jetstream:{stream}"),
                    None => format!("nats:{}", config.nats.subject),
                },
                ..sink.as_ref().clone()
            });
            tokio::spawn(kairo_ingest::nats::run(source, sink, cancel.clone()))
        });
        let app =
            webhook_router(sink, config.server.webhook()).merge(admin::router(admin::AdminState {
                store: store.clone(),
                dispatcher: dispatcher.clone(),
                clock: clock.clone(),
                token: config.server.token.clone(),
            }));
        drop(dispatcher);
        drop(writer);
        let listen = config.listen_addr();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding server.listen {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, store = %store.path().display(), "webhook listening: POST /v1/events, GET /healthz, GET /metrics");

        let server_cancel = cancel.clone();
        let limits = config.server.limits();
        let task = tokio::spawn(async move {
            kairo_ingest::server::serve(listener, app, limits, server_cancel).await;
            if let Some(nats_task) = nats_task {
                nats_task.await.context("NATS ingest")?;
            }
            // Ingest has stopped: evaluate what was accepted, then let the
            // dispatcher finish due work within its grace period.
            tracing::info!("ingest stopped");
            matcher.await.context("matcher thread")?;
            tracing::info!("accepted events evaluated");
            drain.cancel();
            scheduler.await.context("dispatcher")?;
            tracing::info!("dispatcher stopped");
            tokio::task::spawn_blocking(move || writer_thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
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
) -> anyhow::Result<kairo_ingest::nats::NatsSource> {
    let shown = config.redactor().redact(url).into_owned();
    let client = tokio::time::timeout(Duration::from_secs(10), kairo_plugin_nats::connect(url))
        .await
        .map_err(|_| anyhow::anyhow!("nats.url {shown}: no answer within 10 s"))?
        .map_err(|e| anyhow::anyhow!("connecting to nats.url {shown}: {e}"))?;
    let ingest = kairo_ingest::nats::NatsIngestConfig {
        subject: config.nats.subject.clone(),
        queue_group: config.nats.queue_group.clone(),
        stream: config.nats.stream.clone(),
        durable: config.nats.durable.clone(),
        create_stream: config.nats.create_stream,
        max_ack_pending: config.nats.max_ack_pending,
        ack_wait: Duration::from_secs(config.nats.ack_wait_seconds),
    };
    Ok(kairo_ingest::nats::subscribe(client, &ingest).await?)
}

/// Reloads dynamic plugins when `[plugins] dir` changes: builds the registry
/// anew (libraries already loaded are reused), swaps it in for the
/// dispatcher, and recompiles the rules with an engine that knows every
/// plugin's function. On any error the running set stays as it was.
struct PluginReload {
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
        match crate::plugins::registry(&self.config, &self.clients, &self.extra) {
            Ok(registry) => {
                let engine = Arc::new(crate::check::engine(&self.config, &registry));
                tracing::info!(target: "kairo::plugins", plugins = ?registry.names(), "plugins reloaded");
                self.registry.store(Arc::new(registry));
                log_reload(&self.rules.replace_engine(engine));
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!(target: "kairo::plugins", "{error} (plugins unchanged)");
                }
            }
        }
    }
}

fn load_rules(config: &KairoConfig, registry: &Registry) -> anyhow::Result<Arc<RuleStore>> {
    let engine = Arc::new(crate::check::engine(config, registry));
    let (rules, report) = RuleStore::load(&config.rules.dir, engine);
    log_reload(&report);
    tracing::info!(dir = %config.rules.dir.display(), rules = rules.snapshot().len(), "rules loaded");
    Ok(Arc::new(rules))
}

/// Hands the previous run's unfinished work back: pending actions to the
/// dispatcher, accepted but unevaluated events to the matcher.
async fn recover(
    store: &Arc<Store>,
    dispatcher: &Dispatcher,
    events: &mpsc::Sender<Event>,
    in_flight: &Arc<InFlight>,
) -> anyhow::Result<()> {
    let reader = store.clone();
    let (outbox, inbox) = tokio::task::spawn_blocking(move || {
        Ok::<_, kairo_store::StoreError>((reader.outbox()?, reader.inbox()?))
    })
    .await??;
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
        match Event::from_value(stored.event.clone()) {
            Ok(event) => recovered.push(event),
            Err(error) => {
                tracing::error!(id = stored.id(), %error, "stored event no longer parses; left in the inbox")
            }
        }
    }
    in_flight.add(recovered.len());
    let events = events.clone();
    tokio::spawn(async move {
        for event in recovered {
            if events.send(event).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn log_reload(report: &ReloadReport) {
    for error in &report.errors {
        tracing::error!(target: "kairo::rules", "{error} (previous version, if any, kept)");
    }
    if !(report.added.is_empty() && report.updated.is_empty() && report.removed.is_empty()) {
        tracing::info!(
            target: "kairo::rules",
            added = ?report.added, updated = ?report.updated, removed = ?report.removed, "rules reloaded"
        );
    }
}

/// Evaluates events on a dedicated thread (rule evaluation is CPU work;
/// batches spread over all cores), runs the event handlers, and commits each
/// batch's action requests and handler state to the store, removing the
/// events from the inbox in the same transaction; then hands the actions to
/// the dispatcher.
struct Matcher {
    rules: Arc<RuleStore>,
    handlers: Arc<HandlerStore>,
    directory: crate::directory::Directory,
    state: Arc<RwLock<MemoryState>>,
    last_prune: std::time::Instant,
    dispatcher: Dispatcher,
    writer: StoreWriter,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    clock: Arc<dyn Clock>,
}

impl Matcher {
    fn spawn(mut self, mut events: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            while let Some(first) = events.blocking_recv() {
                let mut batch_events = vec![first];
                while batch_events.len() < EVALUATION_BATCH {
                    match events.try_recv() {
                        Ok(event) => batch_events.push(event),
                        Err(_) => break,
                    }
                }
                self.evaluate(&batch_events);
                self.in_flight.done(batch_events.len());
            }
        })
    }

    fn evaluate(&mut self, batch_events: &[Event]) {
        let rules = self.rules.snapshot();
        let handlers = self.handlers.snapshot();
        let now = self.clock.now_ms();
        let mut batch = Batch::default();
        let mut actions = Vec::new();
        // Handlers and traffic counters see events with the SIM and group
        // filled in; without handlers or stateful rules there is nothing to do.
        let stateful = !handlers.handlers().is_empty() || rules.uses_state();
        let need_group = handlers
            .handlers()
            .iter()
            .any(|h| h.active && matches!(h.target, kairo_core::handler::Target::Group(_)));
        let enriched: Vec<std::borrow::Cow<'_, Event>> = if stateful {
            self.directory.enrich_batch(batch_events, need_group)
        } else {
            batch_events
                .iter()
                .map(std::borrow::Cow::Borrowed)
                .collect()
        };
        let evaluations =
            crate::pipeline::evaluate(&rules, &handlers, &self.state, batch_events, &enriched, now);
        for (event, evaluation) in batch_events.iter().zip(evaluations) {
            for error in &evaluation.errors {
                self.metrics.rule_errors.inc();
                tracing::warn!(target: "kairo::rules", rule = %error.rule, event_id = %error.event_id, "{}", error.message);
            }
            let requests = evaluation.requests;
            let pending: Vec<PendingAction> = requests
                .into_iter()
                .map(|request| PendingAction::new(request, now))
                .collect();
            actions.extend(pending.iter().cloned());
            batch.evaluated.push((event.id.clone(), pending));
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        batch.state = state.take_changes();
        if self.last_prune.elapsed() >= STATE_PRUNE_EVERY {
            self.last_prune = std::time::Instant::now();
            state.prune(&kairo_core::handler::Retention::as_of(now));
        }
        drop(state);
        // Retried until it lands: the evaluation (and the handler state it
        // advanced) is never dropped while the router runs.
        match self.writer.commit_until_done_blocking(batch) {
            Ok(_) => self.dispatcher.enqueue(actions),
            Err(error) => tracing::error!(
                %error, events = batch_events.len(),
                "could not record evaluations before shutdown; the events stay in the inbox and are evaluated again on the next start"
            ),
        }
    }
}

#[derive(Clone)]
struct RouterSink {
    events: mpsc::Sender<Event>,
    writer: StoreWriter,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    clock: Arc<dyn Clock>,
    source: String,
}

impl RouterSink {
    /// Commits `events` to the inbox and hands the new ones to the matcher;
    /// returns how many were duplicates.
    async fn commit_and_hand_off(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        let now = self.clock.now_ms();
        let stored = events
            .iter()
            .map(|event| StoredEvent {
                event: event.to_value(),
                received_at_ms: now,
                source: self.source.clone(),
            })
            .collect();
        let fresh = self
            .writer
            .commit(Batch {
                accept: stored,
                ..Batch::default()
            })
            .await
            .map_err(SinkError)?;
        let total = events.len();
        let mut duplicates = 0;
        for (event, is_new) in events.into_iter().zip(fresh) {
            if !is_new {
                duplicates += 1;
                continue;
            }
            self.in_flight.add(1);
            if self.events.send(event).await.is_err() {
                // Durable already: evaluated on the next start.
                self.in_flight.done(1);
            }
        }
        self.metrics
            .events_accepted
            .inc_by((total - duplicates) as u64);
        self.metrics.events_duplicate.inc_by(duplicates as u64);
        Ok(duplicates)
    }
}

#[async_trait]
impl EventSink for RouterSink {
    async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError> {
        // The commit and the hand-off run in their own task: the caller (an
        // HTTP handler whose client hung up, say) may be dropped at any await,
        // and whatever the store commits must still reach the matcher.
        let sink = self.clone();
        tokio::spawn(async move { sink.commit_and_hand_off(events).await })
            .await
            .map_err(|e| SinkError(format!("accepting events failed: {e}")))?
    }

    async fn reject_input(
        &self,
        source: &str,
        input: &[u8],
        reason: &str,
    ) -> Result<(), SinkError> {
        const KEPT: usize = 64 * 1024;
        let now = self.clock.now_ms();
        let hash = blake3::hash(input).to_hex();
        let letter = DeadLetter {
            id: format!("input/{now}/{}", &hash[..16]),
            kind: DeadLetterKind::Input,
            action: None,
            input: Some(String::from_utf8_lossy(&input[..input.len().min(KEPT)]).into_owned()),
            source: Some(source.to_string()),
            error: reason.to_string(),
            failed_at_ms: now,
        };
        tracing::warn!(source, reason, id = %letter.id, "input rejected; kept as a dead letter");
        self.writer
            .commit(Batch {
                dead: vec![letter],
                ..Batch::default()
            })
            .await
            .map(|_| ())
            .map_err(SinkError)
    }

    fn rejected(&self, reason: &'static str) {
        self.metrics
            .events_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    fn not_ready(&self) -> Option<String> {
        self.writer
            .health()
            .problem()
            .map(|problem| format!("the store cannot commit: {problem}"))
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}

/// A started router.
pub struct RunningRouter {
    addr: SocketAddr,
    rules: Arc<RuleStore>,
    store: Arc<Store>,
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
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
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the router has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("router task")?
    }
}
