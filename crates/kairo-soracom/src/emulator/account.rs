//! The emulator's account-level APIs: the operator and its notification
//! address, event handlers, the async traffic export.

use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::routes::Answer;
use super::state::EmulatorState;

/// `GET /v1/operators/{id}`, its `system_notifications/primary` and `emails/{emailId}`:
/// the operator's primary notification address, as SendMailToOperatorAction uses it.
pub(super) fn operator_api(state: &EmulatorState, operator: &str, rest: &[&str]) -> Answer {
    if operator != super::state::OPERATOR_ID {
        return Answer::error(StatusCode::BAD_REQUEST, "EMU0001", "Invalid Operator Id");
    }
    const EMAIL_ID: &str = "email-primary";
    let email = state.operator_email.clone();
    match rest {
        [] => Answer::ok(json!({
            "operatorId": operator, "rootOperatorId": operator, "email": email,
            "description": "", "createDate": "2020-01-01", "updateDate": "2020-01-01",
        })),
        ["system_notifications", "primary"] => Answer::ok(json!({
            "type": "primary", "emailIdList": [EMAIL_ID], "updateDateTime": 0,
        })),
        ["emails", EMAIL_ID] => Answer::ok(json!({
            "emailId": EMAIL_ID, "email": email, "verified": true,
            "createDateTime": 0, "updateDateTime": 0,
        })),
        _ => Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0004",
            "no such operator resource",
        ),
    }
}

/// Event handler CRUD: list, create (201 with `handlerId`), get, replace
/// (200, no body) and delete (204), each checked to have its required fields.
pub(super) fn event_handlers(
    state: &mut EmulatorState,
    method: &Method,
    rest: &[&str],
    body: &Value,
) -> Answer {
    let valid = |body: &Value| {
        ["name", "status", "ruleConfig", "actionConfigList"]
            .iter()
            .all(|key| body.get(key).is_some_and(|v| !v.is_null()))
    };
    let invalid = || {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            "name, status, ruleConfig and actionConfigList are required",
        )
    };
    let missing = |id: &str| {
        Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0005",
            format!("no event handler {id}"),
        )
    };
    match (method, rest) {
        (&Method::GET, []) => Answer::ok(json!(state.event_handlers.values().collect::<Vec<_>>())),
        (&Method::POST, []) if valid(body) => {
            let id = state.fresh_id("handler-");
            let mut handler = body.clone();
            handler["handlerId"] = Value::String(id.clone());
            state.event_handlers.insert(id, handler.clone());
            let mut answer = Answer::ok(handler);
            answer.status = StatusCode::CREATED;
            answer
        }
        (&Method::GET, [id]) => match state.event_handlers.get(*id) {
            Some(handler) => Answer::ok(handler.clone()),
            None => missing(id),
        },
        (&Method::PUT, [id]) if valid(body) => match state.event_handlers.get_mut(*id) {
            Some(handler) => {
                *handler = body.clone();
                handler["handlerId"] = Value::String(id.to_string());
                Answer::ok(Value::Null)
            }
            None => missing(id),
        },
        (&Method::DELETE, [id]) => match state.event_handlers.remove(*id) {
            Some(_) => {
                let mut answer = Answer::ok(Value::Null);
                answer.status = StatusCode::NO_CONTENT;
                answer
            }
            None => missing(id),
        },
        (&Method::POST | &Method::PUT, _) => invalid(),
        _ => Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0004",
            "no such event handler API",
        ),
    }
}

/// `POST /v1/stats/air/operators/{id}/export` (async; `{from, to}` in
/// seconds, `period` day): the CSV of every IMSI's traffic per UTC day in
/// the window, ready at once.
pub(super) fn export_air_stats(state: &mut EmulatorState, body: &Value) -> Answer {
    let day = |seconds: i64| {
        chrono::DateTime::from_timestamp(seconds, 0).map(|t| t.format("%Y%m%d").to_string())
    };
    let (Some(from), Some(to)) = (
        body["from"].as_i64().and_then(day),
        body["to"].as_i64().and_then(day),
    ) else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "EMU0001",
            "from and to (seconds) are required",
        );
    };
    let mut csv = String::from(
        "\u{feff}imsi,date,type,uploadByteSizeTotal,uploadPacketCountTotal,downloadByteSizeTotal,downloadPacketCountTotal\n",
    );
    for ((imsi, date), (up, down)) in &state.air_stats {
        if *date >= from && *date <= to {
            csv.push_str(&format!("{imsi},{date},s1.standard,{up},0,{down},0\n"));
        }
    }
    let id = state.fresh_id("fe_");
    state.exported.insert(id.clone(), csv);
    Answer::ok(json!({"exportedFileId": id, "exportedFilePath": format!("//files/exported/{id}")}))
}

/// `GET /v1/files/exported/{id}`: ready, with a download URL on this emulator.
pub(super) fn exported_file(state: &EmulatorState, headers: &HeaderMap, id: &str) -> Answer {
    if !state.exported.contains_key(id) {
        return Answer::error(
            StatusCode::NOT_FOUND,
            "EMU0005",
            format!("no exported file {id}"),
        );
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Answer::ok(json!({"status": "exported", "url": format!("http://{host}/_emulator/files/{id}")}))
}
