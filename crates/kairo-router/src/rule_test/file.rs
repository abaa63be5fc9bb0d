//! Reading a rule test file (`NAME.test.toml`) into checked cases.

use std::path::{Path, PathBuf};

use kairo_core::Event;
use serde::Deserialize;
use serde_json::Value;

/// Where a test file's virtual clock starts when its first event gives no time.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Why a test file could not be read; names the file (and the case, event
/// and field, or the TOML line and column).
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// The file cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape (the message has the line and column).
    #[error("{}: {source}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: toml::de::Error,
    },
    /// A case is not usable as written.
    #[error("{}: case {case:?}: {field}: {message}", path.display())]
    Case {
        /// The file.
        path: PathBuf,
        /// The case's name.
        case: String,
        /// The field at fault, e.g. `events[2].at`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    events: Vec<toml::Table>,
    #[serde(default)]
    expect: Vec<RawExpected>,
    #[serde(default)]
    nothing: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpected {
    action: String,
    #[serde(default)]
    params: Option<toml::Table>,
    #[serde(default)]
    due: Option<toml::Value>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    event: Option<String>,
}

/// A test file's cases, and which rules' actions they are about.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The file.
    pub path: PathBuf,
    /// The rules (and `handler:ID`s) whose actions count; `None` for all.
    pub rules: Option<Vec<String>>,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One named case: events on a virtual clock and the actions they must give.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// The events, each with the time it arrives (epoch milliseconds).
    pub events: Vec<(Event, i64)>,
    /// The actions expected (empty with `nothing = true`).
    pub expect: Vec<Expectation>,
}

/// One expected action.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The action's name.
    pub action: String,
    /// Parameters that must be present with these values (others are not checked).
    pub params: Option<Value>,
    /// When it falls due (epoch milliseconds); `None` means at once.
    pub due_ms: Option<i64>,
    /// The rule (or `handler:ID`) that must ask for it, when given.
    pub rule: Option<String>,
    /// The event that must cause it, when given.
    pub event: Option<String>,
}

impl TestFile {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, TestFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TestFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| TestFileError::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        let cases = raw
            .cases
            .into_iter()
            .map(|case| {
                let name = case.name.clone();
                check_case(case).map_err(|(field, message)| TestFileError::Case {
                    path: path.to_path_buf(),
                    case: name,
                    field,
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            rules: raw.rules,
            cases,
        })
    }
}

type Problem = (String, String);

fn check_case(case: RawCase) -> Result<Case, Problem> {
    if case.expect.is_empty() && !case.nothing {
        let message = "no [[case.expect]]: list the actions expected, or say `nothing = true`";
        return Err(("expect".into(), message.into()));
    }
    if !case.expect.is_empty() && case.nothing {
        let message = "`nothing = true` with [[case.expect]] entries: keep one of them";
        return Err(("nothing".into(), message.into()));
    }
    if case.events.is_empty() {
        return Err(("events".into(), "no [[case.events]]".into()));
    }
    let mut events = Vec::with_capacity(case.events.len());
    let mut clock = None;
    for (i, table) in case.events.into_iter().enumerate() {
        let event =
            check_event(i, table, clock).map_err(|(f, m)| (format!("events[{i}].{f}"), m))?;
        clock = Some(event.1);
        events.push(event);
    }
    let expect = case
        .expect
        .into_iter()
        .enumerate()
        .map(|(i, raw)| check_expected(raw).map_err(|(f, m)| (format!("expect[{i}].{f}"), m)))
        .collect::<Result<_, _>>()?;
    Ok(Case {
        name: case.name,
        events,
        expect,
    })
}

/// An event table: the event's own fields, plus `at`, when it arrives
/// (default: its `timestamp`, else a second after the previous event).
fn check_event(
    index: usize,
    mut table: toml::Table,
    previous_ms: Option<i64>,
) -> Result<(Event, i64), Problem> {
    let at = table.remove("at").map(|at| time("at", at)).transpose()?;
    let mut value = to_json(toml::Value::Table(table));
    if let Value::Object(map) = &mut value
        && !map.contains_key("id")
    {
        map.insert("id".into(), Value::String(format!("e{}", index + 1)));
    }
    let event = Event::from_value(value).map_err(|e| (e.field.clone(), e.message))?;
    let at = at
        .or(event.timestamp_ms)
        .unwrap_or_else(|| previous_ms.map_or(DEFAULT_START_MS, |p| p + 1_000));
    Ok((event, at))
}

fn check_expected(raw: RawExpected) -> Result<Expectation, Problem> {
    Ok(Expectation {
        action: raw.action,
        params: raw.params.map(|p| to_json(toml::Value::Table(p))),
        due_ms: raw.due.map(|due| time("due", due)).transpose()?,
        rule: raw.rule,
        event: raw.event,
    })
}

/// A time written as a TOML date-time or an RFC 3339 string.
fn time(field: &str, value: toml::Value) -> Result<i64, Problem> {
    let text = match value {
        toml::Value::String(text) => text,
        toml::Value::Datetime(datetime) => datetime.to_string(),
        other => {
            let message = format!("expected an RFC 3339 time, found a {}", other.type_str());
            return Err((field.into(), message));
        }
    };
    crate::recorded::parse_time(&text).map_err(|e| (field.into(), e.to_string()))
}

/// TOML as JSON; date-times become RFC 3339 strings.
fn to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TestFile, String> {
        TestFile::parse(Path::new("scripts/x.test.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn events_get_ids_and_times_and_expectations_their_due_times() {
        let file = parse(
            r#"
            [[case]]
            name = "two events"
            [[case.events]]
            at = 2026-03-01T00:00:00Z
            eventType = "SimStatusChanged"
            simId = "s1"
            [[case.events]]
            eventType = "SimStatusChanged"
            [[case.expect]]
            action = "slack"
            params = { text = "hi" }
            due = "2026-03-02T00:00:00+09:00"
            "#,
        )
        .unwrap();
        let case = &file.cases[0];
        assert_eq!(case.events[0].0.id, "e1");
        assert_eq!(case.events[0].1, 1_772_323_200_000);
        assert_eq!(case.events[1].1, 1_772_323_201_000, "a second later");
        assert_eq!(case.expect[0].due_ms, Some(1_772_377_200_000));
        assert_eq!(
            case.expect[0].params,
            Some(serde_json::json!({"text": "hi"}))
        );
    }

    #[test]
    fn mistakes_name_the_file_the_case_and_the_field() {
        let missing = parse("[[case]]\nname = \"c\"\n[[case.events]]\nsimId = \"s\"\n");
        assert!(
            missing
                .unwrap_err()
                .contains("scripts/x.test.toml: case \"c\": expect:")
        );
        let bad_time =
            parse("[[case]]\nname = \"c\"\nnothing = true\n[[case.events]]\nat = \"yesterday\"\n");
        let message = bad_time.unwrap_err();
        assert!(
            message.contains("case \"c\": events[0].at: \"yesterday\""),
            "{message}"
        );
        let unknown = parse("[[case]]\nname = \"c\"\nnothin = true\n");
        let message = unknown.unwrap_err();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("nothin"), "{message}");
    }
}
