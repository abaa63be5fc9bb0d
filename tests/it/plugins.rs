//! Dynamic plugins loaded with libloading: the example plugin, its failure
//! modes, load errors, configuration sections, `kairo check` and `kairo plugins`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A built cdylib next to the `kairo` binary; `make test` builds them first.
fn library(crate_name: &str) -> PathBuf {
    let file = format!("lib{crate_name}.{}", std::env::consts::DLL_EXTENSION);
    let path = kairo_bin().parent().unwrap().join(&file);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p {}` (`make test` does)",
        path.display(),
        crate_name.replace('_', "-")
    );
    path
}

/// A plugin directory holding `files` (copied under their new names).
fn plugin_dir(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (source, name) in files {
        std::fs::copy(source, dir.path().join(name)).unwrap();
    }
    dir
}

fn example() -> PathBuf {
    library("kairo_example_dynamic")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn dynamic_plugin_runs_by_action_and_by_its_own_name() {
    let plugins = plugin_dir(&[(&example(), "libaudit.so")]);
    let out = plugins.path().join("audit.jsonl");
    let rule =
        r#"action("audit_log", #{ note: "generic" }); audit_log(#{ note: `named ${simId}` });"#;
    let kairo = start_kairo(&[("audit.rhai", rule)], |c| {
        c.plugins.dir = Some(plugins.path().to_path_buf());
        c.plugins
            .sections
            .insert("audit_log".into(), json!({"path": out}));
    })
    .await;
    kairo.post(r#"{"id": "e1", "simId": "s1"}"#).await;
    kairo.router.idle().await;
    let mut notes: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["note"].as_str().unwrap().to_string())
        .collect();
    notes.sort();
    assert_eq!(notes, vec!["generic", "named s1"]);
    let history = kairo.router.history();
    assert!(history.iter().all(|h| h.succeeded), "{history:?}");
    assert!(history.iter().all(|h| h.detail["written"] == json!(out)));
}

#[tokio::test]
async fn a_panicking_plugin_fails_its_action_and_the_router_stays_up() {
    let plugins = plugin_dir(&[(&example(), "libaudit.so")]);
    let out = plugins.path().join("audit.jsonl");
    let rule = r#"audit_log(#{ simulate: "panic" }); audit_log(#{ note: "after" });"#;
    let kairo = start_kairo(&[("audit.rhai", rule)], |c| {
        c.plugins.dir = Some(plugins.path().to_path_buf());
        c.plugins
            .sections
            .insert("audit_log".into(), json!({"path": out}));
    })
    .await;
    kairo.post(r#"{"id": "p1"}"#).await;
    kairo.router.idle().await;
    let history = kairo.router.history();
    let panicked = history.iter().find(|h| h.request.index == 0).unwrap();
    assert!(!panicked.succeeded);
    assert_eq!(panicked.attempts, 1, "a panic is permanent");
    assert!(
        panicked
            .error
            .as_deref()
            .unwrap()
            .contains("plugin panicked: simulated panic for event p1"),
        "{panicked:?}"
    );
    assert_eq!(lines(&out).len(), 1, "the next action still ran");
    let health = kairo
        .http
        .get(format!("{}/healthz", kairo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_hanging_plugin_is_cut_off_at_its_deadline() {
    let plugins = plugin_dir(&[(&example(), "libaudit.so")]);
    let kairo = start_kairo(
        &[("audit.rhai", r#"audit_log(#{ simulate: "hang" });"#)],
        |c| {
            c.plugins.dir = Some(plugins.path().to_path_buf());
            c.plugins.sections.insert(
                "audit_log".into(),
                json!({"path": plugins.path().join("a.jsonl")}),
            );
            c.dispatch.action_timeout_ms = 300;
            c.dispatch.max_attempts = 1;
        },
    )
    .await;
    let started = Instant::now();
    kairo.post(r#"{"id": "h1"}"#).await;
    kairo.router.idle().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not held for the plugin's minute"
    );
    let record = &kairo.router.history()[0];
    assert!(!record.succeeded);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("did not finish before its deadline"),
        "{record:?}"
    );
}

async fn start_error(configure: impl FnOnce(&mut kairo::KairoConfig)) -> String {
    let rules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(rules.path(), data.path());
    configure(&mut config);
    match kairo::Router::builder().config(config).start().await {
        Ok(_) => panic!("the router started"),
        Err(error) => format!("{error:#}"),
    }
}

fn system_library_without_kairo_symbols() -> PathBuf {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib64/libm.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("a system libm.so.6 to stand for a library without Kairo's symbols")
}

#[tokio::test]
async fn load_errors_name_the_file_and_the_reason() {
    let old = library("kairo_fixture_old_abi");
    let plugins = plugin_dir(&[(&old, "libold.so")]);
    let error = start_error(|c| c.plugins.dir = Some(plugins.path().to_path_buf())).await;
    assert!(
        error.contains("libold.so: plugin ABI version 0, but this Kairo supports version 1"),
        "{error}"
    );

    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(
        plugins.path().join("libjunk.so"),
        b"this is not an ELF file",
    )
    .unwrap();
    let error = start_error(|c| c.plugins.dir = Some(plugins.path().to_path_buf())).await;
    assert!(
        error.contains("libjunk.so: not a loadable plugin library"),
        "{error}"
    );

    let plugins = plugin_dir(&[(&system_library_without_kairo_symbols(), "libmath.so")]);
    let error = start_error(|c| c.plugins.dir = Some(plugins.path().to_path_buf())).await;
    assert!(
        error.contains("libmath.so: missing symbol `kairo_plugin_abi_version`"),
        "{error}"
    );
}

#[tokio::test]
async fn plugin_sections_are_checked_at_start() {
    let plugins = plugin_dir(&[(&example(), "libaudit.so")]);
    let error = start_error(|c| {
        c.plugins.dir = Some(plugins.path().to_path_buf());
        c.plugins
            .sections
            .insert("audit_log".into(), json!({"path": 3}));
    })
    .await;
    assert!(
        error.contains("plugins.audit_log: `path`: must be a string"),
        "{error}"
    );

    let error = start_error(|c| {
        c.plugins.sections.insert("nope".into(), json!({"x": 1}));
    })
    .await;
    assert!(
        error.contains("plugins.nope: no plugin named `nope` is loaded"),
        "{error}"
    );
}

#[test]
fn check_validates_literal_plugin_parameters_and_plugins_lists_origins() {
    let plugins = plugin_dir(&[(&example(), "libaudit.so")]);
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(
        scripts.join("audit.rhai"),
        "audit_log(#{ note: \"ok\" });\naudit_log(#{ simulate: \"explode\" });\naction(\"nope\", #{ a: 1 });\nset_group(simId, \"g\");\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("kairo.toml"),
        format!(
            "[plugins]\ndir = \"{}\"\n[plugins.audit_log]\npath = \"{}\"\n",
            plugins.path().display(),
            dir.path().join("a.jsonl").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(kairo_bin())
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&["check", "--config", "kairo.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("scripts/audit.rhai:2:1: audit_log(...): parameter `simulate`: must be"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("scripts/audit.rhai:3:1: action(\"nope\"): no plugin of that name is loaded"),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");

    let (code, stdout, stderr) = run(&["plugins", "--config", "kairo.toml", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let infos: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let audit = infos.iter().find(|i| i["name"] == "audit_log").unwrap();
    assert_eq!(audit["origin"]["kind"], "dynamic");
    assert!(
        audit["origin"]["path"]
            .as_str()
            .unwrap()
            .ends_with("libaudit.so")
    );
    assert_eq!(audit["version"], "0.3.1");
    assert_eq!(audit["abiVersion"], 1);
    let set_group = infos.iter().find(|i| i["name"] == "set_group").unwrap();
    assert_eq!(set_group["origin"]["kind"], "builtin");
}

/// Starts a router watching an empty plugin directory, with a rule calling
/// `audit_log` into `audit.jsonl` there; checks nothing is called yet.
async fn watching_plugins() -> (tempfile::TempDir, PathBuf, Kairo) {
    let plugins = tempfile::tempdir().unwrap();
    let out = plugins.path().join("audit.jsonl");
    let rule = format!(
        r#"audit_log(#{{ note: `added ${{event.id}}`, path: "{}" }});"#,
        out.display()
    );
    let dir = plugins.path().to_path_buf();
    let kairo = start_kairo(&[("audit.rhai", &rule)], |c| {
        c.rules.watch = true;
        c.plugins.dir = Some(dir);
    })
    .await;
    kairo.post(r#"{"id": "before"}"#).await;
    kairo.router.idle().await;
    assert!(lines(&out).is_empty(), "no such function yet");
    (plugins, out, kairo)
}

/// Posts events until the rule's `audit_log` call lands in `out` (10 s at most).
async fn audited(kairo: &Kairo, out: &Path) -> bool {
    for n in 0..200 {
        kairo.post(&format!(r#"{{"id": "after-{n}"}}"#)).await;
        kairo.router.idle().await;
        if !lines(out).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_plugin_dropped_into_the_directory_is_loaded_and_callable_by_name() {
    let (plugins, out, kairo) = watching_plugins().await;
    std::fs::copy(example(), plugins.path().join("libaudit.so")).unwrap();
    assert!(
        audited(&kairo, &out).await,
        "the plugin copied into the directory was loaded"
    );
    assert!(
        lines(&out)[0]["note"]
            .as_str()
            .unwrap()
            .starts_with("added after-")
    );
}

#[tokio::test]
async fn a_broken_library_beside_a_good_one_does_not_hold_the_good_one_back() {
    let (plugins, out, kairo) = watching_plugins().await;
    std::fs::write(plugins.path().join("libbroken.so"), b"not a library").unwrap();
    std::fs::copy(example(), plugins.path().join("libaudit.so")).unwrap();
    assert!(
        audited(&kairo, &out).await,
        "the good library loaded although another one in the directory is broken"
    );
}
