//! SendMailToOperatorAction without hand configuration: the operator's
//! primary address comes from the SORACOM API; `kairo check` warns about what
//! a handler needs at run time, and `--strict` makes that an error.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn operator_mail_handler() -> serde_json::Value {
    json!({
        "name": "tell the operator", "handlerId": "op-mail", "status": "active",
        "targetOperatorId": "OP0000000000",
        "ruleConfig": {"type": "SimSubscriptionStatusRule",
            "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
        "actionConfigList": [{"type": "SendMailToOperatorAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "title": "OTA of ${simId}", "message": "finished"}}]
    })
}

#[tokio::test]
async fn mail_to_the_operator_goes_to_the_primary_address_the_api_gives() {
    let smtp = smtp_server();
    let soracom = soracom(false).await;
    let handlers = tempfile::tempdir().unwrap();
    std::fs::write(
        handlers.path().join("op.json"),
        operator_mail_handler().to_string(),
    )
    .unwrap();
    let dir = handlers.path().to_path_buf();
    let kairo = start_kairo(&[], |c| {
        use_soracom(c, &soracom);
        c.handlers.dir = dir;
        c.plugins.email.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port));
        c.plugins.email.from = Some("kairo@example.com".into());
    })
    .await;
    let event = |id: &str, sim: &str| {
        format!(
            r#"{{"id": "{id}", "eventType": "SubscriptionStatus", "simId": "{sim}", "operatorId": "OP0000000000", "payload": {{"otaStatus": "finished"}}}}"#
        )
    };
    kairo.post(&event("a", SIM_1)).await;
    kairo.post(&event("b", SIM_2)).await;
    kairo.router.idle().await;
    let history = kairo.router.history();
    assert!(history.iter().all(|h| h.succeeded), "{history:#?}");
    eventually("two mails", Duration::from_secs(10), || {
        smtp.messages().len() == 2
    })
    .await;
    let mails = smtp.messages().join("\n");
    let to_operator = mails
        .lines()
        .filter(|l| *l == "To: operator@example.com")
        .count();
    assert_eq!(to_operator, 2, "{mails}");
    assert!(
        mails.contains(&format!("Subject: OTA of {SIM_1}")),
        "{mails}"
    );
    let lookups = soracom.emulator.requests_to(
        "GET",
        "/v1/operators/OP0000000000/system_notifications/primary",
    );
    assert_eq!(lookups.len(), 1, "the address is read once and kept");
}

#[test]
fn check_passes_with_a_warning_and_fails_with_strict_when_run_time_needs_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("op.json");
    std::fs::write(&file, operator_mail_handler().to_string()).unwrap();
    let check = |strict: bool| {
        let mut command = std::process::Command::new(kairo_bin());
        command.arg("check").arg(&file).current_dir(dir.path());
        if strict {
            command.arg("--strict");
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = check(false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: handler op-mail (SendMailToOperatorAction): needs plugins.email.smtp_url"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("needs plugins.email.operator_address, or soracom.auth_key_id"),
        "{stderr}"
    );
    let (code, stderr) = check(true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("handler op-mail (SendMailToOperatorAction): needs plugins.email.smtp_url"),
        "{stderr}"
    );
}
