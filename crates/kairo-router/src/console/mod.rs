//! The operator console: one page and its script and style, embedded in the
//! binary and served by `kairo run` at `GET /` and `/ui/...`. Everything it
//! shows comes from the `/v1` API (with the bearer token when one is set);
//! the assets themselves hold nothing secret.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Sent with every asset: no framing by other sites, no guessing of types,
/// scripts and styles from this origin only.
const SECURITY: [(header::HeaderName, &str); 3] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
];

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let [frame, sniff, policy] = SECURITY;
    (
        [(header::CONTENT_TYPE, content_type), frame, sniff, policy],
        body,
    )
}

async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /`, `GET /ui/app.js`, `GET /ui/app.css`; any other `/ui/...` path
/// is the page (its tabs are addressed by `#fragment`).
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route("/ui/{*rest}", get(page))
}
