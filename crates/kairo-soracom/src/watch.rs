//! What the SORACOM watcher sees of a SIM, and the events a change makes:
//! status and speed-class changes and sessions opened and closed (with the
//! IMEI), in the shapes of docs/events.md. Each event's id is derived from
//! what changed and when the API says it changed, so seeing the same change
//! twice (a re-poll after a restart) gives the same id, which Kairo's
//! deduplication drops.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `[soracom.watch]`: polling the SORACOM API for changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Poll at all (needs `[soracom]` credentials).
    pub enabled: bool,
    /// Seconds from the start of one sweep through the fleet to the next
    /// (any value from 1 up is used as given).
    pub interval_seconds: u64,
    /// SIMs per listSims page.
    pub page_size: usize,
    /// Only SIMs in these groups (empty: every group, and SIMs in none).
    pub groups: Vec<String>,
    /// Only SIMs with all these tags (name → value).
    pub tags: BTreeMap<String, String>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_seconds: 60,
            page_size: 100,
            groups: Vec::new(),
            tags: BTreeMap::new(),
        }
    }
}

impl WatchConfig {
    /// True when `sim` (a listSims item) is within the configured groups and tags.
    pub fn in_scope(&self, sim: &Value) -> bool {
        let group = sim["groupId"].as_str();
        let in_group =
            self.groups.is_empty() || group.is_some_and(|g| self.groups.iter().any(|w| w == g));
        let tagged =
            (self.tags.iter()).all(|(name, value)| sim["tags"][name].as_str() == Some(value));
        in_group && tagged
    }
}

/// What the watcher keeps of a SIM between sweeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimState {
    /// Status (`active`, `suspended`, …).
    pub status: Option<String>,
    /// Speed class.
    pub speed_class: Option<String>,
    /// Whether a session is open.
    pub online: bool,
    /// The device's IMEI in the current (or last) session.
    pub imei: Option<String>,
    /// When the session last changed, epoch milliseconds.
    pub session_at: Option<i64>,
    /// When the SIM last changed, epoch milliseconds.
    pub modified_at: i64,
    /// Primary IMSI.
    pub imsi: Option<String>,
    /// Group.
    pub group_id: Option<String>,
    /// When the SIM's validity ends, epoch milliseconds.
    #[serde(default)]
    pub expiry_time: Option<i64>,
    /// What happens then (`doNothing`, `suspend`, …).
    #[serde(default)]
    pub expiry_action: Option<String>,
    /// Added subscriptions (subscription containers) by IMSI: plan and
    /// status (`shipped`: OTA started, `ready`/`active`: finished).
    #[serde(default)]
    pub subscriptions: BTreeMap<String, (String, String)>,
    /// The primary IMSI of the profile the added subscriptions belong to.
    #[serde(default)]
    pub primary_imsi: Option<String>,
}

impl SimState {
    /// The state of a listSims item, with its SIM id.
    pub fn of(sim: &Value) -> Option<(String, Self)> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let session = &sim["sessionStatus"];
        let state = Self {
            status: text(&sim["status"]),
            speed_class: text(&sim["speedClass"]),
            online: session["online"].as_bool().unwrap_or(false),
            imei: text(&session["imei"]),
            session_at: session["lastUpdatedAt"].as_i64(),
            modified_at: sim["lastModifiedTime"].as_i64().unwrap_or(0),
            imsi: text(&sim["imsi"]),
            group_id: text(&sim["groupId"]),
            expiry_time: sim["expiryTime"].as_i64(),
            expiry_action: text(&sim["expiryAction"]),
            subscriptions: BTreeMap::new(),
            primary_imsi: None,
        };
        let mut state = state;
        for profile in sim["profiles"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            let primary = profile["primaryImsi"].as_str();
            let subscribers = profile["subscribers"].as_object().into_iter().flatten();
            for (imsi, subscriber) in subscribers.filter(|(imsi, _)| Some(imsi.as_str()) != primary)
            {
                let plan = text(&subscriber["subscription"]).unwrap_or_default();
                let status = text(&subscriber["status"]).unwrap_or_default();
                state.subscriptions.insert(imsi.clone(), (plan, status));
                state.primary_imsi = primary.map(str::to_string);
            }
        }
        Some((text(&sim["simId"])?, state))
    }
}

/// The events for `sim_id` going from `old` (seen at `old_at_ms`) to `new`
/// (seen at `now_ms`), in the order they happened.
pub fn changes(
    sim_id: &str,
    (old, old_at_ms): (&SimState, i64),
    (new, now_ms): (&SimState, i64),
    operator_id: &str,
) -> Vec<Value> {
    let event = |kind: &str, what: String, at: i64, payload: Value| {
        json!({
            "id": format!("watch:{sim_id}:{what}:{at}"),
            "eventType": kind, "simId": sim_id, "imsi": new.imsi, "groupId": new.group_id,
            "operatorId": operator_id, "timestamp": at, "payload": payload,
        })
    };
    let mut events = Vec::new();
    if old.status != new.status
        && let Some(status) = &new.status
    {
        let payload = json!({"oldStatus": old.status, "newStatus": status});
        events.push(event(
            "StatusChanged",
            format!("status-{status}"),
            new.modified_at,
            payload,
        ));
    }
    if old.speed_class != new.speed_class
        && let Some(class) = &new.speed_class
    {
        let payload = json!({"oldSpeedClass": old.speed_class, "newSpeedClass": class});
        events.push(event(
            "SpeedClassChanged",
            format!("speed-{class}"),
            new.modified_at,
            payload,
        ));
    }
    if (old.online, old.session_at) != (new.online, new.session_at) && old.online != new.online {
        let status = if new.online { "Created" } else { "Deleted" };
        let at = new.session_at.unwrap_or(new.modified_at);
        let payload = json!({"sessionStatus": status, "imei": new.imei});
        events.push(event(
            "SessionStatus",
            format!("session-{status}"),
            at,
            payload,
        ));
    }
    events.extend(ota_events(sim_id, old, new, operator_id));
    // The validity period ended since the last look (the setting stays after it).
    if let Some(expiry) = new.expiry_time
        && expiry <= now_ms
        && !(old.expiry_time == Some(expiry) && expiry <= old_at_ms)
    {
        let payload = json!({"expiryTime": expiry, "expiryAction": new.expiry_action});
        events.push(event("Expired", "expired".into(), expiry, payload));
    }
    events
}

/// `SubscriptionStatus` events for added subscriptions whose OTA started
/// (now `shipped`) or finished (now `ready` or `active`, from anything else).
fn ota_events(sim_id: &str, old: &SimState, new: &SimState, operator_id: &str) -> Vec<Value> {
    let phase = |status: &str| match status {
        "shipped" | "delivered" => Some("started"),
        "ready" | "active" => Some("finished"),
        _ => None,
    };
    let mut events = Vec::new();
    for (imsi, (plan, status)) in &new.subscriptions {
        let was = old.subscriptions.get(imsi).and_then(|(_, s)| phase(s));
        let Some(now) = phase(status).filter(|now| Some(*now) != was) else {
            continue;
        };
        // `${imsi}` is the new subscription's once it finished, else the primary one.
        let event_imsi = if now == "finished" {
            Some(imsi.as_str())
        } else {
            new.primary_imsi.as_deref()
        };
        events.push(json!({
            "id": format!("watch:{sim_id}:ota-{now}:{imsi}"),
            "eventType": "SubscriptionStatus", "simId": sim_id, "imsi": event_imsi,
            "groupId": new.group_id, "operatorId": operator_id, "timestamp": new.modified_at,
            "payload": {"otaStatus": now, "subscription": plan, "primaryImsi": new.primary_imsi},
        }));
    }
    events
}

/// The `MonthlyCharge` event for this month's fee so far (getLatestBilling),
/// when it changed from `old`.
pub fn charge_event(
    old: Option<&Value>,
    latest: &Value,
    operator_id: &str,
    now_ms: i64,
) -> Option<Value> {
    let amount = latest["amount"].as_f64()?;
    if old.is_some_and(|old| old["amount"].as_f64() == Some(amount)) {
        return None;
    }
    let evaluated = latest["lastEvaluatedTime"].as_str().unwrap_or_default();
    Some(json!({
        "id": format!("watch:{operator_id}:charge:{evaluated}:{amount}"),
        "eventType": "MonthlyCharge", "operatorId": operator_id, "timestamp": now_ms,
        "payload": {"amount": amount, "currency": latest["currency"]},
    }))
}

/// Bytes per UTC day (`yyyyMMdd`) of one IMSI, as the watcher keeps them.
pub type DailyBytes = BTreeMap<String, i64>;

/// The exportAirStats CSV as bytes per IMSI and UTC day (upload plus
/// download, summed over the rows of every speed class); columns are found
/// by name, a leading BOM is skipped.
pub fn parse_air_stats(csv: &str) -> BTreeMap<String, DailyBytes> {
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(imsi), Some(date), Some(up), Some(down)) = (
        column("imsi"),
        column("date"),
        column("uploadByteSizeTotal"),
        column("downloadByteSizeTotal"),
    ) else {
        return BTreeMap::new();
    };
    let mut totals: BTreeMap<String, DailyBytes> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let number = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let (Some(imsi), Some(date)) = (fields.get(imsi), fields.get(date)) else {
            continue;
        };
        let day = totals.entry(imsi.to_string()).or_default();
        *day.entry(date.to_string()).or_default() += number(up) + number(down);
    }
    totals
}

/// The `TrafficUsage` events for one IMSI whose daily totals went from
/// `old` to `new`: one per day that grew, with the growth, at `now_ms` (at the
/// last millisecond of an earlier day, so it counts in that day).
pub fn traffic_events(
    imsi: &str,
    sim_id: Option<&str>,
    old: &DailyBytes,
    new: &DailyBytes,
    operator_id: &str,
    now_ms: i64,
) -> Vec<Value> {
    new.iter()
        .filter_map(|(day, total)| {
            let grown = total - old.get(day).copied().unwrap_or(0);
            (grown > 0).then(|| {
                let at = end_of_day(day).map_or(now_ms, |end| end.min(now_ms));
                json!({
                    "id": format!("watch:{imsi}:traffic:{day}:{total}"),
                    "eventType": "TrafficUsage", "imsi": imsi, "simId": sim_id,
                    "operatorId": operator_id, "timestamp": at,
                    "payload": {"bytes": grown, "day": day},
                })
            })
        })
        .collect()
}

/// The last millisecond of the UTC day `yyyyMMdd`.
fn end_of_day(day: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
    let next = date.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc();
    Some(next.timestamp_millis() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(status: &str, online: bool, at: i64) -> SimState {
        SimState::of(&json!({"simId": "s1", "imsi": "4401", "status": status, "speedClass": "s1.fast",
            "lastModifiedTime": at, "sessionStatus": {"online": online, "imei": "356", "lastUpdatedAt": at}}))
        .unwrap()
        .1
    }

    #[test]
    fn a_change_is_one_event_with_an_id_that_a_second_look_repeats() {
        let before = sim("active", false, 10);
        let after = sim("suspended", true, 20);
        let events = changes("s1", (&before, 10), (&after, 20), "OP1");
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["StatusChanged", "SessionStatus"]);
        assert_eq!(
            events[0]["payload"],
            json!({"oldStatus": "active", "newStatus": "suspended"})
        );
        assert_eq!(
            events[1]["payload"],
            json!({"sessionStatus": "Created", "imei": "356"})
        );
        assert_eq!(
            events,
            changes("s1", (&before, 10), (&after, 20), "OP1"),
            "deterministic"
        );
        assert!(changes("s1", (&after, 20), (&after, 30), "OP1").is_empty());
        let expiring = SimState {
            expiry_time: Some(25),
            ..after.clone()
        };
        assert!(changes("s1", (&expiring, 20), (&expiring, 24), "OP1").is_empty());
        let expired = changes("s1", (&expiring, 24), (&expiring, 26), "OP1");
        assert_eq!(expired[0]["eventType"], "Expired");
        assert!(
            changes("s1", (&expiring, 26), (&expiring, 30), "OP1").is_empty(),
            "once"
        );
    }

    #[test]
    fn traffic_is_read_by_column_name_and_only_growth_is_an_event() {
        let csv = "\u{feff}imsi,date,type,uploadByteSizeTotal,uploadPacketCountTotal,downloadByteSizeTotal,downloadPacketCountTotal,tag:name\n\
                   4401,20260301,s1.fast,10,1,90,1,a\n4401,20260301,s1.minimum,0,0,100,1,a\n4401,20260302,s1.fast,5,1,5,1,a\n";
        let totals = parse_air_stats(csv);
        assert_eq!(
            totals["4401"],
            [("20260301".to_string(), 200), ("20260302".to_string(), 10)].into()
        );
        let old: DailyBytes = [("20260301".to_string(), 150)].into();
        let events = traffic_events("4401", Some("s1"), &old, &totals["4401"], "OP1", 7);
        let grown: Vec<i64> = events
            .iter()
            .map(|e| e["payload"]["bytes"].as_i64().unwrap())
            .collect();
        assert_eq!(grown, [50, 10]);
        assert_eq!(events[0]["id"], "watch:4401:traffic:20260301:200");
        assert_eq!(events[0]["timestamp"], 7, "not after now");
        let late = traffic_events(
            "4401",
            None,
            &DailyBytes::new(),
            &totals["4401"],
            "OP1",
            i64::MAX,
        );
        assert_eq!(
            late[0]["timestamp"], 1_772_409_599_999_i64,
            "the end of March 1"
        );
    }

    #[test]
    fn an_added_subscription_reports_its_ota_started_then_finished() {
        let with = |status: &str| {
            SimState::of(
                &json!({"simId": "s1", "imsi": "4401", "lastModifiedTime": 5, "profiles": {"8981": {
                "primaryImsi": "4401", "subscribers": {
                    "4401": {"subscription": "plan01s", "status": "active"},
                    "2950": {"subscription": "planX3", "status": status}}}}}),
            )
            .unwrap()
            .1
        };
        let none = sim("active", false, 0);
        let started = changes("s1", (&none, 0), (&with("shipped"), 1), "OP1");
        assert_eq!(
            started[0]["payload"],
            json!({"otaStatus": "started", "subscription": "planX3", "primaryImsi": "4401"})
        );
        assert_eq!(started[0]["imsi"], "4401");
        let finished = changes("s1", (&with("shipped"), 1), (&with("ready"), 2), "OP1");
        assert_eq!(finished[0]["payload"]["otaStatus"], "finished");
        assert_eq!(finished[0]["imsi"], "2950", "the new subscription's IMSI");
        assert!(changes("s1", (&with("ready"), 2), (&with("active"), 3), "OP1").is_empty());
    }

    #[test]
    fn the_charge_is_an_event_when_it_changes() {
        let latest =
            json!({"amount": 120.5, "currency": "JPY", "lastEvaluatedTime": "20260301120000"});
        let event = charge_event(None, &latest, "OP1", 7).unwrap();
        assert_eq!(
            event["payload"],
            json!({"amount": 120.5, "currency": "JPY"})
        );
        assert!(charge_event(Some(&latest), &latest, "OP1", 8).is_none());
    }

    #[test]
    fn scope_by_group_and_tags() {
        let config = WatchConfig {
            groups: vec!["g1".into()],
            tags: [("plan".to_string(), "x3".to_string())].into(),
            ..WatchConfig::default()
        };
        assert!(config.in_scope(&json!({"groupId": "g1", "tags": {"plan": "x3"}})));
        assert!(!config.in_scope(&json!({"groupId": "g2", "tags": {"plan": "x3"}})));
        assert!(!config.in_scope(&json!({"groupId": "g1", "tags": {}})));
    }
}
