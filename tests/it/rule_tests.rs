//! `kairo test` without an event file: the rule tests beside the rules and
//! handlers, in text and JUnit XML.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `kairo test ARGS` in the repository; returns exit code and stdout.
fn kairo_test(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(kairo_bin())
        .current_dir(repo())
        .arg("test")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty() || output.status.success(), "{stderr}");
    (output.status.code(), stdout)
}

/// A copy of the repository's rules and handlers with their tests.
fn copy_of_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["scripts", "handlers"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn dirs(root: &Path) -> [String; 4] {
    [
        "--rules".into(),
        root.join("scripts").display().to_string(),
        "--handlers".into(),
        root.join("handlers").display().to_string(),
    ]
}

#[test]
fn every_example_rule_and_handler_has_tests_and_they_pass() {
    let (code, out) = kairo_test(&[]);
    assert_eq!(code, Some(0), "{out}");
    for dir in ["scripts", "handlers"] {
        let ext = if dir == "scripts" { "rhai" } else { "json" };
        for file in kairo::core::sources::files_with_extension(&repo().join(dir), ext).unwrap() {
            let stem = file.file_stem().unwrap().to_str().unwrap();
            let tests = format!("{dir}/{stem}.test.toml");
            assert!(
                out.contains(&tests),
                "{} has no tests ({tests}):\n{out}",
                file.display()
            );
        }
    }
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn a_broken_rule_fails_its_case_by_name_with_both_sides_and_the_trace() {
    let root = copy_of_examples();
    let rule = root.path().join("scripts/ota_finished_set_group.rhai");
    let source = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, source.replace("group-to-id", "group-typo")).unwrap();
    let args = dirs(root.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = kairo_test(&args);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAILED  a finished OTA moves the SIM to the new group and tells Slack"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains("group-to-id"))
        .expect("the expected action is shown");
    assert!(
        row.contains(" | set_group {\"groupId\":\"group-typo\""),
        "side by side: {row}"
    );
    assert!(
        out.contains("rule ota_finished_set_group     fired: set_group, slack"),
        "{out}"
    );
    assert!(
        out.contains("passed  an OTA that has only started does nothing"),
        "{out}"
    );

    let mut junit_args = args.clone();
    junit_args.extend(["--format", "junit"]);
    let (code, xml) = kairo_test(&junit_args);
    assert_eq!(code, Some(1));
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"1 expected action(s) missing, 1 unexpected\">"),
        "{xml}"
    );
}

#[test]
fn a_test_file_that_cannot_be_read_fails_naming_the_file_the_case_and_the_field() {
    let root = copy_of_examples();
    let file = root.path().join("scripts/imei_mismatch_suspend.test.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("nothing = true", "", 1)).unwrap();
    let args = dirs(root.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = kairo_test(&args);
    assert_eq!(code, Some(1), "{out}");
    let wanted = "imei_mismatch_suspend.test.toml: case \"other events leave the SIM alone\": expect: no [[case.expect]]";
    assert!(out.contains(wanted), "{out}");
}
