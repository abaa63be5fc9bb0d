//! What Kairo knows about SIMs beyond the event in hand: which SIM an IMSI
//! belongs to and which group a SIM is in, learned from events and, for group
//! targets, looked up in the SORACOM API (`GET /v1/sims/{simId}`) when an event
//! does not say. Used to fill in events before the event handlers see them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairo_core::Event;
use kairo_soracom::SoracomClient;

/// How long a group looked up in the API (or a failed lookup) is trusted.
const LOOKUP_TTL: Duration = Duration::from_secs(600);

/// IMSI → SIM and SIM → group, learned and looked up.
pub struct Directory {
    imsi_to_sim: HashMap<String, String>,
    sim_to_group: HashMap<String, (Option<String>, Option<Instant>)>,
    client: Option<Arc<SoracomClient>>,
    runtime: tokio::runtime::Handle,
}

impl Directory {
    /// A directory that looks groups up through `client` (when it has credentials).
    pub fn new(client: Option<Arc<SoracomClient>>, runtime: tokio::runtime::Handle) -> Self {
        let client = client.filter(|c| c.config().missing_credentials().is_empty());
        Self {
            imsi_to_sim: HashMap::new(),
            sim_to_group: HashMap::new(),
            client,
            runtime,
        }
    }

    /// Remembers what `event` says about its SIM.
    pub fn learn(&mut self, event: &Event) {
        if let (Some(imsi), Some(sim)) = (&event.imsi, &event.sim_id) {
            self.imsi_to_sim.insert(imsi.clone(), sim.clone());
        }
        if let (Some(sim), Some(group)) = (&event.sim_id, &event.group_id) {
            self.sim_to_group
                .insert(sim.clone(), (Some(group.clone()), None));
        }
    }

    /// `event` with a missing `simId` (from its IMSI) and, when `need_group`,
    /// a missing `groupId` filled in. Runs on a blocking thread: an API lookup
    /// waits for its answer.
    pub fn enrich<'e>(&mut self, event: &'e Event, need_group: bool) -> Cow<'e, Event> {
        self.learn(event);
        let sim_id = match &event.sim_id {
            Some(sim) => Some(sim.clone()),
            None => event
                .imsi
                .as_ref()
                .and_then(|i| self.imsi_to_sim.get(i))
                .cloned(),
        };
        let group_id = match (&event.group_id, &sim_id) {
            (None, Some(sim)) if need_group => self.group_of(sim),
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

    fn group_of(&mut self, sim: &str) -> Option<String> {
        match self.sim_to_group.get(sim) {
            Some((group, None)) => return group.clone(),
            Some((group, Some(at))) if at.elapsed() < LOOKUP_TTL => return group.clone(),
            _ => {}
        }
        let client = self.client.clone()?;
        let answer = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.get_sim(sim)).await
        });
        let group = match answer {
            Ok(Ok(value)) => {
                if let Some(imsi) = value.get("imsi").and_then(|i| i.as_str()) {
                    self.imsi_to_sim.insert(imsi.to_string(), sim.to_string());
                }
                value
                    .get("groupId")
                    .and_then(|g| g.as_str())
                    .map(str::to_string)
            }
            Ok(Err(error)) => {
                tracing::warn!(sim, %error, "could not look up the SIM's group");
                None
            }
            Err(_) => {
                tracing::warn!(sim, "looking up the SIM's group timed out");
                None
            }
        };
        self.sim_to_group
            .insert(sim.to_string(), (group.clone(), Some(Instant::now())));
        group
    }
}
