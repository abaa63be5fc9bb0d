//! Extracting a rule's guard: the condition that must hold for the script to
//! do anything, read from its compiled AST.
//!
//! A script has a guard when its top level is only literal `let`/`const`
//! declarations followed by one `if` without `else`, and the `if` condition
//! is one of these, or an `&&` chain containing one:
//!
//! - `PATH == "literal"` or `"literal" == PATH`
//! - `PATH in ["a", "b", ...]`
//!
//! where `PATH` is `simId`, `imsi`, `eventType`, `payload.a.b…` or `event.a.b…`.
//! Anything else (other operators, numbers, other shapes) yields no guard, and
//! the rule is evaluated for every event.

use kairo_core::{FieldPath, Guard};
use rhai::{AST, Dynamic, Expr, Stmt};

const EVENT_VARIABLES: [&str; 5] = ["event", "payload", "imsi", "simId", "eventType"];

/// The guard of a compiled rule script, if it has one.
pub fn extract(ast: &AST) -> Option<Guard> {
    let statements = ast.statements();
    let (last, leading) = statements.split_last()?;
    for statement in leading {
        let Stmt::Var(declaration, ..) = statement else {
            return None;
        };
        let (name, value, _) = declaration.as_ref();
        if EVENT_VARIABLES.contains(&name.as_str()) || !value.is_constant() {
            return None;
        }
    }
    let Stmt::If(flow, _) = last else {
        return None;
    };
    if !flow.branch.is_empty() {
        return None;
    }
    condition_guard(&flow.expr)
}

fn condition_guard(condition: &Expr) -> Option<Guard> {
    match condition {
        Expr::And(terms, _) => {
            let guards: Vec<Guard> = terms.iter().filter_map(term_guard).collect();
            // Prefer identity fields: they are the most selective.
            guards
                .iter()
                .find(|g| matches!(g.path.0[0].as_str(), "simId" | "imsi"))
                .or_else(|| guards.first())
                .cloned()
        }
        other => term_guard(other),
    }
}

fn term_guard(term: &Expr) -> Option<Guard> {
    let Expr::FnCall(call, _) = term else {
        return None;
    };
    match (call.name.as_str(), call.args.as_slice()) {
        ("==", [lhs, rhs]) => equality(lhs, rhs).or_else(|| equality(rhs, lhs)),
        // `value in [..]` is parsed into `contains([..], value)`; both mean the same.
        ("contains", [list, value]) => {
            let path = field_path(value)?;
            Some(Guard {
                path,
                values: string_list(list)?,
            })
        }
        _ => None,
    }
}

fn equality(path: &Expr, literal: &Expr) -> Option<Guard> {
    let path = field_path(path)?;
    let Expr::StringConstant(value, _) = literal else {
        return None;
    };
    Some(Guard {
        path,
        values: vec![value.to_string()],
    })
}

fn string_list(list: &Expr) -> Option<Vec<String>> {
    match list {
        Expr::Array(items, _) => items
            .iter()
            .map(|item| match item {
                Expr::StringConstant(s, _) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        Expr::DynamicConstant(value, _) => value
            .clone()
            .into_array()
            .ok()?
            .into_iter()
            .map(|item: Dynamic| item.into_string().ok())
            .collect(),
        _ => None,
    }
}

fn field_path(expr: &Expr) -> Option<FieldPath> {
    let mut path = Vec::new();
    match expr {
        Expr::Variable(variable, ..) => path.push(variable.1.to_string()),
        Expr::Dot(binary, ..) => {
            let Expr::Variable(variable, ..) = &binary.lhs else {
                return None;
            };
            path.push(variable.1.to_string());
            properties(&binary.rhs, &mut path)?;
        }
        _ => return None,
    }
    let root = path[0].as_str();
    let valid = match root {
        "simId" | "imsi" | "eventType" => path.len() == 1,
        "payload" | "event" => path.len() >= 2,
        _ => false,
    };
    valid.then_some(FieldPath(path))
}

fn properties(expr: &Expr, path: &mut Vec<String>) -> Option<()> {
    match expr {
        Expr::Property(property, _) => {
            path.push(property.2.to_string());
            Some(())
        }
        Expr::Dot(binary, ..) => {
            properties(&binary.lhs, path)?;
            properties(&binary.rhs, path)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, RuleSet, engine};

    fn guard_of(source: &str) -> Option<(String, Vec<String>)> {
        let engine = engine(Limits::default());
        let rule =
            RuleSet::compile(&engine, "r", std::path::Path::new("r.rhai"), source.into()).unwrap();
        extract(rule.ast()).map(|g| (g.path.0.join("."), g.values))
    }

    fn some(path: &str, values: &[&str]) -> Option<(String, Vec<String>)> {
        Some((path.into(), values.iter().map(|v| v.to_string()).collect()))
    }

    #[test]
    fn extracts_equality_membership_and_conjunctions() {
        assert_eq!(
            guard_of(r#"if payload.otaStatus == "finished" { slack("x"); }"#),
            some("payload.otaStatus", &["finished"])
        );
        assert_eq!(
            guard_of(r#"if "S" == simId { suspend(simId); }"#),
            some("simId", &["S"])
        );
        assert_eq!(
            guard_of(r#"if eventType in ["A", "B"] { slack("x"); }"#),
            some("eventType", &["A", "B"])
        );
        assert_eq!(
            guard_of(r#"if eventType == "A" && imsi == "4401" && payload.n > 3 { slack("x"); }"#),
            some("imsi", &["4401"])
        );
        assert_eq!(
            guard_of(r#"if event.meta.kind == "k" { slack("x"); }"#),
            some("event.meta.kind", &["k"])
        );
        assert_eq!(
            guard_of(
                "// comment\nconst LIMIT = 100;\nif eventType == \"T\" && payload.used > LIMIT { slack(\"x\"); }"
            ),
            some("eventType", &["T"])
        );
    }

    #[test]
    fn anything_else_has_no_guard() {
        for source in [
            r#"slack("always");"#,
            r#"if payload.n == 3 { slack("x"); }"#,
            r#"if payload.otaStatus != "started" { slack("x"); }"#,
            r#"if simId == "a" || simId == "b" { slack("x"); }"#,
            r#"if simId == "a" { slack("x"); } else { slack("y"); }"#,
            r#"slack("first"); if simId == "a" { slack("x"); }"#,
            r#"if simId == "a" { slack("x"); } slack("after");"#,
            r#"let x = slack("side effect"); if simId == "a" { slack("x"); }"#,
            r#"if "abc" in payload.text { slack("x"); }"#,
            r#"if payload["k"] == "v" { slack("x"); }"#,
        ] {
            assert_eq!(guard_of(source), None, "{source}");
        }
    }
}
