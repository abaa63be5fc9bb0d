//! The baseline of `benches/http/run.sh`: a bare axum server that does what
//! any JSON webhook must (read the body, parse it, answer 202) and nothing
//! more, plus a fast action sink that counts what it receives.
//!
//! `bench_bare LISTEN`: `POST /v1/events` parses the body as JSON and answers
//! 202 `{"accepted": n}`; `POST /sink/...` answers 200 and counts;
//! `GET /count` answers the count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn events(body: Bytes) -> (StatusCode, String) {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(items)) => (
            StatusCode::ACCEPTED,
            format!(r#"{{"accepted":{}}}"#, items.len()),
        ),
        Ok(_) => (StatusCode::ACCEPTED, r#"{"accepted":1}"#.into()),
        Err(e) => (StatusCode::BAD_REQUEST, format!(r#"{{"error":"{e}"}}"#)),
    }
}

async fn sink(State(count): State<Arc<AtomicU64>>, _body: Bytes) -> StatusCode {
    count.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn count(State(count): State<Arc<AtomicU64>>) -> String {
    count.load(Ordering::Relaxed).to_string()
}

#[tokio::main]
async fn main() {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let counter = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/v1/events", post(events))
        .route("/sink/{*rest}", post(sink))
        .route("/count", get(count))
        .with_state(counter);
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
