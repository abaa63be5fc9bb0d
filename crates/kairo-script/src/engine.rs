//! The sandboxed Rhai engine shared by every rule.

use rhai::Engine;

/// Sandbox limits for rule scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum operations one evaluation may perform.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting depth.
    pub max_expr_depth: usize,
    /// Maximum length of a string, in bytes.
    pub max_string_size: usize,
    /// Maximum number of items in an array.
    pub max_array_size: usize,
    /// Maximum number of entries in an object map.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: 100_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
        }
    }
}

/// Builds the sandboxed engine with the built-in action functions and, for each
/// of `plugin_actions`, a function of that name taking a parameter map.
pub fn engine_with_actions<'a>(
    limits: Limits,
    plugin_actions: impl IntoIterator<Item = &'a str>,
) -> Engine {
    let mut engine = engine(limits);
    for name in plugin_actions {
        crate::capture::register_plugin_function(&mut engine, name);
    }
    engine
}

/// Builds the sandboxed engine with Kairo's action functions registered.
///
/// Scripts cannot import modules, call `eval`, or touch files or the network;
/// `print` and `debug` go to the log.
pub fn engine(limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth / 2)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_strict_variables(true)
        // The engine is shared by the threads that evaluate events, and its
        // string interner takes a write lock on every use: with two threads
        // evaluation ran 4x slower than with one (benches/replay.sh).
        .set_max_strings_interned(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.on_print(|text| {
        let (rule, event_id) = crate::capture::running().unwrap_or_default();
        tracing::info!(target: "kairo::script", rule, event_id, "{text}")
    });
    engine.on_debug(|text, source, pos| {
        let (rule, event_id) = crate::capture::running().unwrap_or_default();
        tracing::debug!(target: "kairo::script", rule, event_id, source = source.unwrap_or(""), %pos, "{text}")
    });
    crate::capture::register(&mut engine);
    engine
}
