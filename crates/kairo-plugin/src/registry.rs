//! Name → action lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Action;

/// The set of actions a router can perform, by name.
#[derive(Clone, Default)]
pub struct Registry {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `action` under its name, replacing any action of the same name.
    pub fn register(&mut self, action: Arc<dyn Action>) -> &mut Self {
        self.actions.insert(action.name().to_string(), action);
        self
    }

    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }

    /// All registered actions, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Action>)> {
        self.actions.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Names of all registered actions, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.actions.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}
