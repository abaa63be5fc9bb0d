//! Watching a directory and reloading on change.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};

use crate::{ReloadReport, RuleStore};

pub use kairo_core::sources::files_with_extension;

/// Quiet period after a change before reloading, so editors' multi-step saves settle.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Calls a function after changes in a directory settle, until dropped.
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl DirWatcher {
    /// Starts watching `dir`; `on_change` runs on a background thread after each burst of changes.
    pub fn start(dir: &Path, on_change: impl Fn() + Send + 'static) -> notify::Result<Self> {
        let (tx, rx) = channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|event| changes_content(&event.kind)) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("kairo-dir-watch".into())
            .spawn(move || {
                // Ends when the watcher (and with it the sender) is dropped.
                while rx.recv().is_ok() {
                    loop {
                        match rx.recv_timeout(DEBOUNCE) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    on_change();
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Self { _watcher: watcher })
    }
}

/// True for events that can change what a file holds: not opening or
/// reading it (which a reload itself does) and not its metadata.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Keeps a [`RuleStore`] in sync with its directory until dropped.
pub struct RuleWatcher {
    _watcher: DirWatcher,
}

impl RuleWatcher {
    /// Starts watching `store`'s directory; `on_reload` receives every non-empty report.
    pub fn start(
        store: Arc<RuleStore>,
        on_reload: impl Fn(&ReloadReport) + Send + 'static,
    ) -> notify::Result<Self> {
        let dir = store.dir().to_path_buf();
        let watcher = DirWatcher::start(&dir, move || {
            let report = store.reload();
            if !report.is_empty() {
                on_reload(&report);
            }
        })?;
        Ok(Self { _watcher: watcher })
    }
}
