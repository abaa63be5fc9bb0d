//! SORACOM Event Handler semantics: the `EventHandlerModel` JSON, its
//! constraints, the 20 rule types, re-evaluation timing, runOnceAmongTarget
//! and action execution timing. Pure: state goes through [`HandlerState`],
//! time comes in as milliseconds.
//!
//! - [`model`]: a checked handler; [`compile`] parses and checks one
//! - [`timing`]: `IMMEDIATELY`, `BEGINNING_OF_NEXT_DAY`, … in UTC
//! - [`engine`]: evaluating handlers against events ([`HandlerSet::evaluate`])

mod compile;
pub mod engine;
pub mod keys;
pub mod model;
pub mod state;
pub mod timing;

pub use compile::compile;
pub use engine::{
    HandlerOutcome, HandlerSet, HandlerTrace, ScheduledAction, describe_time, describe_time_micros,
    event_types, render,
};
pub use model::{ActionKind, Handler, HandlerError, RuleType, Target};
pub use state::{HandlerState, MemoryState, Retention, count, shared_traffic};
pub use timing::DateConst;

/// Parses a handlers file: one `EventHandlerModel` or an array of them.
/// Returns the handlers that pass every check and the errors of those that do
/// not (one bad handler does not keep the others from loading); a file that is
/// not JSON yields no handlers and one error.
pub fn parse_file(text: &str, file: &str) -> (Vec<Handler>, Vec<HandlerError>) {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            let error = HandlerError {
                file: file.to_string(),
                handler: "-".into(),
                path: format!("line {} column {}", e.line(), e.column()),
                message: crate::event::describe_json_error(&e),
            };
            return (Vec::new(), vec![error]);
        }
    };
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut handlers = Vec::new();
    let mut errors = Vec::new();
    for (position, item) in items.iter().enumerate() {
        match compile(item, file, position) {
            Ok(handler) => handlers.push(handler),
            Err(mut e) => errors.append(&mut e),
        }
    }
    (handlers, errors)
}
#[cfg(test)]
mod tests;
