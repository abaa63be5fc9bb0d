//! SORACOM's `EventHandlerModel` JSON, compiled into a checked [`Handler`].
//!
//! Every SORACOM constraint is checked at load time, and each error names the
//! file, the handler and the JSON path of the offending field.

use serde_json::{Map, Value};

use super::model::*;
use super::timing::{DateConst, MAX_OFFSET_MINUTES};

const LIMIT_MAX: i64 = 2_147_483_647;

struct Checker<'a> {
    file: &'a str,
    handler: String,
    errors: Vec<HandlerError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(HandlerError {
            file: self.file.to_string(),
            handler: self.handler.clone(),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn string<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        base: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v str> {
        match object.get(key) {
            Some(Value::String(s)) => Some(s),
            None | Some(Value::Null) => {
                if required {
                    self.error(&join(base, key), "required");
                }
                None
            }
            Some(other) => {
                self.error(&join(base, key), format!("must be a string, got {other}"));
                None
            }
        }
    }

    /// A SORACOM integer-in-a-string (numbers accepted too) within `min..=max`.
    fn integer(
        &mut self,
        object: &Map<String, Value>,
        base: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let path = join(base, key);
        let parsed = match object.get(key)? {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    &path,
                    format!(
                        "must be an integer from {min} to {max} (as a string), got {}",
                        object[key]
                    ),
                );
                None
            }
        }
    }

    fn one_of(
        &mut self,
        object: &Map<String, Value>,
        base: &str,
        key: &str,
        allowed: &[&str],
    ) -> Option<String> {
        let value = self.string(object, base, key, false)?;
        if allowed.contains(&value) {
            Some(value.to_string())
        } else {
            self.error(
                &join(base, key),
                format!("must be one of {}, got {value:?}", allowed.join(", ")),
            );
            None
        }
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Checks one `EventHandlerModel` from `file` (its `position` in the file
/// names it when it has no name) and compiles it, or lists every problem.
pub fn compile(value: &Value, file: &str, position: usize) -> Result<Handler, Vec<HandlerError>> {
    let handler_label = value
        .get("name")
        .and_then(Value::as_str)
        .map(|n| format!("{n:?}"))
        .unwrap_or_else(|| format!("#{position}"));
    let mut check = Checker {
        file,
        handler: handler_label,
        errors: Vec::new(),
    };
    let Some(object) = value.as_object() else {
        check.error("", "must be an EventHandlerModel object");
        return Err(check.errors);
    };
    let name = check
        .string(object, "", "name", true)
        .unwrap_or_default()
        .to_string();
    let id = check
        .string(object, "", "handlerId", false)
        .map(str::to_string)
        .unwrap_or_else(|| name.clone());
    let active = match check.string(object, "", "status", true) {
        Some("active") => true,
        Some("inactive") | None => false,
        Some(other) => {
            check.error(
                "status",
                format!("must be \"active\" or \"inactive\", got {other:?}"),
            );
            false
        }
    };
    let targets: Vec<Target> = [
        ("targetImsi", Target::Imsi as fn(String) -> Target),
        ("targetSimId", Target::Sim),
        ("targetGroupId", Target::Group),
        ("targetOperatorId", Target::Operator),
    ]
    .iter()
    .filter_map(|(key, make)| {
        check
            .string(object, "", key, false)
            .map(|v| make(v.to_string()))
    })
    .collect();
    let target = match targets.len() {
        1 => Some(targets[0].clone()),
        0 => {
            check.error("target*", "exactly one of targetImsi, targetSimId, targetGroupId, targetOperatorId is required");
            None
        }
        _ => {
            check.error(
                "target*",
                "specify only one of targetImsi, targetSimId, targetGroupId, targetOperatorId",
            );
            None
        }
    };
    let rule = compile_rule(&mut check, object, target.as_ref());
    let actions = compile_actions(&mut check, object, rule.as_ref());
    if !check.errors.is_empty() {
        return Err(check.errors);
    }
    Ok(Handler {
        id,
        name,
        active,
        target: target.expect("checked"),
        rule: rule.expect("checked"),
        actions,
        shadow: false,
    })
}

fn compile_rule(
    check: &mut Checker<'_>,
    object: &Map<String, Value>,
    target: Option<&Target>,
) -> Option<RuleConfig> {
    let Some(config) = object.get("ruleConfig").and_then(Value::as_object) else {
        check.error(
            "ruleConfig",
            "required: an object with `type` and `properties`",
        );
        return None;
    };
    let type_name = check.string(config, "ruleConfig", "type", true)?;
    let Some(kind) = RuleType::ALL
        .iter()
        .find(|(n, _)| *n == type_name)
        .map(|(_, t)| *t)
    else {
        check.error(
            "ruleConfig.type",
            format!("unknown rule type {type_name:?}"),
        );
        return None;
    };
    let empty = Map::new();
    let properties = match config.get("properties") {
        Some(Value::Object(p)) => p,
        None => &empty,
        Some(_) => {
            check.error("ruleConfig.properties", "must be an object");
            return None;
        }
    };
    let base = "ruleConfig.properties";
    let reevaluate = match check.string(properties, base, "inactiveTimeoutDateConst", true) {
        Some(text) => match DateConst::parse(text) {
            Some(c) => c,
            None => {
                check.error(
                    &join(base, "inactiveTimeoutDateConst"),
                    format!("must be IMMEDIATELY, BEGINNING_OF_NEXT_DAY, BEGINNING_OF_NEXT_MONTH, AFTER_ONE_DAY or NEVER, got {text:?}"),
                );
                return None;
            }
        },
        None => return None,
    };
    match (kind.timing(), reevaluate) {
        (Timing::NotImmediately, DateConst::Immediately) => check.error(
            &join(base, "inactiveTimeoutDateConst"),
            format!("{type_name} cannot use IMMEDIATELY"),
        ),
        (Timing::NeverOnly, c) if c != DateConst::Never => check.error(
            &join(base, "inactiveTimeoutDateConst"),
            format!("{type_name} can only use NEVER"),
        ),
        _ => {}
    }
    let offset_minutes = if properties.contains_key("inactiveTimeoutOffsetMinutes") {
        if reevaluate == DateConst::Never {
            check.error(
                &join(base, "inactiveTimeoutOffsetMinutes"),
                "cannot be given with NEVER",
            );
        }
        check
            .integer(
                properties,
                base,
                "inactiveTimeoutOffsetMinutes",
                0,
                MAX_OFFSET_MINUTES,
            )
            .unwrap_or(0)
    } else {
        0
    };
    let run_once_among_target = match properties.get("runOnceAmongTarget") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            check.error(
                &join(base, "runOnceAmongTarget"),
                format!("must be \"true\" or \"false\", got {other}"),
            );
            false
        }
    };
    if run_once_among_target {
        if !kind.run_once_supported() {
            check.error(
                &join(base, "runOnceAmongTarget"),
                format!("{type_name} does not support runOnceAmongTarget"),
            );
        }
        if matches!(target, Some(Target::Imsi(_))) {
            check.error(
                &join(base, "runOnceAmongTarget"),
                "only applies to group, SIM or operator targets",
            );
        }
    }
    let limit = if kind.needs_traffic_limit() {
        if !properties.contains_key("limitTotalTrafficMegaByte") {
            check.error(
                &join(base, "limitTotalTrafficMegaByte"),
                format!("required for {type_name}"),
            );
        }
        check.integer(properties, base, "limitTotalTrafficMegaByte", 1, LIMIT_MAX)
    } else if kind == RuleType::MonthlyCharge {
        if !properties.contains_key("limitTotalAmount") {
            check.error(
                &join(base, "limitTotalAmount"),
                "required for MonthlyChargeRule",
            );
        }
        check.integer(properties, base, "limitTotalAmount", 1, LIMIT_MAX)
    } else {
        None
    };
    if matches!(
        kind,
        RuleType::DailyTotalTraffic | RuleType::MonthlyTotalTraffic
    ) && matches!(target, Some(Target::Imsi(_)) | Some(Target::Sim(_)))
    {
        check.error(
            "target*",
            format!("{type_name} needs a group or operator target"),
        );
    }
    let statuses_from = &STATUSES[..5];
    let source_status = check.one_of(properties, base, "sourceStatus", statuses_from);
    let target_status = check.one_of(properties, base, "targetStatus", &STATUSES);
    let target_speed_class = check.one_of(properties, base, "targetSpeedClass", &SPEED_CLASSES);
    let target_ota_status = check.one_of(
        properties,
        base,
        "targetOtaStatus",
        &["started", "finished", "failed"],
    );
    let session_status = if kind == RuleType::SubscriberSessionStatus {
        if !properties.contains_key("sessionStatus") {
            check.error(
                &join(base, "sessionStatus"),
                "required for SubscriberSessionStatusRule",
            );
        }
        check.one_of(properties, base, "sessionStatus", &["Created", "Deleted"])
    } else {
        None
    };
    let has_imei = match properties.get("hasImei") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            check.error(
                &join(base, "hasImei"),
                format!("must be a boolean, got {other}"),
            );
            false
        }
    };
    Some(RuleConfig {
        kind,
        reevaluate,
        offset_minutes,
        run_once_among_target,
        limit,
        source_status,
        target_status,
        target_speed_class,
        target_ota_status,
        session_status,
        has_imei,
    })
}

fn compile_actions(
    check: &mut Checker<'_>,
    object: &Map<String, Value>,
    rule: Option<&RuleConfig>,
) -> Vec<HandlerAction> {
    let Some(list) = object.get("actionConfigList").and_then(Value::as_array) else {
        check.error("actionConfigList", "required: a list of 1 to 5 actions");
        return Vec::new();
    };
    if list.is_empty() || list.len() > 5 {
        check.error(
            "actionConfigList",
            format!("must hold 1 to 5 actions, got {}", list.len()),
        );
    }
    let mut actions = Vec::new();
    for (i, action) in list.iter().enumerate() {
        let base = format!("actionConfigList[{i}]");
        let Some(action) = action.as_object() else {
            check.error(&base, "must be an object with `type` and `properties`");
            continue;
        };
        let Some(type_name) = check.string(action, &base, "type", true) else {
            continue;
        };
        let empty = Map::new();
        let properties = action
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pbase = format!("{base}.properties");
        // SORACOM's own API example omits executionDateTimeConst; Kairo reads that as IMMEDIATELY.
        let execute = match check.string(properties, &pbase, "executionDateTimeConst", false) {
            None => DateConst::Immediately,
            Some(text) => DateConst::parse(text).unwrap_or_else(|| {
                check.error(
                    &join(&pbase, "executionDateTimeConst"),
                    format!("unknown value {text:?}"),
                );
                DateConst::Immediately
            }),
        };
        let offset_minutes = if properties.contains_key("executionOffsetMinutes") {
            if execute == DateConst::Never {
                check.error(
                    &join(&pbase, "executionOffsetMinutes"),
                    "cannot be given with NEVER",
                );
            }
            check
                .integer(
                    properties,
                    &pbase,
                    "executionOffsetMinutes",
                    0,
                    MAX_OFFSET_MINUTES,
                )
                .unwrap_or(0)
        } else {
            0
        };
        let kind = match type_name {
            "ChangeSpeedClassAction" => check
                .one_of(properties, &pbase, "speedClass", &SPEED_CLASSES)
                .map(ActionKind::ChangeSpeedClass)
                .or_else(|| {
                    if !properties.contains_key("speedClass") {
                        check.error(&join(&pbase, "speedClass"), "required");
                    }
                    None
                }),
            "ActivationAction" => Some(ActionKind::Activation),
            "DeactivationAction" => Some(ActionKind::Deactivation),
            "StandbyAction" => Some(ActionKind::Standby),
            "SuspendAction" => Some(ActionKind::Suspend),
            "ImeiLockAction" => {
                let allowed =
                    rule.is_some_and(|r| r.kind == RuleType::SubscriberSessionStatus && r.has_imei);
                if !allowed {
                    check.error(
                        &join(&base, "type"),
                        "ImeiLockAction needs SubscriberSessionStatusRule with hasImei true",
                    );
                }
                Some(ActionKind::ImeiLock)
            }
            "SendMailAction" => {
                let to = check
                    .string(properties, &pbase, "to", true)
                    .unwrap_or_default()
                    .to_string();
                if to.contains([',', ';']) {
                    check.error(&join(&pbase, "to"), "only one address is allowed");
                }
                let title = check
                    .string(properties, &pbase, "title", true)
                    .unwrap_or_default()
                    .to_string();
                let message = check
                    .string(properties, &pbase, "message", true)
                    .unwrap_or_default()
                    .to_string();
                Some(ActionKind::SendMail { to, title, message })
            }
            "SendMailToOperatorAction" => {
                let title = check
                    .string(properties, &pbase, "title", true)
                    .unwrap_or_default()
                    .to_string();
                let message = check
                    .string(properties, &pbase, "message", true)
                    .unwrap_or_default()
                    .to_string();
                Some(ActionKind::SendMailToOperator { title, message })
            }
            "ExecuteWebRequestAction" => web_request(check, properties, &pbase),
            "InvokeAWSLambdaAction" => lambda(check, properties, &pbase),
            other => {
                check.error(
                    &join(&base, "type"),
                    format!("unknown action type {other:?}"),
                );
                None
            }
        };
        if let Some(kind) = kind {
            actions.push(HandlerAction {
                kind,
                execute,
                offset_minutes,
            });
        }
    }
    actions
}

/// InvokeAWSLambdaAction: endpoint, function and the credentials' id; the
/// deprecated inline keys are refused (they would sit in every request).
fn lambda(
    check: &mut Checker<'_>,
    properties: &Map<String, Value>,
    base: &str,
) -> Option<ActionKind> {
    for deprecated in ["accessKey", "secretAccessKey"] {
        if properties.get(deprecated).is_some_and(|v| !v.is_null()) {
            let message = "deprecated by SORACOM and not accepted: set credentialsId and configure \
                 [credentials.<id>] access_key_id and secret_access_key";
            check.error(&join(base, deprecated), message);
        }
    }
    let endpoint = check
        .string(properties, base, "endpoint", true)
        .map(str::to_string);
    if let Some(url) = &endpoint
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        check.error(
            &join(base, "endpoint"),
            format!("must be an http(s) URL, got {url:?}"),
        );
    }
    let function_name = check
        .string(properties, base, "functionName", true)
        .map(str::to_string);
    let credentials_id = check
        .string(properties, base, "credentialsId", true)
        .map(str::to_string);
    let parameters = (1..=5)
        .filter_map(|n| {
            let key = format!("parameter{n}");
            let value = check.string(properties, base, &key, false)?.to_string();
            Some((key, value))
        })
        .collect();
    Some(ActionKind::Lambda {
        endpoint: endpoint?,
        function_name: function_name?,
        credentials_id: credentials_id?,
        parameters,
    })
}

fn web_request(
    check: &mut Checker<'_>,
    properties: &Map<String, Value>,
    base: &str,
) -> Option<ActionKind> {
    let url = check.string(properties, base, "url", true)?.to_string();
    let method = check.one_of(
        properties,
        base,
        "httpMethod",
        &["GET", "POST", "PUT", "DELETE"],
    );
    if !properties.contains_key("httpMethod") {
        check.error(&join(base, "httpMethod"), "required");
    }
    let content_type = check
        .string(properties, base, "contentType", true)
        .unwrap_or_default()
        .to_string();
    // The schema says object; SORACOM's examples send a JSON object in a string.
    let headers = match properties.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => string_pairs(check, map, &join(base, "headers")),
        Some(Value::String(text)) if text.trim().is_empty() => Vec::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Map<String, Value>>(text) {
            Ok(map) => string_pairs(check, &map, &join(base, "headers")),
            Err(e) => {
                check.error(
                    &join(base, "headers"),
                    format!("must be a JSON object (or a string holding one): {e}"),
                );
                Vec::new()
            }
        },
        Some(other) => {
            check.error(
                &join(base, "headers"),
                format!("must be an object, got {other}"),
            );
            Vec::new()
        }
    };
    let body = check
        .string(properties, base, "body", false)
        .map(str::to_string);
    Some(ActionKind::WebRequest {
        url,
        method: method?,
        content_type,
        headers,
        body,
    })
}

fn string_pairs(
    check: &mut Checker<'_>,
    map: &Map<String, Value>,
    base: &str,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (key, value) in map {
        match value.as_str() {
            Some(v) => pairs.push((key.clone(), v.to_string())),
            None => check.error(&join(base, key), "must be a string"),
        }
    }
    pairs
}
