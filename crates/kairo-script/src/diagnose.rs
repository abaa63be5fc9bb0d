//! Errors a rule author can act on: calls to functions that do not exist and
//! misspelt variables get a did-you-mean, and reading a field the event does
//! not have says which field is absent.

use std::collections::BTreeSet;

use rhai::{AST, ASTNode, Engine, Expr, Stmt};

/// Functions scripts may call that the engine does not list with signatures.
const KEYWORD_FUNCTIONS: [&str; 10] = [
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "eval",
];

/// The closest of `candidates` to `name`, if close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::levenshtein(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| *distance <= 2.min(c.len() / 2).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Calls in `ast` to functions neither `engine` nor the script defines:
/// (line, column, message with a did-you-mean when one is close).
pub fn unknown_functions(
    engine: &Engine,
    ast: &AST,
) -> Vec<(Option<usize>, Option<usize>, String)> {
    let mut known: BTreeSet<String> = engine
        .collect_fn_metadata(None, |info| Some(info.metadata.name.to_string()), true)
        .into_iter()
        .collect();
    known.extend(KEYWORD_FUNCTIONS.iter().map(|s| s.to_string()));
    known.extend(ast.iter_functions().map(|f| f.name.to_string()));
    let mut unknown = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => Some((call, *position)),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => Some((call, *position)),
            _ => None,
        };
        if let Some((call, position)) = call {
            let name = call.name.as_str();
            let identifier = name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if identifier && !call.is_qualified() && !known.contains(name) {
                let hint = match did_you_mean(name, known.iter().map(String::as_str)) {
                    Some(close) => format!("; did you mean `{close}`?"),
                    None => String::new(),
                };
                unknown.push((
                    position.line(),
                    position.position(),
                    format!("`{name}` is not a function Kairo knows{hint}"),
                ));
            }
        }
        true
    });
    unknown
}

/// For a property read on an absent value at `line`:`column` of `source`
/// (Rhai: "a getter is not registered for type '()'"), the path that is
/// absent, e.g. `payload.location is absent`.
pub fn absent_field(source: &str, line: usize, column: usize) -> Option<String> {
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let before: String = text.chars().take(column.checked_sub(1)?).collect();
    let before = before.strip_suffix('.')?;
    let path: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let property: String = text
        .chars()
        .skip(column - 1)
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!path.is_empty()).then(|| format!("{path} is absent (reading `{property}` from it)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            did_you_mean("suspned", ["suspend", "set_group"]),
            Some("suspend")
        );
        assert_eq!(did_you_mean("simid", ["simId", "imsi"]), Some("simId"));
        assert_eq!(did_you_mean("zzz", ["simId", "imsi"]), None);
    }

    #[test]
    fn an_absent_field_is_named() {
        let source = "if payload.location.lat > 1 { x(); }";
        assert_eq!(
            absent_field(source, 1, 21).as_deref(),
            Some("payload.location is absent (reading `lat` from it)")
        );
    }
}
