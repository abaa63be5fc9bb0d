//! SORACOM event handlers loaded from `[handlers] dir`: every `.json` file
//! holds one `EventHandlerModel` or an array of them. Reloaded on change like
//! rule scripts. A handler that fails the checks is reported and left out
//! while the others in its file load; on reload, a handler that breaks keeps
//! its previous good version.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kairo_core::handler::{CompileOptions, Handler, HandlerSet, parse_file};

/// The handlers of one directory, swapped atomically on reload.
pub struct HandlerStore {
    dir: PathBuf,
    options: CompileOptions,
    operator_address: Option<String>,
    files: Mutex<BTreeMap<PathBuf, (String, Vec<Handler>)>>,
    current: ArcSwap<HandlerSet>,
}

impl HandlerStore {
    /// Loads `dir` (a missing directory means no handlers); returns the store and every error.
    pub fn load(dir: &Path, operator_address: Option<String>) -> (Self, Vec<String>) {
        let store = Self {
            dir: dir.to_path_buf(),
            options: CompileOptions {
                operator_address_set: operator_address.is_some(),
            },
            operator_address,
            files: Mutex::new(BTreeMap::new()),
            current: ArcSwap::from_pointee(HandlerSet::default()),
        };
        let errors = store.reload().errors;
        (store, errors)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current handlers.
    pub fn snapshot(&self) -> Arc<HandlerSet> {
        self.current.load_full()
    }

    /// Rereads the directory; returns the files that changed and the errors
    /// (each naming file, handler and JSON path).
    pub fn reload(&self) -> HandlerReload {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        let mut seen = Vec::new();
        for path in kairo_script::files_with_extension(&self.dir, "json").unwrap_or_default() {
            seen.push(path.clone());
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    errors.push(format!("{}: cannot read: {e}", path.display()));
                    continue;
                }
            };
            if files
                .get(&path)
                .is_some_and(|(previous, _)| *previous == text)
            {
                continue;
            }
            changed.push(path.display().to_string());
            let (mut handlers, problems) =
                parse_file(&text, &path.display().to_string(), self.options);
            if !problems.is_empty() {
                errors.extend(problems.iter().map(ToString::to_string));
                // The broken handlers keep their previous good version, if any:
                // every previous handler the new text no longer yields stays.
                if let Some((_, previous)) = files.get(&path) {
                    let kept: Vec<Handler> = previous
                        .iter()
                        .filter(|old| !handlers.iter().any(|new| new.id == old.id))
                        .cloned()
                        .collect();
                    handlers.extend(kept);
                }
            }
            files.insert(path, (text, handlers));
        }
        files.retain(|path, _| {
            let kept = seen.contains(path);
            if !kept {
                changed.push(path.display().to_string());
            }
            kept
        });
        if changed.is_empty() {
            return HandlerReload { changed, errors };
        }
        let handlers: Vec<Handler> = files
            .values()
            .flat_map(|(_, h)| h.iter().cloned())
            .collect();
        self.current.store(Arc::new(HandlerSet::new(
            handlers,
            self.operator_address.clone(),
        )));
        HandlerReload { changed, errors }
    }
}

impl HandlerStore {
    /// Every loaded handler: id, name and the file it comes from.
    pub fn listing(&self) -> Vec<(String, String, PathBuf)> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files
            .iter()
            .flat_map(|(path, (_, handlers))| {
                handlers
                    .iter()
                    .map(|h| (h.id.clone(), h.name.clone(), path.clone()))
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
