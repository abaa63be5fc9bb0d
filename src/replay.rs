//! `kairo replay`: the plan of actions recorded events would give, or the
//! difference two rule versions make to it. Performs nothing.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use kairo_router::KairoConfig;
use kairo_router::dry_run::Replayer;
use kairo_router::plan::Plan;
use kairo_router::replay::{ActionPlan, Change, Difference, Planned, diff, replay};

/// Which rules and handlers to replay, and the version to compare with.
pub struct Versions<'a> {
    /// The rules replayed.
    pub rules: &'a Path,
    /// The handlers replayed.
    pub handlers: &'a Path,
    /// The rules of the version to compare with, if any.
    pub against: Option<&'a Path>,
    /// The handlers of that version (default: `handlers`).
    pub against_handlers: Option<&'a Path>,
}

/// Replays the events in `events_file`; returns what to print and whether
/// every rule and handler loaded and ran without error.
pub fn run(
    config: &KairoConfig,
    events_file: &Path,
    versions: &Versions<'_>,
    as_json: bool,
) -> anyhow::Result<(String, bool)> {
    let text = std::fs::read_to_string(events_file)
        .with_context(|| format!("{}: cannot read", events_file.display()))?;
    let (events, times): (Vec<_>, Vec<_>) = kairo_router::recorded::read_lines(&text)
        .with_context(|| format!("{}", events_file.display()))?
        .into_iter()
        .unzip();
    let events = (events.as_slice(), times.as_slice());
    let (new, mut problems) = plan_of(config, versions.rules, versions.handlers, events)?;
    let Some(against) = versions.against else {
        let mut out = String::new();
        for planned in &new.actions {
            let _ = writeln!(out, "{}", serde_json::to_string(planned)?);
        }
        return Ok((out, report(&problems)));
    };
    let against_handlers = versions.against_handlers.unwrap_or(versions.handlers);
    let (old, more) = plan_of(config, against, against_handlers, events)?;
    problems.extend(more);
    let differences = diff(&old.actions, &new.actions);
    let out = if as_json {
        let mut out = String::new();
        for difference in &differences {
            let _ = writeln!(out, "{}", serde_json::to_string(difference)?);
        }
        out
    } else {
        describe(&differences, new.events)
    };
    Ok((out, report(&problems)))
}

/// Prints `problems` to standard error; true when there were none.
fn report(problems: &[String]) -> bool {
    for problem in problems {
        eprintln!("{problem}");
    }
    problems.is_empty()
}

fn plan_of(
    config: &KairoConfig,
    rules: &Path,
    handlers: &Path,
    (events, times): (&[kairo_core::Event], &[i64]),
) -> anyhow::Result<(ActionPlan, Vec<String>)> {
    let plan = Plan::compile(config, rules, handlers, &[], reqwest::Client::new())?;
    let mut replayer = Replayer::new(&plan);
    let actions = replay(&mut replayer, events, times);
    let mut problems = plan.left_out();
    problems.extend(actions.errors.iter().cloned());
    Ok((actions, problems))
}

/// The differences for a person: grouped by rule, then a one-line summary.
pub fn describe(differences: &[Difference], events: usize) -> String {
    let mut out = String::new();
    let mut rule: Option<&str> = None;
    for d in differences {
        if rule != Some(d.rule.as_str()) {
            rule = Some(d.rule.as_str());
            let _ = writeln!(out, "rule {}", d.rule);
        }
        let action = |p: &Option<Planned>| {
            p.as_ref()
                .map(|p| format!("{} {} due {}", p.action, p.params, p.due_at))
                .unwrap_or_default()
        };
        let _ = match d.change {
            Change::Added => writeln!(out, "  added    {}  {}", d.event_id, action(&d.new)),
            Change::Removed => writeln!(out, "  removed  {}  {}", d.event_id, action(&d.old)),
            Change::Changed => writeln!(
                out,
                "  changed  {}  {}\n                -> {}",
                d.event_id,
                action(&d.old),
                action(&d.new)
            ),
        };
    }
    let count = |c: Change| differences.iter().filter(|d| d.change == c).count();
    let rules = {
        let mut names: Vec<&str> = differences.iter().map(|d| d.rule.as_str()).collect();
        names.dedup();
        names.len()
    };
    let _ = writeln!(
        out,
        "{} added, {} removed, {} changed, in {rules} rule(s), over {events} event(s)",
        count(Change::Added),
        count(Change::Removed),
        count(Change::Changed)
    );
    out
}
