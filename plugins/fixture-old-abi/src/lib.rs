//! Test fixture: a plugin library reporting an ABI version Kairo does not
//! support, so the loader's version check can be exercised.

// A dynamic plugin exports unmangled C symbols, which Rust counts as unsafe code.
#![allow(unsafe_code)]

/// Reports ABI version 0.
#[unsafe(no_mangle)]
pub extern "C" fn kairo_plugin_abi_version() -> u32 {
    0
}
