//! `soracom(method, path, body)`: any SORACOM API operation from a rule.

use serde_json::json;

use crate::common::*;

const TAG_RULE: &str = r#"
if payload.otaStatus == "finished" {
    soracom("PUT", `/v1/sims/${simId}/tags`, [#{ tagName: "plan", tagValue: "x3" }]);
}
"#;

#[tokio::test]
async fn a_rule_calls_any_soracom_api_with_the_shared_client() {
    let soracom = soracom(true).await;
    let kairo = start_kairo(&[("tag.rhai", TAG_RULE)], |config| {
        use_soracom(config, &soracom)
    })
    .await;
    kairo
        .post(&format!(
            r#"{{"simId": "{SIM_1}", "otaStatus": "finished"}}"#
        ))
        .await;
    kairo.router.idle().await;
    let sim = soracom.emulator.sim(SIM_1).unwrap();
    assert_eq!(sim.tags.get("plan"), Some(&json!("x3")));
    let calls = soracom
        .emulator
        .requests_to("PUT", &format!("/v1/sims/{SIM_1}/tags"));
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].body,
        json!([{"tagName": "plan", "tagValue": "x3"}])
    );
    let history = kairo.router.history();
    assert!(history[0].succeeded, "{history:#?}");
    assert_eq!(history[0].request.action, "soracom");
}

#[test]
fn check_refuses_a_method_soracom_does_not_use_and_a_path_outside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("calls.rhai");
    std::fs::write(
        &rule,
        "soracom(\"PATCHY\", \"/v1/sims\");\nsoracom(\"GET\", \"sims\");\nsoracom(\"GET\", `/v1/sims/${simId}`);\n",
    )
    .unwrap();
    let output = std::process::Command::new(kairo_bin())
        .arg("check")
        .arg(&rule)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("calls.rhai:1:1: soracom(...): parameter `method`: \"PATCHY\""),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "calls.rhai:2:1: soracom(...): parameter `path`: \"sims\" must start with /v1/"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("calls.rhai:3"),
        "a templated path is checked at run time: {stderr}"
    );
}
