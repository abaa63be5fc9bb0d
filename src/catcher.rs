//! A request catcher for local demos: answers every HTTP request with 200 and
//! prints it as one JSON line, so a Slack or web-request action can be watched
//! without a real Slack workspace.

use axum::body::Bytes;
use axum::http::{Method, Uri};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Serves the catcher on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(|method: Method, uri: Uri, body: Bytes| async move {
        let body = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        println!(
            "{}",
            json!({"method": method.as_str(), "path": uri.path(), "body": body})
        );
        "ok"
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
