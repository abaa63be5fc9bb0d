//! Semantics of every rule type, timing option and constraint.

use chrono::DateTime;
use serde_json::{Value, json};

use super::*;
use crate::{ActionRequest, Event};

fn at(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn model(rule_type: &str, properties: Value, target: (&str, &str), actions: Value) -> Value {
    let mut handler = json!({
        "name": "h", "handlerId": "h1", "status": "active",
        "ruleConfig": {"type": rule_type, "properties": properties},
        "actionConfigList": actions,
    });
    handler[target.0] = json!(target.1);
    handler
}

fn suspend() -> Value {
    json!([{"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}])
}

fn handlers(models: &[Value]) -> HandlerSet {
    let compiled = models
        .iter()
        .enumerate()
        .map(|(i, m)| compile(m, "t.json", i).unwrap_or_else(|e| panic!("{e:?}")))
        .collect();
    HandlerSet::new(compiled)
}

fn one(rule_type: &str, properties: Value, target: (&str, &str)) -> HandlerSet {
    handlers(&[model(rule_type, properties, target, suspend())])
}

fn event(value: Value) -> Event {
    Event::from_value(value).unwrap()
}

struct Run {
    set: HandlerSet,
    state: MemoryState,
    n: usize,
}

impl Run {
    fn new(set: HandlerSet) -> Self {
        Self {
            set,
            state: MemoryState::default(),
            n: 0,
        }
    }

    /// Evaluates an event of `kind` at `time` (also its timestamp) with `fields` merged in.
    fn at(&mut self, time: &str, kind: &str, fields: Value) -> Vec<ActionRequest> {
        self.n += 1;
        let mut body = json!({"id": format!("e{}", self.n), "eventType": kind, "imsi": "440100000000001",
            "simId": "8981000000000000001", "groupId": "g1", "operatorId": "OP0000000000", "timestamp": time, "payload": {}});
        for (key, value) in fields.as_object().unwrap() {
            if ["imsi", "simId", "groupId", "operatorId"].contains(&key.as_str()) {
                body[key] = value.clone();
            } else {
                body["payload"][key] = value.clone();
            }
        }
        self.set.evaluate(&event(body), &mut self.state, at(time))
    }

    fn fires(&mut self, time: &str, kind: &str, fields: Value) -> bool {
        !self.at(time, kind, fields).is_empty()
    }
}

const MIB: i64 = 1024 * 1024;

#[test]
fn subscriber_first_traffic_fires_once_per_imsi() {
    let mut run = Run::new(one(
        "SubscriberFirstTrafficRule",
        json!({"inactiveTimeoutDateConst": "NEVER"}),
        ("targetImsi", "440100000000001"),
    ));
    assert!(run.fires("2025-01-01T00:00:00Z", "TrafficUsage", json!({"bytes": 10})));
    assert!(
        !run.fires("2025-06-01T00:00:00Z", "TrafficUsage", json!({"bytes": 10})),
        "NEVER"
    );
    assert!(!run.fires("2025-06-01T00:00:00Z", "StatusChanged", json!({})));
}

#[test]
fn subscriber_daily_traffic_counts_per_utc_day_and_rearms_next_day() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "10"});
    let mut run = Run::new(one(
        "SubscriberDailyTrafficRule",
        rule,
        ("targetImsi", "440100000000001"),
    ));
    assert!(
        !run.fires(
            "2025-03-10T01:00:00Z",
            "TrafficUsage",
            json!({"bytes": 10 * MIB})
        ),
        "exactly the limit is not over it"
    );
    assert!(run.fires("2025-03-10T02:00:00Z", "TrafficUsage", json!({"bytes": 1})));
    assert!(
        !run.fires(
            "2025-03-10T23:00:00Z",
            "TrafficUsage",
            json!({"bytes": MIB})
        ),
        "suppressed until the next day"
    );
    assert!(
        !run.fires(
            "2025-03-11T00:10:00Z",
            "TrafficUsage",
            json!({"bytes": MIB})
        ),
        "a new day counts from zero"
    );
    assert!(run.fires(
        "2025-03-11T00:20:00Z",
        "TrafficUsage",
        json!({"bytes": 10 * MIB})
    ));
}

#[test]
fn subscriber_monthly_traffic_uses_utc_months() {
    // Crossing 1024 MiB at 2025-01-31T20:00Z (2025-02-01 05:00 JST) is January.
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "1024"});
    let actions = json!([
        {"type": "ChangeSpeedClassAction", "properties": {"speedClass": "s1.minimum", "executionDateTimeConst": "IMMEDIATELY"}},
        {"type": "ChangeSpeedClassAction", "properties": {"speedClass": "s1.standard", "executionDateTimeConst": "BEGINNING_OF_NEXT_MONTH"}},
    ]);
    let mut run = Run::new(handlers(&[model(
        "SubscriberMonthlyTrafficRule",
        rule,
        ("targetImsi", "440100000000001"),
        actions,
    )]));
    assert!(!run.fires(
        "2025-01-10T00:00:00Z",
        "TrafficUsage",
        json!({"bytes": 1000 * MIB})
    ));
    let fired = run.at(
        "2025-01-31T20:00:00Z",
        "TrafficUsage",
        json!({"bytes": 100 * MIB}),
    );
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].params["speedClass"], "s1.minimum");
    assert_eq!(fired[0].not_before_ms, None);
    assert_eq!(
        fired[1].not_before_ms,
        Some(at("2025-02-01T00:00:00Z")),
        "4 h later, not March"
    );
    assert!(
        !run.fires(
            "2025-02-01T03:00:00Z",
            "TrafficUsage",
            json!({"bytes": 10 * MIB})
        ),
        "February counts from 0"
    );
}

#[test]
fn cumulative_traffic_never_resets_and_refires_each_window() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "5"});
    let mut run = Run::new(one(
        "SubscriberCumulativeTrafficRule",
        rule.clone(),
        ("targetImsi", "440100000000001"),
    ));
    assert!(run.fires(
        "2025-01-01T10:00:00Z",
        "TrafficUsage",
        json!({"bytes": 6 * MIB})
    ));
    assert!(!run.fires("2025-01-01T11:00:00Z", "TrafficUsage", json!({"bytes": 1})));
    assert!(
        run.fires("2025-01-02T00:01:00Z", "TrafficUsage", json!({"bytes": 1})),
        "still over the next day"
    );
    let mut sim = Run::new(one(
        "SimCumulativeTotalTrafficRule",
        rule,
        ("targetSimId", "8981000000000000001"),
    ));
    assert!(!sim.fires(
        "2025-01-01T10:00:00Z",
        "TrafficUsage",
        json!({"bytes": 3 * MIB, "imsi": "a"})
    ));
    assert!(
        sim.fires(
            "2025-03-01T10:00:00Z",
            "TrafficUsage",
            json!({"bytes": 3 * MIB, "imsi": "b"})
        ),
        "sum of the SIM's subscribers"
    );
}

#[test]
fn sim_daily_and_monthly_totals_sum_the_sims_subscribers() {
    let daily = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "10"});
    let mut run = Run::new(one(
        "SimDailyTotalTrafficRule",
        daily,
        ("targetSimId", "8981000000000000001"),
    ));
    assert!(!run.fires(
        "2025-01-01T10:00:00Z",
        "TrafficUsage",
        json!({"uploadBytes": 3 * MIB, "downloadBytes": 3 * MIB, "imsi": "a"})
    ));
    assert!(run.fires(
        "2025-01-01T11:00:00Z",
        "TrafficUsage",
        json!({"bytes": 5 * MIB, "imsi": "b"})
    ));
    let monthly = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "10"});
    let mut run = Run::new(one(
        "SimMonthlyTotalTrafficRule",
        monthly,
        ("targetSimId", "8981000000000000001"),
    ));
    assert!(!run.fires(
        "2025-01-01T10:00:00Z",
        "TrafficUsage",
        json!({"bytes": 6 * MIB})
    ));
    assert!(run.fires(
        "2025-01-20T10:00:00Z",
        "TrafficUsage",
        json!({"bytes": 6 * MIB})
    ));
    assert!(!run.fires(
        "2025-02-01T10:00:00Z",
        "TrafficUsage",
        json!({"bytes": 6 * MIB})
    ));
}

#[test]
fn group_daily_total_with_run_once_fires_once_per_window_across_sims() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "10", "runOnceAmongTarget": "true"});
    let mut run = Run::new(one("DailyTotalTrafficRule", rule, ("targetGroupId", "g1")));
    assert!(run.fires(
        "2025-01-01T03:00:00Z",
        "TrafficUsage",
        json!({"bytes": 11 * MIB, "simId": "A", "imsi": "a"})
    ));
    assert!(
        !run.fires(
            "2025-01-01T04:00:00Z",
            "TrafficUsage",
            json!({"bytes": MIB, "simId": "B", "imsi": "b"})
        ),
        "once for the group"
    );
    assert!(
        !run.fires(
            "2025-01-01T04:00:00Z",
            "TrafficUsage",
            json!({"bytes": 20 * MIB, "groupId": "g2"})
        ),
        "other group"
    );
    assert!(run.fires(
        "2025-01-02T01:00:00Z",
        "TrafficUsage",
        json!({"bytes": 11 * MIB, "simId": "C", "imsi": "c"})
    ));
}

#[test]
fn group_daily_total_without_run_once_fires_per_sim() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "limitTotalTrafficMegaByte": "10", "runOnceAmongTarget": "false"});
    let mut run = Run::new(one("DailyTotalTrafficRule", rule, ("targetGroupId", "g1")));
    assert!(run.fires(
        "2025-01-01T03:00:00Z",
        "TrafficUsage",
        json!({"bytes": 11 * MIB, "simId": "A"})
    ));
    assert!(run.fires(
        "2025-01-01T04:00:00Z",
        "TrafficUsage",
        json!({"bytes": MIB, "simId": "B"})
    ));
    assert!(!run.fires(
        "2025-01-01T05:00:00Z",
        "TrafficUsage",
        json!({"bytes": MIB, "simId": "A"})
    ));
}

#[test]
fn operator_monthly_total_counts_every_sim() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "100", "runOnceAmongTarget": "true"});
    let mut run = Run::new(one(
        "MonthlyTotalTrafficRule",
        rule,
        ("targetOperatorId", "OP0000000000"),
    ));
    assert!(!run.fires(
        "2025-01-01T03:00:00Z",
        "TrafficUsage",
        json!({"bytes": 60 * MIB, "simId": "A", "groupId": "x"})
    ));
    assert!(run.fires(
        "2025-01-05T03:00:00Z",
        "TrafficUsage",
        json!({"bytes": 60 * MIB, "simId": "B", "groupId": "y"})
    ));
    assert!(!run.fires(
        "2025-01-06T03:00:00Z",
        "TrafficUsage",
        json!({"bytes": 60 * MIB, "simId": "C"})
    ));
}

#[test]
fn status_rules_filter_source_and_target() {
    let rule = json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "sourceStatus": "ready", "targetStatus": "active"});
    let mut run = Run::new(one(
        "SimStatusAttributeRule",
        rule,
        ("targetSimId", "8981000000000000001"),
    ));
    assert!(run.fires(
        "2025-01-01T00:00:00Z",
        "StatusChanged",
        json!({"oldStatus": "ready", "newStatus": "active"})
    ));
    assert!(
        run.fires(
            "2025-01-01T00:00:01Z",
            "StatusChanged",
            json!({"oldStatus": "ready", "newStatus": "active"})
        ),
        "IMMEDIATELY"
    );
    assert!(!run.fires(
        "2025-01-01T00:00:02Z",
        "StatusChanged",
        json!({"oldStatus": "inactive", "newStatus": "active"})
    ));
    assert!(!run.fires(
        "2025-01-01T00:00:03Z",
        "StatusChanged",
        json!({"oldStatus": "active", "newStatus": "suspended"})
    ));
    let mut any = Run::new(one(
        "SubscriberStatusAttributeRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
        ("targetImsi", "440100000000001"),
    ));
    assert!(any.fires(
        "2025-01-01T00:00:00Z",
        "StatusChanged",
        json!({"oldStatus": "active", "newStatus": "suspended"})
    ));
    assert!(!any.fires(
        "2025-01-01T00:00:00Z",
        "StatusChanged",
        json!({"imsi": "other"})
    ));
}

#[test]
fn speed_class_rules_filter_the_new_class() {
    let mut run = Run::new(one(
        "SimSpeedClassAttributeRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "targetSpeedClass": "s1.4xfast"}),
        ("targetSimId", "8981000000000000001"),
    ));
    assert!(run.fires(
        "2025-01-01T00:00:00Z",
        "SpeedClassChanged",
        json!({"oldSpeedClass": "s1.fast", "newSpeedClass": "s1.4xfast"})
    ));
    assert!(!run.fires(
        "2025-01-01T00:00:00Z",
        "SpeedClassChanged",
        json!({"newSpeedClass": "s1.slow"})
    ));
    let mut any = Run::new(one(
        "SubscriberSpeedClassAttributeRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "targetSpeedClass": null}),
        ("targetImsi", "440100000000001"),
    ));
    assert!(any.fires(
        "2025-01-01T00:00:00Z",
        "SpeedClassChanged",
        json!({"newSpeedClass": "s1.slow"})
    ));
}

#[test]
fn expired_and_imei_mismatched_rules() {
    for (rule, target, kind) in [
        (
            "SubscriberExpiredRule",
            ("targetImsi", "440100000000001"),
            "Expired",
        ),
        (
            "SimExpiredRule",
            ("targetSimId", "8981000000000000001"),
            "Expired",
        ),
        (
            "SubscriberImeiMismatchedRule",
            ("targetImsi", "440100000000001"),
            "ImeiMismatched",
        ),
        (
            "SimImeiMismatchedRule",
            ("targetSimId", "8981000000000000001"),
            "ImeiMismatched",
        ),
    ] {
        let mut run = Run::new(one(
            rule,
            json!({"inactiveTimeoutDateConst": "AFTER_ONE_DAY"}),
            target,
        ));
        assert!(
            run.fires("2025-01-01T10:00:00Z", kind, json!({"imei": "1"})),
            "{rule}"
        );
        assert!(
            !run.fires("2025-01-02T09:59:59Z", kind, json!({})),
            "{rule}: AFTER_ONE_DAY"
        );
        assert!(
            run.fires("2025-01-02T10:00:00Z", kind, json!({})),
            "{rule}: exactly 24 h later"
        );
        assert!(
            !run.fires("2025-01-05T10:00:00Z", "StatusChanged", json!({})),
            "{rule}"
        );
    }
}

#[test]
fn session_status_rule_matches_status_and_imei() {
    let model = model(
        "SubscriberSessionStatusRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "sessionStatus": "Created", "hasImei": true}),
        ("targetImsi", "440100000000001"),
        json!([{"type": "ImeiLockAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]),
    );
    let mut run = Run::new(handlers(&[model]));
    let fired = run.at(
        "2025-01-01T00:00:00Z",
        "SessionStatus",
        json!({"sessionStatus": "Created", "imei": "356000000000001"}),
    );
    assert_eq!(fired[0].action, "set_imei_lock");
    assert_eq!(fired[0].params["imei"], "356000000000001");
    assert!(
        !run.fires(
            "2025-01-01T00:00:00Z",
            "SessionStatus",
            json!({"sessionStatus": "Created"})
        ),
        "no IMEI"
    );
    assert!(!run.fires(
        "2025-01-01T00:00:00Z",
        "SessionStatus",
        json!({"sessionStatus": "Deleted", "imei": "1"})
    ));
}

#[test]
fn subscription_status_rule_fires_per_sim_and_never_again() {
    let model = model(
        "SimSubscriptionStatusRule",
        json!({"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}),
        ("targetGroupId", "g1"),
        json!([{"type": "ExecuteWebRequestAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "url": "https://hooks.example.com/${simId}", "httpMethod": "POST",
            "contentType": "application/json", "headers": "{\"contentType\":\"application/json; charset=utf-8\"}",
            "body": "{\"text\":\"${simId} OTA ${otaStatus} (${subscription}) for \\\"${tags.name}\\\"\"}"}}]),
    );
    let mut run = Run::new(handlers(&[model]));
    assert!(!run.fires(
        "2025-01-01T00:00:00Z",
        "SubscriptionStatus",
        json!({"otaStatus": "started"})
    ));
    let fired = run.at(
        "2025-01-01T00:01:00Z",
        "SubscriptionStatus",
        json!({"otaStatus": "finished", "subscription": "planX3", "tags": {"name": "dev \"1\""}}),
    );
    assert_eq!(fired[0].action, "webhook");
    assert_eq!(
        fired[0].params["url"],
        "https://hooks.example.com/8981000000000000001"
    );
    let body: Value =
        serde_json::from_str(fired[0].params["body"].as_str().unwrap()).expect("still valid JSON");
    assert_eq!(
        body["text"],
        "8981000000000000001 OTA finished (planX3) for \"dev \"1\"\""
    );
    assert_eq!(
        fired[0].params["headers"],
        json!({"Content-Type": "application/json"})
    );
    assert!(
        !run.fires(
            "2025-01-02T00:00:00Z",
            "SubscriptionStatus",
            json!({"otaStatus": "finished"})
        ),
        "NEVER"
    );
    assert!(
        run.fires(
            "2025-01-02T00:00:00Z",
            "SubscriptionStatus",
            json!({"otaStatus": "finished", "simId": "other"})
        ),
        "per SIM"
    );
}

#[test]
fn monthly_charge_rule_fires_over_the_amount_once_a_month() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalAmount": "10000", "runOnceAmongTarget": "true"});
    let mut run = Run::new(one(
        "MonthlyChargeRule",
        rule,
        ("targetOperatorId", "OP0000000000"),
    ));
    assert!(!run.fires(
        "2025-01-10T00:00:00Z",
        "MonthlyCharge",
        json!({"amount": 10000})
    ));
    assert!(run.fires(
        "2025-01-11T00:00:00Z",
        "MonthlyCharge",
        json!({"amount": 10050})
    ));
    assert!(!run.fires(
        "2025-01-12T00:00:00Z",
        "MonthlyCharge",
        json!({"amount": 12000, "simId": "x"})
    ));
    assert!(run.fires(
        "2025-02-01T01:00:00Z",
        "MonthlyCharge",
        json!({"amount": 10001})
    ));
}

#[test]
fn offsets_delay_reevaluation_and_actions() {
    let rule = json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_DAY", "inactiveTimeoutOffsetMinutes": "5"});
    let actions = json!([{"type": "SuspendAction", "properties": {"executionDateTimeConst": "BEGINNING_OF_NEXT_MONTH", "executionOffsetMinutes": "1440"}}]);
    let mut run = Run::new(handlers(&[model(
        "SimStatusAttributeRule",
        rule,
        ("targetSimId", "8981000000000000001"),
        actions,
    )]));
    let fired = run.at("2025-03-10T12:00:00Z", "StatusChanged", json!({}));
    assert_eq!(fired[0].not_before_ms, Some(at("2025-04-02T00:00:00Z")));
    assert!(!run.fires("2025-03-11T00:03:00Z", "StatusChanged", json!({})));
    assert!(run.fires("2025-03-11T00:06:00Z", "StatusChanged", json!({})));
}

#[test]
fn never_actions_do_not_run_and_inactive_handlers_do_nothing() {
    let actions = json!([
        {"type": "SuspendAction", "properties": {"executionDateTimeConst": "NEVER"}},
        {"type": "SendMailToOperatorAction", "properties": {"title": "t ${imsi}", "message": "m"}},
    ]);
    let mut active = model(
        "SimExpiredRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
        ("targetSimId", "8981000000000000001"),
        actions,
    );
    let mut run = Run::new(handlers(std::slice::from_ref(&active)));
    let fired = run.at("2025-01-01T00:00:00Z", "Expired", json!({}));
    assert_eq!(fired.len(), 1, "the NEVER action is skipped");
    assert_eq!(
        fired[0].params,
        json!({"subject": "t 440100000000001", "body": "m"})
    );
    assert_eq!(fired[0].index, 1);
    active["status"] = json!("inactive");
    let mut run = Run::new(handlers(&[active]));
    assert!(!run.fires("2025-01-01T00:00:00Z", "Expired", json!({})));
}

#[test]
fn two_handlers_matching_one_event_both_act() {
    let a = model(
        "SimExpiredRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
        ("targetSimId", "8981000000000000001"),
        suspend(),
    );
    let mut b = a.clone();
    b["handlerId"] = json!("h2");
    let mut run = Run::new(handlers(&[a, b]));
    let fired = run.at("2025-01-01T00:00:00Z", "Expired", json!({}));
    assert_eq!(
        fired.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(),
        vec!["handler:h1", "handler:h2"]
    );
}

fn errors(value: Value) -> Vec<String> {
    compile(&value, "f.json", 0)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn constraints_are_enforced_with_file_handler_and_path() {
    let base =
        |rule: &str, props: Value| model(rule, props, ("targetImsi", "440100000000001"), suspend());
    let cases: Vec<(Value, &str)> = vec![
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "NEVER", "inactiveTimeoutOffsetMinutes": "5"}),
            ),
            "f.json: handler \"h\": ruleConfig.properties.inactiveTimeoutOffsetMinutes: cannot be given with NEVER",
        ),
        (
            base(
                "SubscriberDailyTrafficRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "limitTotalTrafficMegaByte": "1"}),
            ),
            "ruleConfig.properties.inactiveTimeoutDateConst: SubscriberDailyTrafficRule cannot use IMMEDIATELY",
        ),
        (
            base(
                "SimSubscriptionStatusRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
            ),
            "cannot use IMMEDIATELY",
        ),
        (
            base(
                "SubscriberFirstTrafficRule",
                json!({"inactiveTimeoutDateConst": "AFTER_ONE_DAY"}),
            ),
            "can only use NEVER",
        ),
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "inactiveTimeoutOffsetMinutes": "525601"}),
            ),
            "inactiveTimeoutOffsetMinutes: must be an integer from 0 to 525600",
        ),
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "inactiveTimeoutOffsetMinutes": "-1"}),
            ),
            "from 0 to 525600",
        ),
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "inactiveTimeoutOffsetMinutes": "abc"}),
            ),
            "from 0 to 525600",
        ),
        (
            base(
                "SubscriberMonthlyTrafficRule",
                json!({"inactiveTimeoutDateConst": "NEVER", "limitTotalTrafficMegaByte": "0"}),
            ),
            "limitTotalTrafficMegaByte: must be an integer from 1 to 2147483647",
        ),
        (
            base(
                "SubscriberMonthlyTrafficRule",
                json!({"inactiveTimeoutDateConst": "NEVER"}),
            ),
            "limitTotalTrafficMegaByte: required",
        ),
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "runOnceAmongTarget": "true"}),
            ),
            "runOnceAmongTarget: only applies to group, SIM or operator targets",
        ),
        (
            base(
                "SimStatusAttributeRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY", "sourceStatus": "terminated"}),
            ),
            "sourceStatus: must be one of",
        ),
        (
            base(
                "SubscriberSessionStatusRule",
                json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
            ),
            "sessionStatus: required",
        ),
        (
            base("NoSuchRule", json!({})),
            "ruleConfig.type: unknown rule type",
        ),
        (
            base("SimStatusAttributeRule", json!({})),
            "inactiveTimeoutDateConst: required",
        ),
    ];
    for (value, expected) in cases {
        let errors = errors(value);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected {expected:?} in {errors:?}"
        );
    }
    let six = json!([{"type": "SuspendAction"}, {"type": "SuspendAction"}, {"type": "SuspendAction"}, {"type": "SuspendAction"}, {"type": "SuspendAction"}, {"type": "SuspendAction"}]);
    assert!(
        errors(model(
            "SimExpiredRule",
            json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
            ("targetSimId", "s"),
            six
        ))[0]
            .contains("1 to 5 actions")
    );
    let lambda = |properties: Value| {
        errors(model(
            "SimExpiredRule",
            json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
            ("targetSimId", "s"),
            json!([{"type": "InvokeAWSLambdaAction", "properties": properties}]),
        ))
    };
    let good = lambda(json!({"executionDateTimeConst": "IMMEDIATELY",
        "endpoint": "https://lambda.ap-northeast-1.amazonaws.com", "functionName": "f", "credentialsId": "c"}));
    assert!(good.is_empty(), "{good:?}");
    let inline = lambda(json!({"executionDateTimeConst": "IMMEDIATELY",
        "endpoint": "https://lambda.x", "functionName": "f", "accessKey": "k", "secretAccessKey": "s"}));
    assert!(
        inline
            .iter()
            .any(|e| e.contains("properties.accessKey: deprecated by SORACOM and not accepted")),
        "{inline:?}"
    );
    assert!(
        inline
            .iter()
            .any(|e| e.contains("properties.credentialsId: required")),
        "{inline:?}"
    );
    let mut two_targets = model(
        "SimExpiredRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
        ("targetSimId", "s"),
        suspend(),
    );
    two_targets["targetGroupId"] = json!("g");
    assert!(self::errors(two_targets)[0].contains("specify only one of"));
    let imei_lock = json!([{"type": "ImeiLockAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}}]);
    assert!(
        self::errors(model(
            "SimExpiredRule",
            json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
            ("targetSimId", "s"),
            imei_lock
        ))[0]
            .contains("ImeiLockAction needs SubscriberSessionStatusRule with hasImei true")
    );
    // The operator's address is read from the SORACOM API when not configured.
    let operator_mail = json!([{"type": "SendMailToOperatorAction",
        "properties": {"title": "t", "message": "m", "executionDateTimeConst": "IMMEDIATELY"}}]);
    let accepted = self::errors(model(
        "SimExpiredRule",
        json!({"inactiveTimeoutDateConst": "IMMEDIATELY"}),
        ("targetSimId", "s"),
        operator_mail,
    ));
    assert!(accepted.is_empty(), "{accepted:?}");
}

#[test]
fn soracom_api_reference_examples_are_accepted() {
    let text = include_str!("../../../../docs/examples/soracom-event-handlers.json");
    let (handlers, errors) = parse_file(text, "soracom-event-handlers.json");
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(handlers.len(), 16);
    let lambda = include_str!("../../../../docs/examples/soracom-event-handlers-lambda.json");
    let (handlers, errors) = parse_file(lambda, "soracom-event-handlers-lambda.json");
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(handlers.len(), 5, "all 21 of SORACOM's examples load");
}

#[test]
fn every_action_type_maps_to_its_kairo_action() {
    let actions = json!([
        {"type": "ChangeSpeedClassAction", "properties": {"speedClass": "s1.slow", "executionDateTimeConst": "IMMEDIATELY"}},
        {"type": "ActivationAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}},
        {"type": "DeactivationAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}},
        {"type": "StandbyAction", "properties": {"executionDateTimeConst": "AFTER_ONE_DAY", "executionOffsetMinutes": "30"}},
        {"type": "SuspendAction", "properties": {"executionDateTimeConst": "IMMEDIATELY"}},
    ]);
    let mail = json!([
        {"type": "SendMailAction", "properties": {"executionDateTimeConst": "IMMEDIATELY", "to": "a@example.com",
            "title": "${simId} on ${date}", "message": "now ${newStatus} (${tags.name}) ${unknown}."}},
        {"type": "SendMailToOperatorAction", "properties": {"executionDateTimeConst": "IMMEDIATELY", "title": "t", "message": "m"}},
        {"type": "ExecuteWebRequestAction", "properties": {"executionDateTimeConst": "IMMEDIATELY", "url": "https://x.example/${imsi}",
            "httpMethod": "GET", "contentType": "text/plain", "headers": {"X-Sim": "${simId}"}, "body": "ignored for GET"}},
    ]);
    let sim = ("targetSimId", "8981000000000000001");
    let rule = json!({"inactiveTimeoutDateConst": "IMMEDIATELY"});
    let mut run = Run::new(handlers(&[
        model("SimStatusAttributeRule", rule.clone(), sim, actions),
        model("SimExpiredRule", rule, sim, mail),
    ]));
    let fired = run.at(
        "2025-01-02T03:04:05Z",
        "StatusChanged",
        json!({"newStatus": "active", "tags": {"name": "dev-1"}}),
    );
    let sim_id = json!({"simId": "8981000000000000001"});
    let summary: Vec<(&str, Value, Option<i64>)> = fired
        .iter()
        .map(|r| (r.action.as_str(), r.params.clone(), r.not_before_ms))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "set_speed_class",
                json!({"simId": "8981000000000000001", "speedClass": "s1.slow"}),
                None
            ),
            ("activate", sim_id.clone(), None),
            ("deactivate", sim_id.clone(), None),
            (
                "set_to_standby",
                sim_id.clone(),
                Some(at("2025-01-03T03:34:05Z"))
            ),
            ("suspend", sim_id, None),
        ]
    );
    let fired = run.at(
        "2025-01-02T03:04:05Z",
        "Expired",
        json!({"newStatus": "active", "tags": {"name": "dev-1"}}),
    );
    assert_eq!(fired[0].action, "email");
    assert_eq!(
        fired[0].params,
        json!({"to": "a@example.com", "subject": "8981000000000000001 on 2025/1/2", "body": "now active (dev-1) ."})
    );
    assert_eq!(fired[1].action, "email_operator");
    assert_eq!(fired[1].params, json!({"subject": "t", "body": "m"}));
    assert_eq!(fired[2].action, "webhook");
    assert_eq!(
        fired[2].params,
        json!({"url": "https://x.example/440100000000001", "method": "GET",
               "headers": {"Content-Type": "text/plain", "X-Sim": "8981000000000000001"}}),
        "GET sends no body"
    );
}

#[test]
fn handler_traces_say_what_each_handler_decided_and_why() {
    let set = handlers(&[model(
        "SimMonthlyTotalTrafficRule",
        json!({"inactiveTimeoutDateConst": "BEGINNING_OF_NEXT_MONTH", "limitTotalTrafficMegaByte": "10"}),
        ("targetSimId", "sim-a"),
        suspend(),
    )]);
    let mut state = MemoryState::default();
    let now = at("2025-03-10T12:00:00Z");
    let traffic = |sim: &str, mib: i64| {
        event(json!({"eventType": "TrafficUsage", "simId": sim, "payload": {"bytes": mib * MIB}}))
    };
    let mut step = |e: &Event| {
        count(e, &mut state, now);
        set.fire_traced(e, &mut state, now).1.remove(0)
    };
    let other = step(&traffic("sim-b", 50));
    assert_eq!(other.outcome, HandlerOutcome::NotTargeted);
    assert_eq!(
        other.reason.as_deref(),
        Some("the event is not about sim:sim-a")
    );
    let below = step(&traffic("sim-a", 6));
    assert_eq!(below.outcome, HandlerOutcome::NotMatched);
    assert_eq!(
        below.reason.as_deref(),
        Some("c/sim/sim-a/m202503 is 6.0 MiB, limit 10 MiB")
    );
    let over = step(&traffic("sim-a", 6));
    assert_eq!(over.outcome, HandlerOutcome::Fired);
    assert_eq!(over.actions.len(), 1);
    assert_eq!(over.actions[0].action, "suspend");
    assert_eq!(over.actions[0].due_at_ms, now);
    let again = step(&traffic("sim-a", 1));
    assert_eq!(again.outcome, HandlerOutcome::Suppressed);
    assert_eq!(
        again.reason.as_deref(),
        Some("held back until 2025-04-01T00:00:00Z by re-evaluation for sim:sim-a")
    );
}
