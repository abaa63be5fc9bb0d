//! Kairo's rule scripts: a sandboxed Rhai engine, loading `.rhai` files from the
//! rules directory with hot reload, and capturing the action calls a script makes.
//!
//! - [`engine`]: the one way to build the sandboxed, pre-configured [`rhai::Engine`]
//! - [`capture`]: the action functions scripts call, which record [`ActionRequest`]s
//! - [`rules`]: [`RuleSet`] (compiled scripts) and [`RuleStore`] (hot-reloadable)
//! - [`watch`]: file-system watching that triggers [`RuleStore::reload`]
//!
//! [`ActionRequest`]: kairo_core::ActionRequest

pub mod access;
pub mod capture;
pub mod diagnose;
pub mod engine;
pub mod guard;
pub mod literal;

pub mod rules;
pub mod store;
pub mod watch;

pub use capture::{ScriptContext, with_context};
pub use engine::{Limits, engine, engine_with_actions};
pub use literal::{LiteralCall, call_sites, literal_action_calls};
pub use rules::{
    Evaluation, Reevaluation, Rule, RuleError, RuleRun, RuleSet, SHADOW_SUFFIX, ScriptError,
};
pub use store::{ReloadReport, RuleStore};
pub use watch::{DirWatcher, RuleWatcher, files_with_extension};
