//! Kairo's NATS action plugin: `publish(subject, payload)` to core NATS, or to
//! JetStream waiting for the stream's acknowledgement.

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// `[plugins.nats]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsPublishConfig {
    /// Server URL; defaults to `nats.url`.
    pub url: Option<String>,
    /// Publish through JetStream and wait for the stream's acknowledgement.
    #[serde(default)]
    pub jetstream: bool,
}

/// The `publish` action: params `{subject, payload}`; the payload is sent as
/// JSON (a string payload as its bytes).
pub struct PublishAction {
    url: Option<String>,
    jetstream: bool,
    client: OnceCell<async_nats::Client>,
}

impl PublishAction {
    /// A publish action for `config`; it connects on first use.
    pub fn new(config: &NatsPublishConfig) -> Self {
        Self {
            url: config.url.clone(),
            jetstream: config.jetstream,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&async_nats::Client, ActionError> {
        let url = self.url.as_deref().ok_or_else(|| {
            ActionError::permanent("NATS is not configured: set plugins.nats.url or nats.url (or KAIRO_PLUGINS__NATS__URL)")
        })?;
        self.client
            .get_or_try_init(|| async {
                connect(url).await.map_err(|e| {
                    ActionError::retryable(format!("connecting to NATS at {url}: {e}"))
                })
            })
            .await
    }
}

/// Connects to `url`, using the credentials in it: `nats://user:password@host`
/// logs in with user and password, `nats://token@host` with a token (the
/// client library itself ignores credentials in the URL). Several servers of
/// one cluster may be given separated by commas; the first one's credentials
/// are used, and the client moves to another when one goes away.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    let options = match servers[0].parse::<async_nats::ServerAddr>() {
        Ok(addr) => match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            }
            (Some(token), None) => async_nats::ConnectOptions::with_token(token.into()),
            _ => async_nats::ConnectOptions::new(),
        },
        Err(_) => async_nats::ConnectOptions::new(),
    };
    if servers.len() == 1 {
        return options.connect(url).await;
    }
    let addrs = (servers.iter())
        .map(|server| server.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e)
        })?;
    options.connect(addrs.as_slice()).await
}

fn message(params: &Value) -> Result<(String, Vec<u8>), InvalidParams> {
    only_keys(params, &["subject", "payload"])?;
    let subject = require_str(params, "subject")?;
    if subject.contains(['*', '>', ' ']) {
        return Err(InvalidParams::value(
            "subject",
            format!("must be a concrete subject, got {subject:?}"),
        ));
    }
    let payload = match params.get("payload") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok((subject.to_string(), payload))
}

#[async_trait]
impl Action for PublishAction {
    fn name(&self) -> &str {
        "publish"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn family(&self) -> &str {
        "nats"
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        message(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let (subject, payload) = message(&request.params).map_err(invalid)?;
        let client = self.client().await?;
        let work = async {
            if self.jetstream {
                let ack = async_nats::jetstream::new(client.clone())
                    .publish(subject.clone(), payload.into())
                    .await
                    .map_err(|e| {
                        ActionError::retryable(format!("JetStream publish to {subject}: {e}"))
                    })?
                    .await
                    .map_err(|e| {
                        ActionError::retryable(format!(
                            "JetStream acknowledgement for {subject}: {e}"
                        ))
                    })?;
                Ok::<Value, ActionError>(
                    json!({"subject": subject, "stream": ack.stream, "sequence": ack.sequence}),
                )
            } else {
                client
                    .publish(subject.clone(), payload.into())
                    .await
                    .map_err(|e| {
                        ActionError::retryable(format!("NATS publish to {subject}: {e}"))
                    })?;
                client
                    .flush()
                    .await
                    .map_err(|e| ActionError::retryable(format!("NATS flush: {e}")))?;
                Ok(json!({"subject": subject}))
            }
        };
        let detail = tokio::time::timeout(cx.remaining(), work)
            .await
            .map_err(|_| ActionError::retryable("NATS publish timed out"))??;
        Ok(ActionOutcome::new(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert_eq!(
            message(&json!({"subject": "a.b", "payload": {"x": 1}}))
                .unwrap()
                .1,
            br#"{"x":1}"#
        );
        assert_eq!(
            message(&json!({"subject": "a.b", "payload": "raw"}))
                .unwrap()
                .1,
            b"raw"
        );
        assert!(matches!(
            message(&json!({"subject": "a.*"})),
            Err(InvalidParams::Value { key, reason }) if key == "subject" && reason.contains("concrete")
        ));
        assert_eq!(
            message(&json!({"payload": 1})).unwrap_err(),
            InvalidParams::Missing("subject".into())
        );
    }

    #[tokio::test]
    async fn a_server_list_with_an_entry_that_is_no_address_is_refused() {
        // Port 1 refuses connections: only a parse error proves the bad
        // entry was not skipped.
        let error = connect("nats://127.0.0.1:1, nats://not a host")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), async_nats::ConnectErrorKind::ServerParse);
    }
}
