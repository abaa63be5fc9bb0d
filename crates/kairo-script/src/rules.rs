//! Compiled rule scripts and the hot-reloadable store that holds them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kairo_core::{ActionRequest, Event, RuleIndex};
use rhai::{AST, Dynamic, Engine, Scope};

use crate::access::Access;
use crate::capture::capturing;

/// Events in a batch from which [`RuleSet::evaluate_batch`] uses all cores.
const PARALLEL_FROM: usize = 64;

/// Variables every rule sees, in this order.
const VARIABLES: [&str; 5] = ["event", "payload", "imsi", "simId", "eventType"];

/// A rule script that failed to load: which file, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The script file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScriptError {}

/// A rule that failed while running against an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// The event's id.
    pub event_id: String,
    /// What went wrong, with the script position.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} on event {}: {}",
            self.rule, self.event_id, self.message
        )
    }
}

/// The file-name suffix (before `.rhai`) of a shadow rule.
pub use kairo_core::SHADOW_SUFFIX;

/// One compiled rule script.
#[derive(Debug)]
pub struct Rule {
    /// The rule's name: the file stem, without `.shadow` for a shadow rule.
    pub name: String,
    /// What tells it apart from every other rule: the file stem (a shadow
    /// rule's ends in `.shadow`, so it can run beside the rule it would replace).
    pub id: String,
    /// Whether it runs in shadow: its requests are recorded, never performed.
    pub shadow: bool,
    /// The file it came from.
    pub path: PathBuf,
    source: String,
    ast: AST,
    guard: Option<kairo_core::Guard>,
    uses_state: bool,
    reevaluates: bool,
    event_access: Access,
    payload_access: Access,
}

impl Rule {
    /// The compiled script.
    pub fn ast(&self) -> &AST {
        &self.ast
    }

    /// True when it may call `reevaluate(...)`, holding itself back for a time.
    pub fn reevaluates(&self) -> bool {
        self.reevaluates
    }

    /// The condition that must hold for this rule to act, when it has one.
    pub fn guard(&self) -> Option<&kairo_core::Guard> {
        self.guard.as_ref()
    }
}

/// What happened to a rule the index let through, for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRun {
    /// It ran and asked for this many actions (none: it did not match).
    Ran {
        /// Action requests it made.
        requests: usize,
    },
    /// It ran and failed (its error is in [`Evaluation::errors`]).
    Failed,
    /// It was held back (waiting for its re-evaluation time).
    HeldBack,
}

/// The result of running every rule against one event.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Each rule the index let through (by position in the set), and what
    /// happened to it; rules not listed were ruled out by the index.
    pub runs: Vec<(usize, RuleRun)>,
    /// Actions the rules asked for, in rule order then call order.
    pub requests: Vec<ActionRequest>,
    /// Rules that failed; the other rules still ran.
    pub errors: Vec<RuleError>,
    /// Re-evaluation times rules declared with `reevaluate(...)`.
    pub reevaluations: Vec<Reevaluation>,
}

/// A rule asked not to be evaluated again for this event's SIM (or IMSI)
/// until `timing` (plus `offset_minutes`), with `reevaluate(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reevaluation {
    /// The rule.
    pub rule: String,
    /// When it may act again.
    pub timing: kairo_core::handler::DateConst,
    /// Minutes after that.
    pub offset_minutes: i64,
}

/// An immutable set of compiled rules, sorted by name, sharing one engine.
#[derive(Clone)]
pub struct RuleSet {
    engine: Arc<Engine>,
    rules: Vec<Arc<Rule>>,
    index: RuleIndex,
    /// Some rule reads counters or declares re-evaluation times (worked out once).
    uses_state: bool,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| &r.name))
            .finish()
    }
}

impl RuleSet {
    /// An empty set using `engine`.
    pub fn empty(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            rules: Vec::new(),
            index: RuleIndex::default(),
            uses_state: false,
        }
    }

    /// Compiles `source` as the rule `id` (its file stem; one ending in
    /// `.shadow` is a shadow rule); the error names `path`, line and column.
    pub fn compile(
        engine: &Engine,
        id: &str,
        path: &Path,
        source: String,
    ) -> Result<Rule, ScriptError> {
        // Declared (not as constants, which the optimizer would inline) so that
        // strict-variables mode accepts them and rejects typos.
        let mut scope = Scope::new();
        for variable in VARIABLES {
            scope.push(variable, Dynamic::UNIT);
        }
        let ast = engine
            .compile_with_scope(&scope, &source)
            .map_err(|e| ScriptError {
                file: path.to_path_buf(),
                line: e.position().line(),
                column: e.position().position(),
                message: compile_message(e.err_type()),
            })?;
        if let Some((line, column, message)) = crate::diagnose::unknown_functions(engine, &ast)
            .into_iter()
            .next()
        {
            return Err(ScriptError {
                file: path.to_path_buf(),
                line,
                column,
                message,
            });
        }
        let guard = crate::guard::extract(&ast);
        let (event_access, payload_access) = crate::access::accesses(&ast);
        let uses_state = calls_any(&ast, &["traffic_mib", "reevaluate"]);
        let reevaluates = calls_any(&ast, &["reevaluate"]);
        let name = id.strip_suffix(SHADOW_SUFFIX).unwrap_or(id);
        Ok(Rule {
            name: name.to_string(),
            id: id.to_string(),
            shadow: name != id,
            path: path.to_path_buf(),
            source,
            ast,
            guard,
            uses_state,
            reevaluates,
            event_access,
            payload_access,
        })
    }

    /// Builds a set from already compiled rules.
    pub fn from_rules(engine: Arc<Engine>, mut rules: Vec<Arc<Rule>>) -> Self {
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let guards: Vec<_> = rules.iter().map(|r| r.guard.clone()).collect();
        let index = RuleIndex::build(&guards);
        let uses_state = rules.iter().any(|r| r.uses_state);
        Self {
            engine,
            rules,
            index,
            uses_state,
        }
    }

    /// The rules, sorted by id.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The rule whose id is `id` (its name, or `NAME.shadow` for a shadow rule).
    pub fn get(&self, id: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules against `event` and collects the actions they ask for.
    ///
    /// Only the rules the index names as candidates are evaluated; the others
    /// could not have acted (see [`crate::guard`]), so the requests are the
    /// same as from [`RuleSet::evaluate_naive`].
    pub fn evaluate(&self, event: &Event) -> Evaluation {
        self.evaluate_except(event, &|_| false)
    }

    /// [`RuleSet::evaluate`], leaving out the rules `skip` names (e.g. rules
    /// waiting for their re-evaluation time).
    pub fn evaluate_except(
        &self,
        event: &Event,
        skip: &(dyn Fn(&Rule) -> bool + Sync),
    ) -> Evaluation {
        let mut held_back = Vec::new();
        let running: Vec<usize> = self
            .index
            .candidates(event)
            .into_iter()
            .filter(|&i| {
                let skipped = skip(&self.rules[i]);
                if skipped {
                    held_back.push((i, RuleRun::HeldBack));
                }
                !skipped
            })
            .collect();
        let mut evaluation =
            self.evaluate_rules(event, running.iter().map(|&i| (i, &self.rules[i])));
        evaluation.runs.extend(held_back);
        evaluation
    }

    /// Why the index ruled rule `position` out for `event`, in words; `None`
    /// when its guard lets the event through (or it has none).
    pub fn explain_skip(&self, position: usize, event: &Event) -> Option<String> {
        self.rules
            .get(position)?
            .guard
            .as_ref()?
            .explain_miss(event)
    }

    /// True when some rule calls `traffic_mib(...)` or `reevaluate(...)`, so
    /// events must be evaluated one after another against shared state.
    pub fn uses_state(&self) -> bool {
        self.uses_state
    }

    /// Runs every rule against `event`, without the index.
    pub fn evaluate_naive(&self, event: &Event) -> Evaluation {
        self.evaluate_rules(event, self.rules.iter().enumerate())
    }

    /// Evaluates many events, spread over all cores when there are enough
    /// of them to pay for waking the pool: a few microseconds an event do
    /// not, and idle pool threads spin on the cores the server needs.
    pub fn evaluate_batch(&self, events: &[Event]) -> Vec<Evaluation> {
        use rayon::prelude::*;
        if events.len() < PARALLEL_FROM {
            return events.iter().map(|e| self.evaluate(e)).collect();
        }
        events
            .par_iter()
            .with_min_len(PARALLEL_FROM / 2)
            .map(|e| self.evaluate(e))
            .collect()
    }

    /// How many rules have no guard and are evaluated for every event.
    pub fn unguarded(&self) -> usize {
        self.index.unguarded()
    }

    fn evaluate_rules<'a>(
        &self,
        event: &Event,
        rules: impl Iterator<Item = (usize, &'a Arc<Rule>)> + Clone,
    ) -> Evaluation {
        let mut evaluation = Evaluation::default();
        let (mut event_access, mut payload_access, mut any) = (Access::None, Access::None, false);
        for (_, rule) in rules.clone() {
            any = true;
            event_access.merge(&rule.event_access);
            payload_access.merge(&rule.payload_access);
        }
        if !any {
            return evaluation;
        }
        let mut scope = event_scope(event, &event_access, &payload_access);
        let base = scope.len();
        let event_id: Arc<str> = Arc::from(event.id.as_str());
        for (position, rule) in rules {
            let (result, calls) = crate::capture::as_rule(rule, &event_id, || {
                capturing(|| self.engine.run_ast_with_scope(&mut scope, &rule.ast))
            });
            scope.rewind(base);
            match result {
                Ok(()) => {
                    let before = evaluation.requests.len();
                    let mut index = 0;
                    for (action, params) in calls {
                        if action == crate::capture::REEVALUATE {
                            evaluation
                                .reevaluations
                                .push(crate::capture::reevaluation(&rule.id, &params));
                            continue;
                        }
                        evaluation.requests.push(ActionRequest {
                            action,
                            params,
                            event_id: event.id.clone(),
                            rule: rule.name.clone(),
                            index,
                            not_before_ms: None,
                            shadow: rule.shadow,
                        });
                        index += 1;
                    }
                    let requests = evaluation.requests.len() - before;
                    evaluation.runs.push((position, RuleRun::Ran { requests }));
                }
                Err(mut error) => {
                    evaluation.runs.push((position, RuleRun::Failed));
                    let position = error.position();
                    error.clear_position();
                    let absent = match (&*error, position.line(), position.position()) {
                        (
                            rhai::EvalAltResult::ErrorDotExpr(message, _),
                            Some(line),
                            Some(column),
                        ) if message.ends_with("type '()'") => {
                            crate::diagnose::absent_field(&rule.source, line, column)
                        }
                        _ => None,
                    };
                    let location = match (position.line(), position.position()) {
                        (Some(line), Some(column)) => format!(":{line}:{column}"),
                        (Some(line), None) => format!(":{line}"),
                        _ => String::new(),
                    };
                    evaluation.errors.push(RuleError {
                        rule: rule.id.clone(),
                        event_id: event.id.clone(),
                        message: match absent {
                            Some(absent) => format!("{}{location}: {absent}", rule.path.display()),
                            None => format!("{}{location}: {error}", rule.path.display()),
                        },
                    });
                }
            }
        }
        evaluation
    }
}

/// A compile error in words, with a did-you-mean for a misspelt variable.
fn compile_message(error: &rhai::ParseErrorType) -> String {
    match error {
        rhai::ParseErrorType::VariableUndefined(name) => {
            match crate::diagnose::did_you_mean(name, VARIABLES) {
                Some(close) => format!("Undefined variable: {name}; did you mean `{close}`?"),
                None => format!(
                    "Undefined variable: {name} (rules see {})",
                    VARIABLES.join(", ")
                ),
            }
        }
        other => other.to_string(),
    }
}

/// True when the script calls any of `names`.
fn calls_any(ast: &AST, names: &[&str]) -> bool {
    let mut found = false;
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        let name = match path.last() {
            Some(rhai::ASTNode::Expr(rhai::Expr::FnCall(call, _))) => Some(call.name.as_str()),
            Some(rhai::ASTNode::Stmt(rhai::Stmt::FnCall(call, _))) => Some(call.name.as_str()),
            _ => None,
        };
        found |= name.is_some_and(|n| names.contains(&n));
        !found
    });
    found
}

/// The variables rules see. Of `event` and `payload`, only the top-level
/// fields some rule about to run reads are converted; fields left out are
/// absent, which reads as `()` exactly like a field the event does not have.
fn event_scope(event: &Event, event_access: &Access, payload_access: &Access) -> Scope<'static> {
    let mut scope = Scope::new();
    let string = |s: &Option<String>| {
        s.as_deref()
            .map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_string()))
    };
    let payload_in_event = !event.is_flux_style() && event_access.wants("payload");
    let mut payload_for_event = None;
    let payload = if payload_access.any() || payload_in_event {
        let mut wanted = payload_access.clone();
        if payload_in_event {
            wanted = Access::All;
        }
        let converted = object_to_dynamic(event.payload(), &wanted);
        if payload_in_event {
            payload_for_event = Some(converted.clone());
        }
        converted
    } else {
        Dynamic::UNIT
    };
    let event_value = if event_access.any() {
        let mut map = rhai::Map::new();
        for (key, value) in event.body() {
            if !event_access.wants(key) {
                continue;
            }
            let converted = match (key.as_str(), &payload_for_event) {
                ("payload", Some(payload)) => payload.clone(),
                _ => json_to_dynamic(value),
            };
            map.insert(key.as_str().into(), converted);
        }
        if event_access.wants("id") {
            map.insert("id".into(), Dynamic::from(event.id.clone()));
        }
        Dynamic::from_map(map)
    } else {
        Dynamic::UNIT
    };
    scope.push_constant("event", event_value);
    scope.push_constant("payload", payload);
    scope.push_constant("imsi", string(&event.imsi));
    scope.push_constant("simId", string(&event.sim_id));
    scope.push_constant("eventType", string(&event.event_type));
    scope
}

/// JSON to a Rhai value, directly (no serde round trip): null is `()`,
/// integers that fit are `INT`, other numbers `FLOAT`.
fn json_to_dynamic(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.as_str().to_string()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Value::Object(map) => object_to_dynamic(map, &Access::All),
    }
}

/// A JSON object as a Rhai map, with only the keys `access` wants.
fn object_to_dynamic(map: &serde_json::Map<String, serde_json::Value>, access: &Access) -> Dynamic {
    let mut converted = rhai::Map::new();
    for (key, value) in map {
        if access.wants(key) {
            converted.insert(key.as_str().into(), json_to_dynamic(value));
        }
    }
    Dynamic::from_map(converted)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
