//! The built-in action plugins, configured from [`KairoConfig`].

use std::sync::Arc;

use kairo_plugin::{Action, Registry};
use kairo_soracom::SoracomClient;

use crate::config::KairoConfig;

/// The clients shared by every action and lookup: one HTTP connection pool
/// and one SORACOM API session (one login, one token).
#[derive(Clone)]
pub struct Clients {
    /// HTTP for actions that call URLs.
    pub http: reqwest::Client,
    /// The SORACOM API, for the SIM actions and the SIM directory's lookups.
    pub soracom: Arc<SoracomClient>,
}

impl Clients {
    /// Clients for `config` over `http`.
    pub fn new(config: &KairoConfig, http: reqwest::Client) -> Self {
        let soracom = Arc::new(SoracomClient::new(http.clone(), config.soracom.clone()));
        Self { http, soracom }
    }
}

/// A registry holding every built-in action, configured from `config`.
pub fn registry(config: &KairoConfig, clients: &Clients) -> Registry {
    let mut registry = Registry::new();
    for action in actions(config, clients) {
        registry.register(action);
    }
    registry
}

/// Every built-in action, configured from `config`.
pub fn actions(config: &KairoConfig, clients: &Clients) -> Vec<Arc<dyn Action>> {
    let mut actions = kairo_plugin_soracom::actions(clients.soracom.clone());
    actions.push(Arc::new(kairo_plugin_slack::SlackAction::new(
        config.plugins.slack.clone(),
    )));
    let email: Arc<dyn Action> =
        Arc::new(kairo_plugin_email::EmailAction::new(&config.plugins.email));
    actions.push(Arc::new(crate::operator_mail::OperatorMail::new(
        clients.soracom.clone(),
        email.clone(),
        config.plugins.email.operator_address.clone(),
    )));
    actions.push(email);
    actions.push(Arc::new(kairo_plugin_webhook::WebhookAction));
    actions.push(Arc::new(kairo_plugin_lambda::LambdaAction::new(
        config.credentials.clone(),
    )));
    let mut nats = config.plugins.nats.clone();
    nats.url = nats.url.or_else(|| config.nats.url.clone());
    actions.push(Arc::new(kairo_plugin_nats::PublishAction::new(&nats)));
    actions
}
