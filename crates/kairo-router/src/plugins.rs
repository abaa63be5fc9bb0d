//! Assembling the action registry: built-in actions, actions compiled in with
//! [`crate::RouterBuilder::plugin`], and dynamic plugins from `[plugins] dir`,
//! each given and checked against its `[plugins.<name>]` section.

use std::sync::Arc;

use kairo_plugin::dynamic::{self, DynamicPlugin};
use kairo_plugin::{Action, Origin, Registry};

use crate::builtin;
use crate::config::KairoConfig;

/// Sections under `[plugins]` that are not plugin names.
const RESERVED: [&str; 1] = ["dir"];

/// Builds the registry; every problem (a plugin that does not load, a section
/// for no plugin, a section a plugin rejects) is one line naming the file or key.
pub fn registry(
    config: &KairoConfig,
    clients: &builtin::Clients,
    extra: &[Arc<dyn Action>],
) -> Result<Registry, Vec<String>> {
    let mut registry = builtin::registry(config, clients);
    let mut errors = Vec::new();
    for action in extra {
        registry.register_with(action.clone(), Origin::Static, None);
    }
    if let Some(dir) = &config.plugins.dir {
        match dynamic::load_dir(dir) {
            Ok(plugins) => register_dynamic(&mut registry, plugins, config, &mut errors),
            Err(load_errors) => errors.extend(load_errors.iter().map(ToString::to_string)),
        }
    }
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
    plugins: Vec<DynamicPlugin>,
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
        registry.register_with(
            Arc::new(plugin),
            origin,
            Some(kairo_plugin::abi::ABI_VERSION),
        );
    }
}
