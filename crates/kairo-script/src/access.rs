//! Which parts of `event` and `payload` a rule reads, so evaluation converts
//! only those fields from JSON to Rhai values.

use std::collections::BTreeSet;

use rhai::{AST, ASTNode, Expr};

/// How a rule reads one of the map variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// Not at all.
    #[default]
    None,
    /// Only through `var.key…` with these top-level keys.
    Keys(BTreeSet<String>),
    /// In some other way (passed whole, indexed, iterated): convert everything.
    All,
}

impl Access {
    /// Widens this access by `other`.
    pub fn merge(&mut self, other: &Access) {
        *self = match (std::mem::take(self), other) {
            (Access::All, _) | (_, Access::All) => Access::All,
            (Access::None, other) => other.clone(),
            (this, Access::None) => this,
            (Access::Keys(mut mine), Access::Keys(theirs)) => {
                mine.extend(theirs.iter().cloned());
                Access::Keys(mine)
            }
        };
    }

    /// True when `key` must be converted.
    pub fn wants(&self, key: &str) -> bool {
        match self {
            Access::None => false,
            Access::Keys(keys) => keys.contains(key),
            Access::All => true,
        }
    }

    /// True when the variable is read at all.
    pub fn any(&self) -> bool {
        *self != Access::None
    }

    fn add_key(&mut self, key: &str) {
        match self {
            Access::All => {}
            Access::Keys(keys) => {
                keys.insert(key.to_string());
            }
            Access::None => *self = Access::Keys(BTreeSet::from([key.to_string()])),
        }
    }
}

/// How `ast` reads `event` and `payload`.
pub fn accesses(ast: &AST) -> (Access, Access) {
    let (mut event, mut payload) = (Access::None, Access::None);
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(expr @ Expr::Variable(variable, ..))) = path.last() else {
            return true;
        };
        let target = match variable.1.as_str() {
            "event" => &mut event,
            "payload" => &mut payload,
            _ => return true,
        };
        match keyed_by(path, expr) {
            Some(key) => target.add_key(&key),
            None => *target = Access::All,
        }
        true
    });
    (event, payload)
}

/// The first property read from `variable` when it is the left side of `variable.key…`.
fn keyed_by(path: &[ASTNode], variable: &Expr) -> Option<String> {
    let parent = path.len().checked_sub(2).map(|i| &path[i])?;
    let ASTNode::Expr(Expr::Dot(binary, ..)) = parent else {
        return None;
    };
    if !std::ptr::eq(&binary.lhs, variable) {
        return None;
    }
    first_property(&binary.rhs)
}

fn first_property(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Property(property, _) => Some(property.2.to_string()),
        Expr::Dot(binary, ..) => first_property(&binary.lhs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, RuleSet, engine};

    fn of(source: &str) -> (Access, Access) {
        let engine = engine(Limits::default());
        let rule =
            RuleSet::compile(&engine, "r", std::path::Path::new("r.rhai"), source.into()).unwrap();
        accesses(rule.ast())
    }

    fn keys(keys: &[&str]) -> Access {
        Access::Keys(keys.iter().map(|k| k.to_string()).collect())
    }

    #[test]
    fn property_reads_are_keys_anything_else_is_all() {
        assert_eq!(
            of(r#"if payload.otaStatus == "x" { slack(payload.note.len().to_string()); }"#),
            (Access::None, keys(&["note", "otaStatus"]))
        );
        assert_eq!(
            of(r#"if event.groupId == "g" { slack(`${event.payload.x}`); }"#),
            (keys(&["groupId", "payload"]), Access::None)
        );
        assert_eq!(of(r#"publish("a", payload);"#), (Access::None, Access::All));
        assert_eq!(of(r#"slack(event["id"]);"#), (Access::All, Access::None));
        assert_eq!(
            of(r#"for k in payload.keys() { slack(k); }"#).1,
            Access::All
        );
        assert_eq!(of(r#"slack("x");"#), (Access::None, Access::None));
    }

    #[test]
    fn merge_widens() {
        let mut a = keys(&["a"]);
        a.merge(&keys(&["b"]));
        assert_eq!(a, keys(&["a", "b"]));
        a.merge(&Access::All);
        assert_eq!(a, Access::All);
        let mut none = Access::None;
        none.merge(&keys(&["c"]));
        assert!(none.wants("c") && !none.wants("d"));
    }
}
