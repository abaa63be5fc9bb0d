//! Operator endpoints next to the webhook: dead letters, history and store
//! counts. Protected by the same bearer token as `POST /v1/events`.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kairo_core::Clock;
use kairo_store::{HistoryStatus, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dispatch::Dispatcher;
use crate::stats::RuleStats;
use crate::trace::EventTrace;
use kairo_core::handler::describe_time;

/// What the admin endpoints use.
#[derive(Clone)]
pub struct AdminState {
    /// The store.
    pub store: Arc<Store>,
    /// To schedule retried dead letters at once.
    pub dispatcher: Dispatcher,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Bearer token, when required.
    pub token: Option<String>,
    /// The rules, to explain the ones the index ruled out.
    pub rules: Arc<kairo_script::RuleStore>,
    /// The SORACOM event handlers.
    pub handlers: Arc<crate::handlers::HandlerStore>,
    /// Per-rule numbers.
    pub stats: Arc<crate::stats::Stats>,
    /// The SORACOM watcher's progress.
    pub watch: Arc<std::sync::Mutex<crate::watcher::WatchStatus>>,
    /// When the router started, for its uptime.
    pub started: std::time::Instant,
    /// Why the store cannot commit now, if it cannot.
    pub health: Arc<crate::writer::StoreHealth>,
    /// Cluster mode: the actions scheduled in JetStream.
    pub cluster_actions: Option<kairo_ingest::cluster::ActionQueue>,
}

/// `GET /v1/dead-letters`, `POST /v1/dead-letters/retry`, `DELETE /v1/dead-letters/{id}`,
/// `GET /v1/history?limit=N`, `GET /v1/status`, `GET /v1/events?since=..`,
/// `GET /v1/events/{id}`, `GET /v1/rules`, `GET /v1/sources`,
/// `GET /v1/scheduled`, `DELETE /v1/scheduled/{key}`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/dead-letters", get(list_dead))
        .route("/v1/dead-letters/retry", post(retry_dead))
        .route("/v1/dead-letters/{*id}", delete(drop_dead))
        .route("/v1/history", get(history))
        .route("/v1/status", get(status))
        .route("/v1/events", get(recorded_events))
        .route("/v1/events/{*id}", get(explain_event))
        .route("/v1/rules", get(list_rules))
        .route("/v1/rules/{name}", get(rule_source))
        .route("/v1/sources", get(sources))
        .route("/v1/scheduled", get(crate::scheduled::list))
        .route("/v1/scheduled/{*key}", delete(crate::scheduled::cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// An admin request that failed: status and message.
pub(crate) struct AdminError(StatusCode, String);

impl AdminError {
    /// An answer with `status` and `message`.
    pub(crate) fn new(status: StatusCode, message: String) -> Self {
        Self(status, message)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub(crate) type Answer = Result<Json<Value>, AdminError>;

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(token) = state.token.as_deref().filter(|t| !t.is_empty())
        && !kairo_ingest::webhook::bearer_matches(request.headers(), token)
    {
        return AdminError(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Runs a store operation off the async runtime and turns its result into JSON.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, kairo_store::StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    let internal = |e: String| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e);
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| match e {
            kairo_store::StoreError::NoSuchDeadLetter(_) => {
                AdminError(StatusCode::NOT_FOUND, e.to_string())
            }
            e => internal(e.to_string()),
        })
}

/// `GET /v1/dead-letters`: this instance's, and in cluster mode the action
/// dead letters every instance keeps in JetStream, oldest first.
async fn list_dead(State(state): State<AdminState>) -> Answer {
    let store = state.store.clone();
    let mut letters = blocking(move || store.dead_letters()).await?;
    letters.extend(cluster_dead(&state).await?);
    letters.sort_by_key(|l| l.failed_at_ms);
    Ok(Json(json!(letters)))
}

/// Action dead letters listed from the cluster at most.
const CLUSTER_DEAD_LISTED: usize = 10_000;

/// In cluster mode, the action dead letters kept in JetStream.
async fn cluster_dead(state: &AdminState) -> Result<Vec<kairo_store::DeadLetter>, AdminError> {
    let Some(queue) = &state.cluster_actions else {
        return Ok(Vec::new());
    };
    let kept = (queue.dead_letters(CLUSTER_DEAD_LISTED).await).map_err(cluster_unreachable)?;
    Ok(decode_records(&kept))
}

/// Records read from the cluster's JetStream, decoded; one that does not
/// decode (written by another version, say) is left out and logged.
pub(crate) fn decode_records<T: serde::de::DeserializeOwned>(bodies: &[Vec<u8>]) -> Vec<T> {
    (bodies.iter())
        .filter_map(|body| {
            serde_json::from_slice(body)
                .inspect_err(|error| tracing::warn!(%error, "a record in the cluster's JetStream could not be read; left out"))
                .ok()
        })
        .collect()
}

/// The cluster's JetStream could not answer.
pub(crate) fn cluster_unreachable(error: kairo_ingest::cluster::ClusterError) -> AdminError {
    AdminError(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}

/// Retries the cluster's dead letters among `chosen`: each action is
/// published again, due now, under a fresh message id, and its letter
/// removed. Returns the keys retried.
async fn retry_in_cluster(
    state: &AdminState,
    chosen: Vec<kairo_store::DeadLetter>,
) -> Result<Vec<String>, AdminError> {
    let Some(queue) = &state.cluster_actions else {
        return Ok(Vec::new());
    };
    let now = state.clock.now_ms();
    let mut keys = Vec::new();
    for letter in chosen {
        let Some(action) = letter.action.map(|a| a.retried(now)) else {
            continue;
        };
        let job = kairo_ingest::cluster::ActionJob {
            key: format!("{}#retry-{now}", action.key()),
            due_ms: None,
            body: serde_json::to_vec(&action).expect("actions serialize"),
        };
        (queue.publish(vec![job]).await).map_err(cluster_unreachable)?;
        (queue.drop_dead(&letter.id).await).map_err(cluster_unreachable)?;
        keys.push(action.key());
    }
    Ok(keys)
}

/// Body of `POST /v1/dead-letters/retry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Dead letter ids to retry.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Retry every action dead letter.
    #[serde(default)]
    pub all: bool,
}

async fn retry_dead(State(state): State<AdminState>, Json(body): Json<RetryRequest>) -> Answer {
    if !body.all && body.ids.is_empty() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "give `ids` or `all: true`".into(),
        ));
    }
    // In cluster mode the cluster's letters are retried there, the rest here.
    let in_cluster = cluster_dead(&state).await?;
    let (chosen, ids) = match body.all {
        true => (in_cluster, None),
        false => {
            let (chosen, _): (Vec<_>, Vec<_>) = in_cluster
                .into_iter()
                .partition(|l| body.ids.contains(&l.id));
            let rest: Vec<String> = (body.ids.into_iter())
                .filter(|id| !chosen.iter().any(|l| &l.id == id))
                .collect();
            (chosen, Some(rest))
        }
    };
    let mut keys = retry_in_cluster(&state, chosen).await?;
    if ids.as_ref().is_none_or(|ids| !ids.is_empty()) {
        let store = state.store.clone();
        let now = state.clock.now_ms();
        let retried = blocking(move || store.retry_dead(ids.as_deref(), now)).await?;
        keys.extend(retried.iter().map(|a| a.key()));
        state.dispatcher.enqueue(retried);
    }
    Ok(Json(json!({"retried": keys})))
}

async fn drop_dead(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let store = state.store.clone();
    let local = id.clone();
    let dropped = blocking(move || store.drop_dead(&local)).await?
        || match &state.cluster_actions {
            Some(queue) => (queue.drop_dead(&id).await).map_err(cluster_unreachable)?,
            None => false,
        };
    if dropped {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            "no such dead letter".into(),
        ))
    }
}

/// Query of `GET /v1/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Most recent entries to return (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/history`: the most recent finished actions, oldest first:
/// this instance's, and in cluster mode every instance's.
async fn history(State(state): State<AdminState>, Query(query): Query<HistoryQuery>) -> Answer {
    let limit = query.limit.unwrap_or(100);
    let store = state.store.clone();
    let mut entries = blocking(move || store.history(limit)).await?;
    if let Some(queue) = &state.cluster_actions {
        let finished = (queue.finished(limit).await).map_err(cluster_unreachable)?;
        let finished = decode_records::<kairo_store::HistoryEntry>(&finished).into_iter();
        // This instance's performed actions are in both.
        let known: std::collections::HashSet<(String, i64)> = (entries.iter())
            .map(|e| (e.request.key(), e.finished_at_ms))
            .collect();
        let finished: Vec<_> = finished
            .filter(|e| !known.contains(&(e.request.key(), e.finished_at_ms)))
            .collect();
        entries.extend(finished);
        entries.sort_by_key(|e| e.finished_at_ms);
        entries.drain(..entries.len().saturating_sub(limit));
    }
    Ok(Json(json!(entries)))
}

/// `GET /v1/sources`: the SORACOM watcher's progress and lag.
async fn sources(State(state): State<AdminState>) -> Answer {
    let watch = crate::watcher::status_now(&state.watch, state.clock.now_ms());
    Ok(Json(json!({"soracomWatch": watch})))
}

async fn status(State(state): State<AdminState>) -> Answer {
    let store = state.store.clone();
    let (inbox, outbox, dead) = blocking(move || store.counts()).await?;
    let problem = state.health.problem();
    Ok(Json(json!({
        "inbox": inbox, "outbox": outbox, "deadLetters": dead,
        "ready": problem.is_none(), "notReadyReason": problem,
        "uptimeSeconds": state.started.elapsed().as_secs(), "version": crate::VERSION,
    })))
}

/// `GET /v1/events` parameters: RFC 3339 times, the page cursor and size, or
/// `last` for the most recent events.
#[derive(Deserialize)]
struct EventsQuery {
    last: Option<usize>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Most recorded events one page holds.
const MAX_PAGE: usize = 10_000;

/// `GET /v1/events?since=..&until=..`: the recorded events received in the
/// range, oldest first, as JSON lines; when more follow, a `Link` header
/// (`rel="next"`) gives the next page.
async fn recorded_events(
    State(state): State<AdminState>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, AdminError> {
    let time = |text: &Option<String>, default: i64| match text {
        None => Ok(default),
        Some(text) => crate::recorded::parse_time(text)
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let (since, until) = (time(&query.since, 0)?, time(&query.until, i64::MAX)?);
    let limit = query.limit.unwrap_or(1_000).clamp(1, MAX_PAGE);
    let store = state.store.clone();
    if let Some(last) = query.last {
        let recent = blocking(move || store.recent_events(last.clamp(1, MAX_PAGE))).await?;
        return Ok(json_lines(&recent).into_response());
    }
    let after = query.after.clone();
    let page =
        blocking(move || store.recorded_events(since, until, after.as_deref(), limit)).await?;
    let mut response = json_lines(&page.events).into_response();
    if let Some(next) = page.next {
        let mut link = reqwest::Url::parse("http://kairo/v1/events").expect("a valid URL");
        link.query_pairs_mut()
            .append_pair("after", &next)
            .append_pair("limit", &limit.to_string());
        for (name, value) in [("since", &query.since), ("until", &query.until)] {
            if let Some(value) = value {
                link.query_pairs_mut().append_pair(name, value);
            }
        }
        let next = format!(
            "<{}?{}>; rel=\"next\"",
            link.path(),
            link.query().unwrap_or("")
        );
        if let Ok(value) = next.parse() {
            response.headers_mut().insert("link", value);
        }
    }
    Ok(response)
}

/// Recorded events as JSON lines.
fn json_lines(events: &[kairo_store::StoredEvent]) -> impl IntoResponse {
    let mut body = String::new();
    for stored in events {
        let line = crate::recorded::RecordedLine::of(stored);
        body.push_str(&serde_json::to_string(&line).expect("a line serializes"));
        body.push('\n');
    }
    ([("content-type", "application/x-ndjson")], body)
}

/// `GET /v1/rules/{name}`: a loaded rule script or handler and the source of
/// the file it was loaded from, as the file reads now.
async fn rule_source(State(state): State<AdminState>, Path(name): Path<String>) -> Answer {
    let rules = state.rules.snapshot();
    let script = (rules.rules().iter())
        .find(|rule| rule.name == name || rule.id == name)
        .map(|rule| ("script", rule.path.clone()));
    let handler = || {
        (state.handlers.listing().into_iter())
            .find(|h| h.id == name)
            .map(|h| ("handler", h.file))
    };
    let Some((kind, file)) = script.or_else(handler) else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no rule script or handler named {name} is loaded"),
        ));
    };
    let source = tokio::fs::read_to_string(&file)
        .await
        .map_err(|e| AdminError(StatusCode::NOT_FOUND, format!("{}: {e}", file.display())))?;
    Ok(Json(json!({
        "name": name, "kind": kind, "file": file.display().to_string(), "source": source,
    })))
}

/// `GET /v1/events/{id}`: the event, when and where it came from, why each
/// rule and handler did or did not act, and its actions' outcomes now.
async fn explain_event(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    let store = state.store.clone();
    let lookup = id.clone();
    let (record, actions) =
        blocking(move || Ok((store.event_record(&lookup)?, store.actions_of(&lookup)?))).await?;
    let Some(record) = record else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!(
                "no evaluated event with id {id} is kept (received events are kept for store.event_retention_seconds and store.event_retention_count)"
            ),
        ));
    };
    let recorded: EventTrace = serde_json::from_str(record.trace.get())
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let event = kairo_core::Event::from_value(record.accepted.event.clone())
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut requests: Vec<kairo_core::ActionRequest> = Vec::new();
    let known = actions.pending.iter().map(|a| &a.request);
    let known = known.chain(actions.finished.iter().map(|h| &h.request));
    let known = known.chain(
        actions
            .dead
            .iter()
            .filter_map(|d| Some(&d.action.as_ref()?.request)),
    );
    for request in known {
        if !requests.iter().any(|r| r.key() == request.key()) {
            requests.push(request.clone());
        }
    }
    let trace = crate::trace::expand(&state.rules.snapshot(), &event, &recorded, &requests);
    Ok(Json(json!({
        "id": id,
        "event": record.accepted.event,
        "source": record.accepted.source,
        "receivedAt": describe_time(record.accepted.received_at_ms),
        "evaluatedAt": describe_time(record.evaluated_at_ms),
        "trace": trace,
        "actions": action_outcomes(actions),
    })))
}

/// One line per action of an event, with its status now: `pending` (waiting,
/// retrying or delayed), `succeeded` or `dead`.
fn action_outcomes(actions: kairo_store::EventActions) -> Vec<Value> {
    let mut by_key = std::collections::BTreeMap::new();
    for entry in actions.finished {
        let status = match entry.status {
            HistoryStatus::Succeeded => "succeeded",
            HistoryStatus::Failed => "dead",
            HistoryStatus::Shadow => "shadow",
            HistoryStatus::Cancelled => "cancelled",
        };
        by_key.insert(
            entry.request.key(),
            json!({"key": entry.request.key(), "action": entry.request.action, "rule": entry.request.rule,
                   "status": status, "attempts": entry.attempts, "lastError": entry.error,
                   "finishedAt": describe_time(entry.finished_at_ms)}),
        );
    }
    for letter in actions.dead {
        if let Some(action) = letter.action {
            by_key.insert(
                action.key(),
                json!({"key": action.key(), "action": action.request.action, "rule": action.request.rule,
                       "status": "dead", "attempts": action.attempts, "lastError": letter.error,
                       "finishedAt": describe_time(letter.failed_at_ms)}),
            );
        }
    }
    for action in actions.pending {
        by_key.insert(
            action.key(),
            json!({"key": action.key(), "action": action.request.action, "rule": action.request.rule,
                   "status": "pending", "attempts": action.attempts, "lastError": action.last_error,
                   "dueAt": describe_time(action.due_ms())}),
        );
    }
    by_key.into_values().collect()
}

/// `GET /v1/rules`: every loaded rule script and handler with its numbers
/// since the router started.
async fn list_rules(State(state): State<AdminState>) -> Answer {
    let entry = |name: &str, kind: &str, file: &std::path::Path, shadow: bool, stats: RuleStats| {
        json!({
            "name": name, "kind": kind, "file": file.display().to_string(), "shadow": shadow,
            "evaluations": stats.evaluations, "fires": stats.fires,
            "suppressions": stats.suppressions, "errors": stats.errors,
            "lastFiredAt": stats.last_fired_at_ms.map(describe_time),
            "lastError": stats.last_error,
        })
    };
    let rules = state.rules.snapshot();
    let mut listed: Vec<Value> = (rules.rules().iter())
        .map(|rule| {
            let stats = state.stats.rule(&rule.id);
            entry(&rule.name, "script", &rule.path, rule.shadow, stats)
        })
        .collect();
    for handler in state.handlers.listing() {
        let stats = (state.stats).handler(&kairo_core::shadow_id(&handler.id, handler.shadow));
        let mut listed_handler =
            entry(&handler.id, "handler", &handler.file, handler.shadow, stats);
        listed_handler["title"] = Value::String(handler.name);
        listed.push(listed_handler);
    }
    Ok(Json(Value::Array(listed)))
}
