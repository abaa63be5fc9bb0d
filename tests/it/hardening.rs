//! Faults and hostile input: clients that hang up, slow clients, huge bodies,
//! damaged files, hanging targets, panicking plugins.

use std::io::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Writes a whole `POST /v1/events` request on a raw socket and hangs up at once,
/// without reading the answer: the server's handler may be dropped at any await.
fn post_and_hang_up(addr: &str, body: &str) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: kairo\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Both).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_the_client_hangs_up_are_evaluated_at_once() {
    let slack = catcher().await;
    let rule = r#"if payload.n != () { slack(`n=${payload.n}`); }"#;
    let kairo = start_kairo(&[("notify.rhai", rule)], |c| {
        c.plugins.slack.webhook_url = Some(slack.url.clone());
    })
    .await;
    let addr = kairo.router.local_addr().to_string();
    let clients: Vec<_> = (0..40)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for r in 0..10 {
                    let events: Vec<Value> = (0..20)
                        .map(|i| json!({"id": format!("c{c}-r{r}-{i}"), "n": i}))
                        .collect();
                    post_and_hang_up(&addr, &serde_json::to_string(&events).unwrap());
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // Whatever was committed is evaluated while the router runs: nothing
    // stays in the inbox, and every one fired once. (Requests the server
    // was still reading when the clients finished land a moment later.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(20), kairo.router.idle())
        .await
        .expect("all work done");
    let status: Value = kairo.get_json("/v1/status").await;
    assert_eq!(status["inbox"], 0);
    let accepted = kairo.router.metrics().render();
    let count = metric(&accepted, "kairo_events_accepted_total");
    assert!(count > 0.0, "some events were committed: {accepted}");
    assert_eq!(
        slack.bodies().len() as f64,
        count,
        "every committed event was evaluated once"
    );
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A compiled-in action that panics whenever it runs.
struct Panics;

#[async_trait::async_trait]
impl kairo::plugin::Action for Panics {
    fn name(&self) -> &str {
        "explode"
    }

    async fn execute(
        &self,
        _request: &kairo::core::ActionRequest,
        _cx: &kairo::plugin::ActionContext,
    ) -> Result<kairo::plugin::ActionOutcome, kairo::plugin::ActionError> {
        panic!("boom inside a static plugin")
    }
}

#[tokio::test]
async fn a_static_plugin_panic_fails_the_attempt_permanently() {
    let rules = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("x.rhai"), r#"action("explode", #{});"#).unwrap();
    let router = kairo::Router::builder()
        .config(test_config(rules.path(), data.path()))
        .plugin(Panics)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/v1/events", router.local_addr());
    let answer = reqwest::Client::new()
        .post(url)
        .body(r#"{"id": "p1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    tokio::time::timeout(Duration::from_secs(10), router.idle())
        .await
        .expect("the router becomes idle after the panic");
    let letters = router.store().dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].error.contains("panicked"),
        "{}",
        letters[0].error
    );
    assert!(letters[0].error.contains("boom inside a static plugin"));
    let history = router.history();
    assert_eq!(history[0].attempts, 1, "a panic is not retried");
    assert_eq!(history[0].error_class.as_deref(), Some("permanent"));
    assert!(router.store().outbox().unwrap().is_empty());
    router.shutdown().await.unwrap();
}

/// A TCP server that accepts connections and never answers.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/never", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_does_not_stall_other_families() {
    let soracom = soracom(false).await;
    let (hole, _task) = black_hole().await;
    let rules = [
        (
            "hang.rhai",
            format!(r#"if payload.hang == true {{ webhook("{hole}", #{{n: payload.n}}); }}"#),
        ),
        ("ota.rhai", OTA_RULE.replace("slack(", "// slack(")),
    ];
    let rules: Vec<(&str, &str)> = rules.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let kairo = start_kairo(&rules, |c| {
        use_soracom(c, &soracom);
        c.dispatch.action_timeout_ms = 60_000;
    })
    .await;
    let hanging: Vec<Value> = (0..130).map(|n| json!({"hang": true, "n": n})).collect();
    let (status, _) = kairo.post(&serde_json::to_string(&hanging).unwrap()).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = kairo
        .post(&json!({"simId": SIM_1, "otaStatus": "finished"}).to_string())
        .await;
    assert_eq!(status, 202);
    eventually(
        "set_group to reach SORACOM while webhooks hang",
        Duration::from_secs(10),
        || {
            soracom
                .emulator
                .requests()
                .iter()
                .any(|r| r.path.ends_with("/set_group") && r.status == 200)
        },
    )
    .await;
}

#[tokio::test]
async fn identity_fields_are_exact_and_bounded_and_unbuildable_calls_fail_at_once() {
    let soracom = soracom(false).await;
    let rule = r#"if payload.target != () { set_group(payload.target, "group-to-id"); }"#;
    let kairo = start_kairo(&[("move.rhai", rule)], |c| use_soracom(c, &soracom)).await;

    let (status, body) = kairo.post(r#"{"simId": 89811000000000000123}"#).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("event.simId:"),
        "{body}"
    );
    let huge = "8".repeat(1_000_000);
    let (status, body) = kairo.post(&json!({"simId": huge}).to_string()).await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("event.simId:") && error.len() < 200,
        "{error:.300}"
    );

    // A rule may still build an id no URL can carry: one attempt, permanent, short error.
    let (status, _) = kairo
        .post(&json!({"target": "9".repeat(100_000)}).to_string())
        .await;
    assert_eq!(status, 202);
    kairo.router.idle().await;
    let history = kairo.router.history();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].attempts, history[0].succeeded), (1, false));
    assert_eq!(history[0].error_class.as_deref(), Some("permanent"));
    assert!(history[0].error.as_deref().unwrap().len() < 2_000);
}

#[tokio::test]
async fn a_damaged_store_is_named_and_never_panics_or_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kairo");
    {
        let kairo = start_kairo(&[], |c| c.store.path = store.clone()).await;
        let events: Vec<Value> = (0..300)
            .map(|i| json!({"id": i, "pad": "x".repeat(400)}))
            .collect();
        kairo.post(&serde_json::to_string(&events).unwrap()).await;
        kairo.router.shutdown().await.unwrap();
    }
    let config = dir.path().join("k.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[store]\npath = \"{}\"\n",
            free_port(),
            store.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let (code, _, stderr) = kairo_with_config(args, &config);
        (code, stderr)
    };
    let version = store.join("version");
    let good = std::fs::read(&version).unwrap();
    for damage in ["emptied", "lost"] {
        if damage == "lost" {
            std::fs::remove_file(&version).unwrap();
        } else {
            std::fs::write(&version, b"").unwrap();
        }
        let files = std::fs::read_dir(&store).unwrap().count();
        for args in [&["run"][..], &["dlq", "list"][..]] {
            let (code, stderr) = run(args);
            assert_eq!(code, Some(1), "{damage} {args:?}: {stderr}");
            assert!(stderr.contains(&store.display().to_string()), "{stderr}");
            assert!(stderr.contains("damaged"), "{damage} {args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(
                std::fs::read_dir(&store).unwrap().count(),
                files,
                "store left as it was"
            );
        }
    }
    std::fs::write(&version, good).unwrap();
    let (code, stderr) = run(&["dlq", "list"]);
    assert_eq!(code, Some(0), "repaired, it opens: {stderr}");
}

/// Reads from `stream` until the server closes it; fails past `limit`.
/// Returns what the server sent.
fn read_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> String {
    use std::io::Read as _;
    let start = std::time::Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
        }
        assert!(start.elapsed() < limit, "still open after {limit:?}");
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Writes `bytes` one at a time, `gap` apart, until done or the server hangs up.
fn trickle(mut stream: std::net::TcpStream, bytes: Vec<u8>, gap: Duration) {
    std::thread::spawn(move || {
        for byte in bytes {
            if stream.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_connections_are_bounded() {
    let kairo = start_kairo(&[], |c| {
        c.server.header_timeout_seconds = 1;
        c.server.body_timeout_seconds = 1;
        c.server.idle_timeout_seconds = 2;
        c.server.max_connections = 4;
    })
    .await;
    let addr = kairo.router.local_addr();
    let limit = Duration::from_secs(5);
    tokio::task::spawn_blocking(move || {
        let connect = || std::net::TcpStream::connect(addr).unwrap();
        // Sends nothing at all.
        read_until_closed(&mut connect(), limit);
        // Sends its headers at a few bytes a second.
        let mut slow_headers = connect();
        let request =
            b"POST /v1/events HTTP/1.1\r\nhost: kairo\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        trickle(
            slow_headers.try_clone().unwrap(),
            request,
            Duration::from_millis(200),
        );
        read_until_closed(&mut slow_headers, limit);
        // Sends its headers at once and its body at a few bytes a second.
        let mut slow_body = connect();
        slow_body
            .write_all(b"POST /v1/events HTTP/1.1\r\nhost: kairo\r\ncontent-length: 40\r\n\r\n")
            .unwrap();
        trickle(
            slow_body.try_clone().unwrap(),
            vec![b' '; 40],
            Duration::from_millis(200),
        );
        let answer = read_until_closed(&mut slow_body, limit);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        // Keeps a connection open after its answer, then goes quiet.
        let mut keep_alive = connect();
        keep_alive
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: kairo\r\n\r\n")
            .unwrap();
        let answer = read_until_closed(&mut keep_alive, limit);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Four silent connections take every slot: a fifth waits for one to close.
        let silent: Vec<_> = (0..4).map(|_| connect()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut fifth = connect();
        fifth
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: kairo\r\nconnection: close\r\n\r\n")
            .unwrap();
        fifth
            .set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut byte = [0u8; 1];
        use std::io::Read as _;
        assert!(
            fifth.read(&mut byte).is_err(),
            "no answer while every slot is taken"
        );
        let answer = read_until_closed(&mut fifth, limit);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "answered once the silent ones were cut: {answer}"
        );
        drop(silent);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_hostile_bodies_with_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = idle_process_config(dir.path(), port);
    let kairo = KairoProcess::start(dir.path(), &config, port);
    let url = format!("{}/v1/events", kairo.url);
    let http = reqwest::Client::new();
    // 100,000 empty events in 300 KB; and 1 MB bodies of 5,000 small events.
    let empties = std::sync::Arc::new(format!("[{}]", vec!["{}"; 100_000].join(",")));
    let batch = |round: usize, client: usize| {
        let events: Vec<Value> = (0..5_000)
            .map(|i| {
                json!({"id": format!("r{round}-c{client}-{i}"), "simId": "8981100000000000001",
                "payload": {"otaStatus": "started", "pad": "x".repeat(80)}})
            })
            .collect();
        serde_json::to_string(&events).unwrap()
    };
    let _idle: Vec<_> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..4 {
        let mut requests = Vec::new();
        for client in 0..10 {
            let (h, u, empties) = (http.clone(), url.clone(), empties.clone());
            requests.push(tokio::spawn(async move {
                h.post(&u)
                    .body(empties.as_str().to_owned())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
            let (http, url, body) = (http.clone(), url.clone(), batch(round, client));
            requests.push(tokio::spawn(async move {
                http.post(&url)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        for request in requests {
            let status = request
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}: {}", kairo.log()));
            *statuses.entry(status).or_default() += 1;
        }
    }
    let peak = kairo.peak_rss();
    eprintln!("peak RSS {} MiB, answers {statuses:?}", peak >> 20);
    assert!(
        statuses.get(&413) >= Some(&40),
        "every huge batch refused: {statuses:?}"
    );
    assert!(statuses.contains_key(&202), "{statuses:?}");
    assert!(
        statuses.keys().all(|s| [202, 413, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        peak < 300 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / (1024 * 1024)
    );
    assert_eq!(status_of(&format!("{}/healthz", kairo.url)).await, 200);
}

/// A small tmpfs of its own, unmounted on drop: a disk that can really fill up.
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub(crate) fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs failed: the disk-full test needs root (as `make test` runs in CI)"
        );
        Self { dir }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk with a file but for `spare` bytes; returns its path.
    pub(crate) fn fill(&self, spare: u64) -> std::path::PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(spare)).unwrap();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_not_ready_then_recovers_by_itself_without_repeats() {
    let disk = SmallDisk::mount("8m");
    let soracom = soracom(false).await;
    let store = disk.path().join("kairo");
    let rule = OTA_RULE.replace("slack(", "// slack(");
    let kairo = start_kairo(&[("ota.rhai", &rule)], |c| {
        use_soracom(c, &soracom);
        c.store.path = store.clone();
        c.dispatch.limits.get_mut("soracom").unwrap().per_second = None;
    })
    .await;
    let readyz = format!("{}/readyz", kairo.url);
    let ready = || status_of(&readyz);
    assert_eq!(ready().await, 200);
    let filler = disk.fill(1_500_000);
    let mut accepted = Vec::new();
    let mut refused = None;
    for round in 0..200 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                json!({"id": format!("full-{round}-{i}"), "simId": format!("sim-{round}-{i}"),
                "otaStatus": "finished", "pad": "x".repeat(2_000)})
            })
            .collect();
        let answer = kairo
            .http
            .post(format!("{}/v1/events", kairo.url))
            .json(&events)
            .send()
            .await
            .unwrap();
        match answer.status().as_u16() {
            202 => accepted.extend(
                events
                    .iter()
                    .map(|e| e["simId"].as_str().unwrap().to_string()),
            ),
            503 => {
                refused = Some(answer.headers().get("retry-after").cloned());
                break;
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
    eprintln!(
        "accepted {} events before the disk was full",
        accepted.len()
    );
    let retry_after = refused.expect("a full disk refuses events");
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(
        ready().await,
        503,
        "not ready while the store cannot commit"
    );
    assert_eq!(status_of(&format!("{}/healthz", kairo.url)).await, 200);

    std::fs::remove_file(filler).unwrap();
    eventually_async(
        "ready again once space is freed",
        Duration::from_secs(20),
        || async { ready().await == 200 },
    )
    .await;
    let (status, _) = kairo
        .post(&json!({"id": "after", "simId": "sim-after", "otaStatus": "finished"}).to_string())
        .await;
    assert_eq!(status, 202);
    accepted.push("sim-after".into());
    tokio::time::timeout(Duration::from_secs(60), kairo.router.idle())
        .await
        .expect("every accepted event evaluated and acted on");
    let mut calls = std::collections::BTreeMap::<String, usize>::new();
    for request in soracom.emulator.requests() {
        if let Some(sim) = request
            .path
            .strip_prefix("/v1/sims/")
            .and_then(|p| p.strip_suffix("/set_group"))
        {
            *calls.entry(sim.to_string()).or_default() += 1;
        }
    }
    for sim in &accepted {
        assert_eq!(calls.get(sim), Some(&1), "{sim}: exactly one set_group");
    }
    let status: Value = kairo.get_json("/v1/status").await;
    assert_eq!(status["inbox"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_records_cli_output_or_http_answers() {
    const SMTP_PASSWORD: &str = "smtp-Pa55word-9";
    const NATS_PASSWORD: &str = "nats-Pa55word-7";
    const SLACK_SECRET: &str = "T0SECRET/B0SECRET/slackSecretPath";
    const TOKEN: &str = "server-Token-5ecret";
    let soracom = soracom(false).await;
    let nats = nats_server_with(&["--user", "kairo", "--pass", NATS_PASSWORD]);
    let nats_url = nats
        .url
        .replace("nats://", &format!("nats://kairo:{NATS_PASSWORD}@"));
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let slack = format!("http://127.0.0.1:{closed}/services/{SLACK_SECRET}");
    let extra = format!(
        "[nats]\nurl = \"{nats_url}\"\n\
         [plugins.email]\nsmtp_url = \"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:{closed}\"\nfrom = \"k@example.com\"\n\
         [dispatch]\nmax_attempts = 2\nbackoff_initial_ms = 10\nbackoff_max_ms = 20\n"
    );
    let config = process_config(dir.path(), port, &soracom.url, &slack, &extra)
        .replace("level = \"info\"", "level = \"trace\"")
        .replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            &format!("listen = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\""),
        );
    std::fs::write(
        dir.path().join("scripts/all.rhai"),
        r#"slack("hello"); email("ops@example.com", "s", "b"); set_group(simId, "group-to-id");"#,
    )
    .unwrap();
    let secrets = [
        SMTP_PASSWORD,
        NATS_PASSWORD,
        SLACK_SECRET,
        TOKEN,
        kairo_soracom::emulator::DEFAULT_AUTH_KEY,
    ];
    let assert_clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    };

    let kairo = KairoProcess::start(dir.path(), &config, port);
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/v1/events", kairo.url))
        .bearer_auth(TOKEN)
        .body(json!({"id": "e1", "simId": SIM_1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let get = |path: &str| {
        let request = http.get(format!("{}{path}", kairo.url)).bearer_auth(TOKEN);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    eventually_async(
        "slack and email to be dead letters",
        Duration::from_secs(20),
        || async {
            get("/v1/dead-letters")
                .await
                .matches("\"kind\":\"action\"")
                .count()
                == 2
        },
    )
    .await;
    for path in ["/v1/dead-letters", "/v1/history", "/v1/status", "/metrics"] {
        assert_clean(path, &get(path).await);
    }
    let (_, listed, _) = kairo_with_config(&["dlq", "list"], &dir.path().join("kairo.toml"));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_clean("kairo dlq list", &listed);
    assert_clean("the trace-level log", &kairo.log());
    assert!(kairo.log().contains("TRACE"), "the log is at trace level");

    // A start that fails on the NATS password names the URL without it.
    drop(kairo);
    let wrong = config.replace(NATS_PASSWORD, "wrong-Pa55word-1");
    std::fs::write(dir.path().join("bad.toml"), &wrong).unwrap();
    let output = std::process::Command::new(kairo_bin())
        .args(["run", "--config"])
        .arg(dir.path().join("bad.toml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("wrong-Pa55word-1"), "{stderr}");
    assert!(stderr.contains("nats.url"), "{stderr}");
}
