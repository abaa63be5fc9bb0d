//! The emulator's in-memory SIMs, groups, tokens and test controls.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{DEFAULT_AUTH_KEY, DEFAULT_AUTH_KEY_ID, EmulatorOptions};

/// The operator id every emulated resource belongs to.
pub const OPERATOR_ID: &str = "OP0000000000";

/// An emulated IoT SIM (the fields of SORACOM's `Sim` that Kairo uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sim {
    /// SIM id.
    pub sim_id: String,
    /// Primary IMSI.
    #[serde(default)]
    pub imsi: Option<String>,
    /// Owning operator.
    #[serde(default = "operator")]
    pub operator_id: String,
    /// ready, active, inactive, standby, suspended or terminated.
    #[serde(default = "ready")]
    pub status: String,
    /// Current speed class.
    #[serde(default = "standard")]
    pub speed_class: String,
    /// Group the SIM is in.
    #[serde(default)]
    pub group_id: Option<String>,
    /// IMEI lock, `{"imei": …}` when set.
    #[serde(default)]
    pub imei_lock: Option<Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Map<String, Value>,
    /// Last change, epoch milliseconds.
    #[serde(default)]
    pub last_modified_time: i64,
    /// The current session: `{"online", "imei", "lastUpdatedAt"}` once one was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_status: Option<Value>,
    /// When the validity period ends, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<i64>,
    /// What happens then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_action: Option<String>,
    /// Profiles by ICCID, with their subscribers (added subscriptions'
    /// `status` shows their OTA: `shipped`, `delivered`, `ready`, `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Value>,
}

fn operator() -> String {
    OPERATOR_ID.into()
}
fn ready() -> String {
    "ready".into()
}
fn standard() -> String {
    "s1.standard".into()
}

impl Sim {
    /// A new SIM in status `ready` with speed class `s1.standard`.
    pub fn new(sim_id: &str) -> Self {
        Self {
            sim_id: sim_id.into(),
            imsi: None,
            operator_id: operator(),
            status: ready(),
            speed_class: standard(),
            group_id: None,
            imei_lock: None,
            tags: Map::new(),
            last_modified_time: 0,
            session_status: None,
            expiry_time: None,
            expiry_action: None,
            profiles: None,
        }
    }
}

/// An emulated SIM group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Group id.
    pub group_id: String,
    /// Owning operator.
    #[serde(default = "operator")]
    pub operator_id: String,
    /// Tags; `name` is the group's name.
    #[serde(default)]
    pub tags: Map<String, Value>,
    /// Configuration namespaces.
    #[serde(default)]
    pub configuration: Map<String, Value>,
    /// Creation time, epoch milliseconds.
    #[serde(default)]
    pub created_time: i64,
}

/// One request the emulator received.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// JSON body (`null` when empty or not JSON).
    pub body: Value,
    /// Status the emulator answered with.
    pub status: u16,
}

/// An injected failure: the next `count` requests to `path` get `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Exact request path, e.g. `/v1/sims/8981…/set_group`.
    pub path: String,
    /// HTTP status to answer with.
    pub status: u16,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// For 429: the `X-Soracom-Ratelimit-Seconds-Before-Refresh` to send.
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Everything the emulator knows.
#[derive(Debug)]
pub struct EmulatorState {
    /// SIMs by id.
    pub sims: BTreeMap<String, Sim>,
    /// Groups by id.
    pub groups: BTreeMap<String, Group>,
    /// Accepted AuthKeys: id → secret.
    pub auth_keys: HashMap<String, String>,
    /// Issued tokens: token → (api key, expiry epoch ms).
    pub tokens: HashMap<String, (String, i64)>,
    /// Every request received.
    pub requests: Vec<RecordedRequest>,
    /// Pending injected faults.
    pub faults: Vec<Fault>,
    /// Create unknown SIMs and groups on first use.
    pub auto_create: bool,
    /// Requests per minute per (API key, path).
    pub rate_limit_per_minute: Option<u32>,
    /// Rate-limit windows: (api key, path) → (window start ms, count).
    pub windows: HashMap<(String, String), (i64, u32)>,
    /// Counter for generated ids.
    pub next_id: u64,
    /// Delay before answering each API request.
    pub latency: std::time::Duration,
    /// The operator's primary notification address.
    pub operator_email: String,
    /// Event handlers by id, as created through the API.
    pub event_handlers: BTreeMap<String, serde_json::Value>,
    /// Data traffic by (IMSI, UTC day `yyyyMMdd`): (upload, download) bytes.
    pub air_stats: BTreeMap<(String, String), (i64, i64)>,
    /// Exported files by id: their content.
    pub exported: HashMap<String, String>,
    /// This month's fee so far (getLatestBilling), in JPY.
    pub charge: f64,
    /// Status history entries by SIM, oldest first (listSimStatusHistory).
    pub status_history: BTreeMap<String, Vec<Value>>,
    /// Session events by SIM, oldest first (listSimSessionEvents).
    pub session_events: BTreeMap<String, Vec<Value>>,
}

/// The operator's primary notification address when the seed gives none.
pub const DEFAULT_OPERATOR_EMAIL: &str = "operator@example.com";

impl EmulatorState {
    /// State built from `options`.
    pub fn new(options: EmulatorOptions) -> Self {
        let mut auth_keys: HashMap<String, String> = options
            .seed
            .auth_keys
            .into_iter()
            .map(|k| (k.auth_key_id, k.auth_key))
            .collect();
        if auth_keys.is_empty() {
            auth_keys.insert(DEFAULT_AUTH_KEY_ID.into(), DEFAULT_AUTH_KEY.into());
        }
        Self {
            sims: options
                .seed
                .sims
                .into_iter()
                .map(|s| (s.sim_id.clone(), s))
                .collect(),
            groups: options
                .seed
                .groups
                .into_iter()
                .map(|g| (g.group_id.clone(), g))
                .collect(),
            auth_keys,
            tokens: HashMap::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            auto_create: options.auto_create,
            rate_limit_per_minute: options.rate_limit_per_minute,
            windows: HashMap::new(),
            next_id: 1,
            latency: options.latency,
            operator_email: (options.seed.operator_email)
                .unwrap_or_else(|| DEFAULT_OPERATOR_EMAIL.into()),
            event_handlers: BTreeMap::new(),
            air_stats: BTreeMap::new(),
            exported: HashMap::new(),
            charge: 0.0,
            status_history: BTreeMap::new(),
            session_events: BTreeMap::new(),
        }
    }

    /// Records `sim_id`'s status, speed class and group now in its status history.
    pub fn record_status(&mut self, sim_id: &str) {
        let Some(sim) = self.sims.get(sim_id) else {
            return;
        };
        let entry = serde_json::json!({
            "simId": sim.sim_id, "imsi": sim.imsi, "primaryImsi": sim.imsi, "isPrimary": true,
            "status": sim.status, "speedClass": sim.speed_class, "groupId": sim.group_id,
            "applyDateTimeEpochSec": sim.last_modified_time / 1000,
        });
        self.status_history
            .entry(sim_id.to_string())
            .or_default()
            .push(entry);
    }

    /// A fresh unique id with `prefix`.
    pub fn fresh_id(&mut self, prefix: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        format!("{prefix}{id:012}")
    }

    /// Takes one use of a fault matching `path`, if any.
    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.path == path && f.count > 0)?;
        let fault = &mut self.faults[index];
        fault.count -= 1;
        let taken = fault.clone();
        if fault.count == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}
