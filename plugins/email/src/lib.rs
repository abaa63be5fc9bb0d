//! Kairo's email action plugin: sends mail over SMTP with lettre.

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `[plugins.email]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server URL: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS), `smtps://host:port` (TLS); credentials as `smtp://user:pass@host`.
    pub smtp_url: Option<String>,
    /// Sender address, e.g. `Kairo <kairo@example.com>`.
    pub from: Option<String>,
    /// Address for "mail the operator" actions.
    pub operator_address: Option<String>,
}

/// Why an SMTP URL was refused; the message never repeats the URL (it may
/// hold a password).
#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    /// Not `smtp://` or `smtps://`.
    #[error("must be smtp://[user:password@]host[:port][?tls=required] or smtps://...")]
    Scheme,
    /// The transport cannot read it.
    #[error("not a valid SMTP URL: {0}")]
    Invalid(#[source] lettre::transport::smtp::Error),
}

/// Checks an SMTP URL the way the email action reads it.
pub fn check_smtp_url(url: &str) -> Result<(), SmtpUrlError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("smtp" | "smtps")) {
        return Err(SmtpUrlError::Scheme);
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map(|_| ())
        .map_err(SmtpUrlError::Invalid)
}

/// The `email` action: params `{to, subject, body}`; `to` is one address or a list.
pub struct EmailAction {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
    config_error: Option<String>,
}

impl EmailAction {
    /// An email action for `config`; configuration problems surface when it is used.
    pub fn new(config: &EmailConfig) -> Self {
        let mut config_error = None;
        let transport = match &config.smtp_url {
            None => {
                config_error = Some(
                    "email is not configured: set plugins.email.smtp_url (or KAIRO_PLUGINS__EMAIL__SMTP_URL)".into(),
                );
                None
            }
            Some(url) => match AsyncSmtpTransport::<Tokio1Executor>::from_url(url) {
                Ok(builder) => Some(builder.build()),
                Err(e) => {
                    config_error =
                        Some(format!("plugins.email.smtp_url: not a valid SMTP URL: {e}"));
                    None
                }
            },
        };
        let from = match &config.from {
            None => {
                config_error.get_or_insert_with(|| {
                    "email is not configured: set plugins.email.from".into()
                });
                None
            }
            Some(from) => match from.parse::<Mailbox>() {
                Ok(mailbox) => Some(mailbox),
                Err(e) => {
                    config_error.get_or_insert_with(|| {
                        format!("plugins.email.from: invalid address {from:?}: {e}")
                    });
                    None
                }
            },
        };
        Self {
            transport,
            from,
            config_error,
        }
    }

    /// The configuration problem, if any, that stops mail from being sent.
    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    fn build(&self, params: &Value) -> Result<Message, InvalidParams> {
        only_keys(params, &["to", "subject", "body"])?;
        let recipients: Vec<&str> = match params.get("to") {
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| InvalidParams::wrong_type("to", "a list of strings", v))
                })
                .collect::<Result<_, _>>()?,
            _ => vec![require_str(params, "to")?],
        };
        let subject = require_str(params, "subject")?;
        let body = params
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let from = self
            .from
            .clone()
            .unwrap_or_else(|| "kairo@localhost".parse().expect("valid"));
        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in recipients {
            let mailbox = to
                .parse::<Mailbox>()
                .map_err(|e| InvalidParams::value("to", format!("invalid address {to:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        builder
            .body(body.to_string())
            .map_err(|e| InvalidParams::value("body", format!("cannot build message: {e}")))
    }
}

#[async_trait]
impl Action for EmailAction {
    fn name(&self) -> &str {
        "email"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        self.build(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        if let Some(error) = &self.config_error {
            return Err(ActionError::permanent(error.clone()));
        }
        let transport = self.transport.as_ref().expect("checked above");
        let message = self.build(&request.params).map_err(invalid)?;
        let sent = tokio::time::timeout(cx.remaining(), transport.send(message))
            .await
            .map_err(|_| ActionError::retryable("SMTP send timed out"))?;
        match sent {
            Ok(response) => Ok(ActionOutcome::new(json!({
                "code": response.code().to_string(),
                "message": response.message().collect::<Vec<_>>().join(" "),
            }))),
            // A permanent reply, or a client-side refusal such as "no compatible
            // authentication mechanism", fails the same way on every attempt.
            Err(e) if e.is_permanent() || e.is_client() => {
                Err(ActionError::permanent(format!("SMTP: {e}")))
            }
            Err(e) => Err(ActionError::retryable(format!("SMTP: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_config_is_named() {
        let action = EmailAction::new(&EmailConfig::default());
        assert!(
            action
                .config_error()
                .unwrap()
                .contains("plugins.email.smtp_url")
        );
    }

    #[test]
    fn malformed_smtp_urls_are_refused_without_repeating_them() {
        assert!(check_smtp_url("smtp://u:pw@127.0.0.1:25").is_ok());
        assert!(check_smtp_url("smtps://mail.example.com").is_ok());
        for bad in [
            "http://u:Secr3t@h",
            "mail.example.com:25",
            "smtp://u:Secr3t@h:notaport",
        ] {
            let error = check_smtp_url(bad).unwrap_err().to_string();
            assert!(!error.contains("Secr3t"), "{error}");
        }
    }

    #[tokio::test]
    async fn message_checks_addresses() {
        let action = EmailAction::new(&EmailConfig {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            from: Some("Kairo <kairo@example.com>".into()),
            operator_address: None,
        });
        assert!(action.config_error().is_none());
        assert!(
            action
                .validate(&json!({"to": "a@example.com", "subject": "s", "body": "b"}))
                .is_ok()
        );
        let err = action
            .validate(&json!({"to": "not an address", "subject": "s"}))
            .unwrap_err();
        assert!(
            matches!(&err, InvalidParams::Value { key, .. } if key == "to"),
            "{err}"
        );
    }
}
