//! The matching index: rules keyed by a condition that must hold for them to
//! do anything, so an event is evaluated only against rules that can match it.
//!
//! A [`Guard`] says "this rule does nothing unless the value at `path` is one
//! of `values`". Rules without a guard are always candidates. The index never
//! decides a match by itself: candidates are still evaluated in full, so it
//! can only skip rules that could not have done anything.

use std::collections::HashMap;

use crate::Event;

/// A field of the event, as rule scripts name it: `simId`, `payload.otaStatus`, `event.x.y`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// The string value at this path in `event`, as a rule script sees it, if it is a string.
    pub fn string_in<'e>(&self, event: &'e Event) -> Option<&'e str> {
        let (first, rest) = self.0.split_first()?;
        let identity = |value: &'e Option<String>| {
            if rest.is_empty() {
                value.as_deref()
            } else {
                None
            }
        };
        match first.as_str() {
            "simId" => identity(&event.sim_id),
            "imsi" => identity(&event.imsi),
            "eventType" => identity(&event.event_type),
            "payload" if !rest.is_empty() => event
                .lookup_parts(self.0.iter().map(String::as_str))?
                .as_str(),
            "event" if rest.len() == 1 && rest[0] == "id" => Some(event.id.as_str()),
            // `event` is the body as received: no Flux-style payload alias.
            "event" if !rest.is_empty() => {
                crate::event::walk(event.body(), rest.iter().map(String::as_str))?.as_str()
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A rule does nothing unless the string at `path` is one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Where to look.
    pub path: FieldPath,
    /// Accepted values.
    pub values: Vec<String>,
}

impl Guard {
    /// Why `event` does not pass this guard, in words (`payload.otaStatus is
    /// "started", rule needs "finished"`); `None` when it passes.
    pub fn explain_miss(&self, event: &Event) -> Option<String> {
        let found = self.path.string_in(event);
        if found.is_some_and(|value| self.values.iter().any(|v| v == value)) {
            return None;
        }
        let needed = match self.values.as_slice() {
            [one] => format!("{one:?}"),
            many => format!(
                "one of {}",
                many.iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let is = match found {
            Some(value) => format!("is {value:?}"),
            None => match event.lookup_parts(self.path.0.iter().map(String::as_str)) {
                Some(other) => format!("is {other}, not a string"),
                None => "is absent".to_string(),
            },
        };
        Some(format!("{} {is}, rule needs {needed}", self.path))
    }
}

/// Rule positions by guard, plus the rules that must always be evaluated.
#[derive(Debug, Default, Clone)]
pub struct RuleIndex {
    paths: Vec<FieldPath>,
    /// Per path (same position as `paths`): value → rule positions.
    keyed: Vec<HashMap<String, Vec<usize>>>,
    always: Vec<usize>,
    len: usize,
}

impl RuleIndex {
    /// Builds the index for rules in order; `guards[i]` is rule `i`'s guard, if any.
    pub fn build(guards: &[Option<Guard>]) -> Self {
        let mut index = Self {
            len: guards.len(),
            ..Self::default()
        };
        for (rule, guard) in guards.iter().enumerate() {
            let Some(guard) = guard else {
                index.always.push(rule);
                continue;
            };
            let path = match index.paths.iter().position(|p| *p == guard.path) {
                Some(path) => path,
                None => {
                    index.paths.push(guard.path.clone());
                    index.keyed.push(HashMap::new());
                    index.paths.len() - 1
                }
            };
            for value in &guard.values {
                let rules = index.keyed[path].entry(value.clone()).or_default();
                if rules.last() != Some(&rule) {
                    rules.push(rule);
                }
            }
        }
        index
    }

    /// Positions of the rules that may act on `event`, in rule order.
    pub fn candidates(&self, event: &Event) -> Vec<usize> {
        let mut out = self.always.clone();
        for (path, values) in self.paths.iter().zip(&self.keyed) {
            if let Some(value) = path.string_in(event)
                && let Some(rules) = values.get(value)
            {
                out.extend_from_slice(rules);
            }
        }
        if out.len() > self.always.len() {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// How many rules are always evaluated (no guard).
    pub fn unguarded(&self) -> usize {
        self.always.len()
    }

    /// How many rules the index covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it covers no rules.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard(path: &str, values: &[&str]) -> Option<Guard> {
        Some(Guard {
            path: FieldPath(path.split('.').map(str::to_string).collect()),
            values: values.iter().map(|v| v.to_string()).collect(),
        })
    }

    #[test]
    fn candidates_are_keyed_rules_plus_unguarded_in_order() {
        let index = RuleIndex::build(&[
            guard("simId", &["s1"]),
            None,
            guard("payload.otaStatus", &["finished"]),
            guard("eventType", &["A", "B"]),
            guard("simId", &["s2"]),
        ]);
        let event =
            Event::from_value(json!({"simId": "s1", "eventType": "B", "otaStatus": "finished"}))
                .unwrap();
        assert_eq!(index.candidates(&event), vec![0, 1, 2, 3]);
        let event = Event::from_value(json!({"simId": "s2", "payload": {"otaStatus": 1}})).unwrap();
        assert_eq!(index.candidates(&event), vec![1, 4]);
        assert_eq!(index.unguarded(), 1);
    }

    #[test]
    fn a_missed_guard_is_explained_in_words() {
        let guard = guard("payload.otaStatus", &["finished"]).unwrap();
        let started = Event::from_value(json!({"otaStatus": "started"})).unwrap();
        assert_eq!(
            guard.explain_miss(&started).as_deref(),
            Some(r#"payload.otaStatus is "started", rule needs "finished""#)
        );
        let absent = Event::from_value(json!({"simId": "s"})).unwrap();
        assert_eq!(
            guard.explain_miss(&absent).as_deref(),
            Some(r#"payload.otaStatus is absent, rule needs "finished""#)
        );
        let finished = Event::from_value(json!({"otaStatus": "finished"})).unwrap();
        assert_eq!(guard.explain_miss(&finished), None);
        let either = super::Guard {
            values: vec!["A".into(), "B".into()],
            ..guard
        };
        assert!(
            either
                .explain_miss(&started)
                .unwrap()
                .ends_with(r#"one of "A", "B""#)
        );
    }

    #[test]
    fn paths_follow_script_names() {
        let event = Event::from_value(
            json!({"id": "e", "imsi": 4401, "payload": {"a": {"b": "x"}}, "k": "v"}),
        )
        .unwrap();
        let path = |p: &str| FieldPath(p.split('.').map(str::to_string).collect());
        assert_eq!(
            path("imsi").string_in(&event),
            Some("4401"),
            "normalized identity"
        );
        assert_eq!(path("payload.a.b").string_in(&event), Some("x"));
        assert_eq!(path("event.k").string_in(&event), Some("v"));
        assert_eq!(path("event.id").string_in(&event), Some("e"));
        assert_eq!(path("simId").string_in(&event), None);
        assert_eq!(path("imsi.x").string_in(&event), None);
    }
}
