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
use kairo_core::handler::{Handler, HandlerSet, parse_file};
use kairo_core::sources::{Loaded, SourceDir};

/// The handlers of one directory, swapped atomically on reload.
pub struct HandlerStore {
    sources: Mutex<SourceDir<Handler>>,
    current: ArcSwap<HandlerSet>,
}

impl HandlerStore {
    /// Loads `dir` (a missing directory means no handlers); returns the store and every error.
    pub fn load(dir: &Path) -> (Self, Vec<String>) {
        let store = Self {
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
        let rescan = sources.rescan(
            false,
            |path, content| {
                let text = String::from_utf8_lossy(content);
                let (mut items, errors) = parse_file(&text, &path.display().to_string());
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
            self.current.store(Arc::new(HandlerSet::new(handlers)));
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

/// Checks every handler file in `dir` (for `kairo check`); returns the
/// handlers that passed and every error.
pub fn check_dir(dir: &Path) -> (Vec<Handler>, Vec<String>) {
    let (store, errors) = HandlerStore::load(dir);
    (store.snapshot().handlers().to_vec(), errors)
}

/// What `handlers` need at run time that `config` does not give, one line
/// each (for `kairo check`, which warns, or fails with `--strict`).
pub fn runtime_warnings(handlers: &[Handler], config: &crate::KairoConfig) -> Vec<String> {
    use kairo_core::handler::ActionKind;
    let soracom_missing = config.soracom.missing_credentials();
    let mut warnings = Vec::new();
    for handler in handlers {
        for action in &handler.actions {
            let name = action.kind.soracom_name();
            let mut warn = |what: String| {
                warnings.push(format!("handler {} ({name}): {what}", handler.id));
            };
            let calls_soracom = !matches!(
                action.kind,
                ActionKind::SendMail { .. }
                    | ActionKind::SendMailToOperator { .. }
                    | ActionKind::WebRequest { .. }
                    | ActionKind::Lambda { .. }
            );
            if calls_soracom && !soracom_missing.is_empty() {
                warn(format!(
                    "needs {} to call the SORACOM API",
                    soracom_missing.join(" and ")
                ));
            }
            let mails = matches!(
                action.kind,
                ActionKind::SendMail { .. } | ActionKind::SendMailToOperator { .. }
            );
            if mails && config.plugins.email.smtp_url.is_none() {
                warn("needs plugins.email.smtp_url to send mail".into());
            }
            if let ActionKind::Lambda { credentials_id, .. } = &action.kind
                && !config.credentials.contains_key(credentials_id)
            {
                warn(format!(
                    "needs [credentials.{credentials_id}] access_key_id and secret_access_key"
                ));
            }
            let to_operator = matches!(action.kind, ActionKind::SendMailToOperator { .. });
            if to_operator
                && config.plugins.email.operator_address.is_none()
                && !soracom_missing.is_empty()
            {
                warn(format!(
                    "needs plugins.email.operator_address, or {} to read the operator's address from the SORACOM API",
                    soracom_missing.join(" and ")
                ));
            }
        }
    }
    warnings
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
