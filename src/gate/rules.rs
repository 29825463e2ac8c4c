//! The values checks: what each step's catalog rules say of the user's values and of
//! the values helm renders with, and the dotted-path lookups they use.
//!
//! It must not decide whether an upgrade is allowed.

use super::*;

/// A values problem found for a step.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub step: String,
    pub problem: String,
    pub fix: String,
}

/// Checks values against the breaking rules of every step crossed.
pub fn check_values(steps: &[Step], values: &Value) -> Vec<Finding> {
    check_values_with(steps, values, values)
}

/// Like [`check_values`], for a render: `user` is what the user sets (values
/// files and `--set`), `effective` the same merged over the chart's defaults.
/// Every rule reads the user's values (a default the chart sets itself, like
/// 1.2's `ingress.name`, must not satisfy a `required` rule), except the
/// condition of a `required` rule, which is what the chart will render.
pub fn check_values_with(steps: &[Step], user: &Value, effective: &Value) -> Vec<Finding> {
    let values = user;
    let mut out = Vec::new();
    for step in steps {
        let Some(info) = &step.info else { continue };
        let label = format!("{} → {}", step.from_line, step.to_line);
        for rule in &info.breaking {
            if let Some((problem, fix)) = check_rule(rule, values, effective) {
                out.push(Finding {
                    step: label.clone(),
                    problem,
                    fix,
                });
            }
        }
    }
    out
}

pub(super) fn check_rule(
    rule: &ValuesRule,
    values: &Value,
    effective: &Value,
) -> Option<(String, String)> {
    match rule {
        // A key left empty (null) still trips a chart that checks for it with `hasKey`.
        ValuesRule::Moved { from, to } => has_key(values, from).then(|| {
            (
                format!("`{from}` is set, but this release reads `{to}`"),
                format!("move the value of `{from}` to `{to}` (`lockstep values migrate` does it)"),
            )
        }),
        ValuesRule::Removed { path, fix } => {
            has_key(values, path).then(|| (format!("`{path}` is no longer supported"), fix.clone()))
        }
        ValuesRule::Forbidden { path, word, why } => {
            let mut hits = Vec::new();
            find_matching(
                values,
                &path.split('.').collect::<Vec<_>>(),
                String::new(),
                &mut hits,
            );
            let bad: Vec<String> = hits
                .into_iter()
                .filter(|(_, v)| contains_word(v, word))
                .map(|(p, _)| p)
                .collect();
            (!bad.is_empty()).then(|| {
                (
                    format!("{} runs `{word}`: {why}", bad.join(", ")),
                    format!("remove or replace {}", bad.join(", ")),
                )
            })
        }
        ValuesRule::Required(r) => {
            let on = matches!(get(effective, &r.when), Some(Value::Bool(true)))
                || get(effective, &r.when).and_then(Value::as_str) == Some("true");
            (on && get(values, &r.path).is_none()).then(|| {
                (
                    format!(
                        "`{}` is not set while `{}` is true: {}",
                        r.path, r.when, r.why
                    ),
                    format!("set `{}: {}`", r.path, r.value),
                )
            })
        }
    }
}

/// Looks up a dotted path in a values tree; a null value counts as unset.
pub(crate) fn get<'v>(values: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = values;
    for key in path.split('.') {
        cur = cur.as_mapping()?.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// Whether a dotted path is present in a values tree, even with a null value.
pub(crate) fn has_key(values: &Value, path: &str) -> bool {
    let (parents, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let parent = match parents {
        Some(p) => get(values, p),
        None => Some(values),
    };
    parent
        .and_then(Value::as_mapping)
        .is_some_and(|m| m.contains_key(last))
}

pub(super) fn find_matching<'v>(
    v: &'v Value,
    pattern: &[&str],
    at: String,
    out: &mut Vec<(String, &'v Value)>,
) {
    let Some((first, rest)) = pattern.split_first() else {
        out.push((at, v));
        return;
    };
    let Some(map) = v.as_mapping() else { return };
    for (k, child) in map {
        let Some(k) = k.as_str() else { continue };
        if *first == "*" || *first == k {
            let p = if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            };
            find_matching(child, rest, p, out);
        }
    }
}

pub(super) fn contains_word(v: &Value, word: &str) -> bool {
    match v {
        Value::String(s) => s
            .split(|c: char| c.is_whitespace() || "|;&()'\"`".contains(c))
            .any(|t| t == word),
        Value::Sequence(s) => s.iter().any(|x| contains_word(x, word)),
        Value::Mapping(m) => m.values().any(|x| contains_word(x, word)),
        _ => false,
    }
}
