//! `GET /v1/scheduled` and `DELETE /v1/scheduled/{key}`: the actions not yet
//! performed (pending, retrying or delayed), and cancelling one of them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairo_core::handler::describe_time;
use kairo_store::{Batch, HistoryEntry, PendingAction};
use serde_json::{Value, json};

use crate::admin::{AdminError, AdminState, Answer, blocking};
use crate::dispatch::Cancelled;

/// Why an action waits: `due` (its turn comes now), `delayed` (not before a
/// time a rule or handler asked for) or `retrying` (after a failed attempt).
fn waiting(action: &PendingAction, now_ms: i64) -> &'static str {
    match (action.attempts, action.due_ms() > now_ms) {
        (0, false) => "due",
        (0, true) => "delayed",
        _ => "retrying",
    }
}

/// One scheduled action as `GET /v1/scheduled` lists it.
pub fn describe(action: &PendingAction, now_ms: i64) -> Value {
    let request = &action.request;
    json!({
        "key": action.key(),
        "action": request.action,
        "rule": request.rule,
        "eventId": request.event_id,
        "params": request.params,
        "dueAt": describe_time(action.due_ms()),
        "dueAtMs": action.due_ms(),
        "attempts": action.attempts,
        "lastError": action.last_error,
        "createdAt": describe_time(action.created_at_ms),
        "state": waiting(action, now_ms),
    })
}

/// `GET /v1/scheduled`: every action not yet performed, soonest due first.
pub(crate) async fn list(State(state): State<AdminState>) -> Answer {
    let store = state.store.clone();
    let actions = blocking(move || store.outbox()).await?;
    let now = state.clock.now_ms();
    let listed: Vec<Value> = actions.iter().map(|a| describe(a, now)).collect();
    Ok(Json(json!(listed)))
}

/// `DELETE /v1/scheduled/{key}` (the key percent-encoded or not): takes the
/// action off the schedule and records it in the history as `cancelled`.
/// 404 when no such action waits, 409 while an attempt is running.
pub(crate) async fn cancel(State(state): State<AdminState>, Path(key): Path<String>) -> Answer {
    let store = state.store.clone();
    let lookup = key.clone();
    let Some(action) = blocking(move || store.pending_action(&lookup)).await? else {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("no scheduled action with key {key}"),
        ));
    };
    match state.dispatcher.cancel(key.clone()).await {
        Some(Cancelled::Removed | Cancelled::NotQueued) => {}
        Some(Cancelled::Running) => {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                format!("{key} is being performed now and cannot be cancelled"),
            ));
        }
        None => {
            return Err(AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the router is shutting down".into(),
            ));
        }
    }
    let now = state.clock.now_ms();
    let batch = Batch {
        finished: vec![HistoryEntry::cancelled(action, now)],
        ..Batch::default()
    };
    let store = state.store.clone();
    blocking(move || store.commit(&batch, now, i64::MIN)).await?;
    tracing::info!(%key, "scheduled action cancelled");
    Ok(Json(json!({"cancelled": key})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_waits_because_it_is_due_delayed_or_retrying() {
        let request = kairo_core::ActionRequest {
            action: "webhook".into(),
            params: json!({}),
            event_id: "e".into(),
            rule: "r".into(),
            index: 0,
            not_before_ms: None,
            shadow: false,
        };
        let due = PendingAction::new(request.clone(), 1_000);
        assert_eq!(waiting(&due, 1_000), "due");
        let later = kairo_core::ActionRequest {
            not_before_ms: Some(5_000),
            ..request
        };
        let delayed = PendingAction::new(later, 1_000);
        assert_eq!(waiting(&delayed, 1_000), "delayed");
        assert_eq!(waiting(&delayed, 5_000), "due");
        let retrying = PendingAction { attempts: 1, ..due };
        assert_eq!(waiting(&retrying, 0), "retrying");
        assert_eq!(describe(&delayed, 1_000)["dueAtMs"], 5_000);
    }
}
