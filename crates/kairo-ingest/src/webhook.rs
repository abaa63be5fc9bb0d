//! The HTTP webhook: `POST /v1/events`, `GET /healthz`, `GET /metrics`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, body::Bytes};
use http_body_util::{BodyExt, Limited};
use kairo_core::Event;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::EventSink;
use crate::config::ServerConfig;

#[derive(Clone)]
struct WebhookState {
    sink: Arc<dyn EventSink>,
    token: Option<Arc<str>>,
    config: Arc<ServerConfig>,
    bytes: Arc<Semaphore>,
    events: Arc<Semaphore>,
}

/// The webhook's routes, delivering to `sink`.
pub fn webhook_router(sink: Arc<dyn EventSink>, config: ServerConfig) -> Router {
    let state = WebhookState {
        sink,
        token: config
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
        bytes: Arc::new(Semaphore::new(
            config.max_bytes_in_flight.min(Semaphore::MAX_PERMITS),
        )),
        events: Arc::new(Semaphore::new(
            config.max_events_in_flight.min(Semaphore::MAX_PERMITS),
        )),
        config: Arc::new(config),
    };
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// 503 with `Retry-After`: the client should send the same request again shortly.
pub fn unavailable(message: String, retry_after_seconds: u64) -> Response {
    unavailable_with(json!({"error": message}), retry_after_seconds)
}

/// 503 with `Retry-After` and `body`.
fn unavailable_with(body: Value, retry_after_seconds: u64) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        retry_after_seconds.to_string().parse().expect("digits"),
    );
    response
}

fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token".into(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("valid header"),
    );
    response
}

/// Takes `n` permits now, or none.
fn reserve(budget: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(n.max(1)).ok()?;
    budget.clone().try_acquire_many_owned(n).ok()
}

async fn post_events(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(expected) = &state.token
        && !bearer_matches(&headers, expected)
    {
        state.sink.rejected("unauthorized");
        return unauthorized();
    }
    let config = &state.config;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > config.max_body_bytes) {
        return Rejection::too_large(config).answer(&state);
    }
    let Some(_bytes) = reserve(&state.bytes, declared.unwrap_or(config.max_body_bytes)) else {
        state.sink.rejected("busy");
        return unavailable("too many request bytes in flight; retry shortly".into(), 1);
    };
    let body = match read_body(body, config).await {
        Ok(body) => body,
        Err(rejection) => return rejection.answer(&state),
    };
    let split = match split_within(&body, config.max_events_per_request) {
        Ok(split) => split,
        Err(rejection) => return rejection.answer(&state),
    };
    let Some(_events) = reserve(&state.events, split.len()) else {
        state.sink.rejected("busy");
        return unavailable("too many events in flight; retry shortly".into(), 1);
    };
    let events = match split.build() {
        Ok(events) => events,
        Err(error) => {
            return Rejection::new(StatusCode::BAD_REQUEST, error.to_string(), "malformed")
                .answer(&state);
        }
    };
    drop(body);
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    match state.sink.accept(events).await {
        Ok(duplicates) => (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": ids.len(), "duplicates": duplicates, "ids": ids})),
        )
            .into_response(),
        Err(e) => unavailable(
            format!("events not accepted: {}", kairo_core::error_chain(&e)),
            1,
        ),
    }
}

/// A refused request: status, message, and the reason counted in the metrics.
struct Rejection {
    status: StatusCode,
    message: String,
    reason: &'static str,
}

impl Rejection {
    fn new(status: StatusCode, message: String, reason: &'static str) -> Self {
        Self {
            status,
            message,
            reason,
        }
    }

    fn too_large(config: &ServerConfig) -> Self {
        let message = format!(
            "request body exceeds the limit of {} bytes",
            config.max_body_bytes
        );
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message, "too_large")
    }

    /// Counts the rejection and answers it.
    fn answer(self, state: &WebhookState) -> Response {
        state.sink.rejected(self.reason);
        error(self.status, self.message)
    }
}

/// Receives the whole body within `body_timeout` and `max_body_bytes`.
async fn read_body(body: Body, config: &ServerConfig) -> Result<Bytes, Rejection> {
    let limited = Limited::new(body, config.max_body_bytes);
    match tokio::time::timeout(config.body_timeout(), limited.collect()).await {
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {:?}",
                config.body_timeout()
            ),
            "body_timeout",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Rejection::too_large(config))
        }
        Ok(Err(e)) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {e}"),
            "unreadable",
        )),
    }
}

/// `body` split into its events, refused past `max` events, before any is built.
fn split_within(body: &[u8], max: usize) -> Result<Split<'_>, Rejection> {
    let split = split_events(body)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.to_string(), "malformed"))?;
    if split.len() > max {
        let message = format!(
            "{} events in one request, more than the limit of {max} (server.max_events_per_request)",
            split.len()
        );
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            message,
            "too_many_events",
        ));
    }
    Ok(split)
}

/// A body split into its events' JSON, before any event is built.
pub enum Split<'a> {
    /// The body is not an array: one event (or not an event at all).
    One(&'a [u8]),
    /// The body is an array: each item's JSON, checked for syntax.
    Many(Vec<&'a serde_json::value::RawValue>),
}

impl Split<'_> {
    /// How many events the body holds.
    pub fn len(&self) -> usize {
        match self {
            Split::One(_) => 1,
            Split::Many(items) => items.len(),
        }
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events; the error names the event index and field.
    pub fn build(self) -> Result<Vec<Event>, BodyError> {
        let syntax =
            |e: serde_json::Error| BodyError::Syntax(kairo_core::event::describe_json_error(&e));
        let invalid = |at: String| move |error| BodyError::Invalid { at, error };
        match self {
            Split::Many(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let value: Value = serde_json::from_str(item.get()).map_err(syntax)?;
                    Event::from_value(value).map_err(invalid(format!("events[{i}]")))
                })
                .collect(),
            Split::One(body) => match serde_json::from_slice(body).map_err(syntax)? {
                value @ Value::Object(_) => Ok(vec![
                    Event::from_value(value).map_err(invalid("event".into()))?,
                ]),
                other => Err(BodyError::NotEvents(kairo_core::event::json_kind(&other))),
            },
        }
    }
}

/// Why a body holds no events; says where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON: what the parser found, with line and column.
    #[error("{0}")]
    Syntax(String),
    /// JSON, but neither an event object nor an array (the kind found).
    #[error("expected an event object or an array of events, found {0}")]
    NotEvents(&'static str),
    /// An event that cannot be read.
    #[error("{}", located(.at, .error))]
    Invalid {
        /// `event`, or `events[i]` in an array.
        at: String,
        /// The field at fault and why.
        #[source]
        error: kairo_core::EventError,
    },
}

/// Splits a body holding one event object or an array of them, reading the
/// JSON once; a syntax error says where it is (line and column).
pub fn split_events(body: &[u8]) -> Result<Split<'_>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok(Split::One(body));
    }
    serde_json::from_slice(body)
        .map(Split::Many)
        .map_err(|e| BodyError::Syntax(kairo_core::event::describe_json_error(&e)))
}

/// Parses a body holding one event object or an array of them. The error says
/// where the problem is: a JSON line and column, or the event index and field.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, BodyError> {
    split_events(body)?.build()
}

fn located(prefix: &str, error: &kairo_core::EventError) -> String {
    if error.field.is_empty() {
        format!("{prefix}: {}", error.message)
    } else {
        format!("{prefix}.{}: {}", error.field, error.message)
    }
}

/// True when the request carries `Authorization: Bearer <expected>` (compared in constant time).
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(expected.as_bytes()).into()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 while the sink can accept events; 503 with the reason while it cannot.
async fn readyz(State(state): State<WebhookState>) -> Response {
    match state.sink.not_ready() {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => unavailable_with(json!({"status": "not ready", "reason": reason}), 1),
    }
}

async fn metrics(State(state): State<WebhookState>, headers: HeaderMap) -> Response {
    if state.config.metrics_require_token
        && let Some(expected) = &state.token
        && !bearer_matches(&headers, expected)
    {
        return unauthorized();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.sink.metrics(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SinkError;
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Event>>);

    #[async_trait]
    impl EventSink for Collect {
        async fn accept(&self, events: Vec<Event>) -> Result<usize, SinkError> {
            self.0.lock().unwrap().extend(events);
            Ok(0)
        }
    }

    async fn post(
        config: ServerConfig,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        let app = webhook_router(sink.clone(), config);
        let mut request = Request::post("/v1/events").header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = app
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            sink,
        )
    }

    #[tokio::test]
    async fn accepts_one_event_or_an_array() {
        let (status, body, sink) =
            post(ServerConfig::default(), None, r#"{"id":"a","simId":"s"}"#).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body, json!({"accepted": 1, "duplicates": 0, "ids": ["a"]}));
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        let (status, body, _) =
            post(ServerConfig::default(), None, r#"[{"id":"a"},{"id":"b"}]"#).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["ids"], json!(["a", "b"]));
    }

    #[tokio::test]
    async fn malformed_json_says_where() {
        let (status, body, sink) = post(ServerConfig::default(), None, "{\n \"simId\": ,\n}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("line 2 column 11: expected value"),
            "{body}"
        );
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_event_in_batch_names_index_and_field_and_rejects_all() {
        let (status, body, sink) = post(
            ServerConfig::default(),
            None,
            r#"[{"id":"a"},{"payload":3}]"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"],
            "events[1].payload: expected an object, found a number"
        );
        assert!(sink.0.lock().unwrap().is_empty());
        let (status, body, _) = post(ServerConfig::default(), None, "42").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("found a number"));
    }

    #[tokio::test]
    async fn body_over_limit_is_413() {
        let config = ServerConfig {
            max_body_bytes: 64,
            ..ServerConfig::default()
        };
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        let (status, body, _) = post(config, None, &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"].as_str().unwrap().contains("64 bytes"));
    }

    #[tokio::test]
    async fn too_many_events_in_one_request_is_413_before_they_are_built() {
        let config = ServerConfig {
            max_events_per_request: 3,
            ..ServerConfig::default()
        };
        let (status, body, sink) = post(config.clone(), None, "[{},{},{},{}]").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body["error"].as_str().unwrap().contains("4 events"),
            "{body}"
        );
        assert!(sink.0.lock().unwrap().is_empty());
        let (status, _, _) = post(config, None, "[{},{},{}]").await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn events_over_the_in_flight_budget_are_503_with_retry_after() {
        let config = ServerConfig {
            max_events_in_flight: 2,
            ..ServerConfig::default()
        };
        let app = webhook_router(Arc::new(Collect::default()), config);
        let request = Request::post("/v1/events")
            .body(Body::from("[{},{},{}]"))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn token_is_required_when_set() {
        let config = ServerConfig {
            token: Some("s3cret".into()),
            ..ServerConfig::default()
        };
        let (status, _, _) = post(config.clone(), None, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = post(config.clone(), Some("Bearer wrong"), "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = post(config, Some("Bearer s3cret"), "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
}
