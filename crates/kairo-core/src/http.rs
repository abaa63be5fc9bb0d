//! What an HTTP answer means for a retry: one classification for every
//! action and API client, so a status is retried (or not) the same way
//! everywhere.

use std::time::Duration;

/// What an HTTP status means for the request that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 429: wait (as long as the server says) and try again.
    RateLimited,
    /// 5xx and 408: may succeed later.
    Retryable,
    /// Any other status: will fail the same way again.
    Permanent,
}

/// The class of HTTP status `status`.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        429 => StatusClass::RateLimited,
        408 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// A header value holding whole seconds (`Retry-After: 7`), as a duration.
pub fn seconds(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classed() {
        assert_eq!(classify(204), StatusClass::Success);
        assert_eq!(classify(429), StatusClass::RateLimited);
        assert_eq!(classify(503), StatusClass::Retryable);
        assert_eq!(classify(408), StatusClass::Retryable);
        assert_eq!(classify(404), StatusClass::Permanent);
        assert_eq!(seconds(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(seconds(Some("soon")), None);
    }
}
