//! The action functions rule scripts call. Calling one performs nothing: it
//! records an action call that becomes an [`ActionRequest`] after the script returns.
//!
//! [`ActionRequest`]: kairo_core::ActionRequest

use std::cell::RefCell;
use std::sync::Arc;

use kairo_core::handler::DateConst;

use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde_json::{Value, json};

/// One action call recorded during an evaluation: action name and parameters.
pub type CapturedCall = (String, Value);

thread_local! {
    static CALLS: RefCell<Vec<CapturedCall>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` and returns the action calls it recorded on this thread.
pub fn capturing<T>(f: impl FnOnce() -> T) -> (T, Vec<CapturedCall>) {
    CALLS.with(|calls| calls.borrow_mut().clear());
    let out = f();
    let calls = CALLS.with(|calls| std::mem::take(&mut *calls.borrow_mut()));
    (out, calls)
}

fn record(action: &str, params: Value) {
    CALLS.with(|calls| calls.borrow_mut().push((action.to_string(), params)));
}

type FnResult = Result<(), Box<EvalAltResult>>;

fn string_arg(function: &str, name: &str, value: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    value.clone().into_string().map_err(|found| {
        format!(
            "{function}: `{name}` must be a string, got {found} ({})",
            value.type_name()
        )
        .into()
    })
}

fn to_json(function: &str, value: &Dynamic) -> Result<Value, Box<EvalAltResult>> {
    rhai::serde::from_dynamic::<Value>(value)
        .map_err(|e| format!("{function}: cannot convert argument to JSON: {e}").into())
}

fn map_arg(function: &str, map: Map) -> Result<Value, Box<EvalAltResult>> {
    to_json(function, &Dynamic::from_map(map))
}

/// `soracom(method, path[, body])`: any SORACOM API operation.
fn soracom_call(method: &Dynamic, path: &Dynamic, body: Option<&Dynamic>) -> FnResult {
    let method = string_arg("soracom", "method", method)?;
    let path = string_arg("soracom", "path", path)?;
    let mut params = json!({"method": method, "path": path});
    if let Some(body) = body {
        params["body"] = to_json("soracom", body)?;
    }
    record("soracom", params);
    Ok(())
}

/// Registers every built-in action function on `engine`, and the state
/// functions `traffic_mib(...)` and `reevaluate(...)`.
pub fn register(engine: &mut Engine) {
    register_state_functions(engine);
    engine.register_fn("set_group", |sim: Dynamic, group: Dynamic| -> FnResult {
        let sim_id = string_arg("set_group", "sim_id", &sim)?;
        let group_id = string_arg("set_group", "group_id", &group)?;
        record("set_group", json!({"simId": sim_id, "groupId": group_id}));
        Ok(())
    });
    for name in [
        "unset_group",
        "activate",
        "deactivate",
        "suspend",
        "set_to_standby",
        "unset_imei_lock",
    ] {
        engine.register_fn(name, move |sim: Dynamic| -> FnResult {
            let sim_id = string_arg(name, "sim_id", &sim)?;
            record(name, json!({"simId": sim_id}));
            Ok(())
        });
    }
    engine.register_fn(
        "set_speed_class",
        |sim: Dynamic, class: Dynamic| -> FnResult {
            let sim_id = string_arg("set_speed_class", "sim_id", &sim)?;
            let speed_class = string_arg("set_speed_class", "speed_class", &class)?;
            record(
                "set_speed_class",
                json!({"simId": sim_id, "speedClass": speed_class}),
            );
            Ok(())
        },
    );
    engine.register_fn("set_imei_lock", |sim: Dynamic| -> FnResult {
        let sim_id = string_arg("set_imei_lock", "sim_id", &sim)?;
        record("set_imei_lock", json!({"simId": sim_id}));
        Ok(())
    });
    engine.register_fn("set_imei_lock", |sim: Dynamic, imei: Dynamic| -> FnResult {
        let sim_id = string_arg("set_imei_lock", "sim_id", &sim)?;
        let imei = string_arg("set_imei_lock", "imei", &imei)?;
        record("set_imei_lock", json!({"simId": sim_id, "imei": imei}));
        Ok(())
    });
    engine.register_fn("soracom", |method: Dynamic, path: Dynamic| -> FnResult {
        soracom_call(&method, &path, None)
    });
    engine.register_fn(
        "soracom",
        |method: Dynamic, path: Dynamic, body: Dynamic| -> FnResult {
            soracom_call(&method, &path, Some(&body))
        },
    );
    engine.register_fn("slack", |text: Dynamic| -> FnResult {
        let text = string_arg("slack", "text", &text)?;
        record("slack", json!({"text": text}));
        Ok(())
    });
    engine.register_fn("slack", |params: Map| -> FnResult {
        record("slack", map_arg("slack", params)?);
        Ok(())
    });
    engine.register_fn(
        "email",
        |to: Dynamic, subject: Dynamic, body: Dynamic| -> FnResult {
            let to = string_arg("email", "to", &to)?;
            let subject = string_arg("email", "subject", &subject)?;
            let body = string_arg("email", "body", &body)?;
            record("email", json!({"to": to, "subject": subject, "body": body}));
            Ok(())
        },
    );
    engine.register_fn("webhook", |url: Dynamic, body: Dynamic| -> FnResult {
        let url = string_arg("webhook", "url", &url)?;
        let body = to_json("webhook", &body)?;
        record("webhook", json!({"url": url, "body": body}));
        Ok(())
    });
    engine.register_fn("webhook", |params: Map| -> FnResult {
        record("webhook", map_arg("webhook", params)?);
        Ok(())
    });
    engine.register_fn(
        "publish",
        |subject: Dynamic, payload: Dynamic| -> FnResult {
            let subject = string_arg("publish", "subject", &subject)?;
            let payload = to_json("publish", &payload)?;
            record("publish", json!({"subject": subject, "payload": payload}));
            Ok(())
        },
    );
    engine.register_fn("action", |name: Dynamic, params: Map| -> FnResult {
        let name = string_arg("action", "plugin_name", &name)?;
        record(&name, map_arg("action", params)?);
        Ok(())
    });
}

/// Registers `name(#{...})` and `name()` for a plugin action, so scripts can call
/// it by name as well as with `action("name", #{...})`. Names that are not Rhai
/// identifiers, and `action` itself, are skipped.
pub fn register_plugin_function(engine: &mut Engine, name: &str) {
    let is_identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_identifier || name == "action" {
        return;
    }
    let owned = name.to_string();
    engine.register_fn(name, move |params: Map| -> FnResult {
        record(&owned, map_arg(&owned, params)?);
        Ok(())
    });
    let owned = name.to_string();
    engine.register_fn(name, move || -> FnResult {
        record(&owned, json!({}));
        Ok(())
    });
}

/// The recorded name of a `reevaluate(...)` call (not an action).
pub const REEVALUATE: &str = "__reevaluate";

/// Reads one event handler state value by key.
pub type StateReader = Arc<dyn Fn(&str) -> Option<i64> + Send + Sync>;

/// What rule scripts may read of Kairo's state while they run.
pub struct ScriptContext {
    /// Reads an event handler state value (traffic counters, in bytes).
    pub state: StateReader,
    /// The evaluation time, epoch milliseconds (UTC windows are taken from it).
    pub now_ms: i64,
}

thread_local! {
    static CONTEXT: RefCell<Option<Arc<ScriptContext>>> = const { RefCell::new(None) };
}

thread_local! {
    /// The rule running on this thread and the event it runs against, for `print`/`debug`.
    static RUNNING: RefCell<Option<(Arc<crate::Rule>, Arc<str>)>> = const { RefCell::new(None) };
}

/// Runs `f` as rule `rule` on event `event_id`, so what the script prints names them.
pub(crate) fn as_rule<T>(rule: &Arc<crate::Rule>, event_id: &Arc<str>, f: impl FnOnce() -> T) -> T {
    RUNNING.with(|r| *r.borrow_mut() = Some((rule.clone(), event_id.clone())));
    let out = f();
    RUNNING.with(|r| *r.borrow_mut() = None);
    out
}

/// The rule running on this thread and its event's id, if a rule is running.
pub(crate) fn running() -> Option<(String, String)> {
    RUNNING.with(|r| {
        r.borrow()
            .as_ref()
            .map(|(rule, event)| (rule.name.clone(), event.to_string()))
    })
}

/// Runs `f` with `context` visible to `traffic_mib(...)` on this thread.
pub fn with_context<T>(context: Option<Arc<ScriptContext>>, f: impl FnOnce() -> T) -> T {
    let previous = CONTEXT.with(|c| c.replace(context));
    let out = f();
    CONTEXT.with(|c| *c.borrow_mut() = previous);
    out
}

/// The [`Reevaluation`](crate::Reevaluation) a recorded `reevaluate(...)` call stands for.
pub fn reevaluation(rule: &str, params: &Value) -> crate::Reevaluation {
    crate::Reevaluation {
        rule: rule.to_string(),
        timing: params["timing"]
            .as_str()
            .and_then(DateConst::parse)
            .unwrap_or(DateConst::Immediately),
        offset_minutes: params["offset"].as_i64().unwrap_or(0),
    }
}

fn register_state_functions(engine: &mut Engine) {
    fn reevaluate(timing: &str, offset: i64) -> FnResult {
        if DateConst::parse(timing).is_none() {
            return Err(format!(
                "reevaluate: timing must be IMMEDIATELY, BEGINNING_OF_NEXT_DAY, BEGINNING_OF_NEXT_MONTH, AFTER_ONE_DAY or NEVER, got {timing:?}"
            )
            .into());
        }
        if !(0..=kairo_core::handler::timing::MAX_OFFSET_MINUTES).contains(&offset)
            || (timing == "NEVER" && offset != 0)
        {
            return Err(format!(
                "reevaluate: offset must be 0..=525600 minutes (and 0 with NEVER), got {offset}"
            )
            .into());
        }
        record(REEVALUATE, json!({"timing": timing, "offset": offset}));
        Ok(())
    }
    engine.register_fn("reevaluate", |timing: &str| reevaluate(timing, 0));
    engine.register_fn("reevaluate", reevaluate);
    engine.register_fn(
        "traffic_mib",
        |scope: &str, id: Dynamic, window: &str| -> Result<rhai::FLOAT, Box<EvalAltResult>> {
            let id = string_arg("traffic_mib", "id", &id)?;
            let kind = match scope {
                "imsi" | "sim" | "group" => scope,
                "operator" => "op",
                other => return Err(format!("traffic_mib: scope must be imsi, sim, group or operator, got {other:?}").into()),
            };
            let context = CONTEXT.with(|c| c.borrow().clone());
            let Some(context) = context else {
                return Ok(0.0);
            };
            use kairo_core::handler::keys::{Window, counter};
            let window = match window {
                "day" => Window::Day,
                "month" => Window::Month,
                "all" if matches!(kind, "imsi" | "sim") => Window::All,
                other => return Err(format!("traffic_mib: window must be day, month or (for imsi and sim) all, got {other:?}").into()),
            };
            let bytes = (context.state)(&counter(kind, &id, window, context.now_ms)).unwrap_or(0);
            Ok(bytes as rhai::FLOAT / (1024.0 * 1024.0))
        },
    );
}
