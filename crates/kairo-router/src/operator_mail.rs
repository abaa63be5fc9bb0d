//! `email_operator`: SORACOM's SendMailToOperatorAction. The mail goes to
//! `plugins.email.operator_address` when set, else to the account's primary
//! notification address, read from the SORACOM API (and kept for an hour).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use kairo_soracom::SoracomClient;
use serde_json::{Value, json};

/// How long an address read from the API is used before it is read again.
const ADDRESS_TTL: Duration = Duration::from_secs(3600);

/// The `email_operator` action: params `{subject, body}`.
pub struct OperatorMail {
    soracom: Arc<SoracomClient>,
    email: Arc<dyn Action>,
    configured: Option<String>,
    looked_up: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl OperatorMail {
    /// Mail through `email` to `configured`, or to the address `soracom` gives.
    pub fn new(
        soracom: Arc<SoracomClient>,
        email: Arc<dyn Action>,
        configured: Option<String>,
    ) -> Self {
        Self {
            soracom,
            email,
            configured,
            looked_up: tokio::sync::Mutex::new(None),
        }
    }

    async fn address(&self) -> Result<String, ActionError> {
        if let Some(address) = &self.configured {
            return Ok(address.clone());
        }
        let mut cached = self.looked_up.lock().await;
        if let Some((address, at)) = cached.as_ref()
            && at.elapsed() < ADDRESS_TTL
        {
            return Ok(address.clone());
        }
        let address = self.soracom.operator_email().await.map_err(|e| {
            let message = format!(
                "reading the operator's address from the SORACOM API: {}",
                e.message
            );
            let error = if e.is_retryable() {
                ActionError::retryable(message)
            } else {
                ActionError::permanent(message)
            };
            error.with_retry_after(e.retry_after)
        })?;
        *cached = Some((address.clone(), Instant::now()));
        Ok(address)
    }
}

fn check(params: &Value) -> Result<(), InvalidParams> {
    only_keys(params, &["subject", "body"])?;
    require_str(params, "subject").map(|_| ())
}

#[async_trait]
impl Action for OperatorMail {
    fn name(&self) -> &str {
        "email_operator"
    }

    fn family(&self) -> &str {
        self.email.family()
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        check(params)
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        check(&request.params).map_err(invalid)?;
        let to = tokio::time::timeout(cx.remaining(), self.address())
            .await
            .map_err(|_| ActionError::retryable("SORACOM API call timed out"))??;
        let mut mail = request.clone();
        mail.params = json!({
            "to": to,
            "subject": request.params["subject"],
            "body": request.params.get("body").cloned().unwrap_or(Value::Null),
        });
        if mail.params["body"].is_null() {
            mail.params["body"] = Value::String(String::new());
        }
        self.email.execute(&mail, cx).await
    }
}
