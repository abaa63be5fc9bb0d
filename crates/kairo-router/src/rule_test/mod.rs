//! Rule tests kept beside the rules: `NAME.test.toml` files in the rules and
//! handlers directories, each holding named cases (events on a virtual clock
//! and the actions they must give), run through the router's own pipeline
//! ([`crate::dry_run::Replayer`]).

mod file;
mod junit;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kairo_core::{ActionRequest, Event};
use serde_json::Value;

use crate::dry_run::Replayer;
use crate::plan::Plan;
use crate::trace::EventTrace;

pub use file::{Case, DEFAULT_START_MS, Expectation, TestFile, TestFileError};
pub use junit::junit_xml;

/// The extension test files end with.
pub const SUFFIX: &str = ".test.toml";

/// What one case gave.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// Expected actions and the actual ones that met them.
    pub matched: Vec<(Expectation, ActionRequest)>,
    /// Expected actions nothing met.
    pub missing: Vec<Expectation>,
    /// Actions asked for that no expectation lists.
    pub unexpected: Vec<ActionRequest>,
    /// Each event with its arrival time and why each rule did or did not act.
    pub traces: Vec<(Event, i64, EventTrace)>,
    /// Where each actual action's call is in its rule script
    /// (`scripts/x.rhai:3:5`), by the action's key.
    pub call_sites: std::collections::HashMap<String, String>,
}

impl CaseReport {
    /// True when every expected action came and nothing else did.
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// The events worth showing when it failed: those that gave an
    /// unexpected action or were named by a missing one; all when none is known.
    pub fn telling_events(&self) -> Vec<&(Event, i64, EventTrace)> {
        let named: Vec<&str> = (self.unexpected.iter().map(|r| r.event_id.as_str()))
            .chain(self.missing.iter().filter_map(|e| e.event.as_deref()))
            .collect();
        let telling: Vec<_> = (self.traces.iter())
            .filter(|(event, _, _)| named.contains(&event.id.as_str()))
            .collect();
        if telling.is_empty() {
            self.traces.iter().collect()
        } else {
            telling
        }
    }
}

/// What one test file gave: its cases, or why it could not run.
#[derive(Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Each case, in file order.
    pub cases: Vec<CaseReport>,
    /// Why the file could not be read, if it could not.
    pub error: Option<TestFileError>,
}

/// Every test file's outcome.
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// Files in directory order (rules, then handlers).
    pub files: Vec<FileReport>,
    /// Scripts and handlers that did not load (their tests fail).
    pub left_out: Vec<String>,
}

impl SuiteReport {
    /// Cases run, and those that failed (a file that cannot be read counts as one failure).
    pub fn counts(&self) -> (usize, usize) {
        let cases = self.files.iter().map(|f| f.cases.len().max(1)).sum();
        let failed = (self.files.iter())
            .map(|f| f.error.is_some() as usize + f.cases.iter().filter(|c| !c.passed()).count())
            .sum();
        (cases, failed)
    }

    /// True when every case passed and every script and handler loaded.
    pub fn passed(&self) -> bool {
        self.counts().1 == 0 && self.left_out.is_empty()
    }
}

/// The test files directly in `dir`, sorted.
pub fn test_files(dir: &Path) -> Vec<PathBuf> {
    kairo_core::sources::files_with_extension(dir, "toml")
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
        .collect()
}

/// Runs every test file in `plan`'s rules and handlers directories.
pub fn run_suite(plan: &Plan, rules_dir: &Path, handlers_dir: &Path) -> SuiteReport {
    let mut paths = test_files(rules_dir);
    if handlers_dir != rules_dir {
        paths.extend(test_files(handlers_dir));
    }
    let mut replayer = Replayer::new(plan);
    let files = paths
        .into_iter()
        .map(|path| match TestFile::read(&path) {
            Ok(file) => {
                let scope = file.rules.clone().or_else(|| namesake(plan, &path));
                let cases = (file.cases.iter())
                    .map(|case| run_case(&mut replayer, case, scope.as_deref()))
                    .collect();
                FileReport {
                    path,
                    cases,
                    error: None,
                }
            }
            Err(error) => FileReport {
                path,
                cases: Vec::new(),
                error: Some(error),
            },
        })
        .collect();
    SuiteReport {
        files,
        left_out: plan.left_out(),
    }
}

/// The rules a test file is about by its name: `NAME.test.toml` beside
/// `NAME.rhai` is about that rule, beside `NAME.json` about its handlers.
fn namesake(plan: &Plan, path: &Path) -> Option<Vec<String>> {
    let name = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    let dir = path.parent()?;
    if plan.rules.snapshot().get(name).is_some() && plan.rules.dir() == dir {
        return Some(vec![name.to_string()]);
    }
    let handler_file = dir.join(format!("{name}.json"));
    let ids: Vec<String> = (plan.handlers.listing().into_iter())
        .filter(|listed| listed.file == handler_file)
        .map(|listed| {
            format!(
                "handler:{}",
                kairo_core::shadow_id(&listed.id, listed.shadow)
            )
        })
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// Runs `case` from empty state; only the actions of the rules in `scope` (all when `None`) count.
pub fn run_case(replayer: &mut Replayer, case: &Case, scope: Option<&[String]>) -> CaseReport {
    replayer.restart();
    let mut actual = Vec::new();
    let mut traces = Vec::with_capacity(case.events.len());
    for (event, at) in &case.events {
        let evaluated = replayer.step(event, *at);
        traces.push((event.clone(), *at, replayer.explain(event, &evaluated)));
        actual.extend(
            (evaluated.requests.into_iter()).filter(|r| {
                scope.is_none_or(|rules| rules.iter().any(|rule| *rule == r.rule_id()))
            }),
        );
    }
    let arrival = |event_id: &str| {
        (case.events.iter())
            .find(|(event, _)| event.id == event_id)
            .map_or(i64::MIN, |(_, at)| *at)
    };
    let mut matched = Vec::new();
    let mut missing = Vec::new();
    for expected in &case.expect {
        let found = (actual.iter())
            .position(|request| meets(expected, request, arrival(&request.event_id)));
        match found {
            Some(i) => matched.push((expected.clone(), actual.remove(i))),
            None => missing.push(expected.clone()),
        }
    }
    let call_sites = (matched.iter().map(|(_, a)| a).chain(&actual))
        .filter_map(|request| Some((request.key(), call_site(replayer, request)?)))
        .collect();
    CaseReport {
        name: case.name.clone(),
        matched,
        missing,
        unexpected: actual,
        traces,
        call_sites,
    }
}

/// Where the rule script that asked for `request` calls its action
/// (every call site when it has several); `None` for handlers.
fn call_site(replayer: &Replayer, request: &ActionRequest) -> Option<String> {
    let rule = replayer.rules().get(&request.rule_id())?;
    let sites: Vec<String> = (kairo_script::call_sites(rule, &request.action).iter())
        .map(|(line, column)| format!("{line}:{column}"))
        .collect();
    (!sites.is_empty()).then(|| format!("{}:{}", rule.path.display(), sites.join(",")))
}

/// True when `request` (caused by an event that arrived at `arrived_ms`) is what `expected` describes.
fn meets(expected: &Expectation, request: &ActionRequest, arrived_ms: i64) -> bool {
    let due_ok = match (expected.due_ms, request.not_before_ms) {
        (Some(due), Some(actual)) => due == actual,
        (Some(due), None) => due == arrived_ms,
        (None, actual) => actual.is_none_or(|t| t <= arrived_ms),
    };
    expected.action == request.action
        && due_ok
        && expected.rule.as_ref().is_none_or(|r| *r == request.rule)
        && expected
            .event
            .as_ref()
            .is_none_or(|e| *e == request.event_id)
        && (expected.params.as_ref()).is_none_or(|p| contains(&request.params, p))
}

/// True when `actual` holds every key of `wanted` with the same value (nested objects likewise).
fn contains(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (Value::Object(actual), Value::Object(wanted)) => wanted
            .iter()
            .all(|(k, w)| actual.get(k).is_some_and(|a| contains(a, w))),
        (Value::Number(a), Value::Number(w)) => a.as_f64() == w.as_f64(),
        (a, w) => a == w,
    }
}

impl CaseReport {
    /// Why it failed, for a person: expected and actual actions side by
    /// side, then the trace of each event that tells.
    pub fn describe_failure(&self) -> String {
        let actual_cell = |a: &ActionRequest| actual_cell(a, self.call_sites.get(&a.key()));
        let mut rows: Vec<(String, String)> = (self.matched.iter())
            .map(|(e, a)| (expected_cell(e), actual_cell(a)))
            .collect();
        // A missing action sits beside an unexpected one of the same name:
        // the pair usually differs in a parameter or a time.
        let mut unexpected: Vec<&ActionRequest> = self.unexpected.iter().collect();
        for expected in &self.missing {
            let twin = unexpected.iter().position(|a| a.action == expected.action);
            let actual = twin.map_or("(nothing)".into(), |i| actual_cell(unexpected.remove(i)));
            rows.push((expected_cell(expected), actual));
        }
        rows.extend(
            unexpected
                .iter()
                .map(|a| ("(nothing)".into(), actual_cell(a))),
        );
        if rows.is_empty() {
            rows.push(("(nothing)".into(), "(nothing)".into()));
        }
        let width = rows
            .iter()
            .map(|(e, _)| e.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        let mut text = format!("  {:<width$} | actual\n", "expected");
        for (expected, actual) in &rows {
            let _ = writeln!(text, "  {expected:<width$} | {actual}");
        }
        for (event, at, trace) in self.telling_events() {
            let _ = writeln!(
                text,
                "  trace at {}:",
                kairo_core::handler::describe_time(*at)
            );
            for line in crate::trace::describe(event, trace).lines() {
                let _ = writeln!(text, "    {line}");
            }
        }
        text
    }
}

fn expected_cell(expected: &Expectation) -> String {
    let mut cell = expected.action.clone();
    if let Some(params) = &expected.params {
        let _ = write!(cell, " {params}");
    }
    if let Some(due) = expected.due_ms {
        let _ = write!(cell, " due {}", kairo_core::handler::describe_time(due));
    }
    for (what, value) in [("rule", &expected.rule), ("event", &expected.event)] {
        if let Some(value) = value {
            let _ = write!(cell, " {what} {value}");
        }
    }
    cell
}

fn actual_cell(request: &ActionRequest, call_site: Option<&String>) -> String {
    let mut cell = format!("{} {}", request.action, request.params);
    if let Some(due) = request.not_before_ms {
        let _ = write!(cell, " due {}", kairo_core::handler::describe_time(due));
    }
    let _ = write!(cell, " (rule {}, event {}", request.rule, request.event_id);
    if let Some(site) = call_site {
        let _ = write!(cell, ", at {site}");
    }
    cell.push(')');
    cell
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_matched_by_the_keys_the_test_gives() {
        let actual = json!({"simId": "s", "groupId": "g", "n": 2, "nested": {"a": 1, "b": 2}});
        assert!(contains(&actual, &json!({"groupId": "g"})));
        assert!(contains(&actual, &json!({"n": 2.0, "nested": {"b": 2}})));
        assert!(!contains(&actual, &json!({"groupId": "h"})));
        assert!(!contains(&actual, &json!({"other": 1})));
    }
}
