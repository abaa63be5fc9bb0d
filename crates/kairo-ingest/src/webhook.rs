//! The HTTP webhook: `POST /v1/events`, `GET /healthz`, `GET /metrics`.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, body::Bytes};
use kairo_core::Event;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::EventSink;

/// How the webhook behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// When set, `POST /v1/events` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone)]
struct WebhookState {
    sink: Arc<dyn EventSink>,
    token: Option<Arc<str>>,
    max_body_bytes: usize,
}

/// The webhook's routes, delivering to `sink`.
pub fn webhook_router(sink: Arc<dyn EventSink>, config: WebhookConfig) -> Router {
    let state = WebhookState {
        sink,
        token: config.token.filter(|t| !t.is_empty()).map(Arc::from),
        max_body_bytes: config.max_body_bytes,
    };
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn post_events(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(expected) = &state.token
        && !bearer_matches(&headers, expected)
    {
        state.sink.rejected("unauthorized");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("valid header"),
        );
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            state.sink.rejected("too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the limit of {} bytes",
                    state.max_body_bytes
                ),
            );
        }
        Err(rejection) => {
            state.sink.rejected("unreadable");
            return error(
                rejection.status(),
                format!("cannot read request body: {rejection}"),
            );
        }
    };
    let events = match parse_events(&body) {
        Ok(events) => events,
        Err(message) => {
            state.sink.rejected("malformed");
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    match state.sink.accept(events).await {
        Ok(duplicates) => (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": ids.len(), "duplicates": duplicates, "ids": ids})),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("events not accepted: {e}"),
        ),
    }
}

/// Parses a body holding one event object or an array of them. The error says
/// where the problem is: a JSON line and column, or the event index and field.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| kairo_core::event::describe_json_error(&e))?;
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Event::from_value(item).map_err(|e| located(&format!("events[{i}]"), &e))
            })
            .collect(),
        Value::Object(_) => Ok(vec![
            Event::from_value(value).map_err(|e| located("event", &e))?,
        ]),
        other => Err(format!(
            "expected an event object or an array of events, found {}",
            kairo_core::event::json_kind(&other)
        )),
    }
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

async fn metrics(State(state): State<WebhookState>) -> Response {
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
        config: WebhookConfig,
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
            post(WebhookConfig::default(), None, r#"{"id":"a","simId":"s"}"#).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body, json!({"accepted": 1, "duplicates": 0, "ids": ["a"]}));
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        let (status, body, _) =
            post(WebhookConfig::default(), None, r#"[{"id":"a"},{"id":"b"}]"#).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["ids"], json!(["a", "b"]));
    }

    #[tokio::test]
    async fn malformed_json_says_where() {
        let (status, body, sink) =
            post(WebhookConfig::default(), None, "{\n \"simId\": ,\n}").await;
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
            WebhookConfig::default(),
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
        let (status, body, _) = post(WebhookConfig::default(), None, "42").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("found a number"));
    }

    #[tokio::test]
    async fn body_over_limit_is_413() {
        let config = WebhookConfig {
            token: None,
            max_body_bytes: 64,
        };
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        let (status, body, _) = post(config, None, &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"].as_str().unwrap().contains("64 bytes"));
    }

    #[tokio::test]
    async fn token_is_required_when_set() {
        let config = WebhookConfig {
            token: Some("s3cret".into()),
            ..WebhookConfig::default()
        };
        let (status, _, _) = post(config.clone(), None, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = post(config.clone(), Some("Bearer wrong"), "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = post(config, Some("Bearer s3cret"), "{}").await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
}
