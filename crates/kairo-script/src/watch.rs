//! Watching the rules directory and reloading on change.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::{ReloadReport, RuleStore};

/// Quiet period after a change before reloading, so editors' multi-step saves settle.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps a [`RuleStore`] in sync with its directory until dropped.
pub struct RuleWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl RuleWatcher {
    /// Starts watching `store`'s directory; `on_reload` receives every non-empty report.
    pub fn start(
        store: Arc<RuleStore>,
        on_reload: impl Fn(&ReloadReport) + Send + 'static,
    ) -> notify::Result<Self> {
        let (tx, rx) = channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(Path::new(store.dir()), RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("kairo-rule-watch".into())
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
                    let report = store.reload();
                    if !report.is_empty() {
                        on_reload(&report);
                    }
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Self { _watcher: watcher })
    }
}
