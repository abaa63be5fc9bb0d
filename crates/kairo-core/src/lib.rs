//! Kairo's pure core: the normalized [`Event`], the [`ActionRequest`] a rule makes,
//! and the injected [`Clock`]. Nothing here performs I/O or needs an async runtime.
//!
//! - [`event`]: normalizing SORACOM-style and Flux-style JSON into an [`Event`]
//! - [`action`]: [`ActionRequest`], the unit of work handed to the dispatcher
//! - [`clock`]: wall-clock time as an injectable dependency
//! - [`index`]: the matching index ([`RuleIndex`]) that keeps rule count from slowing matching

pub mod action;
pub mod clock;
pub mod event;
pub mod handler;
pub mod http;
pub mod index;
pub mod redact;
pub mod sources;

pub use action::{ActionRequest, SHADOW_SUFFIX, shadow_id};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Event, EventError};
pub use index::{FieldPath, Guard, RuleIndex};
pub use redact::Redactor;

/// An error and its causes, `: `-separated, for logs and messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
