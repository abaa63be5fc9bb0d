//! The SORACOM watcher: sweeps the fleet with listSims every
//! `soracom.watch.interval_seconds`, compares each SIM with what it saw last
//! (kept in the store, so a restart neither misses nor repeats a change) and
//! turns the changes into events, accepted like the webhook's. The first
//! sight of a SIM is its baseline and makes no event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairo_core::{Clock, Event};
use kairo_ingest::EventSink;
use kairo_soracom::watch::{
    DailyBytes, SimState, WatchConfig, changes, parse_air_stats, traffic_events,
};
use kairo_soracom::{SoracomClient, SoracomError, SoracomErrorKind};
use kairo_store::{Batch, Store};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, RejectLabels};
use crate::writer::StoreWriter;

/// Where the watcher keeps each SIM's last state in the store.
const KEY_PREFIX: &str = "watch/sim/";
/// Where it keeps each IMSI's bytes per UTC day (yesterday and today).
const TRAFFIC_PREFIX: &str = "watch/traffic/";
/// Set once the first traffic sweep (the baseline) is kept.
const TRAFFIC_BASELINE: &str = "watch/meta/traffic-baseline";
/// When the last sweep through the SIMs started.
const LAST_SWEEP: &str = "watch/meta/last-sweep";
/// This month's fee as last seen.
const CHARGE: &str = "watch/meta/charge";
const DAY_MS: i64 = 86_400_000;

/// What the watcher saw last, loaded from the store on the first sweep.
#[derive(Default)]
struct Seen {
    sims: HashMap<String, SimState>,
    traffic: HashMap<String, DailyBytes>,
    /// Whether the traffic baseline is kept: after it, an IMSI without a
    /// record had no traffic, and all it has now is new.
    traffic_baseline: bool,
    /// When the last sweep through the SIMs started, epoch milliseconds.
    last_sweep: i64,
    /// This month's fee as last seen (getLatestBilling).
    charge: Option<serde_json::Value>,
}

/// The watcher's progress, for `GET /v1/sources`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchStatus {
    /// Whether it runs.
    pub enabled: bool,
    /// Seconds between sweeps.
    pub interval_seconds: u64,
    /// Sweeps finished.
    pub sweeps: u64,
    /// SIMs seen in the last finished sweep.
    pub sims: usize,
    /// Events produced so far.
    pub events: u64,
    /// When the last sweep finished, epoch milliseconds.
    pub last_sweep_at_ms: Option<i64>,
    /// How long ago the last sweep finished, seconds: how late a change can be seen.
    pub lag_seconds: Option<i64>,
    /// Sweeps that failed.
    pub errors: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// What the watcher needs from the router.
pub(crate) struct Watcher {
    pub(crate) client: Arc<SoracomClient>,
    pub(crate) config: WatchConfig,
    pub(crate) store: Arc<Store>,
    pub(crate) writer: StoreWriter,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: Arc<Mutex<WatchStatus>>,
}

/// A sweep that could not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SweepError {
    #[error("SORACOM API: {0}")]
    Api(#[from] SoracomError),
    #[error("store: {0}")]
    Store(#[from] kairo_store::StoreError),
    #[error("committing: {0}")]
    Commit(#[from] crate::writer::CommitError),
    #[error("accepting events: {0}")]
    Sink(#[from] kairo_ingest::SinkError),
}

impl Watcher {
    /// Sweeps until `cancel`; a failed sweep is logged and the next one tries again
    /// (after SORACOM's rate-limit wait, when it asked for one).
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let interval = Duration::from_secs(self.config.interval_seconds.max(1));
        let mut seen: Option<Seen> = None;
        loop {
            let started = tokio::time::Instant::now();
            let mut wait = interval;
            // A sweep stopped half-way is safe: what it accepted is durable,
            // and the next start sees the rest again (same ids).
            let swept = tokio::select! {
                swept = self.sweep(&mut seen) => swept,
                _ = cancel.cancelled() => return,
            };
            match swept {
                Ok(sims) => self.finished(sims),
                Err(error) => {
                    if let SweepError::Api(api) = &error
                        && api.kind == SoracomErrorKind::RateLimited
                    {
                        wait = wait.max(api.retry_after.unwrap_or(Duration::from_secs(60)));
                    }
                    self.failed(&error);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(started + wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// One pass through the fleet: SIMs a page at a time, then traffic;
    /// events first (durable once accepted), then the new states; returns
    /// the SIMs seen.
    async fn sweep(&self, seen: &mut Option<Seen>) -> Result<usize, SweepError> {
        let seen = match seen {
            Some(seen) => seen,
            None => seen.insert(Seen {
                sims: self.load(KEY_PREFIX)?,
                traffic: self.load(TRAFFIC_PREFIX)?,
                traffic_baseline: !self.store.sources(TRAFFIC_BASELINE)?.is_empty(),
                last_sweep: self.kept(LAST_SWEEP)?.and_then(|v| v.as_i64()).unwrap_or(0),
                charge: self.kept(CHARGE)?,
            }),
        };
        let operator = self.client.operator_id().await?;
        let started = self.clock.now_ms();
        let count = self
            .sweep_sims(&mut seen.sims, seen.last_sweep, &operator)
            .await?;
        self.sweep_traffic(seen, &operator).await?;
        self.sweep_charge(seen, &operator).await?;
        let last = (LAST_SWEEP.to_string(), started.to_string());
        self.keep(vec![last]).await?;
        seen.last_sweep = started;
        Ok(count)
    }

    /// listSims page by page: status, speed-class and session changes.
    async fn sweep_sims(
        &self,
        seen: &mut HashMap<String, SimState>,
        last_sweep: i64,
        operator: &str,
    ) -> Result<usize, SweepError> {
        let (mut after, mut count) = (None, 0);
        loop {
            let page = self
                .client
                .list_page("/v1/sims", self.config.page_size, after.as_deref());
            let (sims, next) = page.await?;
            let mut events = Vec::new();
            let mut states = Vec::new();
            for sim in sims.iter().filter(|s| self.config.in_scope(s)) {
                let Some((id, state)) = SimState::of(sim) else {
                    continue;
                };
                count += 1;
                if let Some(old) = seen.get(&id) {
                    // An unchanged SIM can still expire.
                    let (before, now) = ((old, last_sweep), (&state, self.clock.now_ms()));
                    events.extend(changes(&id, before, now, operator));
                    if *old == state {
                        continue;
                    }
                }
                states.push((id, state));
            }
            self.publish(events).await?;
            let sources = (states.iter())
                .map(|(id, s)| {
                    (
                        format!("{KEY_PREFIX}{id}"),
                        serde_json::to_string(s).expect("JSON"),
                    )
                })
                .collect();
            self.keep(sources).await?;
            seen.extend(states);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(count),
            }
            tokio::time::sleep(self.pause()).await;
        }
    }

    /// The pause between two listSims pages: the pages the last sweep took
    /// spread over half the interval, to stay within SORACOM's rate limits
    /// (none before a sweep has counted them).
    fn pause(&self) -> Duration {
        let sims = self.status.lock().unwrap_or_else(|e| e.into_inner()).sims;
        let pages = sims.div_ceil(self.config.page_size.max(1)) as u32;
        if pages == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(self.config.interval_seconds.max(1)) / (2 * pages)
    }

    /// Traffic of yesterday and today (UTC) for every IMSI, from one bulk
    /// export: the growth since the last sweep becomes `TrafficUsage` events.
    /// The first traffic sweep is the baseline.
    async fn sweep_traffic(&self, seen: &mut Seen, operator: &str) -> Result<(), SweepError> {
        let now = self.clock.now_ms();
        let from = (now / DAY_MS - 1) * DAY_MS / 1000;
        let csv = self.client.export_air_stats(from, now / 1000).await?;
        let sim_of: HashMap<&str, &str> = (seen.sims.iter())
            .filter_map(|(id, s)| Some((s.imsi.as_deref()?, id.as_str())))
            .collect();
        let mut events = Vec::new();
        let mut kept = Vec::new();
        for (imsi, days) in parse_air_stats(&csv) {
            let Some(sim) = sim_of.get(imsi.as_str()) else {
                continue; // not a SIM in scope
            };
            if seen.traffic.get(&imsi) == Some(&days) {
                continue;
            }
            if seen.traffic_baseline {
                let old = seen.traffic.get(&imsi).cloned().unwrap_or_default();
                events.extend(traffic_events(&imsi, Some(sim), &old, &days, operator, now));
            }
            kept.push((imsi, days));
        }
        self.publish(events).await?;
        let mut sources: Vec<(String, String)> = (kept.iter())
            .map(|(imsi, days)| {
                (
                    format!("{TRAFFIC_PREFIX}{imsi}"),
                    serde_json::to_string(days).expect("JSON"),
                )
            })
            .collect();
        if !seen.traffic_baseline {
            sources.push((TRAFFIC_BASELINE.into(), "true".into()));
        }
        self.keep(sources).await?;
        seen.traffic.extend(kept);
        seen.traffic_baseline = true;
        Ok(())
    }

    /// This month's fee so far: a `MonthlyCharge` event when it changed
    /// (the first sight is the baseline).
    async fn sweep_charge(&self, seen: &mut Seen, operator: &str) -> Result<(), SweepError> {
        let latest = self
            .client
            .call(reqwest::Method::GET, "/v1/bills/latest", None)
            .await?;
        if seen
            .charge
            .as_ref()
            .is_some_and(|old| old["amount"] == latest["amount"])
        {
            return Ok(());
        }
        if seen.charge.is_some() {
            let now = self.clock.now_ms();
            let event =
                kairo_soracom::watch::charge_event(seen.charge.as_ref(), &latest, operator, now);
            self.publish(event.into_iter().collect()).await?;
        }
        let kept = (CHARGE.to_string(), latest.to_string());
        self.keep(vec![kept]).await?;
        seen.charge = Some(latest);
        Ok(())
    }

    /// Keeps `sources` (key, JSON text) in the store.
    async fn keep(&self, sources: Vec<(String, String)>) -> Result<(), SweepError> {
        let batch = Batch {
            sources,
            ..Batch::default()
        };
        self.writer.commit(batch).await?;
        Ok(())
    }

    /// The JSON the store kept under `key`, if any.
    fn kept(&self, key: &str) -> Result<Option<serde_json::Value>, SweepError> {
        let found = self.store.sources(key)?.into_iter().find(|(k, _)| k == key);
        Ok(found.and_then(|(_, text)| serde_json::from_str(&text).ok()))
    }

    /// What the store kept from earlier sweeps under `prefix`.
    fn load<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<HashMap<String, T>, SweepError> {
        let kept = self.store.sources(prefix)?;
        Ok(kept
            .into_iter()
            .filter_map(|(key, text)| {
                let id = key.strip_prefix(prefix)?.to_string();
                Some((id, serde_json::from_str(&text).ok()?))
            })
            .collect())
    }

    async fn publish(&self, events: Vec<serde_json::Value>) -> Result<(), SweepError> {
        if events.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|e| Event::from_value(e).ok())
            .collect();
        let count = events.len() as u64;
        let duplicates = self.sink.accept(events).await?;
        let new = count - duplicates as u64;
        self.metrics.watch_events.inc_by(new);
        self.status.lock().unwrap_or_else(|e| e.into_inner()).events += new;
        tracing::info!(target: "kairo::watch", events = new, duplicates, "SORACOM changes turned into events");
        Ok(())
    }

    fn finished(&self, sims: usize) {
        let now = self.clock.now_ms();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.sweeps += 1;
        status.sims = sims;
        status.last_sweep_at_ms = Some(now);
        self.metrics
            .watch_sweeps
            .get_or_create(&RejectLabels { reason: "ok" })
            .inc();
        tracing::debug!(target: "kairo::watch", sims, sweeps = status.sweeps, "sweep finished");
    }

    fn failed(&self, error: &SweepError) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.errors += 1;
        status.last_error = Some(error.to_string());
        self.metrics
            .watch_sweeps
            .get_or_create(&RejectLabels { reason: "error" })
            .inc();
        tracing::warn!(target: "kairo::watch", %error, "sweep failed; trying again at the next interval");
    }
}

/// `status` as of `now_ms`, its lag filled in.
pub fn status_now(status: &Mutex<WatchStatus>, now_ms: i64) -> WatchStatus {
    let mut status = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    status.lag_seconds = status.last_sweep_at_ms.map(|at| (now_ms - at) / 1000);
    status
}
