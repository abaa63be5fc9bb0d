//! The Rhai engine rule scripts compile and run with, and loading them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use kairo_plugin::Registry;
use kairo_script::{Limits, ReloadReport};

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

/// `[rules]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Directory of `.rhai` rule scripts.
    pub dir: PathBuf,
    /// Reload scripts when files in `dir` change.
    pub watch: bool,
    /// Sandbox: maximum operations per rule evaluation.
    pub max_operations: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: "scripts".into(),
            watch: true,
            max_operations: 100_000,
        }
    }
}
