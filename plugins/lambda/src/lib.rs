//! `aws_lambda`: SORACOM's InvokeAWSLambdaAction. Invokes a function with a
//! SigV4-signed `Invoke` request (the AWS Lambda API, `RequestResponse`),
//! with the credentials configured for the handler's `credentialsId`
//! (`[credentials.<id>]`). The payload is the action's rendered
//! `parameter1`..`parameter5`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `[credentials.<id>]`: an AWS access key for the handlers naming `<id>`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (kept out of logs and answers).
    pub secret_access_key: String,
    /// The region; by default read from the endpoint (`lambda.<region>.amazonaws.com`).
    #[serde(default)]
    pub region: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .finish()
    }
}

/// The `aws_lambda` action: params `{endpoint, functionName, credentialsId, payload}`.
pub struct LambdaAction {
    credentials: BTreeMap<String, AwsCredentials>,
}

impl LambdaAction {
    /// The action, with the configured credentials by id.
    pub fn new(credentials: BTreeMap<String, AwsCredentials>) -> Self {
        Self { credentials }
    }
}

/// What one invocation needs, read from the parameters.
struct Invocation<'a> {
    endpoint: &'a str,
    function: &'a str,
    credentials_id: &'a str,
    payload: Vec<u8>,
}

fn invocation(params: &Value) -> Result<Invocation<'_>, InvalidParams> {
    only_keys(
        params,
        &["endpoint", "functionName", "credentialsId", "payload"],
    )?;
    let endpoint = require_str(params, "endpoint")?.trim_end_matches('/');
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        let reason = format!("must be an http(s) URL, got {endpoint:?}");
        return Err(InvalidParams::value("endpoint", reason));
    }
    let function = require_str(params, "functionName")?;
    let credentials_id = require_str(params, "credentialsId")?;
    let payload = params.get("payload").cloned().unwrap_or_else(|| json!({}));
    Ok(Invocation {
        endpoint,
        function,
        credentials_id,
        payload: serde_json::to_vec(&payload).expect("JSON serializes"),
    })
}

/// The region of a Lambda endpoint such as `https://lambda.ap-northeast-1.amazonaws.com`.
pub fn region_of(endpoint: &str) -> Option<&str> {
    let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    (parts.next()? == "lambda").then_some(())?;
    parts.next()
}

impl LambdaAction {
    /// The signed request's headers for `invocation` at `url`.
    fn signed_headers(
        &self,
        invocation: &Invocation<'_>,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, ActionError> {
        let id = invocation.credentials_id;
        let credentials = self.credentials.get(id).ok_or_else(|| {
            ActionError::permanent(format!(
                "no credentials for credentialsId {id:?}: configure [credentials.{id}] access_key_id and secret_access_key"
            ))
        })?;
        let region = (credentials.region.as_deref())
            .or_else(|| region_of(invocation.endpoint))
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "no region: set [credentials.{id}] region (the endpoint names none)"
                ))
            })?;
        let identity = aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            None,
            None,
            "kairo-config",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ActionError::permanent(format!("cannot sign: {e}")))?
            .into();
        let body = SignableBody::Bytes(&invocation.payload);
        let signable = SignableRequest::new("POST", url, headers.iter().copied(), body)
            .map_err(|e| ActionError::permanent(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ActionError::permanent(format!("cannot sign: {e}")))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

#[async_trait]
impl Action for LambdaAction {
    fn name(&self) -> &str {
        "aws_lambda"
    }

    fn family(&self) -> &str {
        "aws_lambda"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        invocation(params).map(|_| ())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let invocation = invocation(&request.params).map_err(invalid)?;
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            invocation.endpoint, invocation.function
        );
        let fixed = [
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "RequestResponse"),
        ];
        let signed = self.signed_headers(&invocation, &url, &fixed)?;
        let mut call = cx.http.post(&url).timeout(cx.remaining());
        for (name, value) in fixed.iter().copied() {
            call = call.header(name, value);
        }
        for (name, value) in &signed {
            call = call.header(name.as_str(), value.as_str());
        }
        let response = call
            .body(invocation.payload)
            .send()
            .await
            .map_err(kairo_plugin::http::transport_error)?;
        let status = response.status();
        let retry_after = kairo_plugin::http::retry_after(response.headers());
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        kairo_plugin::http::classify(status, retry_after, &body)?;
        if let Some(kind) = function_error {
            let message = format!("the function failed ({kind}): {body}");
            return Err(ActionError::permanent(message).bounded());
        }
        Ok(ActionOutcome::new(
            json!({"status": status.as_u16(), "function": invocation.function}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_read_from_lambda_endpoints() {
        assert_eq!(
            region_of("https://lambda.ap-northeast-1.amazonaws.com"),
            Some("ap-northeast-1")
        );
        assert_eq!(
            region_of("http://lambda.us-east-1.example:9000/"),
            Some("us-east-1")
        );
        assert_eq!(region_of("http://127.0.0.1:9000"), None);
    }

    #[test]
    fn credentials_are_never_printed() {
        let credentials = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cr3t".into(),
            region: None,
        };
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }
}
