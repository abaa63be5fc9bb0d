//! SORACOM Event Handler semantics: the `EventHandlerModel` JSON, its
//! constraints, the 20 rule types, re-evaluation timing, runOnceAmongTarget
//! and action execution timing. Pure: state goes through [`HandlerState`],
//! time comes in as milliseconds.
//!
//! - [`model`]: parsing and checking handlers ([`compile`])
//! - [`timing`]: `IMMEDIATELY`, `BEGINNING_OF_NEXT_DAY`, … in UTC
//! - [`engine`]: evaluating handlers against events ([`HandlerSet::evaluate`])

pub mod engine;
pub mod model;
pub mod timing;

pub use engine::{HandlerSet, HandlerState, MemoryState, Retention, count, event_types, render};
pub use model::{ActionKind, CompileOptions, Handler, HandlerError, RuleType, Target, compile};
pub use timing::DateConst;

/// Parses a handlers file: one `EventHandlerModel` or an array of them.
pub fn parse_file(
    text: &str,
    file: &str,
    options: CompileOptions,
) -> Result<Vec<Handler>, Vec<HandlerError>> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        vec![HandlerError {
            file: file.to_string(),
            handler: "-".into(),
            path: format!("line {} column {}", e.line(), e.column()),
            message: crate::event::describe_json_error(&e),
        }]
    })?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut handlers = Vec::new();
    let mut errors = Vec::new();
    for (position, item) in items.iter().enumerate() {
        match compile(item, file, position, options) {
            Ok(handler) => handlers.push(handler),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(handlers)
    } else {
        Err(errors)
    }
}
#[cfg(test)]
mod tests;
