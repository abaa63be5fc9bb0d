//! Finding action calls whose parameters are literals, so `kairo check` can
//! validate them against the plugin before anything runs.

use rhai::{ASTNode, Dynamic, Expr, FnCallExpr, Position, Stmt};
use serde_json::Value;

use crate::Rule;

/// An action call with literal parameters: `action("name", #{...})` or `name(#{...})`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiteralCall {
    /// The action called.
    pub action: String,
    /// Its parameters.
    pub params: Value,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

/// Every call in `rule` to `action(...)`, or to a function named in `plugins`,
/// whose arguments are all literals.
pub fn literal_action_calls(rule: &Rule, plugins: &[&str]) -> Vec<LiteralCall> {
    let mut calls = Vec::new();
    each_call(rule, |call, position| {
        calls.extend(literal_call(call, position, plugins));
    });
    calls
}

/// Calls `f` with every function call in `rule` and its position.
fn each_call(rule: &Rule, mut f: impl FnMut(&FnCallExpr, Position)) {
    rule.ast().walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => f(call, *position),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => f(call, *position),
            _ => {}
        }
        true
    });
}

/// Where `rule` calls `action` (by its name or through `action("NAME", ..)`):
/// 1-based line and column of each call, in source order.
pub fn call_sites(rule: &Rule, action: &str) -> Vec<(usize, usize)> {
    let mut sites = Vec::new();
    rule.ast().walk(&mut |path: &[ASTNode]| {
        let found = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => Some((call.as_ref(), *position)),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => Some((call.as_ref(), *position)),
            _ => None,
        };
        if let Some((call, position)) = found {
            let named = match (call.name.as_str(), call.args.first()) {
                ("action", Some(first)) => first
                    .get_literal_value(None)
                    .and_then(|v: Dynamic| v.into_string().ok())
                    .is_some_and(|name| name == action),
                (name, _) => name == action,
            };
            if let (true, Some(line), Some(column)) = (named, position.line(), position.position())
            {
                sites.push((line, column));
            }
        }
        true
    });
    sites.sort_unstable();
    sites
}

fn literal_call(call: &FnCallExpr, position: Position, plugins: &[&str]) -> Option<LiteralCall> {
    let name = call.name.as_str();
    let literal = |expr: &Expr| -> Option<Value> {
        let value: Dynamic = expr.get_literal_value(None)?;
        rhai::serde::from_dynamic(&value).ok()
    };
    let (action, params) = match (name, call.args.as_slice()) {
        (name, args) if positional(name, args.len()).is_some() && !is_map_call(args) => {
            let names = positional(name, args.len())?;
            let values: Vec<Option<Value>> = args.iter().map(literal).collect();
            if values.iter().all(Option::is_none) {
                return None;
            }
            let params = names
                .iter()
                .zip(values)
                .map(|(param, value)| {
                    let value = value.unwrap_or_else(|| placeholder(param));
                    (param.to_string(), value)
                })
                .collect::<serde_json::Map<_, _>>();
            (name.to_string(), Value::Object(params))
        }
        ("action", [plugin, params]) => {
            let plugin = literal(plugin)?;
            (plugin.as_str()?.to_string(), literal(params)?)
        }
        (name, [params]) if plugins.contains(&name) && name != "action" => {
            (name.to_string(), literal(params)?)
        }
        _ => return None,
    };
    if !params.is_object() {
        return None;
    }
    Some(LiteralCall {
        action,
        params,
        line: position.line(),
        column: position.position(),
    })
}

/// The parameters the built-in positional functions fill, in argument order
/// (as `capture` records them).
fn positional(name: &str, arity: usize) -> Option<&'static [&'static str]> {
    Some(match (name, arity) {
        ("set_group", 2) => &["simId", "groupId"],
        ("set_speed_class", 2) => &["simId", "speedClass"],
        ("set_imei_lock", 2) => &["simId", "imei"],
        ("email", 3) => &["to", "subject", "body"],
        ("webhook", 2) => &["url", "body"],
        ("publish", 2) => &["subject", "payload"],
        ("slack", 1) => &["text"],
        ("soracom", 2) => &["method", "path"],
        ("soracom", 3) => &["method", "path", "body"],
        (
            "unset_group" | "activate" | "deactivate" | "suspend" | "set_to_standby"
            | "unset_imei_lock" | "set_imei_lock",
            1,
        ) => &["simId"],
        _ => return None,
    })
}

fn is_map_call(args: &[Expr]) -> bool {
    matches!(args, [Expr::Map(..)])
}

/// A valid stand-in for an argument only known at run time, so the literal
/// arguments beside it can be checked.
fn placeholder(param: &str) -> Value {
    Value::String(
        match param {
            "to" => "someone@example.invalid",
            "url" => "http://example.invalid/",
            "method" => "GET",
            "path" => "/v1/x",
            _ => "x",
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, RuleSet, engine_with_actions};
    use serde_json::json;

    #[test]
    fn finds_literal_calls_only() {
        let engine = engine_with_actions(Limits::default(), ["audit_log"]);
        let source = r#"
action("audit_log", #{ note: "a" });
audit_log(#{ note: "b", n: 2 });
audit_log(#{ note: simId });
action("x", payload);
"#;
        let rule =
            RuleSet::compile(&engine, "r", std::path::Path::new("r.rhai"), source.into()).unwrap();
        let calls = literal_action_calls(&rule, &["audit_log"]);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].action, "audit_log");
        assert_eq!(calls[0].params, json!({"note": "a"}));
        assert_eq!(calls[0].line, Some(2));
        assert_eq!(calls[1].params, json!({"note": "b", "n": 2}));
    }
}
