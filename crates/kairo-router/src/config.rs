//! Kairo's configuration: typed sections with documented defaults, loaded with
//! figment from built-in defaults < a TOML file < `KAIRO_*` environment variables
//! (`__` separates nesting levels, e.g. `KAIRO_SORACOM__AUTH_KEY`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kairo_plugin_email::EmailConfig;
use kairo_plugin_nats::NatsPublishConfig;
use kairo_plugin_slack::SlackConfig;
use serde::{Deserialize, Serialize};

pub use crate::dispatch::DispatchConfig;
pub use crate::handlers::HandlersConfig;
pub use crate::rules::RulesConfig;
pub use crate::telemetry::{LogConfig, LogFormat};
pub use crate::writer::StoreConfig;

/// The default configuration file, used when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config/kairo.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KairoConfig {
    /// `[server]`: the HTTP listener.
    pub server: kairo_ingest::ServerConfig,
    /// `[rules]`: rule scripts.
    pub rules: RulesConfig,
    /// `[handlers]`: SORACOM event handlers.
    pub handlers: HandlersConfig,
    /// `[store]`: durable state.
    pub store: StoreConfig,
    /// `[nats]`: NATS ingest.
    pub nats: kairo_ingest::nats::NatsConfig,
    /// `[cluster]`: several instances on NATS JetStream.
    pub cluster: kairo_ingest::cluster::ClusterConfig,
    /// `[soracom]`: the SORACOM API.
    pub soracom: kairo_soracom::ClientConfig,
    /// `[dispatch]`: how actions are performed and retried.
    pub dispatch: DispatchConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[plugins.*]`: per-plugin sections.
    pub plugins: PluginsConfig,
    /// `[credentials.<id>]`: AWS keys for SORACOM handlers' `credentialsId`
    /// (InvokeAWSLambdaAction).
    pub credentials: BTreeMap<String, kairo_plugin_lambda::AwsCredentials>,
}

/// `[plugins]`: the dynamic plugin directory and every plugin's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginsConfig {
    /// Directory of dynamic plugins (`*.so`) loaded at start.
    pub dir: Option<PathBuf>,
    /// `[plugins.slack]`.
    pub slack: SlackConfig,
    /// `[plugins.email]`.
    pub email: EmailConfig,
    /// `[plugins.nats]`.
    pub nats: NatsPublishConfig,
    /// `[plugins.<name>]` for every other plugin, handed to it as JSON.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// A configuration that could not be loaded; each line names the source, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ConfigError {
    /// One message per problem.
    pub errors: Vec<String>,
}

impl KairoConfig {
    /// Loads defaults < `file` (or `config/kairo.toml` when present) < `KAIRO_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError {
                    errors: vec![format!("{}: configuration file not found", path.display())],
                });
            }
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let mut figment = Figment::from(Serialized::defaults(KairoConfig::default()));
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("KAIRO_").split("__"));
        let config: KairoConfig = figment.extract().map_err(|e| ConfigError {
            errors: e
                .into_iter()
                .map(|e| describe(&e, file.as_deref()))
                .collect(),
        })?;
        config.validate(file.as_deref())?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, file: Option<&Path>) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| errors.push(located(file, key, &message));
        for (key, problem) in self.server.problems() {
            bad(key, problem);
        }
        if self.dispatch.max_attempts == 0 {
            bad("dispatch.max_attempts", "must be at least 1".into());
        }
        if self.dispatch.concurrency == 0 {
            bad("dispatch.concurrency", "must be at least 1".into());
        }
        if self.dispatch.family_concurrency == 0 {
            bad("dispatch.family_concurrency", "must be at least 1".into());
        }
        for (family, limit) in &self.dispatch.limits {
            if limit.concurrency == 0 {
                bad(
                    &format!("dispatch.limits.{family}.concurrency"),
                    "must be at least 1".into(),
                );
            }
            if limit.per_second.is_some_and(|r| r.is_nan() || r <= 0.0) {
                bad(
                    &format!("dispatch.limits.{family}.per_second"),
                    "must be greater than 0".into(),
                );
            }
        }
        for (key, problem) in self.nats.problems() {
            bad(key, problem);
        }
        for (key, problem) in self.cluster.problems(self.nats.url.as_deref()) {
            bad(key, problem);
        }
        if self.store.cache_mib == 0 {
            bad("store.cache_mib", "must be at least 1".into());
        }
        if self.store.dedupe_window_seconds == 0 {
            bad("store.dedupe_window_seconds", "must be at least 1".into());
        }
        if self.dispatch.backoff_initial_ms > self.dispatch.backoff_max_ms {
            bad(
                "dispatch.backoff_initial_ms",
                "must not exceed dispatch.backoff_max_ms".into(),
            );
        }
        if let Some(url) = &self.plugins.email.smtp_url
            && let Err(problem) = kairo_plugin_email::check_smtp_url(url)
        {
            bad("plugins.email.smtp_url", problem.to_string());
        }
        if !(self.soracom.endpoint.starts_with("http://")
            || self.soracom.endpoint.starts_with("https://"))
        {
            bad(
                "soracom.endpoint",
                format!("must be an http(s) URL, got {:?}", self.soracom.endpoint),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors })
        }
    }

    /// A redactor for every secret this configuration holds: the server
    /// token, the SORACOM AuthKey secret, passwords and tokens in the SMTP and
    /// NATS URLs, the Slack webhook URL, AWS secret keys, and values of plugin
    /// settings whose name says secret, password, token or key.
    pub fn redactor(&self) -> kairo_core::Redactor {
        use kairo_core::redact::{url_credentials, url_path};
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(self.server.token.clone());
        secrets.extend(self.soracom.auth_key.clone());
        for url in [
            &self.plugins.email.smtp_url,
            &self.nats.url,
            &self.plugins.nats.url,
        ]
        .into_iter()
        .flatten()
        {
            secrets.extend(url_credentials(url));
        }
        if let Some(url) = &self.plugins.slack.webhook_url {
            secrets.push(url.clone());
            secrets.extend(url_path(url));
        }
        for section in self.plugins.sections.values() {
            collect_secret_values(section, &mut secrets);
        }
        secrets.extend(
            self.credentials
                .values()
                .map(|c| c.secret_access_key.clone()),
        );
        kairo_core::Redactor::new(secrets)
    }

    /// The listen address; `None` when `server.listen` is not a socket address
    /// (which [`KairoConfig::validate`] reports).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.server.listen.parse().ok()
    }
}

/// String values under keys that name a secret, anywhere in `value`.
fn collect_secret_values(value: &serde_json::Value, out: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        return;
    };
    for (key, value) in map {
        let key = key.to_ascii_lowercase();
        let secret = ["secret", "password", "token"]
            .iter()
            .any(|word| key.contains(word))
            || key.ends_with("key");
        match value {
            serde_json::Value::String(text) if secret => out.push(text.clone()),
            serde_json::Value::String(text) => {
                out.extend(kairo_core::redact::url_credentials(text))
            }
            other => collect_secret_values(other, out),
        }
    }
}

/// Formats a figment error as `source:line: key: message`.
fn describe(error: &figment::Error, file: Option<&Path>) -> String {
    let key = error.path.join(".");
    let from_file = error
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("TOML"));
    let source = error.metadata.as_ref().map(|m| m.name.to_string());
    let message = error.kind.to_string();
    if from_file && file.is_some() {
        located(file, &key, &message)
    } else {
        let origin = match source {
            Some(name) if name.contains("environment") => {
                format!(
                    "environment variable KAIRO_{}",
                    key.to_uppercase().replace('.', "__")
                )
            }
            Some(name) => name,
            None => "configuration".into(),
        };
        format!("{origin}: {key}: {message}")
    }
}

/// `file:line: key: message`, with the line of `key` in `file` when it can be found.
fn located(file: Option<&Path>, key: &str, message: &str) -> String {
    let Some(file) = file else {
        return format!("configuration: {key}: {message}");
    };
    match std::fs::read_to_string(file)
        .ok()
        .and_then(|text| key_line(&text, key))
    {
        Some(line) => format!("{}:{line}: {key}: {message}", file.display()),
        None => format!("{}: {key}: {message}", file.display()),
    }
}

/// The 1-based line where dotted `key` is set in TOML `text`.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut table = document.as_table();
    let parts: Vec<&str> = key.split('.').collect();
    let mut span = None;
    for (i, part) in parts.iter().enumerate() {
        let (k, item) = table.get_key_value(part)?;
        span = k.span().or_else(|| item.span());
        if i + 1 < parts.len() {
            table = item.as_table()?;
        }
    }
    let offset = span?.start;
    Some(text[..offset].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        KairoConfig::default().validate(None).unwrap();
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:8080\"\n\n[dispatch]\nmax_attempts = \"many\"\n",
        )
        .unwrap();
        let err = KairoConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("kairo.toml:5: dispatch.max_attempts"), "{err}");

        std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
        let err = KairoConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("kairo.toml:2: server.listen: not a socket address"),
            "{err}"
        );

        std::fs::write(&path, "[server]\nlisen = \"x\"\n").unwrap();
        let err = KairoConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn an_empty_token_is_an_error_not_silent_open_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kairo.toml");
        std::fs::write(&path, "[server]\ntoken = \"\"\n").unwrap();
        let err = KairoConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("kairo.toml:2: server.token: is empty"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let err = KairoConfig::load(Some(Path::new("/nonexistent/k.toml"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/k.toml: configuration file not found")
        );
    }

    #[test]
    fn key_line_finds_nested_keys() {
        let text = "a = 1\n[plugins.slack]\nwebhook_url = \"x\"\n";
        assert_eq!(key_line(text, "plugins.slack.webhook_url"), Some(3));
        assert_eq!(key_line(text, "a"), Some(1));
        assert_eq!(key_line(text, "b"), None);
    }
}
