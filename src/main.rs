//! The `kairo` command line: wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kairo::config::{KairoConfig, LogFormat};
use kairo_soracom::emulator::{Emulator, EmulatorOptions, Seed};
use tokio_util::sync::CancellationToken;

/// mimalloc: the router allocates many small, short-lived objects from
/// several threads (events, rule scopes, action parameters), where glibc's
/// allocator spent close to half of replay's time (`perf`, benches/replay.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kairo: a self-hosted, plugin-based event router for SORACOM IoT fleets.
#[derive(Parser)]
#[command(version = kairo::VERSION, about)]
struct Cli {
    /// Log format (overrides `[log] format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the router.
    Run {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Ask the running router whether it is ready (GET /readyz); exits 0 when it is.
    /// For container health checks and service managers.
    Health {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and rule scripts; exits non-zero listing every error.
    Check {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Rule script files or directories (default: the configured rules directory).
        paths: Vec<PathBuf>,
        /// Treat warnings (something a handler needs at run time is not configured) as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Run the rule tests (`*.test.toml` beside the rules and handlers); or, given
    /// an event file, print the action requests the rules and handlers would make
    /// for its events, as JSON lines.
    Test {
        /// A JSON file holding one event or an array of events (evaluated in order from empty state).
        event_file: Option<PathBuf>,
        #[command(flatten)]
        dirs: Dirs,
        /// Output of the rule tests: text for a person, or JUnit XML for CI.
        #[arg(long, value_enum, default_value = "text")]
        format: kairo::suite::Format,
    },
    /// Dry run that says why each rule and handler did or did not act on each event.
    Explain {
        /// A JSON file holding one event or an array of events (evaluated in order from empty state).
        event_file: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
        /// Print one JSON object per event instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay recorded events (JSON lines, e.g. from `kairo events export`) on a
    /// virtual clock and print the actions they would give as JSON lines; with
    /// `--against`, the difference another rules directory makes. Performs nothing.
    Replay {
        /// The events: recorded lines or bare event objects, one per line.
        events_file: PathBuf,
        #[command(flatten)]
        dirs: Dirs,
        /// The rules directory to compare with (the old version).
        #[arg(long)]
        against: Option<PathBuf>,
        /// The handlers directory to compare with (default: the one replayed).
        #[arg(long)]
        against_handlers: Option<PathBuf>,
        /// With `--against`, one JSON line per difference instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the actions this configuration provides: built-in, static and dynamic plugins.
    Plugins {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and act on dead letters (actions Kairo gave up on, inputs it could not read).
    Dlq {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Recorded events (kept for `store.event_retention_seconds`).
    Events {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Connect a SORACOM account.
    Soracom {
        /// Configuration file (default: config/kairo.toml when present).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: SoracomCommand,
    },
    /// Run an emulator for local use.
    #[command(subcommand)]
    Emulator(EmulatorCommand),
}

#[derive(Subcommand)]
enum SoracomCommand {
    /// Create or update (by name, idempotently) SORACOM event handlers that post
    /// every status, speed-class, expiry, IMEI-mismatch, session and OTA event
    /// to Kairo's webhook; the account's other handlers are left alone.
    Forward {
        /// Kairo's webhook as SORACOM reaches it, e.g. https://kairo.example.com/v1/events.
        #[arg(long)]
        url: String,
        /// Bearer token SORACOM sends (default: server.token).
        #[arg(long)]
        token: Option<String>,
        /// Which SIMs: operator, group:ID or sim:ID.
        #[arg(long, default_value = "operator")]
        target: kairo_soracom::forward::ForwardTarget,
        /// Print the handlers' JSON instead of creating them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print the events received in a time range as JSON lines, oldest first
    /// (works beside a running router).
    Export {
        /// Received at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Received before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
}

/// Where a dry run reads rules and handlers from.
#[derive(clap::Args)]
struct Dirs {
    /// Rules directory (default: the configured one).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Handlers directory (default: the configured one).
    #[arg(long)]
    handlers: Option<PathBuf>,
    /// Configuration file (default: config/kairo.toml when present).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl Dirs {
    /// Dry-runs `event_file` with these directories, logging as `[log]` and
    /// `log_format` (or `RUST_LOG`) say.
    fn dry_run(
        &self,
        event_file: &std::path::Path,
        log_format: Option<LogFormat>,
    ) -> anyhow::Result<kairo_router::dry_run::DryRun> {
        let (config, rules, handlers) = self.resolve(log_format)?;
        kairo::check::dry_run(&config, &rules, &handlers, event_file).map_err(anyhow::Error::msg)
    }

    /// The configuration and the rules and handlers directories, with logging set up.
    fn resolve(
        &self,
        log_format: Option<LogFormat>,
    ) -> anyhow::Result<(KairoConfig, PathBuf, PathBuf)> {
        let config = KairoConfig::load(self.config.as_deref())?;
        kairo::telemetry::init(
            log_format.unwrap_or(config.log.format),
            &config.log.level,
            config.redactor(),
        );
        let rules = self
            .rules
            .clone()
            .unwrap_or_else(|| config.rules.dir.clone());
        let handlers = self
            .handlers
            .clone()
            .unwrap_or_else(|| config.handlers.dir.clone());
        Ok((config, rules, handlers))
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print every dead letter as a JSON line.
    List,
    /// Put dead letters back in the outbox with a fresh attempt count.
    Retry {
        /// Dead letter ids (as printed by `list`).
        ids: Vec<String>,
        /// Retry every action dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete a dead letter.
    Drop {
        /// Dead letter id.
        id: String,
    },
}

#[derive(Subcommand)]
enum EmulatorCommand {
    /// The SORACOM API emulator (auth, SIMs, groups).
    Soracom {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// JSON file with initial `sims`, `groups` and `authKeys`.
        #[arg(long)]
        seed: Option<PathBuf>,
        /// Answer 404 for unknown SIMs and groups instead of creating them.
        #[arg(long)]
        strict: bool,
        /// Requests per minute per API key and path before answering 429.
        #[arg(long)]
        rate_limit: Option<u32>,
        /// Milliseconds to wait before answering each API request.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// A catcher that answers every request with 200 and prints it as a JSON line.
    Catcher {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Run { config } => run_router(config, log_format).await,
        Command::Check {
            config,
            paths,
            strict,
        } => Ok(check(config, &paths, strict)),
        Command::Explain {
            event_file,
            dirs,
            json,
        } => {
            let run = dirs.dry_run(&event_file, log_format)?;
            for error in &run.script_errors {
                eprintln!("{error}");
            }
            for (event, trace) in &run.traces {
                println!("{}", kairo::explain::render(event, trace, json));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            event_file: None,
            dirs,
            format,
        } => {
            let (config, rules, handlers) = dirs.resolve(log_format)?;
            kairo::suite::run(&config, &rules, &handlers, format)
        }
        Command::Test {
            event_file: Some(event_file),
            dirs,
            ..
        } => dry_test(&dirs, &event_file, log_format),
        Command::Replay {
            events_file,
            dirs,
            against,
            against_handlers,
            json,
        } => {
            let (config, rules, handlers) = dirs.resolve(log_format)?;
            let versions = kairo::replay::Versions {
                rules: &rules,
                handlers: &handlers,
                against: against.as_deref(),
                against_handlers: against_handlers.as_deref(),
            };
            let (out, clean) = kairo::replay::run(&config, &events_file, &versions, json)?;
            print!("{out}");
            Ok(exit(clean))
        }
        Command::Plugins { config, json } => plugins(config, json),
        Command::Dlq { config, command } => dlq(config, command).await,
        Command::Health { config } => health(config).await,
        Command::Events {
            config,
            command: EventsCommand::Export { since, until },
        } => {
            let config = KairoConfig::load(config.as_deref())?;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            let count =
                kairo::events::export(&config, since.as_deref(), until.as_deref(), &mut out)
                    .await?;
            std::io::Write::flush(&mut out)?;
            eprintln!("{count} event(s)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Soracom {
            config,
            command:
                SoracomCommand::Forward {
                    url,
                    token,
                    target,
                    dry_run,
                },
        } => {
            let config = KairoConfig::load(config.as_deref())?;
            let lines =
                kairo::soracom::forward(&config, &url, token.as_deref(), &target, dry_run).await?;
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator(command) => emulator(command, log_format).await,
    }
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_router(
    config: Option<PathBuf>,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let config = KairoConfig::load(config.as_deref())?;
    let redactor = config.redactor();
    kairo::telemetry::init(
        log_format.unwrap_or(config.log.format),
        &config.log.level,
        redactor.clone(),
    );
    kairo::Router::builder()
        .config(config)
        .run()
        .await
        .map_err(|e| {
            let chain = format!("{:#}", anyhow::Error::from(e));
            anyhow::anyhow!("{}", redactor.redact(&chain))
        })?;
    Ok(ExitCode::SUCCESS)
}

fn check(config: Option<PathBuf>, paths: &[PathBuf], strict: bool) -> ExitCode {
    let mut report = kairo::check::check(config.as_deref(), paths);
    if strict {
        report.errors.append(&mut report.warnings);
    }
    for error in &report.errors {
        eprintln!("{error}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if report.errors.is_empty() {
        println!(
            "ok: configuration valid, {} rule script(s) compiled, {} event handler(s) checked, {} warning(s)",
            report.rules,
            report.handlers,
            report.warnings.len()
        );
    } else {
        eprintln!("{} error(s)", report.errors.len());
    }
    exit(report.errors.is_empty())
}

fn dry_test(
    dirs: &Dirs,
    event_file: &std::path::Path,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    let run = dirs.dry_run(event_file, log_format)?;
    for request in &run.requests {
        println!("{}", serde_json::to_string(request)?);
    }
    for error in &run.script_errors {
        eprintln!("{error}");
    }
    for error in &run.rule_errors {
        eprintln!("{error}");
    }
    Ok(exit(
        run.script_errors.is_empty() && run.rule_errors.is_empty(),
    ))
}

fn plugins(config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let config = KairoConfig::load(config.as_deref())?;
    let clients = kairo::builtin::Clients::new(&config, reqwest::Client::new());
    let registry = kairo::plugins::registry(&config, &clients, &[])
        .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    if !json {
        println!(
            "{:<18} {:<10} {:<10} {:<5} ORIGIN",
            "NAME", "FAMILY", "VERSION", "ABI"
        );
    }
    for info in registry.infos() {
        if json {
            println!("{}", serde_json::to_string(&info)?);
            continue;
        }
        let origin = match &info.origin {
            kairo_plugin::Origin::BuiltIn => "built-in".to_string(),
            kairo_plugin::Origin::Static => "static".to_string(),
            kairo_plugin::Origin::Dynamic(path) => format!("dynamic {}", path.display()),
        };
        let abi = info.abi_version.map_or("-".to_string(), |v| v.to_string());
        let version = if info.version.is_empty() {
            "-"
        } else {
            info.version.as_str()
        };
        println!(
            "{:<18} {:<10} {:<10} {:<5} {origin}",
            info.name, info.family, version, abi
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = KairoConfig::load(config.as_deref())?;
    let url = format!("{}/readyz", kairo::dlq::router_base(&config)?);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let ready = response.status().is_success();
    println!("{}", response.text().await.unwrap_or_default());
    Ok(exit(ready))
}

async fn dlq(config: Option<PathBuf>, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let config = KairoConfig::load(config.as_deref())?;
    let command = match command {
        DlqCommand::List => kairo::dlq::DlqCommand::List,
        DlqCommand::Retry { ids, all } => {
            anyhow::ensure!(all || !ids.is_empty(), "give dead letter ids or --all");
            kairo::dlq::DlqCommand::Retry { ids, all }
        }
        DlqCommand::Drop { id } => kairo::dlq::DlqCommand::Drop { id },
    };
    for line in kairo::dlq::run(&config, command).await? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn emulator(
    command: EmulatorCommand,
    log_format: Option<LogFormat>,
) -> anyhow::Result<ExitCode> {
    kairo::telemetry::init(
        log_format.unwrap_or_default(),
        "info",
        kairo_core::Redactor::default(),
    );
    let cancel = CancellationToken::new();
    kairo::shutdown::cancel_on_signal(cancel.clone());
    let shutdown = async move { cancel.cancelled().await };
    match command {
        EmulatorCommand::Soracom {
            listen,
            seed,
            strict,
            rate_limit,
            latency_ms,
        } => {
            let seed = match seed {
                Some(path) => Seed::from_file(&path)?,
                None => Seed::default(),
            };
            let emulator = Emulator::new(EmulatorOptions {
                seed,
                auto_create: !strict,
                rate_limit_per_minute: rate_limit,
                latency: std::time::Duration::from_millis(latency_ms),
            });
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "SORACOM API emulator listening");
            emulator.serve(listener, shutdown).await?;
        }
        EmulatorCommand::Catcher { listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "request catcher listening");
            kairo::catcher::serve(listener, shutdown).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
