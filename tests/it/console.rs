//! The operator console in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), against a running router. Screenshots of each
//! page go to `$CARGO_TARGET_TMPDIR/console/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{catcher, eventually_async, free_port, start_kairo, wait_for_port};

/// chromedriver and a headless Chromium session with a profile directory of
/// its own; both end when dropped, whatever happened in the test.
struct Browser {
    client: Client,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Killing chromedriver leaves its Chromium processes behind: end
        // every process started with this session's profile directory.
        let _ = Command::new("pkill")
            .args(["-9", "-f", &self.profile.path().display().to_string()])
            .status();
    }
}

fn chromedriver() -> std::path::PathBuf {
    crate::common::find_tool("chromedriver", &["/usr/lib/chromium"]).unwrap_or_else(|| {
        panic!(
            "chromedriver not found: run `make test` (it installs Debian's chromium and \
             chromium-driver) or `apt-get install chromium chromium-driver`"
        )
    })
}

impl Browser {
    async fn start() -> Self {
        // The WebDriver client's TLS stack needs a crypto provider chosen
        // (chromedriver itself is plain HTTP on loopback).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new(chromedriver())
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        wait_for_port(port, Duration::from_secs(20));
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1200,900",
                            format!("--user-data-dir={}", profile.path().display())]}),
        );
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Self {
            client,
            driver,
            profile,
        }
    }

    /// Waits until the element at `css` exists and its text satisfies `ok`.
    async fn text_of(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
                && ok(&text)
            {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{css} never showed what was expected; page text: {}",
                self.client
                    .find(Locator::Css("body"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn gone(&self, css: &str) {
        let start = Instant::now();
        while self.client.find(Locator::Css(css)).await.is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{css} is still shown"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element at `css`, finding it again when the page's
    /// refresh replaced it in between (a stale element).
    async fn click(&self, css: &str) {
        let start = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && element.click().await.is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "could not click {css}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn an_operator_sees_counts_traces_and_retries_and_cancels_from_the_page() {
    let (refused, slow, ota) = (catcher().await, catcher().await, catcher().await);
    refused.fail_with(&[400]);
    slow.fail_with(&[503]);
    let hook = |target: &str, kind: &str, url: &str| {
        format!(
            r#"if payload.{target} == "{kind}" {{ webhook(#{{ url: "{url}", method: "POST", body: #{{ simId: simId }} }}); }}"#
        )
    };
    let rules = [
        ("refused.rhai", hook("kind", "refused", &refused.url)),
        ("later.rhai", hook("kind", "later", &slow.url)),
        ("ota.rhai", hook("otaStatus", "finished", &ota.url)),
    ];
    let rules: Vec<(&str, &str)> = rules.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let kairo = start_kairo(&rules, |c| {
        c.dispatch.backoff_initial_ms = 60_000;
        c.dispatch.backoff_max_ms = 60_000;
    })
    .await;
    kairo.post(r#"{"id": "ev-refused", "simId": "sim-1", "imsi": "440100000000001", "payload": {"kind": "refused"}}"#).await;
    kairo
        .post(r#"{"id": "ev-later", "simId": "sim-2", "payload": {"kind": "later"}}"#)
        .await;
    eventually_async(
        "a dead letter and a retrying action",
        Duration::from_secs(10),
        || {
            let http = kairo.http.clone();
            let url = format!("{}/v1/status", kairo.url);
            async move {
                let status: serde_json::Value =
                    http.get(url).send().await.unwrap().json().await.unwrap();
                status["deadLetters"] == 1 && status["outbox"] == 1
            }
        },
    )
    .await;

    let browser = Browser::start().await;
    browser.client.goto(&kairo.url).await.unwrap();
    browser.text_of("#deadLetters", |t| t == "1").await;
    browser.text_of("#outbox", |t| t == "1").await;
    browser.text_of("#ready", |t| t == "ready").await;
    browser
        .text_of("#version", |t| t.starts_with(env!("CARGO_PKG_VERSION")))
        .await;
    browser.screenshot("overview").await;

    // The posted event, found by its SIM; its trace names the rule that
    // fired and the one the index skipped, with why.
    browser.click("a[data-tab=events]").await;
    browser
        .text_of("tr[data-event=ev-refused]", |t| t.contains("sim-1"))
        .await;
    let query = browser.client.find(Locator::Css("#query")).await.unwrap();
    query.send_keys("440100000000001").await.unwrap();
    browser.click("#search button").await;
    browser.gone("tr[data-event=ev-later]").await;
    browser.click("tr[data-event=ev-refused]").await;
    let detail = browser
        .text_of("#eventDetail", |t| t.contains("Actions"))
        .await;
    assert!(detail.contains("refused fired"), "{detail}");
    assert!(detail.contains("ota skipped"), "{detail}");
    assert!(
        detail.contains("otaStatus"),
        "the reason it was skipped: {detail}"
    );
    assert!(detail.contains("dead"), "the action's outcome: {detail}");
    browser.screenshot("events").await;

    // Retry the dead letter: the target now answers 200.
    browser.click("a[data-tab=dead]").await;
    browser
        .text_of("#deadTable tbody", |t| t.contains("webhook"))
        .await;
    browser.screenshot("dead-letters").await;
    browser.click("#deadTable tbody button:not(.danger)").await;
    browser
        .text_of("#deadTable tbody", |t| t.contains("Nothing here"))
        .await;
    crate::common::eventually(
        "the retried action to be attempted",
        Duration::from_secs(10),
        || refused.requests().len() == 2,
    )
    .await;

    // Cancel the retrying action.
    browser.click("a[data-tab=schedule]").await;
    browser
        .text_of("#scheduleTable tbody", |t| t.contains("retrying"))
        .await;
    browser.screenshot("schedule").await;
    browser
        .click("tr[data-key='ev-later/later/0'] button")
        .await;
    browser
        .text_of("#scheduleTable tbody", |t| t.contains("Nothing here"))
        .await;
    let history = kairo.router.history();
    let cancelled = history
        .iter()
        .find(|h| h.request.event_id == "ev-later")
        .unwrap();
    assert_eq!(cancelled.status, kairo_store::HistoryStatus::Cancelled);

    // Rules with their numbers and source.
    browser.click("a[data-tab=rules]").await;
    browser.click("tr[data-rule=refused]").await;
    let source = browser
        .text_of("#ruleSource pre", |t| t.contains("webhook("))
        .await;
    assert!(source.contains("payload.kind"), "{source}");
    browser.screenshot("rules").await;

    // A phone's width.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.click("a[data-tab=overview]").await;
    browser.text_of("#eventsTotal", |t| t == "2").await;
    browser.screenshot("phone-overview").await;
}

#[tokio::test]
async fn with_a_token_the_page_asks_for_it_and_keeps_it_in_memory_only() {
    let kairo = start_kairo(&[], |c| c.server.token = Some("s3cret-token".into())).await;
    let browser = Browser::start().await;
    browser.client.goto(&kairo.url).await.unwrap();
    browser
        .text_of("#login", |t| t.contains("bearer token"))
        .await;
    browser.screenshot("login").await;
    let field = browser.client.find(Locator::Css("#token")).await.unwrap();
    field.send_keys("s3cret-token").await.unwrap();
    browser.click("#login button").await;
    browser.text_of("#inbox", |t| t == "0").await;
    let stored = browser
        .client
        .execute(
            "return JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage), document.cookie])",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        json!("[[],[],\"\"]"),
        "nothing stored in the browser"
    );
}
