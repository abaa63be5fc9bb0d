//! `soracom`: any SORACOM API operation from a rule, e.g.
//! `soracom("PUT", `/v1/sims/${simId}/tags`, [#{ tagName: "plan", tagValue: "x3" }])`,
//! with the SIM actions' client (authentication, token refresh), family
//! (concurrency and rate limits), retries and error classes.

use std::sync::Arc;

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use kairo_soracom::SoracomClient;
use reqwest::Method;
use serde_json::{Value, json};

use crate::sim_action::{FAMILY, to_action_error};

/// The HTTP methods SORACOM's API uses.
pub const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// The `soracom` action: params `{method, path, body?}`.
pub struct ApiAction {
    client: Arc<SoracomClient>,
}

impl ApiAction {
    /// The action, sharing `client` with the SIM actions.
    pub fn new(client: Arc<SoracomClient>) -> Self {
        Self { client }
    }
}

/// The method, path and body of a call; the error names the parameter.
fn call(params: &Value) -> Result<(Method, &str, Option<Value>), InvalidParams> {
    only_keys(params, &["method", "path", "body"])?;
    let method = require_str(params, "method")?.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        let reason = format!(
            "{method:?} is not one SORACOM uses (one of {})",
            METHODS.join(", ")
        );
        return Err(InvalidParams::value("method", reason));
    }
    let path = require_str(params, "path")?;
    if !path.starts_with("/v1/") {
        let reason = format!("{path:?} must start with /v1/ (the API's path, without the host)");
        return Err(InvalidParams::value("path", reason));
    }
    let body = params.get("body").filter(|b| !b.is_null()).cloned();
    let method = Method::from_bytes(method.as_bytes()).expect("a known method");
    Ok((method, path, body))
}

#[async_trait]
impl Action for ApiAction {
    fn name(&self) -> &str {
        "soracom"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn family(&self) -> &str {
        FAMILY
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        call(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let (method, path, body) = call(&request.params).map_err(invalid)?;
        let answer = tokio::time::timeout(cx.remaining(), self.client.call(method, path, body))
            .await
            .map_err(|_| ActionError::retryable("SORACOM API call timed out"))?
            .map_err(to_action_error)?;
        Ok(ActionOutcome::new(json!({"path": path, "answer": answer})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_paths_are_checked() {
        let ok = json!({"method": "put", "path": "/v1/sims/s/tags", "body": []});
        assert!(call(&ok).is_ok());
        let bad_method = call(&json!({"method": "PATCHY", "path": "/v1/x"})).unwrap_err();
        assert!(matches!(bad_method, InvalidParams::Value { ref key, .. } if key == "method"));
        let absolute = json!({"method": "GET", "path": "https://api.soracom.io/v1/x"});
        let bad_path = call(&absolute).unwrap_err();
        assert!(matches!(bad_path, InvalidParams::Value { ref key, .. } if key == "path"));
    }
}
