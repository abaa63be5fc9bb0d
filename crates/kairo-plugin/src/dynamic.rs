//! Loading dynamic plugins (`cdylib` files implementing the [`crate::abi`] C ABI).
//!
//! Safety contract for plugin authors: build the plugin with the same
//! `kairo-plugin` ABI version, implement it with [`crate::export_plugin!`]
//! (which catches panics at the boundary), free only what you allocate, and
//! expect `execute` to be called concurrently from several threads. A plugin
//! that blocks past the action's deadline is cut off: Kairo stops waiting and
//! fails the attempt as retryable; the blocked thread is left to finish.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use libloading::Library;

use crate::abi::{ABI_VERSION, FAILED, KairoBuffer, Manifest, OK, PANICKED, WireError};
use crate::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest, InvalidParams};

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type ManifestFn = unsafe extern "C" fn(*mut KairoBuffer) -> i32;
type CallFn = unsafe extern "C" fn(*const u8, usize, *mut KairoBuffer) -> i32;
type FreeFn = unsafe extern "C" fn(KairoBuffer);

/// Why a dynamic plugin could not be loaded; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a loadable shared library.
    #[error("{path}: not a loadable plugin library: {message}")]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// A required symbol is missing.
    #[error("{path}: missing symbol `{symbol}` (is it built with kairo_plugin::export_plugin!?)")]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: &'static str,
    },
    /// Built for another ABI version.
    #[error(
        "{path}: plugin ABI version {found}, but this Kairo supports version {expected}; rebuild it against kairo-plugin {expected}"
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The manifest or configuration step failed.
    #[error("{path}: {message}")]
    Rejected {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

#[derive(Clone, Copy)]
struct Functions {
    configure: CallFn,
    validate: CallFn,
    execute: CallFn,
    free: FreeFn,
}

/// A loaded dynamic plugin, usable as an [`Action`].
pub struct DynamicPlugin {
    // Keeps the library mapped while any function pointer may be called.
    library: Arc<Library>,
    functions: Functions,
    path: PathBuf,
    manifest: Manifest,
}

impl std::fmt::Debug for DynamicPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicPlugin")
            .field("path", &self.path)
            .field("manifest", &self.manifest)
            .finish()
    }
}

impl DynamicPlugin {
    /// Loads `path`, checks its ABI version and reads its manifest.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let path = path.to_path_buf();
        // SAFETY: loading runs the library's initializers; plugins are trusted
        // code the operator placed in the plugin directory.
        let library = unsafe { Library::new(&path) }.map_err(|e| LoadError::NotALibrary {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let abi_version: AbiVersionFn = symbol(&library, &path, "kairo_plugin_abi_version")?;
        // SAFETY: the symbol has the ABI's signature (checked by name and version).
        let found = unsafe { abi_version() };
        if found != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path,
                found,
                expected: ABI_VERSION,
            });
        }
        let manifest_fn: ManifestFn = symbol(&library, &path, "kairo_plugin_manifest")?;
        let functions = Functions {
            configure: symbol(&library, &path, "kairo_plugin_configure")?,
            validate: symbol(&library, &path, "kairo_plugin_validate")?,
            execute: symbol(&library, &path, "kairo_plugin_execute")?,
            free: symbol(&library, &path, "kairo_plugin_free")?,
        };
        let mut out = KairoBuffer::empty();
        // SAFETY: `out` is a valid buffer for the plugin to fill.
        let code = unsafe { manifest_fn(&mut out) };
        let bytes = take(functions.free, out);
        if code != OK {
            return Err(LoadError::Rejected {
                path,
                message: format!("manifest failed: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| LoadError::Rejected {
                path: path.clone(),
                message: format!("invalid manifest: {e}"),
            })?;
        Ok(Self {
            library: Arc::new(library),
            functions,
            path,
            manifest,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the plugin says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Hands the plugin its `[plugins.<name>]` section.
    pub fn configure(&self, config: &serde_json::Value) -> Result<(), LoadError> {
        call(self.functions.configure, self.functions.free, config)
            .map(|_| ())
            .map_err(|e| LoadError::Rejected {
                path: self.path.clone(),
                message: format!("plugins.{}: {}", self.manifest.name, e.message),
            })
    }
}

fn symbol<T: Copy>(library: &Library, path: &Path, name: &'static str) -> Result<T, LoadError> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    // SAFETY: the type matches the ABI for this symbol name.
    unsafe { library.get::<T>(&bytes) }
        .map(|symbol| *symbol)
        .map_err(|_| LoadError::MissingSymbol {
            path: path.to_path_buf(),
            symbol: name,
        })
}

/// Copies a plugin-owned buffer and hands it back to the plugin to free.
fn take(free: FreeFn, buffer: KairoBuffer) -> Vec<u8> {
    // SAFETY: the buffer was just returned by the plugin and is live.
    let bytes = unsafe { buffer.as_slice() }.to_vec();
    // SAFETY: freed exactly once, by the library that allocated it.
    unsafe { free(buffer) };
    bytes
}

/// Calls `function` with `input` as JSON; maps the code and output to a result.
fn call(
    function: CallFn,
    free: FreeFn,
    input: &impl serde::Serialize,
) -> Result<Vec<u8>, ActionError> {
    let bytes = serde_json::to_vec(input).expect("serializable input");
    let mut out = KairoBuffer::empty();
    // SAFETY: `bytes` outlives the call; `out` is a valid buffer for the plugin to fill.
    let code = unsafe { function(bytes.as_ptr(), bytes.len(), &mut out) };
    let output = take(free, out);
    match code {
        OK => Ok(output),
        FAILED => Err(match serde_json::from_slice::<WireError>(&output) {
            Ok(wire) => wire.into(),
            Err(_) => ActionError::permanent(String::from_utf8_lossy(&output).into_owned()),
        }),
        PANICKED => Err(ActionError::permanent(format!(
            "plugin panicked: {}",
            String::from_utf8_lossy(&output)
        ))),
        other => Err(ActionError::permanent(format!(
            "plugin returned unknown code {other}"
        ))),
    }
}

#[async_trait]
impl Action for DynamicPlugin {
    fn name(&self) -> &str {
        &self.manifest.name
    }

    fn family(&self) -> &str {
        self.manifest
            .family
            .as_deref()
            .unwrap_or(&self.manifest.name)
    }

    fn version(&self) -> &str {
        &self.manifest.version
    }

    fn validate(&self, params: &serde_json::Value) -> Result<(), InvalidParams> {
        call(self.functions.validate, self.functions.free, params)
            .map(|_| ())
            .map_err(|e| InvalidParams::Plugin(e.message))
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let (library, functions, request) = (self.library.clone(), self.functions, request.clone());
        // A plain thread rather than the runtime's blocking pool: a plugin that
        // never returns must not hold up the runtime's shutdown.
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("kairo-plugin-{}", self.manifest.name))
            .spawn(move || {
                let _library = library;
                let _ = done.send(call(functions.execute, functions.free, &request));
            })
            .map_err(|e| ActionError::retryable(format!("cannot start a plugin thread: {e}")))?;
        let output = tokio::time::timeout(cx.remaining(), result)
            .await
            .map_err(|_| {
                ActionError::retryable(format!(
                    "plugin {} did not finish before its deadline",
                    self.manifest.name
                ))
            })?
            .map_err(|_| {
                ActionError::permanent(format!(
                    "plugin {} thread ended without an answer",
                    self.manifest.name
                ))
            })??;

        let detail = if output.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&output).map_err(|e| {
                ActionError::permanent(format!(
                    "plugin {} returned invalid JSON: {e}",
                    self.manifest.name
                ))
            })?
        };
        Ok(ActionOutcome::new(detail))
    }
}

impl kairo_core::sources::Keyed for DynamicPlugin {
    fn key(&self) -> &str {
        &self.manifest.name
    }
}
