//! An example custom action compiled into a Kairo router: `jsonl_file`
//! appends one JSON line per action to a file, e.g. for an audit trail that
//! another system tails.
//!
//! Configuration: `[plugins.jsonl_file] path = "audit.jsonl"`. Rule scripts:
//! `jsonl_file(#{ record: payload })`, optionally with `path` to override.

use std::path::PathBuf;

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, optional_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The `jsonl_file` action.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonlFile;

impl JsonlFile {
    fn target(params: &Value, config: &Value) -> Result<PathBuf, InvalidParams> {
        only_keys(params, &["record", "path"])?;
        if let Some(path) = optional_str(params, "path")? {
            return Ok(PathBuf::from(path));
        }
        config
            .get("path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| {
                InvalidParams::value(
                    "path",
                    "no file: set [plugins.jsonl_file] path, or pass `path`",
                )
            })
    }
}

#[async_trait]
impl Action for JsonlFile {
    fn name(&self) -> &str {
        "jsonl_file"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate_config(&self, config: &Value) -> Result<(), InvalidParams> {
        match config.get("path") {
            None | Some(Value::String(_)) => Ok(()),
            Some(other) => Err(InvalidParams::config(
                "path",
                format!("must be a string, got {other}"),
            )),
        }
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        only_keys(params, &["record", "path"])?;
        optional_str(params, "path").map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let path = Self::target(&request.params, &cx.config).map_err(invalid)?;
        let line = json!({
            "key": request.key(),
            "eventId": request.event_id,
            "rule": request.rule,
            "record": request.params.get("record"),
        });
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| ActionError::retryable(format!("{}: {e}", path.display())))?;
        file.write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| ActionError::retryable(format!("{}: {e}", path.display())))?;
        Ok(ActionOutcome::new(json!({"file": path})))
    }
}
