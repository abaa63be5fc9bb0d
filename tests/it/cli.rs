//! The `kairo` binary's commands.

use std::process::Command;

use crate::common::*;

fn kairo(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let output = Command::new(kairo_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_lists_every_broken_script_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(scripts.join("good.rhai"), OTA_RULE).unwrap();
    std::fs::write(scripts.join("bad.rhai"), "// comment\nif payload.x == {\n").unwrap();
    std::fs::write(scripts.join("typo.rhai"), "\n\nsuspend(simid);\n").unwrap();
    let (code, _, stderr) = kairo(&["check"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("scripts/bad.rhai:3:"), "{stderr}");
    assert!(stderr.contains("scripts/typo.rhai:3:9"), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn check_accepts_the_shipped_configuration_and_scripts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = kairo(&["check"], root);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("configuration valid"), "{stdout}");
}

#[test]
fn check_names_config_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(
        dir.path().join("k.toml"),
        "[dispatch]\n\nconcurrency = \"lots\"\n",
    )
    .unwrap();
    let (code, _, stderr) = kairo(&["check", "--config", "k.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("k.toml:3: dispatch.concurrency"),
        "{stderr}"
    );
}

#[test]
fn environment_overrides_the_file_and_is_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let output = Command::new(kairo_bin())
        .args(["check"])
        .current_dir(dir.path())
        .env("KAIRO_DISPATCH__MAX_ATTEMPTS", "zero")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("KAIRO_DISPATCH__MAX_ATTEMPTS"), "{stderr}");
}

#[test]
fn test_command_prints_action_requests_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(scripts.join("ota.rhai"), OTA_RULE).unwrap();
    std::fs::write(
        dir.path().join("events.json"),
        r#"[{"id": "a", "simId": "s1", "otaStatus": "finished"}, {"id": "b", "simId": "s2", "otaStatus": "started"}]"#,
    )
    .unwrap();
    let (code, stdout, stderr) = kairo(&["test", "events.json"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "set_group");
    assert_eq!(
        lines[0]["params"],
        serde_json::json!({"simId": "s1", "groupId": "group-to-id"})
    );
    assert_eq!(lines[0]["eventId"], "a");
    assert_eq!(lines[1]["action"], "slack");
}

#[test]
fn test_command_reports_bad_event_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("events.json"), "[{}, 3]").unwrap();
    let (code, _, stderr) = kairo(&["test", "events.json"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("events.json: events[1]: expected a JSON object, found a number"),
        "{stderr}"
    );
}

#[test]
fn test_harness_settings_stay_out_of_the_configuration_prefix() {
    // `KAIRO_*` variables are configuration: `kairo run` refuses unknown keys,
    // so a harness setting under that prefix would stop every router it starts.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let prefix = concat!("env::var(\"", "KAIRO_");
        assert!(
            !text.contains(prefix),
            "{} reads a KAIRO_ variable as a harness setting",
            path.display()
        );
    }
}

#[test]
fn check_refuses_a_malformed_smtp_url_without_printing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(
        dir.path().join("k.toml"),
        "[plugins.email]\nfrom = \"k@example.com\"\nsmtp_url = \"smtp://u:Hunter2pw@mail.example:port\"\n",
    )
    .unwrap();
    let (code, _, stderr) = kairo(&["check", "--config", "k.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("k.toml:3: plugins.email.smtp_url"),
        "{stderr}"
    );
    assert!(!stderr.contains("Hunter2pw"), "{stderr}");
}

#[test]
fn explain_says_why_each_rule_did_or_did_not_act_in_words_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::create_dir(dir.path().join("handlers")).unwrap();
    std::fs::write(scripts.join("ota.rhai"), OTA_RULE).unwrap();
    std::fs::write(scripts.join("broken.rhai"), "let x = 1 / 0;\n").unwrap();
    std::fs::write(
        dir.path().join("events.json"),
        r#"[{"id": "a", "simId": "s1", "otaStatus": "started"}, {"id": "b", "simId": "s1", "otaStatus": "finished"}]"#,
    )
    .unwrap();
    let (code, stdout, stderr) = kairo(&["explain", "events.json"], dir.path());
    assert_eq!(
        code, 0,
        "a rule error is an outcome, not a failure: {stderr}"
    );
    assert!(
        stdout.contains(r#"rule ota                        skipped: payload.otaStatus is "started", rule needs "finished""#),
        "{stdout}"
    );
    assert!(stdout.contains("fired: set_group, slack"), "{stdout}");
    assert!(
        stdout.contains("error: ") && stdout.contains("broken.rhai:1:"),
        "{stdout}"
    );
    let (code, stdout, _) = kairo(&["explain", "events.json", "--json"], dir.path());
    assert_eq!(code, 0);
    let traces: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(traces.len(), 2);
    let rules = traces[1]["trace"]["rules"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r["rule"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, vec![("broken", "error"), ("ota", "fired")]);
}

#[test]
fn check_suggests_the_function_or_variable_meant_and_runs_name_absent_fields() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(scripts.join("fn.rhai"), "\nsuspned(simId);\n").unwrap();
    std::fs::write(scripts.join("var.rhai"), "suspend(simid);\n").unwrap();
    let (code, _, stderr) = kairo(&["check"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "scripts/fn.rhai:2:1: `suspned` is not a function Kairo knows; did you mean `suspend`?"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("scripts/var.rhai:1:9: Undefined variable: simid; did you mean `simId`?"),
        "{stderr}"
    );

    std::fs::remove_file(scripts.join("fn.rhai")).unwrap();
    std::fs::write(
        scripts.join("var.rhai"),
        "if payload.location.lat > 1 { suspend(simId); }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("e.json"), r#"{"id": "e", "simId": "s"}"#).unwrap();
    let (_, _, stderr) = kairo(&["test", "e.json"], dir.path());
    assert!(
        stderr
            .contains("scripts/var.rhai:1:21: payload.location is absent (reading `lat` from it)"),
        "{stderr}"
    );
}

#[test]
fn script_output_names_its_rule_and_event_and_dry_runs_honour_the_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(scripts.join("say.rhai"), "print(`hello ${simId}`);\n").unwrap();
    std::fs::write(dir.path().join("e.json"), r#"{"id": "ev-7", "simId": "s"}"#).unwrap();
    let (code, _, stderr) = kairo(&["--log-format", "json", "test", "e.json"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let line: serde_json::Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON log line: {stderr}"));
    assert_eq!(line["message"], "hello s");
    assert_eq!(line["rule"], "say");
    assert_eq!(line["event_id"], "ev-7");
}

#[test]
fn check_validates_literal_arguments_of_positional_actions() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(
        scripts.join("lit.rhai"),
        "set_speed_class(simId, \"s1.turbo\");\nemail(\"ops-at-example\", \"s\", \"b\");\nset_speed_class(simId, \"s1.minimum\");\nemail(payload.to, \"s\", \"b\");\n",
    )
    .unwrap();
    let (code, _, stderr) = kairo(&["check"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("scripts/lit.rhai:1:1: set_speed_class(...): parameter `speedClass`: \"s1.turbo\" is not a SORACOM speed class"), "{stderr}");
    assert!(
        stderr.contains(
            "scripts/lit.rhai:2:1: email(...): parameter `to`: invalid address \"ops-at-example\""
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 error(s)"),
        "the valid and run-time calls pass: {stderr}"
    );
}

#[test]
fn version_names_the_source_revision_it_was_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = kairo(&["--version"], dir.path());
    assert_eq!(code, 0);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs in the checkout the tests are built from");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 12, "a revision from git: {head:?}");
    assert_eq!(
        stdout.trim(),
        format!("kairo {} ({head})", env!("CARGO_PKG_VERSION"))
    );
}
