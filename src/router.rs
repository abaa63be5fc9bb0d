//! The running router: webhook → rule evaluation → dispatcher, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use kairo_core::Event;
use kairo_ingest::{EventSink, SinkError, WebhookConfig, webhook_router};
use kairo_plugin::{Action, Registry};
use kairo_script::{Limits, ReloadReport, RuleStore, RuleWatcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::builtin;
use crate::config::KairoConfig;
use crate::dispatch::{ActionRecord, Dispatcher, History, InFlight};
use crate::metrics::{Metrics, RejectLabels};

/// Events accepted but not yet evaluated, at most; senders wait beyond that.
const QUEUE_CAPACITY: usize = 10_000;
/// How long shutdown waits for in-flight actions.
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);

/// Entry point for embedding Kairo: `Router::builder().plugin(MyAction::new()).run()`.
pub struct Router;

impl Router {
    /// A builder with the default configuration and the built-in actions.
    pub fn builder() -> RouterBuilder {
        RouterBuilder {
            config: KairoConfig::default(),
            extra: Vec::new(),
            cancel: CancellationToken::new(),
        }
    }
}

/// Configures and starts a router.
pub struct RouterBuilder {
    config: KairoConfig,
    extra: Vec<Arc<dyn Action>>,
    cancel: CancellationToken,
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

    /// Stops the router when `token` is cancelled (instead of only on signals).
    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The actions this router will have: built-ins plus added plugins.
    pub fn registry(&self, http: &reqwest::Client) -> Registry {
        let mut registry = builtin::registry(&self.config, http);
        for action in &self.extra {
            registry.register(action.clone());
        }
        registry
    }

    /// Starts serving and runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> anyhow::Result<()> {
        crate::shutdown::cancel_on_signal(self.cancel.clone());
        self.start().await?.wait().await
    }

    /// Binds the listener, loads rules and starts every task.
    pub async fn start(self) -> anyhow::Result<RunningRouter> {
        let config = self.config.clone();
        if config.nats.url.is_some() {
            anyhow::bail!(
                "nats.url is set, but this build of Kairo has no NATS ingest yet; remove [nats] url"
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kairo/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let registry = self.registry(&http);
        let missing = builtin::soracom_client_config(&config).missing_credentials();
        if !missing.is_empty() {
            tracing::warn!(
                "SORACOM actions will be refused until {} are set",
                missing.join(" and ")
            );
        }

        let limits = Limits {
            max_operations: config.rules.max_operations,
            ..Limits::default()
        };
        let engine = Arc::new(kairo_script::engine(limits));
        let (rules, report) = RuleStore::load(&config.rules.dir, engine);
        let rules = Arc::new(rules);
        log_reload(&report);
        tracing::info!(dir = %config.rules.dir.display(), rules = rules.snapshot().len(), "rules loaded");
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
        let history = Arc::new(History::default());
        let in_flight = Arc::new(InFlight::default());
        let cancel = self.cancel;
        let dispatcher = Dispatcher::new(
            registry,
            http,
            config.dispatch.clone(),
            metrics.clone(),
            history.clone(),
            in_flight.clone(),
            cancel.clone(),
        );

        let (events_tx, events_rx) = mpsc::channel::<Event>(QUEUE_CAPACITY);
        let matcher = spawn_matcher(
            events_rx,
            rules.clone(),
            dispatcher.clone(),
            metrics.clone(),
            in_flight.clone(),
        );

        let sink = Arc::new(RouterSink {
            events: events_tx,
            metrics: metrics.clone(),
            in_flight: in_flight.clone(),
        });
        let app = webhook_router(
            sink,
            WebhookConfig {
                token: config.server.token.clone(),
                max_body_bytes: config.server.max_body_bytes,
            },
        );
        let listen = config.listen_addr();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding server.listen {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "webhook listening: POST /v1/events, GET /healthz, GET /metrics");

        let server_cancel = cancel.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_cancel.cancelled().await })
                .await
                .context("serving HTTP")?;
            // The server (and with it the only event sender) is gone: let the
            // matcher finish what was accepted, then drain the dispatcher.
            matcher.await.context("matcher thread")?;
            let left = dispatcher.drain(DRAIN_DEADLINE).await;
            if left > 0 {
                tracing::warn!(
                    left,
                    "shutdown deadline reached with actions still in flight"
                );
            }
            drop(watcher);
            tracing::info!("stopped");
            Ok(())
        });
        Ok(RunningRouter {
            addr,
            rules,
            history,
            in_flight,
            metrics,
            cancel,
            task,
        })
    }
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

/// Evaluates events on a dedicated thread (rule evaluation is CPU work) and
/// hands the resulting action requests to the dispatcher.
fn spawn_matcher(
    mut events: mpsc::Receiver<Event>,
    rules: Arc<RuleStore>,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
) -> tokio::task::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        while let Some(event) = events.blocking_recv() {
            let evaluation = rules.snapshot().evaluate(&event);
            for error in &evaluation.errors {
                metrics.rule_errors.inc();
                tracing::warn!(target: "kairo::rules", rule = %error.rule, event_id = %error.event_id, "{}", error.message);
            }
            in_flight.add(evaluation.requests.len());
            for request in evaluation.requests {
                tracing::debug!(event_id = %request.event_id, rule = %request.rule, action = %request.action, "action requested");
                dispatcher.submit(request, &runtime);
            }
            in_flight.done(1);
        }
    })
}

struct RouterSink {
    events: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
}

#[async_trait]
impl EventSink for RouterSink {
    async fn accept(&self, events: Vec<Event>) -> Result<(), SinkError> {
        let count = events.len();
        self.in_flight.add(count);
        for (sent, event) in events.into_iter().enumerate() {
            if self.events.send(event).await.is_err() {
                self.in_flight.done(count - sent);
                return Err(SinkError("the router is shutting down".into()));
            }
        }
        self.metrics.events_accepted.inc_by(count as u64);
        Ok(())
    }

    fn rejected(&self, reason: &'static str) {
        self.metrics
            .events_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}

/// A started router.
pub struct RunningRouter {
    addr: SocketAddr,
    rules: Arc<RuleStore>,
    history: Arc<History>,
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

    /// Outcomes of finished actions, oldest first.
    pub fn history(&self) -> Vec<ActionRecord> {
        self.history.snapshot()
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
