//! One compile step from a configuration to what a router (or a dry run)
//! runs: the checked configuration, the action registry, the rule scripts
//! and the SORACOM handlers, with every problem collected before anything
//! starts.

use std::path::Path;
use std::sync::Arc;

use kairo_plugin::{Action, Registry};
use kairo_script::{ReloadReport, RuleStore};

use crate::builtin::Clients;
use crate::config::KairoConfig;
use crate::error::RouterError;
use crate::handlers::HandlerStore;
use crate::plugins::{PluginDir, assemble};

/// What a configuration compiles to.
pub struct Plan {
    /// The shared HTTP and SORACOM clients.
    pub clients: Clients,
    /// Every action: built-in, added and dynamic.
    pub registry: Registry,
    /// The dynamic plugins' directory, for reloading.
    pub plugins: Arc<PluginDir>,
    /// The rule scripts that compiled.
    pub rules: Arc<RuleStore>,
    /// The handlers that passed their checks.
    pub handlers: Arc<HandlerStore>,
    /// What loading the rules found (added rules, scripts that did not compile).
    pub rules_report: ReloadReport,
    /// Handlers left out, one line each (file, handler, JSON path, what is wrong).
    pub handler_errors: Vec<String>,
}

impl Plan {
    /// Compiles `config` with the rules in `rules_dir` and the handlers in
    /// `handlers_dir`. A configuration that does not pass its checks, or a
    /// plugin that does not load, stops here with every problem; a script or
    /// handler that does not compile is left out and reported.
    pub fn compile(
        config: &KairoConfig,
        rules_dir: &Path,
        handlers_dir: &Path,
        extra: &[Arc<dyn Action>],
        http: reqwest::Client,
    ) -> Result<Self, RouterError> {
        config
            .validate(None)
            .map_err(|e| RouterError::Config(e.errors))?;
        let clients = Clients::new(config, http);
        let plugins = PluginDir::new(config);
        let (dynamic, mut problems) = plugins.rescan();
        let registry = assemble(config, &clients, extra, dynamic);
        problems.extend(registry.as_ref().err().into_iter().flatten().cloned());
        let registry = match registry {
            Ok(registry) if problems.is_empty() => registry,
            _ => return Err(RouterError::Plugins(problems)),
        };
        let engine = Arc::new(crate::rules::engine(config, &registry));
        let (rules, report) = RuleStore::load(rules_dir, engine);
        let (handlers, handler_errors) = HandlerStore::load(handlers_dir);
        Ok(Self {
            clients,
            registry,
            plugins: Arc::new(plugins),
            rules: Arc::new(rules),
            handlers: Arc::new(handlers),
            rules_report: report,
            handler_errors,
        })
    }

    /// Every script and handler left out, one line each.
    pub fn left_out(&self) -> Vec<String> {
        let scripts = self.rules_report.errors.iter().map(ToString::to_string);
        scripts.chain(self.handler_errors.iter().cloned()).collect()
    }
}
