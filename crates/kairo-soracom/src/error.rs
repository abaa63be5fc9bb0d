//! SORACOM API errors, classed so callers know whether retrying can help.

use std::time::Duration;

/// What kind of failure a SORACOM call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoracomErrorKind {
    /// No credentials are configured.
    MissingCredentials,
    /// `POST /v1/auth` refused the credentials.
    AuthFailed,
    /// 401 even after re-authenticating.
    Unauthorized,
    /// 404: unknown SIM, group or path.
    NotFound,
    /// 400 or another 4xx: the request is wrong and will stay wrong.
    Rejected,
    /// 429: rate limited.
    RateLimited,
    /// 5xx from the API.
    Server,
    /// Connecting or reading failed, or timed out.
    Transport,
}

/// A failed SORACOM API call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SoracomError {
    /// The class of failure.
    pub kind: SoracomErrorKind,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// SORACOM's error code (e.g. `SEM0016`), when the body had one.
    pub code: Option<String>,
    /// Human-readable description.
    pub message: String,
    /// How long the API asked us to wait (rate limiting).
    pub retry_after: Option<Duration>,
}

impl SoracomError {
    pub(crate) fn new(kind: SoracomErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// True for failures that may succeed later: rate limits, 5xx, transport errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            SoracomErrorKind::RateLimited | SoracomErrorKind::Server | SoracomErrorKind::Transport
        )
    }
}
