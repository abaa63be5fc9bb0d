//! The SORACOM API client.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{SoracomError, SoracomErrorKind};

/// Production endpoint for the Japan coverage.
pub const JAPAN_ENDPOINT: &str = "https://api.soracom.io";
/// Production endpoint for the global coverage.
pub const GLOBAL_ENDPOINT: &str = "https://g.api.soracom.io";

/// How to reach and authenticate to the SORACOM API: the `[soracom]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Base URL without `/v1`, e.g. `https://api.soracom.io` or an emulator's address.
    pub endpoint: String,
    /// AuthKey id (`keyId-…`).
    pub auth_key_id: Option<String>,
    /// AuthKey secret (`secret-…`).
    pub auth_key: Option<String>,
    /// Lifetime asked for each API token, in seconds (SORACOM allows up to 172800).
    pub token_timeout_seconds: u64,
    /// `[soracom.watch]`: polling the API for changes.
    pub watch: crate::watch::WatchConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint: JAPAN_ENDPOINT.into(),
            auth_key_id: None,
            auth_key: None,
            token_timeout_seconds: 86_400,
            watch: crate::watch::WatchConfig::default(),
        }
    }
}

impl ClientConfig {
    /// The configuration keys that must still be set before calls can be made.
    pub fn missing_credentials(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.auth_key_id.as_deref().is_none_or(str::is_empty) {
            missing.push("soracom.auth_key_id");
        }
        if self.auth_key.as_deref().is_none_or(str::is_empty) {
            missing.push("soracom.auth_key");
        }
        missing
    }
}

/// An operation on one SIM, as the SIM API's `POST /v1/sims/{sim_id}/…` paths offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimOperation {
    /// Put the SIM in a group.
    SetGroup {
        /// Target group id.
        group_id: String,
    },
    /// Take the SIM out of its group.
    UnsetGroup,
    /// Change the speed class, e.g. `s1.minimum`.
    UpdateSpeedClass {
        /// New speed class.
        speed_class: String,
    },
    /// Status → active.
    Activate,
    /// Status → inactive.
    Deactivate,
    /// Status → suspended.
    Suspend,
    /// Status → standby.
    SetToStandby,
    /// Lock to an IMEI; `None` locks to the IMEI of the current session.
    SetImeiLock {
        /// IMEI to lock to.
        imei: Option<String>,
    },
    /// Remove the IMEI lock.
    UnsetImeiLock,
}

impl SimOperation {
    /// The last path segment, e.g. `set_group`.
    pub fn path_segment(&self) -> &'static str {
        match self {
            Self::SetGroup { .. } => "set_group",
            Self::UnsetGroup => "unset_group",
            Self::UpdateSpeedClass { .. } => "update_speed_class",
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::Suspend => "suspend",
            Self::SetToStandby => "set_to_standby",
            Self::SetImeiLock { .. } => "set_imei_lock",
            Self::UnsetImeiLock => "unset_imei_lock",
        }
    }

    /// The JSON body the API expects, if any.
    pub fn body(&self) -> Option<Value> {
        match self {
            Self::SetGroup { group_id } => Some(json!({"groupId": group_id})),
            Self::UpdateSpeedClass { speed_class } => Some(json!({"speedClass": speed_class})),
            Self::SetImeiLock { imei: Some(imei) } => Some(json!({"imei": imei})),
            Self::SetImeiLock { imei: None } => Some(json!({})),
            _ => None,
        }
    }
}

/// How many times (a second apart) an export's file is asked for before giving up.
const EXPORT_POLLS: usize = 120;

#[derive(Debug, Clone)]
struct Session {
    api_key: String,
    token: String,
    operator_id: Option<String>,
    refresh_at: Instant,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    api_key: String,
    token: String,
    #[serde(default)]
    operator_id: Option<String>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// A SORACOM API client that authenticates with an AuthKey, caches the API
/// token, refreshes it before it expires and once on a 401.
#[derive(Debug)]
pub struct SoracomClient {
    http: reqwest::Client,
    config: ClientConfig,
    session: Mutex<Option<Session>>,
}

impl SoracomClient {
    /// A client for `config`, sharing `http`'s connection pool.
    pub fn new(http: reqwest::Client, mut config: ClientConfig) -> Self {
        config.endpoint = config.endpoint.trim_end_matches('/').to_string();
        Self {
            http,
            config,
            session: Mutex::new(None),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Performs `operation` on SIM `sim_id`; returns the updated SIM object.
    pub async fn sim_operation(
        &self,
        sim_id: &str,
        operation: &SimOperation,
    ) -> Result<Value, SoracomError> {
        let path = format!("/v1/sims/{}/{}", encode(sim_id), operation.path_segment());
        self.call(Method::POST, &path, operation.body()).await
    }

    /// `GET /v1/sims/{sim_id}`.
    pub async fn get_sim(&self, sim_id: &str) -> Result<Value, SoracomError> {
        self.call(Method::GET, &format!("/v1/sims/{}", encode(sim_id)), None)
            .await
    }

    /// `GET /v1/groups/{group_id}`.
    pub async fn get_group(&self, group_id: &str) -> Result<Value, SoracomError> {
        self.call(
            Method::GET,
            &format!("/v1/groups/{}", encode(group_id)),
            None,
        )
        .await
    }

    /// The traffic of every IMSI per UTC day from `from_s` to `to_s` (epoch
    /// seconds), as the CSV of exportAirStats (async: export, wait until the
    /// file is ready, download it).
    pub async fn export_air_stats(&self, from_s: i64, to_s: i64) -> Result<String, SoracomError> {
        let operator = self.operator_id().await?;
        let path = format!(
            "/v1/stats/air/operators/{}/export?export_mode=async",
            encode(&operator)
        );
        let body = json!({"from": from_s, "to": to_s, "period": "day"});
        let export = self.call(Method::POST, &path, Some(body)).await?;
        let id = export["exportedFileId"].as_str().ok_or_else(|| {
            SoracomError::new(
                SoracomErrorKind::Server,
                format!("export answered no exportedFileId: {export}"),
            )
        })?;
        let file_path = format!("/v1/files/exported/{}", encode(id));
        for _ in 0..EXPORT_POLLS {
            let file = self.call(Method::GET, &file_path, None).await?;
            match (file["status"].as_str(), file["url"].as_str()) {
                (Some("exported"), Some(url)) => {
                    // A pre-signed URL: no SORACOM headers.
                    let response = self.http.get(url).send().await.map_err(transport)?;
                    return response.text().await.map_err(transport);
                }
                (Some("failed"), _) => {
                    let message = format!("the export {id} failed");
                    return Err(SoracomError::new(SoracomErrorKind::Server, message));
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        let message = format!("the export {id} was not ready after {EXPORT_POLLS} s");
        Err(SoracomError::new(SoracomErrorKind::Server, message))
    }

    /// The operator id of the session (authenticating when needed).
    pub async fn operator_id(&self) -> Result<String, SoracomError> {
        self.session(false).await?.operator_id.ok_or_else(|| {
            SoracomError::new(
                SoracomErrorKind::Server,
                "the auth response named no operatorId",
            )
        })
    }

    /// The operator's primary notification address (where SORACOM sends
    /// SendMailToOperatorAction mail): the first address of the `primary`
    /// system notification, else the operator's own email.
    pub async fn operator_email(&self) -> Result<String, SoracomError> {
        let operator = self.session(false).await?.operator_id.ok_or_else(|| {
            SoracomError::new(
                SoracomErrorKind::Server,
                "the auth response named no operatorId",
            )
        })?;
        let base = format!("/v1/operators/{}", encode(&operator));
        let primary = self
            .call(
                Method::GET,
                &format!("{base}/system_notifications/primary"),
                None,
            )
            .await;
        let email_id = primary
            .ok()
            .and_then(|p| p["emailIdList"][0].as_str().map(str::to_string));
        if let Some(email_id) = email_id {
            let path = format!("{base}/emails/{}", encode(&email_id));
            if let Ok(email) = self.call(Method::GET, &path, None).await
                && let Some(address) = email["email"].as_str()
            {
                return Ok(address.to_string());
            }
        }
        let own = self.call(Method::GET, &base, None).await?;
        own["email"].as_str().map(str::to_string).ok_or_else(|| {
            SoracomError::new(
                SoracomErrorKind::Server,
                format!("{base} answered no email"),
            )
        })
    }

    /// Calls an authenticated endpoint, re-authenticating once on 401.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, SoracomError> {
        self.call_page(method, path, body)
            .await
            .map(|(value, _)| value)
    }

    /// One page of a paginated list (`limit`, `last_evaluated_key`): the
    /// items and the key of the next page (`x-soracom-next-key`), if any.
    pub async fn list_page(
        &self,
        path: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), SoracomError> {
        let mut query = format!("{path}?limit={limit}");
        if let Some(after) = after {
            query.push_str(&format!("&last_evaluated_key={}", encode(after)));
        }
        let (value, next) = self.call_page(Method::GET, &query, None).await?;
        let items = match value {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => {
                let message = format!("{path} answered {other}, not a list");
                return Err(SoracomError::new(SoracomErrorKind::Server, message));
            }
        };
        Ok((items, next.filter(|n| !n.is_empty())))
    }

    async fn call_page(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Value, Option<String>), SoracomError> {
        let session = self.session(false).await?;
        match self
            .send(&session, method.clone(), path, body.as_ref())
            .await
        {
            Err(e) if e.kind == SoracomErrorKind::Unauthorized => {
                tracing::info!(path, "SORACOM API answered 401; re-authenticating once");
                let session = self.session(true).await?;
                self.send(&session, method, path, body.as_ref()).await
            }
            other => other,
        }
    }

    async fn send(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), SoracomError> {
        if path.len() > MAX_PATH_BYTES {
            // No SORACOM id is this long: the request can never succeed.
            return Err(SoracomError::new(
                SoracomErrorKind::Rejected,
                format!(
                    "the request path is {} bytes, longer than any SORACOM id allows ({MAX_PATH_BYTES}); not sent",
                    path.len()
                ),
            ));
        }
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.config.endpoint))
            .header("X-Soracom-API-Key", &session.api_key)
            .header("X-Soracom-Token", &session.token)
            .header("X-Soracom-Lang", "en");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let next = (response.headers().get("x-soracom-next-key"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((read_response(response).await?, next))
    }

    /// The current session, authenticating when there is none, it is due for
    /// refresh, or `force` is set.
    async fn session(&self, force: bool) -> Result<Session, SoracomError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard
            .as_ref()
            .filter(|s| !force && Instant::now() < s.refresh_at)
        {
            return Ok(session.clone());
        }
        let session = self.authenticate().await?;
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn authenticate(&self) -> Result<Session, SoracomError> {
        let missing = self.config.missing_credentials();
        if !missing.is_empty() {
            let env: Vec<String> = missing
                .iter()
                .map(|k| format!("KAIRO_{}", k.to_uppercase().replace('.', "__")))
                .collect();
            return Err(SoracomError::new(
                SoracomErrorKind::MissingCredentials,
                format!(
                    "SORACOM credentials are not configured: set {} (or the environment variables {})",
                    missing.join(" and "),
                    env.join(", ")
                ),
            ));
        }
        let timeout = self.config.token_timeout_seconds.clamp(180, 172_800);
        let body = json!({
            "authKeyId": self.config.auth_key_id,
            "authKey": self.config.auth_key,
            "tokenTimeoutSeconds": timeout,
        });
        let response = self
            .http
            .post(format!("{}/v1/auth", self.config.endpoint))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let value = read_response(response).await.map_err(|mut e| {
            if matches!(e.kind, SoracomErrorKind::Unauthorized | SoracomErrorKind::Rejected) {
                e.kind = SoracomErrorKind::AuthFailed;
                e.message = format!("SORACOM authentication failed (check soracom.auth_key_id and soracom.auth_key): {}", e.message);
            }
            e
        })?;
        let auth: AuthResponse = serde_json::from_value(value).map_err(|e| {
            SoracomError::new(
                SoracomErrorKind::Server,
                format!("unexpected /v1/auth response: {e}"),
            )
        })?;
        // Refresh when 90% of the lifetime has passed.
        let refresh_after = Duration::from_secs(timeout * 9 / 10);
        tracing::debug!(endpoint = %self.config.endpoint, "authenticated to the SORACOM API");
        Ok(Session {
            api_key: auth.api_key,
            token: auth.token,
            operator_id: auth.operator_id,
            refresh_at: Instant::now() + refresh_after,
        })
    }
}

async fn read_response(response: reqwest::Response) -> Result<Value, SoracomError> {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.map_err(transport)?;
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text).map_err(|e| {
            SoracomError::new(
                SoracomErrorKind::Server,
                format!("response is not JSON: {e}"),
            )
        });
    }
    let parsed: Option<ApiErrorBody> = serde_json::from_str(&text).ok();
    let (code, detail) = match parsed {
        Some(ApiErrorBody { code, message }) => (code, message.unwrap_or_else(|| text.clone())),
        None => (None, text.clone()),
    };
    use kairo_core::http::StatusClass;
    let kind = match (status, kairo_core::http::classify(status.as_u16())) {
        (StatusCode::UNAUTHORIZED, _) => SoracomErrorKind::Unauthorized,
        (StatusCode::NOT_FOUND, _) => SoracomErrorKind::NotFound,
        (_, StatusClass::RateLimited) => SoracomErrorKind::RateLimited,
        (_, StatusClass::Retryable) => SoracomErrorKind::Server,
        _ => SoracomErrorKind::Rejected,
    };
    let retry_after = header_secs(&headers, "X-Soracom-Ratelimit-Seconds-Before-Refresh")
        .or_else(|| header_secs(&headers, "Retry-After"));
    let code_text = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
    Err(SoracomError {
        kind,
        status: Some(status.as_u16()),
        message: format!("SORACOM API HTTP {}{code_text}: {detail}", status.as_u16()),
        code,
        retry_after,
    })
}

fn header_secs(headers: &reqwest::header::HeaderMap, name: &str) -> Option<Duration> {
    kairo_core::http::seconds(headers.get(name).and_then(|v| v.to_str().ok()))
}

/// Longest API path sent, in bytes.
const MAX_PATH_BYTES: usize = 2_048;

/// A request that could not be sent. One that could not even be built is
/// rejected for good; the rest (connect errors, timeouts) may pass later.
fn transport(error: reqwest::Error) -> SoracomError {
    let kind = if error.is_builder() {
        SoracomErrorKind::Rejected
    } else {
        SoracomErrorKind::Transport
    };
    let error = error.without_url();
    let message = format!(
        "SORACOM API request failed: {}",
        kairo_core::error_chain(&error)
    );
    SoracomError::new(kind, message)
}

/// Percent-encodes a path segment (ids are normally plain digits and letters).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_are_named() {
        let config = ClientConfig::default();
        assert_eq!(
            config.missing_credentials(),
            vec!["soracom.auth_key_id", "soracom.auth_key"]
        );
    }

    #[test]
    fn operations_map_to_paths_and_bodies() {
        let op = SimOperation::SetGroup {
            group_id: "g1".into(),
        };
        assert_eq!(op.path_segment(), "set_group");
        assert_eq!(op.body(), Some(json!({"groupId": "g1"})));
        assert_eq!(SimOperation::Suspend.body(), None);
        assert_eq!(encode("89/81 x"), "89%2F81%20x");
    }
}
