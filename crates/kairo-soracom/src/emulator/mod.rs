//! An in-memory emulator of the SORACOM API endpoints Kairo calls.
//!
//! It authenticates like SORACOM (`POST /v1/auth` with an AuthKey, then
//! `X-Soracom-API-Key` / `X-Soracom-Token` on every call), answers with
//! SORACOM-shaped errors (`{"code": …, "message": …}`), and can rate-limit per
//! API key and path with SORACOM's `X-Soracom-Ratelimit-*` headers.
//!
//! For tests and demos it also serves, without authentication:
//! `GET /_emulator/sims` and `GET /_emulator/sims/{id}` (inspect SIMs),
//! `POST /_emulator/sims/{id}/state` (`{"status", "speedClass", "expiryTime", "expiryAction", "profiles"}`),
//! `POST /_emulator/sims/{id}/session` (`{"online", "imei"}`: open or close a session),
//! `POST /_emulator/sims/{id}/traffic` (`{"bytes"}`: traffic today),
//! `POST /_emulator/charge` (`{"amount"}`: this month's fee),
//! `GET /_emulator/requests` (every API request received, with its answer),
//! `POST /_emulator/faults` (`{"path", "status", "count", "retryAfterSeconds"}`:
//! answer the next requests to a path with an error) and
//! `POST /_emulator/revoke_tokens` (expire every issued token).

mod account;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::net::TcpListener;

pub use state::{EmulatorState, Fault, Group, RecordedRequest, Sim};

/// The AuthKey id the emulator accepts when its seed names none.
pub const DEFAULT_AUTH_KEY_ID: &str = "keyId-kairo-emulator";
/// The AuthKey secret the emulator accepts when its seed names none.
pub const DEFAULT_AUTH_KEY: &str = "secret-kairo-emulator";

/// Initial content: SIMs, groups and accepted AuthKeys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// SIMs to create.
    #[serde(default)]
    pub sims: Vec<Sim>,
    /// Groups to create.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Accepted AuthKeys; empty means the default pair.
    #[serde(default)]
    pub auth_keys: Vec<AuthKey>,
    /// The operator's primary notification address (default `operator@example.com`).
    #[serde(default)]
    pub operator_email: Option<String>,
}

/// An AuthKey pair the emulator accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthKey {
    /// `keyId-…`
    pub auth_key_id: String,
    /// `secret-…`
    pub auth_key: String,
}

/// How the emulator behaves.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Initial SIMs, groups and keys.
    pub seed: Seed,
    /// Create unknown SIMs and groups on first use instead of answering 404.
    pub auto_create: bool,
    /// Requests per minute per API key and path; `None` for no limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Delay added before answering each API request, to imitate a remote service.
    pub latency: std::time::Duration,
}

/// Why a seed file could not be read; names the file (and the position).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a seed.
    #[error("{}:{}:{}: not a seed file", path.display(), source.line(), source.column())]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Where and why.
        source: serde_json::Error,
    },
}

impl Seed {
    /// Reads a seed file; the error names the file and the position.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SeedError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A running or ready-to-run emulator; clones share state.
#[derive(Clone)]
pub struct Emulator {
    state: Arc<Mutex<EmulatorState>>,
}

impl Emulator {
    /// An emulator with `options`.
    pub fn new(options: EmulatorOptions) -> Self {
        Self {
            state: Arc::new(Mutex::new(EmulatorState::new(options))),
        }
    }

    /// The axum router serving the API.
    pub fn router(&self) -> axum::Router {
        let latency = self.with_state(|s| s.latency);
        routes::router(self.state.clone(), latency)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Binds `addr` and serves in a background task; returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        tokio::spawn(self.serve(listener, std::future::pending()));
        Ok(local)
    }

    /// Runs `f` with the state locked; for tests and inspection.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut EmulatorState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// The SIM with `sim_id`, if it exists.
    pub fn sim(&self, sim_id: &str) -> Option<Sim> {
        self.with_state(|s| s.sims.get(sim_id).cloned())
    }

    /// All requests received so far (except `/_emulator/…`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// Requests received for `method` and `path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        self.with_state(|s| {
            s.requests
                .iter()
                .filter(|r| r.method == method && r.path == path)
                .cloned()
                .collect()
        })
    }

    /// Answers the next `fault.count` requests to `fault.path` with `fault.status`.
    pub fn inject(&self, fault: Fault) {
        self.with_state(|s| s.faults.push(fault));
    }

    /// Invalidates every issued token, as if they had expired.
    pub fn revoke_tokens(&self) {
        self.with_state(|s| s.tokens.clear());
    }
}
