//! InvokeAWSLambdaAction: SigV4-signed Invoke, checked by botocore's signer.

use serde_json::{Value, json};

use crate::common::*;

const ACCESS_KEY: &str = "AKIDKAIROTEST";
const SECRET_KEY: &str = "kairo/secret+key";

fn lambda_handler(endpoint: &str, parameter1: &str) -> Value {
    json!({
        "name": "invoke on OTA", "handlerId": "lambda-ota", "status": "active", "targetSimId": SIM_1,
        "ruleConfig": {"type": "SimSubscriptionStatusRule",
            "properties": {"inactiveTimeoutDateConst": "NEVER", "targetOtaStatus": "finished"}},
        "actionConfigList": [{"type": "InvokeAWSLambdaAction", "properties": {
            "executionDateTimeConst": "IMMEDIATELY", "endpoint": endpoint,
            "functionName": "ota-hook:live", "credentialsId": "lab",
            "parameter1": parameter1, "parameter2": "${simId}"}}]
    })
}

async fn invoke(
    double: &LambdaDouble,
    secret: &str,
    parameter1: &str,
) -> (Kairo, tempfile::TempDir) {
    let handlers = tempfile::tempdir().unwrap();
    let handler = lambda_handler(&double.url, parameter1);
    std::fs::write(handlers.path().join("lambda.json"), handler.to_string()).unwrap();
    let dir = handlers.path().to_path_buf();
    let credentials = kairo_plugin_lambda::AwsCredentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: secret.into(),
        region: Some("ap-northeast-1".into()),
    };
    let kairo = start_kairo(&[], |c| {
        c.handlers.dir = dir;
        c.dispatch.max_attempts = 1;
        c.credentials.insert("lab".into(), credentials);
    })
    .await;
    let event = format!(
        r#"{{"id": "ota-1", "eventType": "SubscriptionStatus", "simId": "{SIM_1}", "payload": {{"otaStatus": "finished"}}}}"#
    );
    kairo.post(&event).await;
    kairo.router.idle().await;
    (kairo, handlers)
}

#[tokio::test]
async fn a_signed_invoke_reaches_the_function_with_its_parameters() {
    let double = LambdaDouble::start(ACCESS_KEY, SECRET_KEY, "ap-northeast-1");
    let (kairo, _handlers) = invoke(&double, SECRET_KEY, "ota-finished").await;
    let calls = double.calls().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["verified"], true, "{calls:#?}");
    assert_eq!(
        calls[0]["path"],
        "/2015-03-31/functions/ota-hook:live/invocations"
    );
    assert_eq!(calls[0]["invocationType"], "RequestResponse");
    assert_eq!(
        calls[0]["payload"],
        json!({"parameter1": "ota-finished", "parameter2": SIM_1})
    );
    let history = kairo.router.history();
    assert!(history[0].succeeded, "{history:#?}");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_independent_check_and_a_function_error_fails_the_action()
{
    let double = LambdaDouble::start(ACCESS_KEY, SECRET_KEY, "ap-northeast-1");
    let (kairo, _handlers) = invoke(&double, "not-the-secret", "x").await;
    let calls = double.calls().await;
    assert_eq!(calls[0]["verified"], false, "{calls:#?}");
    let history = kairo.router.history();
    assert!(!history[0].succeeded);
    assert!(
        history[0].error.as_deref().unwrap().contains("HTTP 403"),
        "{history:#?}"
    );
    let log = format!("{history:?}");
    assert!(
        !log.contains("not-the-secret"),
        "the secret stays out of the history"
    );

    let (kairo, _handlers) = invoke(&double, SECRET_KEY, "fail").await;
    let history = kairo.router.history();
    assert!(
        history[0]
            .error
            .as_deref()
            .unwrap()
            .contains("the function failed (Unhandled)"),
        "{history:#?}"
    );
}

#[test]
fn credentials_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lambda.json");
    std::fs::write(
        &file,
        lambda_handler("https://lambda.ap-northeast-1.amazonaws.com", "x").to_string(),
    )
    .unwrap();
    let check = |with_env: bool| {
        let mut command = std::process::Command::new(kairo_bin());
        command.arg("check").arg(&file).current_dir(dir.path());
        if with_env {
            command
                .env("KAIRO_CREDENTIALS__LAB__ACCESS_KEY_ID", ACCESS_KEY)
                .env("KAIRO_CREDENTIALS__LAB__SECRET_ACCESS_KEY", SECRET_KEY);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(check(false).contains("needs [credentials.lab]"));
    let with_env = check(true);
    assert!(!with_env.contains("credentials.lab"), "{with_env}");
    assert!(!with_env.contains(SECRET_KEY), "{with_env}");
}
