//! Helpers for actions that call HTTP endpoints: one place that decides which
//! responses and transport errors are worth retrying.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode, header::HeaderMap};
use serde_json::json;

use crate::{ActionContext, ActionError, ActionOutcome};

/// Longest response body excerpt kept in errors and outcomes.
const EXCERPT: usize = 512;

/// Sends `request` within the context's deadline and classes the result.
///
/// 2xx is success; 429 (honouring `Retry-After`) and 5xx are retryable; other
/// statuses are permanent. Connect errors and timeouts are retryable.
pub async fn send(
    request: RequestBuilder,
    cx: &ActionContext,
) -> Result<ActionOutcome, ActionError> {
    let response = request
        .timeout(cx.remaining())
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    classify(status, retry_after, &body)?;
    Ok(ActionOutcome::new(
        json!({"status": status.as_u16(), "body": excerpt(&body)}),
    ))
}

/// Classes an HTTP status: `Ok` for 2xx, otherwise a retryable or permanent error.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<(), ActionError> {
    use kairo_core::http::StatusClass;
    let message = || format!("HTTP {status}: {}", excerpt(body));
    match kairo_core::http::classify(status.as_u16()) {
        StatusClass::Success => Ok(()),
        StatusClass::RateLimited => {
            Err(ActionError::retryable(message()).with_retry_after(retry_after))
        }
        StatusClass::Retryable => Err(ActionError::retryable(message())),
        StatusClass::Permanent => Err(ActionError::permanent(message())),
    }
}

/// Classes a transport error: connect failures and timeouts are retryable.
/// The URL is left out of the message: it may carry a secret (a Slack
/// webhook's path, credentials in the user part).
pub fn transport_error(error: reqwest::Error) -> ActionError {
    let builder = error.is_builder();
    let error = error.without_url();
    let message = format!("request failed: {}", kairo_core::error_chain(&error));
    if builder {
        ActionError::permanent(message)
    } else {
        ActionError::retryable(message)
    }
}

/// The `Retry-After` header in seconds, if present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    kairo_core::http::seconds(
        headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    )
}

fn excerpt(body: &str) -> &str {
    match body.char_indices().nth(EXCERPT) {
        Some((i, _)) => &body[..i],
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classed() {
        assert!(classify(StatusCode::OK, None, "").is_ok());
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            "",
        )
        .unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert!(
            classify(StatusCode::BAD_GATEWAY, None, "")
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            !classify(StatusCode::NOT_FOUND, None, "x")
                .unwrap_err()
                .is_retryable()
        );
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
