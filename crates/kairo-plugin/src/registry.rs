//! Name → action lookup, with where each action came from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::Action;

/// Where an action comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum Origin {
    /// Shipped with Kairo.
    BuiltIn,
    /// Compiled into a custom router binary with `Router::builder().plugin(...)`.
    Static,
    /// Loaded at run time from a dynamic library.
    Dynamic(PathBuf),
}

/// What `kairo plugins` shows about an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Action name.
    pub name: String,
    /// Family (for limits).
    pub family: String,
    /// Where it comes from.
    pub origin: Origin,
    /// Its version.
    pub version: String,
    /// The C ABI version, for dynamic plugins.
    pub abi_version: Option<u32>,
}

#[derive(Clone)]
struct Entry {
    action: Arc<dyn Action>,
    origin: Origin,
    abi_version: Option<u32>,
    config: Arc<serde_json::Value>,
}

/// The set of actions a router can perform, by name.
#[derive(Clone, Default)]
pub struct Registry {
    actions: BTreeMap<String, Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a built-in action under its name, replacing any action of the same name.
    pub fn register(&mut self, action: Arc<dyn Action>) -> &mut Self {
        self.register_with(action, Origin::BuiltIn, None)
    }

    /// Adds `action` with its origin and ABI version, replacing any action of the same name.
    pub fn register_with(
        &mut self,
        action: Arc<dyn Action>,
        origin: Origin,
        abi_version: Option<u32>,
    ) -> &mut Self {
        let entry = Entry {
            action: action.clone(),
            origin,
            abi_version,
            config: Arc::new(serde_json::Value::Null),
        };
        self.actions.insert(action.name().to_string(), entry);
        self
    }

    /// Sets the `[plugins.<name>]` section handed to `name` in its context.
    pub fn set_config(&mut self, name: &str, config: serde_json::Value) {
        if let Some(entry) = self.actions.get_mut(name) {
            entry.config = Arc::new(config);
        }
    }

    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name).map(|e| &e.action)
    }

    /// The configuration section of `name` (`null` when none).
    pub fn config(&self, name: &str) -> Arc<serde_json::Value> {
        self.actions
            .get(name)
            .map(|e| e.config.clone())
            .unwrap_or_else(|| Arc::new(serde_json::Value::Null))
    }

    /// All registered actions, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Action>)> {
        self.actions.iter().map(|(k, v)| (k.as_str(), &v.action))
    }

    /// Names of all registered actions, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.actions.keys().map(String::as_str).collect()
    }

    /// Origin, version and ABI of every action, sorted by name.
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.actions
            .iter()
            .map(|(name, entry)| PluginInfo {
                name: name.clone(),
                family: entry.action.family().to_string(),
                origin: entry.origin.clone(),
                version: entry.action.version().to_string(),
                abi_version: entry.abi_version,
            })
            .collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}
