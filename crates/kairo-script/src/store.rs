//! The rules of one directory, compiled and swapped atomically on reload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kairo_core::sources::{Loaded, SourceDir};
use rhai::Engine;

use crate::rules::{Rule, RuleSet, ScriptError};

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Rules that appeared.
    pub added: Vec<String>,
    /// Rules whose source changed and compiled.
    pub updated: Vec<String>,
    /// Rules whose file is gone.
    pub removed: Vec<String>,
    /// Files that failed to compile; their previous good version, if any, stays.
    pub errors: Vec<ScriptError>,
}

impl ReloadReport {
    /// True when nothing changed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.errors.is_empty()
    }
}

/// The rules of one directory, swapped atomically on reload.
///
/// Readers take a cheap [`RuleStore::snapshot`]; a reload never blocks them.
pub struct RuleStore {
    dir: PathBuf,
    engine: ArcSwap<Engine>,
    current: ArcSwap<RuleSet>,
    /// Held while reloading: each file's source and the rule it gave.
    sources: Mutex<SourceDir<Arc<Rule>>>,
}

impl kairo_core::sources::Keyed for Rule {
    fn key(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for RuleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleStore").field("dir", &self.dir).finish()
    }
}

impl RuleStore {
    /// Loads every `.rhai` file in `dir`; files that fail to compile are reported and left out.
    pub fn load(dir: impl Into<PathBuf>, engine: Arc<Engine>) -> (Self, ReloadReport) {
        let dir = dir.into();
        let store = Self {
            sources: Mutex::new(SourceDir::new(&dir, "rhai")),
            dir,
            current: ArcSwap::from_pointee(RuleSet::empty(engine.clone())),
            engine: ArcSwap::new(engine),
        };
        let report = store.reload();
        (store, report)
    }

    /// The directory the rules come from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current rules.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Rescans the directory: compiles new and changed files, drops deleted ones,
    /// and keeps the previous good version of any file that no longer compiles.
    pub fn reload(&self) -> ReloadReport {
        self.reload_with(false)
    }

    /// Switches to `engine` (e.g. one knowing newly loaded plugin functions)
    /// and recompiles every rule with it.
    pub fn replace_engine(&self, engine: Arc<Engine>) -> ReloadReport {
        self.engine.store(engine);
        self.reload_with(true)
    }

    fn reload_with(&self, recompile: bool) -> ReloadReport {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let engine = self.engine.load_full();
        let dir = self.dir.clone();
        let rescan = sources.rescan(
            recompile,
            |path, content| compile_file(&engine, path, content),
            |path, e| ScriptError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message: if path == dir {
                    format!("cannot read rules directory: {e}")
                } else {
                    format!("cannot read: {e}")
                },
            },
        );
        if recompile || rescan.changed() {
            let rules = sources.items().map(|(_, rule)| rule.clone()).collect();
            self.current
                .store(Arc::new(RuleSet::from_rules(engine, rules)));
        }
        let names = |paths: Vec<PathBuf>| paths.iter().map(|p| rule_name(p)).collect();
        ReloadReport {
            added: names(rescan.added),
            updated: names(rescan.updated),
            removed: names(rescan.removed),
            errors: rescan.errors,
        }
    }
}

/// A rule's name: its file's stem.
fn rule_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Compiles one script file into its rule.
fn compile_file(engine: &Engine, path: &Path, content: &[u8]) -> Loaded<Arc<Rule>, ScriptError> {
    let compiled = match std::str::from_utf8(content) {
        Ok(source) => RuleSet::compile(engine, &rule_name(path), path, source.to_string()),
        Err(e) => Err(ScriptError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("not UTF-8: {e}"),
        }),
    };
    match compiled {
        Ok(rule) => Loaded {
            items: vec![Arc::new(rule)],
            errors: Vec::new(),
        },
        Err(error) => Loaded {
            items: Vec::new(),
            errors: vec![error],
        },
    }
}
