//! What Kairo knows about SIMs beyond the event in hand: which SIM an IMSI
//! belongs to and which group a SIM is in, learned from events and, for group
//! targets, looked up in the SORACOM API (`GET /v1/sims/{simId}`) when an event
//! does not say. Used to fill in events before the event handlers see them.
//!
//! Lookups use the SORACOM actions' client (one session) and their gate (one
//! concurrency and rate budget, paused together on 429). A batch's lookups
//! run together, before its evaluation, within one deadline; a SIM whose
//! group could not be learned is evaluated without it.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairo_core::Event;
use kairo_soracom::SoracomClient;

use crate::limits::Gate;

/// How long a group looked up in the API is trusted.
const LOOKUP_TTL: Duration = Duration::from_secs(600);
/// How long a failed lookup is remembered before the SIM is looked up again.
const FAILED_TTL: Duration = Duration::from_secs(60);
/// The longest a batch's lookups may hold up its evaluation.
const BATCH_DEADLINE: Duration = Duration::from_secs(5);

/// What is known of a SIM's group.
enum Known {
    /// An event named it.
    Told(String),
    /// The API answered (a SIM may be in no group) at that time.
    Found(Option<String>, Instant),
    /// The lookup failed at that time.
    Failed(Instant),
}

/// How a directory reaches the SORACOM API.
struct Lookups {
    client: Arc<SoracomClient>,
    gate: Arc<Gate>,
    runtime: tokio::runtime::Handle,
}

/// IMSI → SIM and SIM → group, learned and looked up.
#[derive(Default)]
pub struct Directory {
    imsi_to_sim: HashMap<String, String>,
    sim_to_group: HashMap<String, Known>,
    lookups: Option<Lookups>,
}

impl Directory {
    /// A directory that looks groups up through `client` (when it has
    /// credentials), each lookup admitted by `gate`.
    pub fn new(
        client: Arc<SoracomClient>,
        gate: Arc<Gate>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let lookups = client
            .config()
            .missing_credentials()
            .is_empty()
            .then_some(Lookups {
                client,
                gate,
                runtime,
            });
        Self {
            lookups,
            ..Self::default()
        }
    }

    /// A directory that only learns from events (dry runs: no network).
    pub fn offline() -> Self {
        Self::default()
    }

    /// Remembers what `event` says about its SIM.
    pub fn learn(&mut self, event: &Event) {
        if let (Some(imsi), Some(sim)) = (&event.imsi, &event.sim_id) {
            self.imsi_to_sim.insert(imsi.clone(), sim.clone());
        }
        if let (Some(sim), Some(group)) = (&event.sim_id, &event.group_id) {
            self.sim_to_group
                .insert(sim.clone(), Known::Told(group.clone()));
        }
    }

    /// `events`, in order, each with a missing `simId` (from its IMSI) and,
    /// when `need_group`, a missing `groupId` filled in. Runs on a blocking
    /// thread: the batch's lookups are awaited, together, first.
    pub fn enrich_batch<'e>(
        &mut self,
        events: &'e [Event],
        need_group: bool,
    ) -> Vec<Cow<'e, Event>> {
        if need_group {
            self.look_up(&self.unknown_groups(events));
        }
        events.iter().map(|e| self.enrich(e, need_group)).collect()
    }

    /// `event` with what is known filled in; no lookup.
    fn enrich<'e>(&mut self, event: &'e Event, need_group: bool) -> Cow<'e, Event> {
        self.learn(event);
        let sim_id = event.sim_id.clone().or_else(|| self.sim_of(event));
        let group_id = match (&event.group_id, &sim_id) {
            (None, Some(sim)) if need_group => self.known_group(sim),
            _ => None,
        };
        if (sim_id == event.sim_id) && group_id.is_none() {
            return Cow::Borrowed(event);
        }
        let mut enriched = event.clone();
        enriched.sim_id = sim_id;
        if group_id.is_some() {
            enriched.group_id = group_id;
        }
        Cow::Owned(enriched)
    }

    fn sim_of(&self, event: &Event) -> Option<String> {
        event
            .imsi
            .as_ref()
            .and_then(|i| self.imsi_to_sim.get(i))
            .cloned()
    }

    /// The group known for `sim`: learned from an event, or looked up recently enough.
    fn known_group(&self, sim: &str) -> Option<String> {
        match self.sim_to_group.get(sim)? {
            Known::Told(group) => Some(group.clone()),
            Known::Found(group, at) if at.elapsed() < LOOKUP_TTL => group.clone(),
            _ => None,
        }
    }

    /// The SIMs of `events` whose group neither the events (up to each one)
    /// nor a recent lookup tells.
    fn unknown_groups(&self, events: &[Event]) -> BTreeSet<String> {
        let mut told = BTreeSet::new();
        let mut unknown = BTreeSet::new();
        for event in events {
            let Some(sim) = event.sim_id.clone().or_else(|| self.sim_of(event)) else {
                continue;
            };
            if event.group_id.is_some() {
                told.insert(sim);
            } else if !told.contains(&sim) && !self.is_known(&sim) {
                unknown.insert(sim);
            }
        }
        unknown
    }

    fn is_known(&self, sim: &str) -> bool {
        match self.sim_to_group.get(sim) {
            Some(Known::Told(_)) => true,
            Some(Known::Found(_, at)) => at.elapsed() < LOOKUP_TTL,
            Some(Known::Failed(at)) => at.elapsed() < FAILED_TTL,
            None => false,
        }
    }

    /// Looks `sims` up together, within [`BATCH_DEADLINE`], and remembers the answers.
    fn look_up(&mut self, sims: &BTreeSet<String>) {
        let Some(lookups) = self.lookups.as_ref().filter(|_| !sims.is_empty()) else {
            return;
        };
        let (client, gate) = (lookups.client.clone(), lookups.gate.clone());
        let answers: Vec<(String, Option<serde_json::Value>)> = lookups.runtime.block_on(async {
            let lookups = sims.iter().map(|sim| {
                let (client, gate) = (client.clone(), gate.clone());
                async move {
                    let lookup = async {
                        let _permit = gate.acquire().await;
                        client.get_sim(sim).await
                    };
                    match tokio::time::timeout(BATCH_DEADLINE, lookup).await {
                        Ok(Ok(value)) => (sim.clone(), Some(value)),
                        Ok(Err(error)) => {
                            tracing::warn!(sim, %error, "could not look up the SIM's group");
                            (sim.clone(), None)
                        }
                        Err(_) => {
                            tracing::warn!(sim, "looking up the SIM's group took too long");
                            (sim.clone(), None)
                        }
                    }
                }
            });
            futures::future::join_all(lookups).await
        });
        let now = Instant::now();
        for (sim, answer) in answers {
            let text = |key: &str| {
                answer
                    .as_ref()
                    .and_then(|v| v.get(key))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            if let Some(imsi) = text("imsi") {
                self.imsi_to_sim.insert(imsi, sim.clone());
            }
            let known = match answer {
                Some(_) => Known::Found(text("groupId"), now),
                None => Known::Failed(now),
            };
            self.sim_to_group.insert(sim, known);
        }
    }
}
