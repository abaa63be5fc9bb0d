//! Errors actions return, classed so the dispatcher knows whether to retry.

use std::time::Duration;

/// Longest error message kept in logs, history and dead letters, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1_024;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Transient: connect errors, timeouts, 429, 5xx. Retried with backoff.
    Retryable,
    /// Will fail the same way again: bad parameters, 4xx, missing configuration.
    Permanent,
}

/// A failed action attempt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// Retryable or permanent.
    pub class: ErrorClass,
    /// What went wrong, for logs and dead letters.
    pub message: String,
    /// The server asked us to wait this long before retrying (429 Retry-After).
    pub retry_after: Option<Duration>,
}

impl ActionError {
    /// A transient failure.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Sets the server-requested wait before a retry.
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The same error with its message cut to [`MAX_MESSAGE_CHARS`], so a
    /// huge value quoted in it cannot flood logs and records.
    pub fn bounded(mut self) -> Self {
        if let Some((cut, _)) = self.message.char_indices().nth(MAX_MESSAGE_CHARS) {
            let more = self.message[cut..].chars().count();
            self.message.truncate(cut);
            self.message
                .push_str(&format!("… ({more} more characters)"));
        }
        self
    }

    /// True when the dispatcher should try again.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}
