//! The C ABI between Kairo and dynamic plugins, and [`export_plugin!`] to implement it.
//!
//! A dynamic plugin is a `cdylib` exporting these symbols (version [`ABI_VERSION`]):
//!
//! | symbol | signature | |
//! |---|---|---|
//! | `kairo_plugin_abi_version` | `extern "C" fn() -> u32` | must equal [`ABI_VERSION`] |
//! | `kairo_plugin_manifest` | `extern "C" fn(*mut KairoBuffer) -> i32` | `{"name", "version", "family"}` |
//! | `kairo_plugin_configure` | `extern "C" fn(*const u8, usize, *mut KairoBuffer) -> i32` | the `[plugins.<name>]` section as JSON |
//! | `kairo_plugin_validate` | `extern "C" fn(*const u8, usize, *mut KairoBuffer) -> i32` | action parameters as JSON |
//! | `kairo_plugin_execute` | `extern "C" fn(*const u8, usize, *mut KairoBuffer) -> i32` | an [`ActionRequest`] as JSON |
//! | `kairo_plugin_free` | `extern "C" fn(KairoBuffer)` | frees a buffer the plugin returned |
//!
//! Data crosses the boundary as JSON. Input buffers belong to Kairo and are
//! only borrowed during the call; output buffers are allocated by the plugin
//! and handed back to `kairo_plugin_free`, so memory is always freed on the
//! side that allocated it. Return codes: [`OK`] (output is the result JSON),
//! [`FAILED`] (output is `{"class": "retryable"|"permanent", "message"}` or an
//! error message) and [`PANICKED`] (the plugin panicked; output is the panic
//! message). [`export_plugin!`] catches panics so they never unwind into Kairo.

#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

use crate::{ActionError, ActionRequest, ErrorClass, InvalidParams};

#[doc(hidden)]
pub use serde_json;

/// The ABI version this crate implements and the loader accepts.
pub const ABI_VERSION: u32 = 1;
/// Return code: success.
pub const OK: i32 = 0;
/// Return code: the operation failed; the output holds the error.
pub const FAILED: i32 = 1;
/// Return code: the plugin panicked; the output holds the message.
pub const PANICKED: i32 = 2;

/// A byte buffer allocated by the plugin (a `Vec<u8>`'s raw parts).
#[repr(C)]
#[derive(Debug)]
pub struct KairoBuffer {
    /// Start of the bytes.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocated capacity.
    pub cap: usize,
}

impl KairoBuffer {
    /// An empty buffer that owns nothing.
    pub const fn empty() -> Self {
        Self {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    /// Hands `bytes` over as a buffer; give it back to [`KairoBuffer::into_vec`] in the same library.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// Takes back a buffer made by [`KairoBuffer::from_vec`].
    ///
    /// # Safety
    /// The buffer must come from `from_vec` in this same library and not have been freed.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees these are the raw parts of a live Vec<u8>.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// The bytes, borrowed.
    ///
    /// # Safety
    /// The buffer must be live (returned by the plugin and not yet freed).
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller guarantees ptr/len describe live, initialized bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The action name scripts use.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The family for limits (defaults to the name).
    #[serde(default)]
    pub family: Option<String>,
}

/// An error as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `retryable` or `permanent`.
    pub class: String,
    /// What went wrong.
    pub message: String,
}

impl From<&ActionError> for WireError {
    fn from(error: &ActionError) -> Self {
        Self {
            class: match error.class {
                ErrorClass::Retryable => "retryable".into(),
                ErrorClass::Permanent => "permanent".into(),
            },
            message: error.message.clone(),
        }
    }
}

impl From<WireError> for ActionError {
    fn from(error: WireError) -> Self {
        if error.class == "retryable" {
            ActionError::retryable(error.message)
        } else {
            ActionError::permanent(error.message)
        }
    }
}

/// A dynamic plugin's behaviour; [`export_plugin!`] exposes it through the C ABI.
///
/// `execute` is called on a blocking thread and may block; Kairo stops waiting
/// at the action's deadline.
pub trait DynamicAction: Send + Sync + 'static {
    /// Name and version.
    fn manifest(&self) -> Manifest;

    /// Receives the `[plugins.<name>]` section at start; an error stops the start.
    fn configure(&mut self, config: &serde_json::Value) -> Result<(), InvalidParams> {
        let _ = config;
        Ok(())
    }

    /// Checks parameters without performing anything.
    fn validate(&self, params: &serde_json::Value) -> Result<(), InvalidParams> {
        let _ = params;
        Ok(())
    }

    /// Performs one attempt; returns a detail for the history.
    fn execute(&self, request: &ActionRequest) -> Result<serde_json::Value, ActionError>;
}

/// Runs `f`, writes its output to `out` and returns the code; a panic becomes [`PANICKED`].
/// Used by [`export_plugin!`].
///
/// # Safety
/// `out` must be null or point to a writable [`KairoBuffer`].
#[doc(hidden)]
pub unsafe fn guard(out: *mut KairoBuffer, f: impl FnOnce() -> Result<Vec<u8>, Vec<u8>>) -> i32 {
    let (code, bytes) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(bytes)) => (OK, bytes),
        Ok(Err(bytes)) => (FAILED, bytes),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (PANICKED, message.into_bytes())
        }
    };
    if !out.is_null() {
        // SAFETY: `out` is a valid, writable KairoBuffer provided by the host for this call.
        unsafe { out.write(KairoBuffer::from_vec(bytes)) };
    }
    code
}

/// Borrows the host's input bytes. Used by [`export_plugin!`].
///
/// # Safety
/// `ptr` must point to `len` readable bytes for the duration of the call (or be null with `len` 0).
#[doc(hidden)]
pub unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Parses input JSON for the plugin side, as an error message when it does not parse.
#[doc(hidden)]
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Vec<u8>> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid input JSON: {e}").into_bytes())
}

/// Runs `f` on the host's input bytes under [`guard`]. Used by [`export_plugin!`].
///
/// # Safety
/// `ptr`/`len` must describe readable bytes for the call (or be null/0); `out`
/// must be null or point to a writable [`KairoBuffer`].
#[doc(hidden)]
pub unsafe fn with_input(
    ptr: *const u8,
    len: usize,
    out: *mut KairoBuffer,
    f: impl FnOnce(&[u8]) -> Result<Vec<u8>, Vec<u8>>,
) -> i32 {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { input(ptr, len) };
    // SAFETY: guaranteed by the caller.
    unsafe { guard(out, || f(bytes)) }
}

/// The plugin side of `kairo_plugin_configure`. Used by [`export_plugin!`].
#[doc(hidden)]
pub fn configure(
    plugin: &std::sync::RwLock<Box<dyn DynamicAction>>,
    bytes: &[u8],
) -> Result<Vec<u8>, Vec<u8>> {
    let config: serde_json::Value = parse(bytes)?;
    let mut plugin = plugin.write().unwrap_or_else(|e| e.into_inner());
    plugin
        .configure(&config)
        .map(|()| Vec::new())
        .map_err(|e| e.to_string().into_bytes())
}

/// The plugin side of `kairo_plugin_validate`. Used by [`export_plugin!`].
#[doc(hidden)]
pub fn validate(
    plugin: &std::sync::RwLock<Box<dyn DynamicAction>>,
    bytes: &[u8],
) -> Result<Vec<u8>, Vec<u8>> {
    let params: serde_json::Value = parse(bytes)?;
    let plugin = plugin.read().unwrap_or_else(|e| e.into_inner());
    plugin
        .validate(&params)
        .map(|()| Vec::new())
        .map_err(|e| e.to_string().into_bytes())
}

/// The plugin side of `kairo_plugin_execute`. Used by [`export_plugin!`].
#[doc(hidden)]
pub fn execute(
    plugin: &std::sync::RwLock<Box<dyn DynamicAction>>,
    bytes: &[u8],
) -> Result<Vec<u8>, Vec<u8>> {
    let request: ActionRequest = parse(bytes)?;
    let plugin = plugin.read().unwrap_or_else(|e| e.into_inner());
    match plugin.execute(&request) {
        Ok(detail) => Ok(serde_json::to_vec(&detail).unwrap_or_default()),
        Err(error) => Err(serde_json::to_vec(&WireError::from(&error)).unwrap_or_default()),
    }
}

/// Exports a [`DynamicAction`] through Kairo's C ABI. Call it once in a `cdylib` crate:
///
/// ```ignore
/// kairo_plugin::export_plugin!(MyPlugin::default());
/// ```
///
/// Every exported function catches panics, so a panicking plugin fails its
/// action and never unwinds into the router.
#[macro_export]
macro_rules! export_plugin {
    ($constructor:expr) => {
        static KAIRO_PLUGIN: ::std::sync::OnceLock<
            ::std::sync::RwLock<::std::boxed::Box<dyn $crate::abi::DynamicAction>>,
        > = ::std::sync::OnceLock::new();

        fn kairo_plugin_instance()
        -> &'static ::std::sync::RwLock<::std::boxed::Box<dyn $crate::abi::DynamicAction>> {
            KAIRO_PLUGIN
                .get_or_init(|| ::std::sync::RwLock::new(::std::boxed::Box::new($constructor)))
        }

        /// The ABI version this plugin implements.
        #[unsafe(no_mangle)]
        pub extern "C" fn kairo_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// Writes the manifest JSON to `out`.
        ///
        /// # Safety
        /// `out` must be writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn kairo_plugin_manifest(out: *mut $crate::abi::KairoBuffer) -> i32 {
            let run = || {
                let plugin = kairo_plugin_instance()
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                Ok($crate::abi::serde_json::to_vec(&plugin.manifest()).unwrap_or_default())
            };
            // SAFETY: `out` is provided by the host, per the ABI.
            unsafe { $crate::abi::guard(out, run) }
        }

        $crate::__export_json_call!(
            /// Applies the configuration section.
            kairo_plugin_configure => $crate::abi::configure
        );
        $crate::__export_json_call!(
            /// Validates action parameters.
            kairo_plugin_validate => $crate::abi::validate
        );
        $crate::__export_json_call!(
            /// Performs one attempt of an action request.
            kairo_plugin_execute => $crate::abi::execute
        );

        /// Frees a buffer this plugin returned.
        ///
        /// # Safety
        /// `buffer` must have been returned by this plugin and not freed before.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn kairo_plugin_free(buffer: $crate::abi::KairoBuffer) {
            // SAFETY: guaranteed by the host, per the ABI.
            drop(unsafe { buffer.into_vec() });
        }
    };
}

/// One exported `extern "C" fn(ptr, len, out) -> i32` taking JSON input; used by [`export_plugin!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __export_json_call {
    ($(#[$doc:meta])* $name:ident => $handler:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `ptr`/`len` must describe readable bytes for the call; `out` must be writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(ptr: *const u8, len: usize, out: *mut $crate::abi::KairoBuffer) -> i32 {
            // SAFETY: guaranteed by the host, per the ABI.
            unsafe { $crate::abi::with_input(ptr, len, out, |b| $handler(kairo_plugin_instance(), b)) }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_reports_success_failure_and_panic() {
        let mut out = KairoBuffer::empty();
        assert_eq!(unsafe { guard(&mut out, || Ok(b"ok".to_vec())) }, OK);
        assert_eq!(unsafe { out.into_vec() }, b"ok");
        let mut out = KairoBuffer::empty();
        assert_eq!(unsafe { guard(&mut out, || Err(b"no".to_vec())) }, FAILED);
        assert_eq!(unsafe { out.into_vec() }, b"no");
        let mut out = KairoBuffer::empty();
        assert_eq!(unsafe { guard(&mut out, || panic!("boom")) }, PANICKED);
        assert_eq!(unsafe { out.into_vec() }, b"boom");
    }

    #[test]
    fn errors_keep_their_class_across_the_wire() {
        let wire = WireError::from(&ActionError::retryable("later"));
        let back: ActionError =
            serde_json::from_slice::<WireError>(&serde_json::to_vec(&wire).unwrap())
                .unwrap()
                .into();
        assert!(back.is_retryable());
        assert_eq!(back.message, "later");
    }
}
