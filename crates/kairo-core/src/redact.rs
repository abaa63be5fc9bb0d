//! Keeping secrets out of everything Kairo prints or stores: logs, errors,
//! dead letters, history, CLI output and HTTP answers.
//!
//! A [`Redactor`] knows the configured secrets (tokens, passwords, a Slack
//! webhook's URL) and replaces each occurrence with `***`; it also hides the
//! password of any `scheme://user:password@host` URL it meets, configured or not.

use std::borrow::Cow;

/// What a hidden secret is replaced with.
pub const MASK: &str = "***";

/// Shortest secret that is masked: a shorter one would mask ordinary text.
const MIN_SECRET_CHARS: usize = 4;

/// Masks known secrets and URL passwords in text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for `secrets` (empty and very short ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret and URL password replaced by [`MASK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        match mask_url_passwords(&out) {
            Some(masked) => Cow::Owned(masked),
            None => out,
        }
    }
}

/// The secret parts of a URL: the user-info's password (or a lone user
/// name, which NATS and others use as a token).
pub fn url_credentials(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    match userinfo.split_once(':') {
        Some((_, password)) => vec![password.to_string()],
        None => vec![userinfo.to_string()],
    }
}

/// The path and query of a URL whose path is itself the secret (a Slack
/// incoming webhook's `/services/T…/B…/…`).
pub fn url_path(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let start = rest.find('/')?;
    Some(rest[start..].to_string()).filter(|path| path.len() > 1)
}

/// Replaces the password in every `scheme://user:password@` of `text`; `None` when there is none.
fn mask_url_passwords(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let masked = match userinfo.split_once(':') {
                    Some((user, password)) if password != MASK => format!("{user}:{MASK}"),
                    _ => userinfo.to_string(),
                };
                changed |= masked != userinfo;
                out.push_str(&masked);
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_url_passwords_are_masked() {
        let redactor = Redactor::new([
            "T00/B00/XyZsecret".to_string(),
            "tok".to_string(),
            "fleet-token-1".to_string(),
        ]);
        let text = "POST https://hooks.slack.com/services/T00/B00/XyZsecret failed; \
                    smtp://mailer:pw%40x@mail.example:587 and nats://u:p@127.0.0.1:4222, \
                    bearer fleet-token-1, a tok stays";
        let masked = redactor.redact(text);
        assert!(!masked.contains("XyZsecret"), "{masked}");
        assert!(!masked.contains("pw%40x"), "{masked}");
        assert!(
            masked.contains("smtp://mailer:***@mail.example:587"),
            "{masked}"
        );
        assert!(masked.contains("nats://u:***@127.0.0.1:4222"), "{masked}");
        assert!(!masked.contains("fleet-token-1"), "{masked}");
        assert!(
            masked.contains("a tok stays"),
            "too short to mask: {masked}"
        );
        assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn url_parts_are_found() {
        assert_eq!(url_credentials("smtp://u:p4ss@h:25"), vec!["p4ss"]);
        assert_eq!(
            url_credentials("nats://s3cr3t-token@h:4222"),
            vec!["s3cr3t-token"]
        );
        assert!(url_credentials("https://h/a@b").is_empty());
        assert_eq!(
            url_path("https://hooks.slack.com/services/T/B/x").as_deref(),
            Some("/services/T/B/x")
        );
        assert_eq!(url_path("https://h/"), None);
    }
}
