//! `kairo check` (validate configuration and rule scripts without running) and
//! `kairo test` (a dry run of the rules against events from a file).

use std::path::{Path, PathBuf};

use kairo_plugin::Registry;
use kairo_script::RuleSet;

use kairo_router::KairoConfig;

/// What `kairo check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Rule scripts that compiled.
    pub rules: usize,
    /// Event handlers that passed every check.
    pub handlers: usize,
    /// Every problem, one line each, naming the file (and line and column where known).
    pub errors: Vec<String>,
    /// What the handlers need at run time that the configuration does not give.
    pub warnings: Vec<String>,
}

/// Validates the configuration, every rule script and every event handler
/// file in `paths` (`.rhai` and `.json` files, or directories of them), or in
/// the configured rules and handlers directories when `paths` is empty.
pub fn check(config_file: Option<&Path>, paths: &[PathBuf]) -> CheckReport {
    let mut report = CheckReport::default();
    let config = match KairoConfig::load(config_file) {
        Ok(config) => config,
        Err(e) => {
            report.errors.extend(e.errors);
            KairoConfig::default()
        }
    };
    let clients = kairo_router::builtin::Clients::new(&config, reqwest::Client::new());
    let registry = match kairo_router::plugins::registry(&config, &clients, &[]) {
        Ok(registry) => registry,
        Err(errors) => {
            report.errors.extend(errors);
            kairo_router::builtin::registry(&config, &clients)
        }
    };
    let engine = kairo_router::rules::engine(&config, &registry);
    let plugin_names = registry.names();
    let (paths, handler_paths): (Vec<PathBuf>, Vec<PathBuf>) = if paths.is_empty() {
        (
            vec![config.rules.dir.clone()],
            vec![config.handlers.dir.clone()],
        )
    } else {
        let (handlers, scripts) = paths
            .iter()
            .cloned()
            .partition(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
        (scripts, handlers)
    };
    let mut handlers = Vec::new();
    for path in handler_paths {
        let (found, errors) = if path.is_dir() || !path.exists() {
            kairo_router::handlers::check_dir(&path)
        } else {
            check_handler_file(&path)
        };
        handlers.extend(found);
        report.errors.extend(errors);
    }
    report.handlers = handlers.len();
    report.warnings = kairo_router::handlers::runtime_warnings(&handlers, &config);
    for path in paths {
        let files = match script_files(&path) {
            Ok(files) => files,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        for file in files {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("rule")
                .to_string();
            match std::fs::read_to_string(&file) {
                Err(e) => report
                    .errors
                    .push(format!("{}: cannot read: {e}", file.display())),
                Ok(source) => match RuleSet::compile(&engine, &name, &file, source) {
                    Ok(rule) => {
                        report.rules += 1;
                        check_literal_calls(&rule, &registry, &plugin_names, &mut report.errors);
                    }
                    Err(e) => report.errors.push(e.to_string()),
                },
            }
        }
    }
    report
}

fn check_handler_file(path: &Path) -> (Vec<kairo_core::handler::Handler>, Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("{}: cannot read: {e}", path.display())],
            );
        }
    };
    let (handlers, errors) = kairo_core::handler::parse_file(&text, &path.display().to_string());
    (handlers, errors.iter().map(ToString::to_string).collect())
}

/// Validates `action("name", #{...})` and `name(#{...})` calls whose parameters
/// are literals against the plugin's own validator.
fn check_literal_calls(
    rule: &kairo_script::Rule,
    registry: &Registry,
    names: &[&str],
    errors: &mut Vec<String>,
) {
    for call in kairo_script::literal_action_calls(rule, names) {
        let location = match (call.line, call.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", rule.path.display()),
            _ => rule.path.display().to_string(),
        };
        match registry.get(&call.action) {
            None => errors.push(format!(
                "{location}: action(\"{}\"): no plugin of that name is loaded (loaded: {})",
                call.action,
                names.join(", ")
            )),
            Some(plugin) => {
                if let Err(message) = plugin.validate(&call.params) {
                    errors.push(format!("{location}: {}(...): {message}", call.action));
                }
            }
        }
    }
}

fn script_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    kairo_script::files_with_extension(path, "rhai")
        .map_err(|e| format!("{}: cannot read rules directory: {e}", path.display()))
}

/// Dry-runs the rules in `rules_dir` and the handlers in `handlers_dir`
/// against the events in `events_file` (one event object or an array),
/// through the router's own pipeline.
pub fn dry_run(
    config: &KairoConfig,
    rules_dir: &Path,
    handlers_dir: &Path,
    events_file: &Path,
) -> Result<kairo_router::dry_run::DryRun, String> {
    let body = std::fs::read(events_file).map_err(|e| format!("{}: {e}", events_file.display()))?;
    let events = kairo_ingest::webhook::parse_events(&body)
        .map_err(|e| format!("{}: {e}", events_file.display()))?;
    let clock = kairo_core::SystemClock;
    kairo_router::dry_run::dry_run(config, rules_dir, handlers_dir, &events, &clock)
        .map_err(|e| e.to_string())
}
