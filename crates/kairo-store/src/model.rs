//! The records the store keeps, serialized as JSON values in redb tables.

use kairo_core::ActionRequest;
use serde::{Deserialize, Serialize};

/// An accepted event awaiting evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// The event as JSON, its `id` filled in.
    pub event: serde_json::Value,
    /// When it was accepted, epoch milliseconds.
    pub received_at_ms: i64,
    /// Where it came from, e.g. `webhook` or `nats:soracom.events.x`.
    pub source: String,
}

impl StoredEvent {
    /// The event's id.
    pub fn id(&self) -> &str {
        self.event
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }
}

/// An action not yet finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAction {
    /// The request.
    pub request: ActionRequest,
    /// Attempts made so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, epoch milliseconds.
    pub next_attempt_ms: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When the action was requested, epoch milliseconds.
    pub created_at_ms: i64,
}

impl PendingAction {
    /// A new pending action, due at `not_before` or now.
    pub fn new(request: ActionRequest, now_ms: i64) -> Self {
        Self {
            next_attempt_ms: request.not_before_ms.unwrap_or(now_ms).max(now_ms),
            request,
            attempts: 0,
            last_error: None,
            created_at_ms: now_ms,
        }
    }

    /// The idempotency key.
    pub fn key(&self) -> String {
        self.request.key()
    }

    /// This action tried again from scratch (a retried dead letter): no
    /// attempts made, due at `now_ms`, whatever delay it first had.
    pub fn retried(mut self, now_ms: i64) -> Self {
        self.attempts = 0;
        self.next_attempt_ms = now_ms;
        self.request.not_before_ms = None;
        self
    }

    /// When it may next be attempted.
    pub fn due_ms(&self) -> i64 {
        self.next_attempt_ms
            .max(self.request.not_before_ms.unwrap_or(i64::MIN))
    }
}

/// What kind of thing a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterKind {
    /// An action that failed permanently or ran out of attempts.
    Action,
    /// Input a source could not turn into an event.
    Input,
}

/// Something Kairo gave up on, kept with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Unique id: the action key, or `input/<time>/<hash>`.
    pub id: String,
    /// Action or input.
    pub kind: DeadLetterKind,
    /// The action, for action dead letters.
    pub action: Option<PendingAction>,
    /// The raw input, for input dead letters.
    pub input: Option<String>,
    /// Where the input came from.
    pub source: Option<String>,
    /// Why it was given up.
    pub error: String,
    /// When, epoch milliseconds.
    pub failed_at_ms: i64,
}

/// A finished action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "StoredHistoryEntry")]
pub struct HistoryEntry {
    /// The request.
    pub request: ActionRequest,
    /// How it ended.
    pub status: HistoryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// True when it succeeded.
    pub succeeded: bool,
    /// The last error, when it failed.
    pub error: Option<String>,
    /// `retryable` or `permanent`, when it failed.
    #[serde(default)]
    pub error_class: Option<String>,
    /// What the plugin reported.
    pub detail: serde_json::Value,
    /// When the action was requested, epoch milliseconds.
    pub created_at_ms: i64,
    /// When it finished, epoch milliseconds.
    pub finished_at_ms: i64,
}

/// How an action in the history ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStatus {
    /// Performed.
    Succeeded,
    /// Given up on.
    Failed,
    /// Asked for by a rule or handler in shadow: recorded, never performed.
    Shadow,
    /// Cancelled by an operator before it was performed.
    Cancelled,
}

impl HistoryEntry {
    /// The record of `request`, asked for at `now_ms` by a rule or handler
    /// in shadow: never performed.
    pub fn shadow(request: ActionRequest, now_ms: i64) -> Self {
        Self {
            request,
            status: HistoryStatus::Shadow,
            attempts: 0,
            succeeded: false,
            error: None,
            error_class: None,
            detail: serde_json::Value::Null,
            created_at_ms: now_ms,
            finished_at_ms: now_ms,
        }
    }
}

impl HistoryEntry {
    /// The record of `action`, cancelled by an operator at `now_ms` before it
    /// was performed.
    pub fn cancelled(action: PendingAction, now_ms: i64) -> Self {
        Self {
            status: HistoryStatus::Cancelled,
            attempts: action.attempts,
            error: action.last_error,
            created_at_ms: action.created_at_ms,
            ..Self::shadow(action.request, now_ms)
        }
    }
}

/// A history entry as stored (entries written before `status` existed lack it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredHistoryEntry {
    request: ActionRequest,
    #[serde(default)]
    status: Option<HistoryStatus>,
    attempts: u32,
    succeeded: bool,
    error: Option<String>,
    #[serde(default)]
    error_class: Option<String>,
    detail: serde_json::Value,
    created_at_ms: i64,
    finished_at_ms: i64,
}

impl From<StoredHistoryEntry> for HistoryEntry {
    fn from(stored: StoredHistoryEntry) -> Self {
        let derived = if stored.succeeded {
            HistoryStatus::Succeeded
        } else {
            HistoryStatus::Failed
        };
        Self {
            status: stored.status.unwrap_or(derived),
            request: stored.request,
            attempts: stored.attempts,
            succeeded: stored.succeeded,
            error: stored.error,
            error_class: stored.error_class,
            detail: stored.detail,
            created_at_ms: stored.created_at_ms,
            finished_at_ms: stored.finished_at_ms,
        }
    }
}

/// An evaluated event and what the pipeline decided for it, kept to explain it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// The event as accepted, with when and where it came from.
    pub accepted: StoredEvent,
    /// When it was evaluated, epoch milliseconds.
    pub evaluated_at_ms: i64,
    /// The trace as the router serialized it (kept as JSON text: it is
    /// written on every evaluation and read only when asked for).
    pub trace: Box<serde_json::value::RawValue>,
    /// Its place in the index of records by arrival (`MS.SEQ`).
    #[serde(default)]
    pub order: Option<String>,
}

/// An evaluated event's trace, to keep with the event as it was accepted
/// (which the store already holds: the record is composed when the event
/// leaves the inbox, without the event passing through the caller again).
#[derive(Debug, Clone)]
pub struct TraceEntry {
    /// The event's id.
    pub event_id: String,
    /// When it was evaluated, epoch milliseconds.
    pub evaluated_at_ms: i64,
    /// The trace as JSON.
    pub trace: TraceJson,
}

/// A trace as JSON text, written verbatim into the event's record.
///
/// Traces are written on every evaluation and read only when asked for, so
/// the router may write the usual ones directly rather than through the
/// serializer; [`TraceJson::from_json_text`] takes such text unchecked in
/// release builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceJson(String);

impl TraceJson {
    /// The JSON of `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(Self)
    }

    /// `text`, which the caller wrote as one JSON value (checked in debug builds).
    pub fn from_json_text(text: String) -> Self {
        debug_assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
            "not JSON: {text}"
        );
        Self(text)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An event's actions as the store knows them now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventActions {
    /// Pending, retrying or delayed.
    pub pending: Vec<PendingAction>,
    /// Finished (succeeded or given up).
    pub finished: Vec<HistoryEntry>,
    /// Given up and kept as dead letters.
    pub dead: Vec<DeadLetter>,
}
