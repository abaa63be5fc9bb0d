//! Kairo's Slack action plugin: posts messages to a Slack incoming webhook.

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, optional_str, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[plugins.slack]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL, e.g. `https://hooks.slack.com/services/…`.
    pub webhook_url: Option<String>,
    /// Default channel override, when the webhook allows it.
    pub channel: Option<String>,
    /// Default username override.
    pub username: Option<String>,
}

/// Parameters a call may give.
const PARAMS: [&str; 6] = [
    "text",
    "channel",
    "username",
    "icon_emoji",
    "blocks",
    "webhook_url",
];

/// The `slack` action: params `{text, channel?, username?, icon_emoji?, blocks?, webhook_url?}`.
#[derive(Debug, Clone)]
pub struct SlackAction {
    config: SlackConfig,
}

impl SlackAction {
    /// A Slack action using `config`.
    pub fn new(config: SlackConfig) -> Self {
        Self { config }
    }

    fn message(&self, params: &Value) -> Result<(String, Value), InvalidParams> {
        only_keys(params, &PARAMS)?;
        let text = require_str(params, "text")?;
        let url = match optional_str(params, "webhook_url")? {
            Some(url) => url.to_string(),
            None => self.config.webhook_url.clone().ok_or_else(|| {
                InvalidParams::value(
                    "webhook_url",
                    "Slack is not configured: set plugins.slack.webhook_url \
                     (or KAIRO_PLUGINS__SLACK__WEBHOOK_URL), or pass webhook_url",
                )
            })?,
        };
        let mut body = Map::new();
        body.insert("text".into(), Value::String(text.into()));
        let defaults = [
            ("channel", &self.config.channel),
            ("username", &self.config.username),
        ];
        for (key, default) in defaults {
            if let Some(value) = optional_str(params, key)?
                .map(str::to_string)
                .or_else(|| default.clone())
            {
                body.insert(key.into(), Value::String(value));
            }
        }
        if let Some(icon) = optional_str(params, "icon_emoji")? {
            body.insert("icon_emoji".into(), Value::String(icon.into()));
        }
        if let Some(blocks) = params.get("blocks") {
            body.insert("blocks".into(), blocks.clone());
        }
        Ok((url, Value::Object(body)))
    }
}

#[async_trait]
impl Action for SlackAction {
    fn name(&self) -> &str {
        "slack"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        self.message(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let (url, body) = self.message(&request.params).map_err(invalid)?;
        kairo_plugin::http::send(cx.http.post(url).json(&body), cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_uses_defaults_and_overrides() {
        let action = SlackAction::new(SlackConfig {
            webhook_url: Some("http://127.0.0.1:1/hook".into()),
            channel: Some("#ops".into()),
            username: None,
        });
        let (url, body) = action.message(&json!({"text": "hi"})).unwrap();
        assert_eq!(url, "http://127.0.0.1:1/hook");
        assert_eq!(body, json!({"text": "hi", "channel": "#ops"}));
        let (_, body) = action
            .message(&json!({"text": "hi", "channel": "#x"}))
            .unwrap();
        assert_eq!(body["channel"], "#x");
    }

    #[test]
    fn unconfigured_webhook_is_named() {
        let err = SlackAction::new(SlackConfig::default())
            .validate(&json!({"text": "hi"}))
            .unwrap_err();
        assert!(
            err.to_string().contains("plugins.slack.webhook_url"),
            "{err}"
        );
    }
}
