//! `kairo soracom forward`: SORACOM event handlers that post each event to
//! Kairo's webhook (the push alternative to polling the API).

use kairo_router::KairoConfig;
use kairo_soracom::SoracomClient;
use kairo_soracom::forward::{Applied, ForwardTarget, apply, forward_handlers};

/// Creates or updates the forwarding handlers (or, with `dry_run`, returns
/// their JSON without calling SORACOM); returns the lines to print.
pub async fn forward(
    config: &KairoConfig,
    url: &str,
    token: Option<&str>,
    target: &ForwardTarget,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let token = token.or(config.server.token.as_deref());
    let client = SoracomClient::new(reqwest::Client::new(), config.soracom.clone());
    let operator_id = match (target, dry_run) {
        (ForwardTarget::Operator, false) => client.operator_id().await?,
        (ForwardTarget::Operator, true) => "${OPERATOR_ID}".to_string(),
        _ => String::new(),
    };
    let handlers = forward_handlers(url, token, target, &operator_id);
    if dry_run {
        return Ok(vec![serde_json::to_string_pretty(&handlers)?]);
    }
    let applied = apply(&client, &handlers).await?;
    Ok(applied
        .into_iter()
        .map(|(name, applied)| {
            let done = match applied {
                Applied::Created => "created",
                Applied::Updated => "updated",
                Applied::Unchanged => "unchanged",
            };
            format!("{done:<10} {name}")
        })
        .collect())
}
