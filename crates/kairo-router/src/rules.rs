//! The Rhai engine rule scripts compile and run with, and loading them.

use std::sync::Arc;

use kairo_plugin::Registry;
use kairo_script::{Limits, ReloadReport, RuleStore};

use crate::config::KairoConfig;

/// The sandboxed engine for `config`, with a function for every action in `registry`.
pub fn engine(config: &KairoConfig, registry: &Registry) -> rhai::Engine {
    kairo_script::engine_with_actions(limits(config), registry.names())
}

/// The sandbox limits `[rules]` sets.
pub fn limits(config: &KairoConfig) -> Limits {
    Limits {
        max_operations: config.rules.max_operations,
        ..Limits::default()
    }
}

/// Loads the rules of `[rules] dir`, logging what loaded and every error.
pub fn load(config: &KairoConfig, registry: &Registry) -> Arc<RuleStore> {
    let engine = Arc::new(engine(config, registry));
    let (rules, report) = RuleStore::load(&config.rules.dir, engine);
    log_reload(&report);
    tracing::info!(dir = %config.rules.dir.display(), rules = rules.snapshot().len(), "rules loaded");
    Arc::new(rules)
}

/// Logs a reload: each error, and what changed.
pub fn log_reload(report: &ReloadReport) {
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
