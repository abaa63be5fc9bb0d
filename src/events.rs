//! `kairo events export`: the recorded events received in a time range, as
//! JSON lines. Reads the store file directly when no router has it open, and
//! pages through the running router's `GET /v1/events` when one does.

use std::io::Write;

use anyhow::Context as _;
use kairo_router::recorded::RecordedLine;
use kairo_store::{Store, StoreError};

use crate::config::KairoConfig;
use crate::dlq::{authorized, router_base};

/// Events per page read from the store or the router.
const PAGE: usize = 1_000;

/// Writes the events received in `[since, until)` (RFC 3339; open ends when
/// absent) to `out`, oldest first; returns how many.
pub async fn export(
    config: &KairoConfig,
    since: Option<&str>,
    until: Option<&str>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<usize> {
    let parse =
        |t: Option<&str>, default| t.map_or(Ok(default), kairo_router::recorded::parse_time);
    let (since_ms, until_ms) = (parse(since, 0)?, parse(until, i64::MAX)?);
    let path = config.store.path.clone();
    let cache = config.store.cache_mib << 20;
    let opened = tokio::task::spawn_blocking(move || Store::open_with_cache(path, cache)).await?;
    match opened {
        Ok(store) => offline(&store, since_ms, until_ms, out),
        Err(StoreError::InUse(_)) => online(config, since, until, out).await,
        Err(error) => Err(error.into()),
    }
}

fn offline(store: &Store, since: i64, until: i64, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut after: Option<String> = None;
    let mut count = 0;
    loop {
        let page = store.recorded_events(since, until, after.as_deref(), PAGE)?;
        for stored in &page.events {
            serde_json::to_writer(&mut *out, &RecordedLine::of(stored))?;
            out.write_all(b"\n")?;
        }
        count += page.events.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(count),
        }
    }
}

async fn online(
    config: &KairoConfig,
    since: Option<&str>,
    until: Option<&str>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<usize> {
    let base = router_base(config)?;
    let http = reqwest::Client::new();
    let mut query: Vec<(&str, String)> = vec![("limit", PAGE.to_string())];
    query.extend(since.map(|s| ("since", s.to_string())));
    query.extend(until.map(|u| ("until", u.to_string())));
    let mut url = format!("{base}/v1/events");
    let mut count = 0;
    loop {
        let request = authorized(config, http.get(&url).query(&query));
        let response = request.send().await.with_context(|| {
            format!("the store is in use, and the running router at {base} did not answer")
        })?;
        let status = response.status();
        let next = next_link(response.headers());
        let body = response
            .text()
            .await
            .context("reading the router's answer")?;
        anyhow::ensure!(status.is_success(), "{base}: HTTP {status}: {body}");
        out.write_all(body.as_bytes())?;
        count += body.lines().filter(|l| !l.trim().is_empty()).count();
        match next {
            Some(path) => {
                url = format!("{base}{path}");
                query.clear();
            }
            None => return Ok(count),
        }
    }
}

/// The path of a `Link: <path>; rel="next"` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let (target, rel) = link.split_once(';')?;
    rel.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    })
}
