//! SIM operations as actions.

use std::sync::Arc;

use async_trait::async_trait;
use kairo_core::handler::model::SPEED_CLASSES;
use kairo_plugin::params::{InvalidParams, invalid, only_keys, optional_str, require_str};
use kairo_plugin::{Action, ActionContext, ActionError, ActionOutcome, ActionRequest};
use kairo_soracom::{SimOperation, SoracomClient, SoracomError};
use serde_json::{Value, json};

/// The family name shared by all SORACOM actions (for concurrency and rate limits).
pub const FAMILY: &str = "soracom";

/// Which SIM operation an action performs, and the parameter it needs besides `simId`.
#[derive(Debug, Clone, Copy)]
enum Kind {
    SetGroup,
    UnsetGroup,
    SetSpeedClass,
    Activate,
    Deactivate,
    Suspend,
    SetToStandby,
    SetImeiLock,
    UnsetImeiLock,
}

const KINDS: [(&str, Kind); 9] = [
    ("set_group", Kind::SetGroup),
    ("unset_group", Kind::UnsetGroup),
    ("set_speed_class", Kind::SetSpeedClass),
    ("activate", Kind::Activate),
    ("deactivate", Kind::Deactivate),
    ("suspend", Kind::Suspend),
    ("set_to_standby", Kind::SetToStandby),
    ("set_imei_lock", Kind::SetImeiLock),
    ("unset_imei_lock", Kind::UnsetImeiLock),
];

/// One SORACOM SIM operation, e.g. `set_group` with params `{"simId", "groupId"}`.
pub struct SimAction {
    name: &'static str,
    kind: Kind,
    client: Arc<SoracomClient>,
}

/// Every SORACOM action (the SIM operations and `soracom`), sharing `client`.
pub fn actions(client: Arc<SoracomClient>) -> Vec<Arc<dyn Action>> {
    let api: Arc<dyn Action> = Arc::new(crate::ApiAction::new(client.clone()));
    KINDS
        .iter()
        .map(|&(name, kind)| {
            Arc::new(SimAction {
                name,
                kind,
                client: client.clone(),
            }) as Arc<dyn Action>
        })
        .chain(std::iter::once(api))
        .collect()
}

impl SimAction {
    fn operation(&self, params: &Value) -> Result<(String, SimOperation), InvalidParams> {
        let extra: &[&str] = match self.kind {
            Kind::SetGroup => &["simId", "groupId"],
            Kind::SetSpeedClass => &["simId", "speedClass"],
            Kind::SetImeiLock => &["simId", "imei"],
            _ => &["simId"],
        };
        only_keys(params, extra)?;
        let sim_id = require_str(params, "simId")?.to_string();
        let operation = match self.kind {
            Kind::SetGroup => SimOperation::SetGroup {
                group_id: require_str(params, "groupId")?.into(),
            },
            Kind::UnsetGroup => SimOperation::UnsetGroup,
            Kind::SetSpeedClass => SimOperation::UpdateSpeedClass {
                speed_class: require_str(params, "speedClass")?.into(),
            },
            Kind::Activate => SimOperation::Activate,
            Kind::Deactivate => SimOperation::Deactivate,
            Kind::Suspend => SimOperation::Suspend,
            Kind::SetToStandby => SimOperation::SetToStandby,
            Kind::SetImeiLock => SimOperation::SetImeiLock {
                imei: optional_str(params, "imei")?.map(str::to_string),
            },
            Kind::UnsetImeiLock => SimOperation::UnsetImeiLock,
        };
        Ok((sim_id, operation))
    }
}

#[async_trait]
impl Action for SimAction {
    fn name(&self) -> &str {
        self.name
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn family(&self) -> &str {
        FAMILY
    }

    /// Also checks a speed class against the ones SORACOM documents (at run
    /// time the API has the last word, so a class added since is not refused).
    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        if let (_, SimOperation::UpdateSpeedClass { speed_class }) = self.operation(params)?
            && !SPEED_CLASSES.contains(&speed_class.as_str())
        {
            return Err(InvalidParams::value(
                "speedClass",
                format!(
                    "{speed_class:?} is not a SORACOM speed class (one of {})",
                    SPEED_CLASSES.join(", ")
                ),
            ));
        }
        Ok(())
    }

    async fn execute(
        &self,
        request: &ActionRequest,
        cx: &ActionContext,
    ) -> Result<ActionOutcome, ActionError> {
        let (sim_id, operation) = self.operation(&request.params).map_err(invalid)?;
        let call = self.client.sim_operation(&sim_id, &operation);
        let sim = tokio::time::timeout(cx.remaining(), call)
            .await
            .map_err(|_| ActionError::retryable("SORACOM API call timed out"))?
            .map_err(to_action_error)?;
        Ok(ActionOutcome::new(json!({
            "simId": sim_id,
            "groupId": sim.get("groupId"),
            "status": sim.get("status"),
            "speedClass": sim.get("speedClass"),
        })))
    }
}

/// A SORACOM API error as an action error of the same class.
pub(crate) fn to_action_error(error: SoracomError) -> ActionError {
    let retry_after = error.retry_after;
    let action_error = if error.is_retryable() {
        ActionError::retryable(error.message)
    } else {
        ActionError::permanent(error.message)
    };
    action_error.with_retry_after(retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairo_soracom::ClientConfig;

    fn action(name: &str) -> Arc<dyn Action> {
        let client = Arc::new(SoracomClient::new(
            reqwest::Client::new(),
            ClientConfig::default(),
        ));
        actions(client)
            .into_iter()
            .find(|a| a.name() == name)
            .unwrap()
    }

    #[test]
    fn validation_names_the_parameter() {
        let set_group = action("set_group");
        assert!(
            set_group
                .validate(&json!({"simId": "s", "groupId": "g"}))
                .is_ok()
        );
        assert_eq!(
            set_group.validate(&json!({"simId": "s"})),
            Err(InvalidParams::Missing("groupId".into()))
        );
        assert!(matches!(
            set_group.validate(&json!({"simId": "s", "groupId": "g", "x": 1})),
            Err(InvalidParams::Unknown { key, .. }) if key == "x"
        ));
        assert_eq!(
            action("suspend").validate(&json!({})),
            Err(InvalidParams::Missing("simId".into()))
        );
        assert_eq!(action("suspend").family(), "soracom");
    }
}
