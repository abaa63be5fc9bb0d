//! SORACOM event handlers loaded from `[handlers] dir`: every `.json` file
//! holds one `EventHandlerModel` or an array of them. Reloaded on change like
//! rule scripts. A handler that fails the checks is reported and left out
//! while the others in its file load; on reload, a handler that breaks keeps
//! its previous good version. The handlers of a `NAME.shadow.json` file run
//! in shadow: their requests are recorded, never performed.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kairo_core::handler::{CompileOptions, Handler, HandlerSet, parse_file};
use kairo_core::sources::{Loaded, SourceDir};

/// The handlers of one directory, swapped atomically on reload.
pub struct HandlerStore {
    options: CompileOptions,
    operator_address: Option<String>,
    sources: Mutex<SourceDir<Handler>>,
    current: ArcSwap<HandlerSet>,
}

impl HandlerStore {
    /// Loads `dir` (a missing directory means no handlers); returns the store and every error.
    pub fn load(dir: &Path, operator_address: Option<String>) -> (Self, Vec<String>) {
        let store = Self {
            options: CompileOptions {
                operator_address_set: operator_address.is_some(),
            },
            operator_address,
            sources: Mutex::new(SourceDir::new(dir, "json")),
            current: ArcSwap::from_pointee(HandlerSet::default()),
        };
        let errors = store.reload().errors;
        (store, errors)
    }

    /// The current handlers.
    pub fn snapshot(&self) -> Arc<HandlerSet> {
        self.current.load_full()
    }

    /// Rereads the directory; returns the files that changed and the errors
    /// (each naming file, handler and JSON path).
    pub fn reload(&self) -> HandlerReload {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let options = self.options;
        let rescan = sources.rescan(
            false,
            |path, content| {
                let text = String::from_utf8_lossy(content);
                let (mut items, errors) = parse_file(&text, &path.display().to_string(), options);
                let shadow = path.to_string_lossy().ends_with(".shadow.json");
                items
                    .iter_mut()
                    .for_each(|h: &mut Handler| h.shadow = shadow);
                let errors = errors.iter().map(ToString::to_string).collect();
                Loaded { items, errors }
            },
            |path, e| format!("{}: cannot read: {e}", path.display()),
        );
        let changed: Vec<String> = [
            &rescan.added,
            &rescan.updated,
            &rescan.removed,
            &rescan.failed,
        ]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
        if rescan.changed() {
            let handlers = sources.items().map(|(_, h)| h.clone()).collect();
            self.current.store(Arc::new(HandlerSet::new(
                handlers,
                self.operator_address.clone(),
            )));
        }
        HandlerReload {
            changed,
            errors: rescan.errors,
        }
    }

    /// Every loaded handler: id, name, the file it comes from and whether it runs in shadow.
    pub fn listing(&self) -> Vec<Listed> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .items()
            .map(|(path, h)| Listed {
                id: h.id.clone(),
                name: h.name.clone(),
                file: path.to_path_buf(),
                shadow: h.shadow,
            })
            .collect()
    }

    /// Rereads the directory and logs what changed and every error.
    pub fn reload_and_log(&self) {
        let report = self.reload();
        for error in &report.errors {
            tracing::error!(target: "kairo::handlers", "{error} (previous version, if any, kept)");
        }
        if !report.changed.is_empty() {
            tracing::info!(
                target: "kairo::handlers",
                files = ?report.changed, handlers = self.snapshot().handlers().len(),
                "handlers reloaded"
            );
        }
    }
}

/// A loaded handler, as [`HandlerStore::listing`] lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The file it comes from.
    pub file: PathBuf,
    /// Whether it runs in shadow.
    pub shadow: bool,
}

/// What a handler reload did.
#[derive(Debug, Default)]
pub struct HandlerReload {
    /// Files added, changed or removed.
    pub changed: Vec<String>,
    /// Every problem found, each naming file, handler and JSON path.
    pub errors: Vec<String>,
}

/// Checks every handler file in `dir` (for `kairo check`); returns the handler count and errors.
pub fn check_dir(dir: &Path, operator_address: Option<String>) -> (usize, Vec<String>) {
    let (store, errors) = HandlerStore::load(dir, operator_address);
    (store.snapshot().handlers().len(), errors)
}

/// `[handlers]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlersConfig {
    /// Directory of SORACOM `EventHandlerModel` JSON files (reloaded like rules when `rules.watch` is on).
    pub dir: PathBuf,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        Self {
            dir: "handlers".into(),
        }
    }
}
