//! `GET /v1/scheduled` and `DELETE /v1/scheduled/{key}`: the actions not yet
//! performed (pending, retrying or delayed), and cancelling one of them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairo_core::handler::describe_time;
use kairo_store::{Batch, HistoryEntry, PendingAction};
use serde_json::{Value, json};

use crate::admin::{AdminError, AdminState, Answer, blocking, cluster_unreachable, decode_records};
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

/// Actions scheduled in the cluster's JetStream listed at most.
const CLUSTER_LISTED: usize = 10_000;

/// `GET /v1/scheduled`: every action not yet performed, soonest due first:
/// this instance's, and in cluster mode those scheduled in JetStream.
pub(crate) async fn list(State(state): State<AdminState>) -> Answer {
    let store = state.store.clone();
    let mut actions = blocking(move || store.outbox()).await?;
    actions.extend(cluster_scheduled(&state).await?);
    actions.sort_by_key(PendingAction::due_ms);
    let now = state.clock.now_ms();
    let listed: Vec<Value> = actions.iter().map(|a| describe(a, now)).collect();
    Ok(Json(json!(listed)))
}

/// In cluster mode, the actions scheduled in JetStream for later.
async fn cluster_scheduled(state: &AdminState) -> Result<Vec<PendingAction>, AdminError> {
    let Some(queue) = &state.cluster_actions else {
        return Ok(Vec::new());
    };
    let scheduled = (queue.scheduled(CLUSTER_LISTED).await).map_err(cluster_unreachable)?;
    Ok(decode_records(&scheduled))
}

/// `DELETE /v1/scheduled/{key}` (the key percent-encoded or not): takes the
/// action off the schedule and records it in the history as `cancelled`.
/// 404 when no such action waits, 409 while an attempt is running.
pub(crate) async fn cancel(State(state): State<AdminState>, Path(key): Path<String>) -> Answer {
    let store = state.store.clone();
    let lookup = key.clone();
    let Some(action) = blocking(move || store.pending_action(&lookup)).await? else {
        return cancel_in_cluster(&state, key).await;
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
    cancelled(&state, action).await
}

/// Takes an action scheduled in the cluster's JetStream off the schedule;
/// 404 when none with `key` waits there (or not in cluster mode).
async fn cancel_in_cluster(state: &AdminState, key: String) -> Answer {
    let not_found = || {
        let message = format!("no scheduled action with key {key}");
        AdminError::new(StatusCode::NOT_FOUND, message)
    };
    let Some(queue) = &state.cluster_actions else {
        return Err(not_found());
    };
    let scheduled = cluster_scheduled(state).await?;
    let action = (scheduled.into_iter().find(|a| a.key() == key)).ok_or_else(not_found)?;
    if !(queue.unschedule(&key).await).map_err(cluster_unreachable)? {
        return Err(not_found());
    }
    cancelled(state, action).await
}

/// Records `action` in the history as `cancelled`.
async fn cancelled(state: &AdminState, action: PendingAction) -> Answer {
    let key = action.key();
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
