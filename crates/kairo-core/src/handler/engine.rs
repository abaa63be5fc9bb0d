//! Evaluating SORACOM event handlers against events: traffic counters in UTC
//! windows, rule conditions, re-evaluation suppression (per subscriber/SIM,
//! or per target with runOnceAmongTarget) and actions with their execution time.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::model::{ActionKind, Handler, RuleType, Target};
use super::state::{HandlerState, count, traffic_bytes, traffic_counter};
use crate::{ActionRequest, Event};

/// Event types the handler rules consume (see docs/events.md).
pub mod event_types {
    /// Data traffic: `payload.bytes`, or `uploadBytes` + `downloadBytes`.
    pub const TRAFFIC: &str = "TrafficUsage";
    /// Status change: `oldStatus`, `newStatus`.
    pub const STATUS: &str = "StatusChanged";
    /// Speed class change: `oldSpeedClass`, `newSpeedClass`.
    pub const SPEED_CLASS: &str = "SpeedClassChanged";
    /// Validity period reached.
    pub const EXPIRED: &str = "Expired";
    /// Session refused by the IMEI lock: `imei`.
    pub const IMEI_MISMATCHED: &str = "ImeiMismatched";
    /// Session created or deleted: `sessionStatus`, `imei`.
    pub const SESSION: &str = "SessionStatus";
    /// Subscription container OTA: `otaStatus`, `subscription`, `primaryImsi`.
    pub const SUBSCRIPTION: &str = "SubscriptionStatus";
    /// This month's charge so far: `amount`.
    pub const CHARGE: &str = "MonthlyCharge";
}

const MIB: i64 = 1024 * 1024;

/// A set of compiled handlers.
#[derive(Debug, Clone, Default)]
pub struct HandlerSet {
    handlers: Vec<Handler>,
}

impl HandlerSet {
    /// The handlers, evaluated in this order.
    pub fn new(handlers: Vec<Handler>) -> Self {
        Self { handlers }
    }

    /// The handlers.
    pub fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    /// The suppression keys of active, live `runOnceAmongTarget` handlers
    /// whose target is a group or an operator (shared by many SIMs), with
    /// the handler id each belongs to.
    pub fn shared_suppressions(&self) -> Vec<(String, String)> {
        (self.handlers.iter())
            .filter(|h| h.active && !h.shadow && h.rule.run_once_among_target)
            .filter(|h| h.rule.kind != RuleType::MonthlyCharge)
            .filter(|h| matches!(h.target, Target::Group(_) | Target::Operator(_)))
            .map(|h| {
                let key = super::keys::handler_suppression(&h.state_id(), &target_key(&h.target));
                (h.id.clone(), key)
            })
            .collect()
    }

    /// True when an active handler compares a group's or an operator's
    /// traffic with its limit.
    pub fn reads_shared_counters(&self) -> bool {
        (self.handlers.iter()).any(|h| {
            h.active
                && matches!(
                    h.rule.kind,
                    RuleType::DailyTotalTraffic | RuleType::MonthlyTotalTraffic
                )
                && matches!(h.target, Target::Group(_) | Target::Operator(_))
        })
    }

    /// Applies `event` at `now_ms`: updates traffic counters once, then every
    /// active handler; returns the actions of the handlers that fired.
    pub fn evaluate(
        &self,
        event: &Event,
        state: &mut dyn HandlerState,
        now_ms: i64,
    ) -> Vec<ActionRequest> {
        count(event, state, now_ms);
        self.fire(event, state, now_ms)
    }

    /// Evaluates every active handler against `event` whose traffic is already counted.
    pub fn fire(
        &self,
        event: &Event,
        state: &mut dyn HandlerState,
        now_ms: i64,
    ) -> Vec<ActionRequest> {
        self.fire_traced(event, state, now_ms).0
    }

    /// [`HandlerSet::fire`], also saying what each handler decided and why.
    pub fn fire_traced(
        &self,
        event: &Event,
        state: &mut dyn HandlerState,
        now_ms: i64,
    ) -> (Vec<ActionRequest>, Vec<HandlerTrace>) {
        let mut requests = Vec::new();
        let mut traces = Vec::with_capacity(self.handlers.len());
        for handler in &self.handlers {
            let (outcome, reason) = match decide(handler, event, state, now_ms) {
                Decision::Skip(outcome, reason) => (outcome, reason),
                Decision::Fire { key, reading } => {
                    let until = handler
                        .rule
                        .reevaluate
                        .after(now_ms, handler.rule.offset_minutes)
                        .unwrap_or(i64::MAX);
                    state.set(key, until);
                    (HandlerOutcome::Fired, reading)
                }
            };
            let fired = if outcome == HandlerOutcome::Fired {
                self.actions(handler, event, now_ms)
            } else {
                Vec::new()
            };
            traces.push(HandlerTrace {
                handler: handler.id.clone(),
                shadow: handler.shadow,
                outcome,
                reason,
                actions: fired
                    .iter()
                    .map(|r| ScheduledAction {
                        action: r.action.clone(),
                        due_at_ms: r.not_before_ms.unwrap_or(now_ms),
                    })
                    .collect(),
            });
            requests.extend(fired);
        }
        (requests, traces)
    }

    fn actions(&self, handler: &Handler, event: &Event, now_ms: i64) -> Vec<ActionRequest> {
        let variables = variables(event, now_ms);
        let mut out = Vec::new();
        for (index, action) in handler.actions.iter().enumerate() {
            let Some(due) = action.execute.after(now_ms, action.offset_minutes) else {
                continue;
            };
            let (name, params) = request_for(&action.kind, event, &variables);
            out.push(ActionRequest {
                action: name.to_string(),
                params,
                event_id: event.id.clone(),
                rule: format!("handler:{}", handler.id),
                index: index as u32,
                not_before_ms: (due > now_ms).then_some(due),
                shadow: handler.shadow,
            });
        }
        out
    }
}

fn targets(target: &Target, event: &Event) -> bool {
    match target {
        Target::Imsi(id) => event.imsi.as_deref() == Some(id.as_str()),
        Target::Sim(id) => event.sim_id.as_deref() == Some(id.as_str()),
        Target::Group(id) => event.group_id.as_deref() == Some(id.as_str()),
        Target::Operator(id) => event.operator_id.as_deref().is_none_or(|op| op == id),
    }
}

fn target_key(target: &Target) -> String {
    match target {
        Target::Imsi(id) => format!("imsi:{id}"),
        Target::Sim(id) => format!("sim:{id}"),
        Target::Group(id) => format!("group:{id}"),
        Target::Operator(id) => format!("operator:{id}"),
    }
}

/// Who the rule is evaluated for: the subscriber, the SIM, or for aggregate
/// rules the SIM whose traffic triggered it.
fn subject(handler: &Handler, event: &Event) -> Option<String> {
    use RuleType::*;
    let imsi = || event.imsi.clone().map(|i| format!("imsi:{i}"));
    let sim = || event.sim_id.clone().map(|s| format!("sim:{s}"));
    match handler.rule.kind {
        SubscriberFirstTraffic
        | SubscriberDailyTraffic
        | SubscriberMonthlyTraffic
        | SubscriberCumulativeTraffic
        | SubscriberStatusAttribute
        | SubscriberSpeedClassAttribute
        | SubscriberExpired
        | SubscriberSessionStatus
        | SubscriberImeiMismatched => imsi(),
        SimDailyTotalTraffic
        | SimMonthlyTotalTraffic
        | SimCumulativeTotalTraffic
        | SimStatusAttribute
        | SimSpeedClassAttribute
        | SimExpired
        | SimImeiMismatched
        | SimSubscriptionStatus => sim(),
        DailyTotalTraffic | MonthlyTotalTraffic => sim().or_else(imsi),
        MonthlyCharge => Some(target_key(&handler.target)),
    }
}

fn condition(
    handler: &Handler,
    event: &Event,
    state: &dyn HandlerState,
    at: i64,
    traffic: Option<i64>,
) -> bool {
    use RuleType::*;
    let rule = &handler.rule;
    let payload = event.payload();
    let text = |key: &str| payload.get(key).and_then(Value::as_str);
    let is = |kind: &str| event.event_type.as_deref() == Some(kind);
    let over = |key: String| {
        state.get(&key).unwrap_or(0) > rule.limit.unwrap_or(i64::MAX).saturating_mul(MIB)
    };
    let filter = |wanted: &Option<String>, actual: Option<&str>| {
        wanted.as_deref().is_none_or(|w| actual == Some(w))
    };
    match rule.kind {
        SubscriberFirstTraffic => traffic.is_some_and(|b| b > 0) && event.imsi.is_some(),
        SubscriberDailyTraffic
        | SubscriberMonthlyTraffic
        | SubscriberCumulativeTraffic
        | SimDailyTotalTraffic
        | SimMonthlyTotalTraffic
        | SimCumulativeTotalTraffic
        | DailyTotalTraffic
        | MonthlyTotalTraffic => {
            traffic.is_some() && traffic_counter(handler, event, at).is_some_and(over)
        }
        SubscriberStatusAttribute | SimStatusAttribute => {
            is(event_types::STATUS)
                && filter(&rule.source_status, text("oldStatus"))
                && filter(&rule.target_status, text("newStatus"))
        }
        SubscriberSpeedClassAttribute | SimSpeedClassAttribute => {
            is(event_types::SPEED_CLASS) && filter(&rule.target_speed_class, text("newSpeedClass"))
        }
        SubscriberExpired | SimExpired => is(event_types::EXPIRED),
        SubscriberImeiMismatched | SimImeiMismatched => is(event_types::IMEI_MISMATCHED),
        SubscriberSessionStatus => {
            let status = text("sessionStatus").or_else(|| text("event"));
            is(event_types::SESSION)
                && status == rule.session_status.as_deref()
                && (!rule.has_imei || text("imei").is_some_and(|i| !i.is_empty()))
        }
        SimSubscriptionStatus => {
            let ota = text("otaStatus");
            is(event_types::SUBSCRIPTION)
                && ota.is_some_and(|s| ["started", "finished", "failed"].contains(&s))
                && filter(&rule.target_ota_status, ota)
        }
        MonthlyCharge => {
            is(event_types::CHARGE)
                && payload
                    .get("amount")
                    .and_then(Value::as_f64)
                    .is_some_and(|amount| amount > rule.limit.unwrap_or(i64::MAX) as f64)
        }
    }
}

/// What one handler did with one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandlerTrace {
    /// The handler's id.
    pub handler: String,
    /// True for a handler in shadow (its actions are recorded, never performed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// What it decided.
    pub outcome: HandlerOutcome,
    /// Why, in words (the counter against the limit, the suppression time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The actions it scheduled, when it fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ScheduledAction>,
}

impl HandlerTrace {
    /// What tells the handler apart: its id, or `ID.shadow` in shadow.
    pub fn handler_id(&self) -> std::borrow::Cow<'_, str> {
        crate::shadow_id(&self.handler, self.shadow)
    }
}

/// A handler's decision on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerOutcome {
    /// The rule matched and its actions were scheduled.
    Fired,
    /// The event concerns the handler's target, but the rule did not match.
    NotMatched,
    /// The rule matched but re-evaluation (or runOnceAmongTarget) holds it back.
    Suppressed,
    /// The event is not about the handler's target (or the handler is inactive).
    NotTargeted,
}

/// An action a handler scheduled, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledAction {
    /// The Kairo action.
    pub action: String,
    /// When it is due, epoch milliseconds.
    pub due_at_ms: i64,
}

enum Decision {
    Skip(HandlerOutcome, Option<String>),
    Fire {
        key: String,
        reading: Option<String>,
    },
}

/// Whether `handler` fires on `event`, and why (not).
fn decide(handler: &Handler, event: &Event, state: &dyn HandlerState, now_ms: i64) -> Decision {
    let skip = |outcome, reason: String| Decision::Skip(outcome, Some(reason));
    if !handler.active {
        return skip(
            HandlerOutcome::NotTargeted,
            "the handler is inactive".into(),
        );
    }
    if !targets(&handler.target, event) {
        return skip(
            HandlerOutcome::NotTargeted,
            format!("the event is not about {}", target_key(&handler.target)),
        );
    }
    let Some(subject) = subject(handler, event) else {
        return skip(
            HandlerOutcome::NotMatched,
            "the event names no subscriber or SIM".into(),
        );
    };
    let at = event.timestamp_ms.unwrap_or(now_ms);
    let reading = traffic_counter(handler, event, at).map(|key| {
        let mib = |bytes: i64| bytes as f64 / MIB as f64;
        let limit = handler.rule.limit.unwrap_or(i64::MAX);
        format!(
            "{key} is {:.1} MiB, limit {limit} MiB",
            mib(state.get(&key).unwrap_or(0))
        )
    });
    if !condition(handler, event, state, at, traffic_bytes(event)) {
        let reason =
            reading.unwrap_or_else(|| format!("{:?} does not match this event", handler.rule.kind));
        return skip(HandlerOutcome::NotMatched, reason);
    }
    let scope =
        if handler.rule.run_once_among_target && handler.rule.kind != RuleType::MonthlyCharge {
            target_key(&handler.target)
        } else {
            subject
        };
    let key = super::keys::handler_suppression(&handler.state_id(), &scope);
    if let Some(until) = state.get(&key).filter(|until| *until > now_ms) {
        let by = if handler.rule.run_once_among_target {
            format!("runOnceAmongTarget for {scope}")
        } else {
            format!("re-evaluation for {scope}")
        };
        return skip(
            HandlerOutcome::Suppressed,
            format!("held back until {} by {by}", describe_time(until)),
        );
    }
    Decision::Fire { key, reading }
}

/// An epoch-milliseconds time as RFC 3339 UTC, or `never`.
pub fn describe_time(ms: i64) -> String {
    if ms == i64::MAX {
        return "never (NEVER)".into();
    }
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// An epoch-microseconds time as RFC 3339 UTC with microseconds.
pub fn describe_time_micros(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || us.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

/// The Kairo action and parameters for one handler action on `event`.
fn request_for(
    kind: &ActionKind,
    event: &Event,
    variables: &HashMap<String, String>,
) -> (&'static str, Value) {
    let sim = event.sim_id.clone();
    match kind {
        ActionKind::ChangeSpeedClass(class) => (
            "set_speed_class",
            json!({"simId": sim, "speedClass": class}),
        ),
        ActionKind::Activation => ("activate", json!({"simId": sim})),
        ActionKind::Deactivation => ("deactivate", json!({"simId": sim})),
        ActionKind::Standby => ("set_to_standby", json!({"simId": sim})),
        ActionKind::Suspend => ("suspend", json!({"simId": sim})),
        ActionKind::ImeiLock => match event.payload().get("imei").and_then(Value::as_str) {
            Some(imei) => ("set_imei_lock", json!({"simId": sim, "imei": imei})),
            None => ("set_imei_lock", json!({"simId": sim})),
        },
        ActionKind::SendMail { to, title, message } => (
            "email",
            json!({"to": to, "subject": render(title, variables, false), "body": render(message, variables, false)}),
        ),
        // The `email_operator` action finds the operator's address
        // (configured, or the account's primary one from the API).
        ActionKind::SendMailToOperator { title, message } => (
            "email_operator",
            json!({
                "subject": render(title, variables, false),
                "body": render(message, variables, false),
            }),
        ),
        ActionKind::Lambda {
            endpoint,
            function_name,
            credentials_id,
            parameters,
        } => {
            let payload: Map<String, Value> = (parameters.iter())
                .map(|(k, v)| (k.clone(), Value::String(render(v, variables, false))))
                .collect();
            let params = json!({"endpoint": endpoint, "functionName": function_name,
                "credentialsId": credentials_id, "payload": payload});
            ("aws_lambda", params)
        }
        ActionKind::WebRequest {
            url,
            method,
            content_type,
            headers,
            body,
        } => {
            let request = WebRequest {
                url,
                method,
                content_type,
                headers,
                body,
            };
            ("webhook", web_request_params(&request, variables))
        }
    }
}

/// An ExecuteWebRequestAction's fields.
struct WebRequest<'a> {
    url: &'a str,
    method: &'a String,
    content_type: &'a str,
    headers: &'a [(String, String)],
    body: &'a Option<String>,
}

/// The `webhook` parameters of a web request, its templates rendered.
fn web_request_params(request: &WebRequest<'_>, variables: &HashMap<String, String>) -> Value {
    let json_body = request.content_type.to_ascii_lowercase().contains("json");
    let mut header_map = Map::new();
    header_map.insert(
        "Content-Type".into(),
        Value::String(request.content_type.to_string()),
    );
    for (name, value) in request.headers {
        // SORACOM's examples carry the content type as a `contentType` header entry.
        if name != "contentType" {
            header_map.insert(name.clone(), Value::String(render(value, variables, false)));
        }
    }
    let mut params = json!({"url": render(request.url, variables, false), "method": request.method, "headers": header_map});
    if matches!(request.method.as_str(), "POST" | "PUT")
        && let Some(body) = request.body
    {
        params["body"] = Value::String(render(body, variables, json_body));
    }
    params
}

/// The `${...}` variables SORACOM documents, from the event and the match time (UTC).
fn variables(event: &Event, now_ms: i64) -> HashMap<String, String> {
    use chrono::{Datelike, TimeZone, Utc};
    let mut vars = HashMap::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            vars.insert(key.to_string(), value.to_string());
        }
    };
    put("imsi", event.imsi.as_deref());
    put("simId", event.sim_id.as_deref());
    put("operatorId", event.operator_id.as_deref());
    let payload = event.payload();
    let body = event.body();
    let field = |key: &str| {
        payload
            .get(key)
            .or_else(|| body.get(key))
            .and_then(Value::as_str)
    };
    for key in [
        "coverage",
        "oldStatus",
        "newStatus",
        "oldSpeedClass",
        "newSpeedClass",
        "subscription",
        "otaStatus",
        "primaryImsi",
    ] {
        put(key, field(key));
    }
    let tags = payload
        .get("tags")
        .or_else(|| body.get("tags"))
        .and_then(Value::as_object);
    for (name, value) in tags.into_iter().flatten() {
        if let Some(value) = value.as_str() {
            vars.insert(format!("tags.{name}"), value.to_string());
        }
    }
    if let Some(t) = Utc.timestamp_millis_opt(now_ms).single() {
        vars.insert(
            "date".into(),
            format!("{}/{}/{}", t.year(), t.month(), t.day()),
        );
        vars.insert("year".into(), t.year().to_string());
        vars.insert("month".into(), t.month().to_string());
        vars.insert("day".into(), t.day().to_string());
    }
    vars
}

/// Replaces `${name}` with its value; unknown or unavailable variables become
/// empty. With `json_escape`, values are escaped for use inside a JSON string.
pub fn render(template: &str, variables: &HashMap<String, String>, json_escape: bool) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let value = variables
            .get(&after[..end])
            .map(String::as_str)
            .unwrap_or("");
        if json_escape {
            let quoted = serde_json::to_string(value).expect("strings serialize");
            out.push_str(&quoted[1..quoted.len() - 1]);
        } else {
            out.push_str(value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
