//! Assembling the action registry: built-in actions, actions compiled in with
//! [`crate::RouterBuilder::plugin`], and dynamic plugins from `[plugins] dir`,
//! each given and checked against its `[plugins.<name>]` section.

use std::sync::{Arc, Mutex};

use kairo_core::sources::{Loaded, SourceDir};
use kairo_plugin::dynamic::DynamicPlugin;
use kairo_plugin::{Action, Origin, Registry};

use crate::builtin;
use crate::config::KairoConfig;

/// Sections under `[plugins]` that are not plugin names.
const RESERVED: [&str; 1] = ["dir"];

/// Builds the registry once (for `kairo check` and `kairo plugins`); every
/// problem (a plugin that does not load, a section for no plugin, a section
/// a plugin rejects) is one line naming the file or key.
pub fn registry(
    config: &KairoConfig,
    clients: &builtin::Clients,
    extra: &[Arc<dyn Action>],
) -> Result<Registry, Vec<String>> {
    let (dynamic, mut errors) = PluginDir::new(config).rescan();
    match assemble(config, clients, extra, dynamic) {
        Ok(registry) if errors.is_empty() => Ok(registry),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// The dynamic plugins of `[plugins] dir`, reloaded like rules and handlers:
/// a library that no longer loads keeps its previous version.
pub struct PluginDir {
    sources: Option<Mutex<SourceDir<Arc<DynamicPlugin>>>>,
}

impl PluginDir {
    /// Nothing loaded yet from `config`'s `[plugins] dir` (none when unset).
    pub fn new(config: &KairoConfig) -> Self {
        let extension = std::env::consts::DLL_EXTENSION;
        Self {
            sources: (config.plugins.dir.as_ref())
                .map(|dir| Mutex::new(SourceDir::new(dir, extension))),
        }
    }

    /// Rereads the directory: the plugins loaded now, and why any did not load.
    pub fn rescan(&self) -> (Vec<Arc<DynamicPlugin>>, Vec<String>) {
        let Some(sources) = &self.sources else {
            return (Vec::new(), Vec::new());
        };
        let mut sources = sources.lock().unwrap_or_else(|e| e.into_inner());
        if !sources.dir().is_dir() {
            let dir = sources.dir().display();
            return (
                Vec::new(),
                vec![format!(
                    "{dir}: cannot read plugin directory: not a directory"
                )],
            );
        }
        let rescan = sources.rescan(
            false,
            |path, _| match DynamicPlugin::load(path) {
                Ok(plugin) => Loaded {
                    items: vec![Arc::new(plugin)],
                    errors: Vec::new(),
                },
                Err(error) => Loaded {
                    items: Vec::new(),
                    errors: vec![error.to_string()],
                },
            },
            |path, e| format!("{}: cannot read plugin directory: {e}", path.display()),
        );
        let plugins = sources.items().map(|(_, p)| p.clone()).collect();
        (plugins, rescan.errors)
    }
}

/// The registry of the built-in actions, `extra` and `dynamic`, each
/// configured from its section; every problem one line naming the file or key.
pub fn assemble(
    config: &KairoConfig,
    clients: &builtin::Clients,
    extra: &[Arc<dyn Action>],
    dynamic: Vec<Arc<DynamicPlugin>>,
) -> Result<Registry, Vec<String>> {
    let mut registry = builtin::registry(config, clients);
    let mut errors = Vec::new();
    for action in extra {
        registry.register_with(action.clone(), Origin::Static, None);
    }
    register_dynamic(&mut registry, dynamic, config, &mut errors);
    let typed = ["slack", "email", "nats"];
    for (name, section) in &config.plugins.sections {
        if RESERVED.contains(&name.as_str()) || typed.contains(&name.as_str()) {
            continue;
        }
        let Some(action) = registry.get(name).cloned() else {
            errors.push(format!(
                "plugins.{name}: no plugin named `{name}` is loaded (loaded: {})",
                registry.names().join(", ")
            ));
            continue;
        };
        match action.validate_config(section) {
            Ok(()) => registry.set_config(name, section.clone()),
            Err(message) => errors.push(format!("plugins.{name}: {message}")),
        }
    }
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(errors)
    }
}

fn register_dynamic(
    registry: &mut Registry,
    plugins: Vec<Arc<DynamicPlugin>>,
    config: &KairoConfig,
    errors: &mut Vec<String>,
) {
    for plugin in plugins {
        let name = plugin.manifest().name.clone();
        if registry.get(&name).is_some() {
            errors.push(format!(
                "{}: a plugin named `{name}` is already loaded; rename one of them",
                plugin.path().display()
            ));
            continue;
        }
        let section = config
            .plugins
            .sections
            .get(&name)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if let Err(error) = plugin.configure(&section) {
            errors.push(error.to_string());
            continue;
        }
        let origin = Origin::Dynamic(plugin.path().to_path_buf());
        tracing::info!(plugin = %name, path = %plugin.path().display(), version = plugin.manifest().version, "dynamic plugin loaded");
        registry.register_with(plugin, origin, Some(kairo_plugin::abi::ABI_VERSION));
    }
}
