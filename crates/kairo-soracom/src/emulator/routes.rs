//! Request handling for the emulator: one entry point that records each request,
//! applies injected faults, authenticates, rate-limits and then routes.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::account;
use super::state::{EmulatorState, Fault, Group, RecordedRequest, Sim};

type Shared = Arc<Mutex<EmulatorState>>;

use kairo_core::handler::model::SPEED_CLASSES;

pub(super) fn router(state: Shared, latency: std::time::Duration) -> axum::Router {
    let app = axum::Router::new().fallback(handle).with_state(state);
    if latency.is_zero() {
        return app;
    }
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if !request.uri().path().starts_with("/_emulator/") {
                tokio::time::sleep(latency).await;
            }
            next.run(request).await
        },
    ))
}

/// An API answer: status, JSON body and extra headers.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(super) fn ok(body: Value) -> Self {
        Self::with(StatusCode::OK, body)
    }

    fn with(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::with(status, json!({"code": code, "message": message.into()}))
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = if self.status == StatusCode::NO_CONTENT {
            self.status.into_response()
        } else {
            (self.status, axum::Json(self.body)).into_response()
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = path.strip_prefix("/_emulator/files/") {
        // An exported file's download URL: the file itself, not JSON.
        return match state.exported.get(id) {
            Some(csv) => ([("content-type", "text/csv")], csv.clone()).into_response(),
            None => not_found("file", id).into_response(),
        };
    }
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return control(&mut state, &method, rest, &body).into_response();
    }
    let json_body = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    let answer = match json_body {
        Err(ref e) => Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            format!("request body is not valid JSON: {e}"),
        ),
        Ok(ref value) => {
            let request = (method.clone(), path.as_str(), uri.query().unwrap_or(""));
            answer(&mut state, request, &headers, value)
        }
    };
    let mut body = json_body.unwrap_or(Value::Null);
    if let Some(secret) = body.get_mut("authKey") {
        *secret = Value::String("<redacted>".into());
    }
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        body,
        status: answer.status.as_u16(),
    });
    answer.into_response()
}

fn answer(
    state: &mut EmulatorState,
    (method, path, query): (Method, &str, &str),
    headers: &HeaderMap,
    body: &Value,
) -> Answer {
    let method = &method;
    if let Some(fault) = state.take_fault(path) {
        return fault_answer(&fault);
    }
    if method == Method::POST && path == "/v1/auth" {
        return auth(state, body);
    }
    let api_key = match authenticated(state, headers) {
        Ok(api_key) => api_key,
        Err(answer) => return answer,
    };
    let mut limit_headers = Vec::new();
    if let Some(limit) = state.rate_limit_per_minute {
        match rate_limit(state, &api_key, method, path, limit) {
            Ok(headers) => limit_headers = headers,
            Err(answer) => return answer,
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut answer = match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "sims"]) => list_sims(state, query),
        (&Method::GET, ["v1", "sims", sim_id]) => get_sim(state, sim_id),
        (&Method::PUT, ["v1", "sims", sim_id, "tags"]) => put_tags(state, sim_id, body),
        (&Method::GET, ["v1", "sims", sim_id, "statuses", "history"]) => {
            newest_first(&state.status_history, sim_id)
        }
        (&Method::GET, ["v1", "sims", sim_id, "events", "sessions"]) => {
            newest_first(&state.session_events, sim_id)
        }
        (&Method::POST, ["v1", "sims", sim_id, operation]) => {
            sim_operation(state, sim_id, operation, body)
        }
        (&Method::GET, ["v1", "operators", operator, rest @ ..]) => {
            account::operator_api(state, operator, rest)
        }
        (method, ["v1", "event_handlers", rest @ ..]) => {
            account::event_handlers(state, method, rest, body)
        }
        (&Method::POST, ["v1", "stats", "air", "operators", _, "export"]) => {
            account::export_air_stats(state, body)
        }
        (&Method::GET, ["v1", "files", "exported", id]) => {
            account::exported_file(state, headers, id)
        }
        (&Method::GET, ["v1", "bills", "latest"]) => Answer::ok(json!({
            "amount": state.charge, "currency": "JPY",
            "lastEvaluatedTime": chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
        })),
        (&Method::POST, ["v1", "groups"]) => create_group(state, body),
        (&Method::GET, ["v1", "groups"]) => {
            Answer::ok(json!(state.groups.values().collect::<Vec<_>>()))
        }
        (&Method::GET, ["v1", "groups", group_id]) => match state.groups.get(*group_id) {
            Some(group) => Answer::ok(json!(group)),
            None => not_found("group", group_id),
        },
        _ => Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0004",
            format!("no such API: {method} {path}"),
        ),
    };
    answer.headers.extend(limit_headers);
    answer
}

fn fault_answer(fault: &Fault) -> Answer {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = Answer::error(
        status,
        "EMU0006",
        format!("injected fault: HTTP {}", fault.status),
    );
    if let Some(seconds) = fault.retry_after_seconds {
        answer.headers.push((
            "X-Soracom-Ratelimit-Seconds-Before-Refresh",
            seconds.to_string(),
        ));
    }
    answer
}

fn auth(state: &mut EmulatorState, body: &Value) -> Answer {
    let key_id = body.get("authKeyId").and_then(Value::as_str);
    let key = body.get("authKey").and_then(Value::as_str);
    let (Some(key_id), Some(key)) = (key_id, key) else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            "authKeyId and authKey are required",
        );
    };
    if state.auth_keys.get(key_id).map(String::as_str) != Some(key) {
        return Answer::error(
            StatusCode::UNAUTHORIZED,
            "EMU0002",
            "Invalid authKeyId or authKey",
        );
    }
    let timeout = body
        .get("tokenTimeoutSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(86_400)
        .clamp(180, 172_800);
    let api_key = state.fresh_id("api-");
    let token = format!("token-{}", rand::random::<u64>());
    let expires = now_ms() + timeout * 1000;
    state
        .tokens
        .insert(token.clone(), (api_key.clone(), expires));
    Answer::ok(json!({"apiKey": api_key, "operatorId": super::state::OPERATOR_ID, "token": token}))
}

fn authenticated(state: &EmulatorState, headers: &HeaderMap) -> Result<String, Answer> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorized = |message: &str| Answer::error(StatusCode::UNAUTHORIZED, "EMU0003", message);
    let (Some(api_key), Some(token)) = (header("X-Soracom-API-Key"), header("X-Soracom-Token"))
    else {
        return Err(unauthorized(
            "X-Soracom-API-Key and X-Soracom-Token headers are required",
        ));
    };
    match state.tokens.get(token) {
        Some((key, expires)) if key == api_key && *expires > now_ms() => Ok(api_key.to_string()),
        _ => Err(unauthorized("Invalid or expired API key or token")),
    }
}

fn rate_limit(
    state: &mut EmulatorState,
    api_key: &str,
    method: &Method,
    path: &str,
    limit: u32,
) -> Result<Vec<(&'static str, String)>, Answer> {
    let now = now_ms();
    let window = state
        .windows
        .entry((api_key.to_string(), format!("{method} {path}")))
        .or_insert((now, 0));
    if now - window.0 >= 60_000 {
        *window = (now, 0);
    }
    let refresh = ((window.0 + 60_000 - now) / 1000).max(1);
    let headers = |remaining: u32| {
        vec![
            ("X-Soracom-Ratelimit-Limit", limit.to_string()),
            ("X-Soracom-Ratelimit-Remaining", remaining.to_string()),
            (
                "X-Soracom-Ratelimit-Seconds-Before-Refresh",
                refresh.to_string(),
            ),
        ]
    };
    if window.1 >= limit {
        let mut answer = Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            "EMU0005",
            "Rate limit exceeded",
        );
        answer.headers = headers(0);
        return Err(answer);
    }
    window.1 += 1;
    Ok(headers(limit - window.1))
}

pub(super) fn not_found(what: &str, id: &str) -> Answer {
    Answer::error(
        StatusCode::NOT_FOUND,
        "EMU0004",
        format!("{what} {id} not found"),
    )
}

fn get_sim(state: &mut EmulatorState, sim_id: &str) -> Answer {
    match sim_mut(state, sim_id) {
        Some(sim) => Answer::ok(json!(sim)),
        None => not_found("SIM", sim_id),
    }
}

/// A SIM's recorded status history or session events, newest first, as
/// SORACOM lists them (the emulator does not page these).
fn newest_first(records: &std::collections::BTreeMap<String, Vec<Value>>, sim_id: &str) -> Answer {
    let mut list = records.get(sim_id).cloned().unwrap_or_default();
    list.reverse();
    Answer::ok(Value::Array(list))
}

/// `PUT /v1/sims/{simId}/tags`: `[{"tagName", "tagValue"}]` added to or replacing the SIM's tags.
fn put_tags(state: &mut EmulatorState, sim_id: &str, body: &Value) -> Answer {
    let tags: Option<Vec<(String, Value)>> = body.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| {
                let name = item.get("tagName")?.as_str()?.to_string();
                Some((name, item.get("tagValue")?.clone()))
            })
            .collect()
    });
    let Some(tags) = tags else {
        let message = "expected an array of {tagName, tagValue}";
        return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", message);
    };
    match sim_mut(state, sim_id) {
        Some(sim) => {
            sim.tags.extend(tags);
            Answer::ok(json!(sim))
        }
        None => not_found("SIM", sim_id),
    }
}

fn sim_mut<'a>(state: &'a mut EmulatorState, sim_id: &str) -> Option<&'a mut Sim> {
    if state.auto_create && !state.sims.contains_key(sim_id) {
        state.sims.insert(sim_id.to_string(), Sim::new(sim_id));
    }
    state.sims.get_mut(sim_id)
}

fn sim_operation(state: &mut EmulatorState, sim_id: &str, operation: &str, body: &Value) -> Answer {
    let string_field = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
    // Validate the body and the referenced group before touching the SIM.
    let group_id = if operation == "set_group" {
        let Some(group_id) = string_field("groupId") else {
            return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "groupId is required");
        };
        if !state.groups.contains_key(&group_id) {
            if !state.auto_create {
                return not_found("group", &group_id);
            }
            let group = Group {
                group_id: group_id.clone(),
                operator_id: super::state::OPERATOR_ID.into(),
                tags: Default::default(),
                configuration: Default::default(),
                created_time: now_ms(),
            };
            state.groups.insert(group_id.clone(), group);
        }
        Some(group_id)
    } else {
        None
    };
    let Some(sim) = sim_mut(state, sim_id) else {
        return not_found("SIM", sim_id);
    };
    if sim.status == "terminated" {
        return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "the SIM is terminated");
    }
    match operation {
        "set_group" => sim.group_id = group_id,
        "unset_group" => sim.group_id = None,
        "update_speed_class" => match string_field("speedClass") {
            Some(class) if SPEED_CLASSES.contains(&class.as_str()) => sim.speed_class = class,
            Some(class) => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    "EMU0001",
                    format!("invalid speed class: {class}"),
                );
            }
            None => {
                return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "speedClass is required");
            }
        },
        "activate" => sim.status = "active".into(),
        "deactivate" => sim.status = "inactive".into(),
        "suspend" => sim.status = "suspended".into(),
        "set_to_standby" => sim.status = "standby".into(),
        "set_imei_lock" => {
            let imei = string_field("imei").unwrap_or_else(|| "*".into());
            sim.imei_lock = Some(json!({"imei": imei}));
        }
        "unset_imei_lock" => sim.imei_lock = None,
        other => {
            return Answer::error(
                StatusCode::NOT_FOUND,
                "EMU0004",
                format!("no such SIM API: {other}"),
            );
        }
    }
    sim.last_modified_time = now_ms();
    Answer::ok(json!(sim))
}

fn create_group(state: &mut EmulatorState, body: &Value) -> Answer {
    let tags = match body.get("tags") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(tags)) => tags.clone(),
        Some(_) => {
            return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "tags must be an object");
        }
    };
    let configuration = body
        .get("configuration")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let group = Group {
        group_id: state.fresh_id("group-"),
        operator_id: super::state::OPERATOR_ID.into(),
        tags,
        configuration,
        created_time: now_ms(),
    };
    state.groups.insert(group.group_id.clone(), group.clone());
    Answer::with(StatusCode::CREATED, json!(group))
}

/// `GET /v1/sims?limit=N&last_evaluated_key=SIM_ID`: SIMs in id order, a
/// page at a time, the next page's key in `x-soracom-next-key`.
fn list_sims(state: &mut EmulatorState, query: &str) -> Answer {
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            pair.strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_string)
        })
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .max(1);
    let after = param("last_evaluated_key");
    let sims: Vec<&Sim> = (state.sims.values())
        .filter(|s| after.as_deref().is_none_or(|a| s.sim_id.as_str() > a))
        .take(limit + 1)
        .collect();
    let more = sims.len() > limit;
    let page: Vec<&Sim> = sims.into_iter().take(limit).collect();
    let next = page.last().map(|s| s.sim_id.clone()).filter(|_| more);
    let mut answer = Answer::ok(json!(page));
    if let Some(next) = next {
        answer.headers.push(("x-soracom-next-key", next));
    }
    answer
}

/// `POST /_emulator/sims/{id}/traffic` `{"bytes": N}`: the SIM's IMSI used N
/// more download bytes today (UTC).
fn add_traffic(state: &mut EmulatorState, sim_id: &str, body: &Bytes) -> Answer {
    let bytes = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["bytes"].as_i64());
    let Some(bytes) = bytes else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            "expected {\"bytes\": N}",
        );
    };
    let Some(imsi) = state.sims.get(sim_id).and_then(|s| s.imsi.clone()) else {
        return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "the SIM has no IMSI");
    };
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    state.air_stats.entry((imsi, today)).or_default().1 += bytes;
    Answer::with(StatusCode::NO_CONTENT, Value::Null)
}

/// `POST /_emulator/sims/{id}/state` `{"status", "speedClass", "expiryTime",
/// "expiryAction", "profiles"}` (any of them): the SIM changes as if SORACOM
/// changed it.
fn set_state(state: &mut EmulatorState, sim_id: &str, body: &Bytes) -> Answer {
    let Ok(Value::Object(change)) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "expected a JSON object");
    };
    let Some(sim) = state.sims.get_mut(sim_id) else {
        return not_found("SIM", sim_id);
    };
    let text = |key: &str| change.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(status) = text("status") {
        sim.status = status;
    }
    if let Some(class) = text("speedClass") {
        sim.speed_class = class;
    }
    if let Some(expiry) = change.get("expiryTime").and_then(Value::as_i64) {
        sim.expiry_time = Some(expiry);
    }
    if let Some(action) = text("expiryAction") {
        sim.expiry_action = Some(action);
    }
    if let Some(profiles) = change.get("profiles") {
        sim.profiles = Some(profiles.clone());
    }
    sim.last_modified_time = now_ms();
    let answer = Answer::ok(json!(sim));
    state.record_status(sim_id);
    answer
}

/// `POST /_emulator/sims/{id}/session` `{"online": bool, "imei": "..."}`: a
/// session opens or closes.
fn set_session(state: &mut EmulatorState, sim_id: &str, body: &Bytes) -> Answer {
    let Ok(change) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            "expected {\"online\", \"imei\"}",
        );
    };
    let Some(sim) = state.sims.get_mut(sim_id) else {
        return not_found("SIM", sim_id);
    };
    let now = now_ms();
    let online = change["online"].as_bool().unwrap_or(false);
    sim.session_status =
        Some(json!({"online": online, "imei": change["imei"], "lastUpdatedAt": now}));
    sim.last_modified_time = now;
    let event = json!({
        "event": if online { "Created" } else { "Deleted" }, "time": now, "simId": sim.sim_id,
        "imsi": sim.imsi, "imei": change["imei"], "operatorId": sim.operator_id,
    });
    let answer = Answer::ok(json!(sim));
    state
        .session_events
        .entry(sim_id.to_string())
        .or_default()
        .push(event);
    answer
}

fn control(state: &mut EmulatorState, method: &Method, rest: &str, body: &Bytes) -> Answer {
    match (method, rest) {
        (&Method::POST, path) if path.starts_with("sims/") && path.ends_with("/session") => {
            let sim_id = &path["sims/".len()..path.len() - "/session".len()];
            set_session(state, sim_id, body)
        }
        (&Method::POST, path) if path.starts_with("sims/") && path.ends_with("/state") => {
            let sim_id = &path["sims/".len()..path.len() - "/state".len()];
            set_state(state, sim_id, body)
        }
        (&Method::POST, path) if path.starts_with("sims/") && path.ends_with("/traffic") => {
            let sim_id = &path["sims/".len()..path.len() - "/traffic".len()];
            add_traffic(state, sim_id, body)
        }

        (&Method::GET, "requests") => Answer::ok(json!(state.requests)),
        (&Method::GET, "sims") => Answer::ok(json!(state.sims.values().collect::<Vec<_>>())),
        (&Method::GET, path) if path.starts_with("sims/") => {
            match state.sims.get(&path["sims/".len()..]) {
                Some(sim) => Answer::ok(json!(sim)),
                None => not_found("SIM", &path["sims/".len()..]),
            }
        }
        (&Method::POST, "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(fault) => {
                state.faults.push(fault);
                Answer::with(StatusCode::NO_CONTENT, Value::Null)
            }
            Err(e) => Answer::error(
                StatusCode::BAD_REQUEST,
                "EMU0001",
                format!("bad fault: {e}"),
            ),
        },
        (&Method::POST, "charge") => match serde_json::from_slice::<Value>(body) {
            Ok(value) if value["amount"].is_number() => {
                state.charge = value["amount"].as_f64().unwrap_or_default();
                Answer::with(StatusCode::NO_CONTENT, Value::Null)
            }
            _ => Answer::error(
                StatusCode::BAD_REQUEST,
                "EMU0001",
                "expected {\"amount\": N}",
            ),
        },
        (&Method::POST, "revoke_tokens") => {
            state.tokens.clear();
            Answer::with(StatusCode::NO_CONTENT, Value::Null)
        }
        _ => Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0004",
            format!("no such control: {rest}"),
        ),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
