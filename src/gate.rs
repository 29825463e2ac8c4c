//! The upgrade gate: which release is being rendered, whether it may follow the
//! deployed one, and what the values must look like after each step.
//!
//! It owns version parsing, the catalog's path rule (catalog order or seed 003's
//! semver rule), the refusal messages, the values checks, and the upgrade plan.
//! It must not read files or manifests itself: callers hand it versions and
//! values; the in-cluster half of the gate is emitted by `inject` from the
//! `Admission` computed here.

use crate::profile::{Line, Profile, UpgradeRule, ValuesRule};
use anyhow::{anyhow, Result};
use semver::Version;
use serde::Serialize;
use serde_yaml::Value;
use std::fmt;

/// The gate said no: exit code 3, nothing on stdout.
#[derive(Debug)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refusal {}

/// Reads a version leniently: `v1.2.3`, `1.2`, `3.8.3-python3.11` (→ 3.8.3).
pub fn parse_version(text: &str) -> Option<Version> {
    let t = text.trim().trim_start_matches('v');
    if let Ok(v) = Version::parse(t) {
        // An image tag like 3.8.3-python3.11 parses as a pre-release; a tag's
        // suffix is a variant, not a pre-release of 3.8.3.
        if !v.pre.is_empty() && v.pre.as_str().contains(|c: char| c.is_ascii_alphabetic()) {
            if let Some(p) = v.pre.as_str().split('.').next() {
                if p.starts_with(|c: char| c.is_ascii_alphabetic()) && !is_prerelease_word(p) {
                    return Some(Version::new(v.major, v.minor, v.patch));
                }
            }
        }
        return Some(v);
    }
    let nums: Vec<u64> = t
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.')
        .take(3)
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match nums.as_slice() {
        [a, b] => Some(Version::new(*a, *b, 0)),
        [a, b, c] => Some(Version::new(*a, *b, *c)),
        _ => None,
    }
}

fn is_prerelease_word(p: &str) -> bool {
    let w = p.trim_end_matches(|c: char| c.is_ascii_digit());
    matches!(w, "alpha" | "beta" | "rc" | "pre" | "dev" | "a" | "b")
}

pub fn line_of(v: &Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// One step between two adjacent release lines, with what the catalog says of it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub from_line: String,
    pub to_line: String,
    /// The catalog entry of `to_line`, when the catalog has one.
    #[serde(skip)]
    pub info: Option<Line>,
}

/// What the gate decided for one render.
#[derive(Debug, Clone)]
pub struct Admission {
    pub target: Version,
    pub from: Option<Version>,
    /// Steps crossed from the deployed release to the target (0 or 1 when legal).
    pub steps: Vec<Step>,
    /// Lines from which the target may be reached: what the in-cluster gate accepts.
    pub from_lines: Vec<String>,
    /// A downgrade was asked for and allowed.
    pub downgrade: bool,
}

/// The ordered lines known to the profile, for the catalog rule.
fn catalog_index(profile: &Profile, line: &str) -> Option<usize> {
    profile.releases.lines.iter().position(|l| l.line == line)
}

fn info(profile: &Profile, line: &str) -> Option<Line> {
    profile
        .releases
        .lines
        .iter()
        .find(|l| l.line == line)
        .cloned()
}

/// The lines from `from` to `to`, both included, in upgrade order.
/// Err(reason) when `to` cannot be reached by upgrades at all (unknown line).
fn stops(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<String>, String> {
    let (fl, tl) = (line_of(from), line_of(to));
    match profile.releases.rule {
        UpgradeRule::Catalog => {
            let known = || profile.releases.joined(" → ");
            let fi = catalog_index(profile, &fl).ok_or_else(|| {
                format!("the deployed release {from} is on line {fl}, which the {} catalog does not know (lines: {})", profile.name, known())
            })?;
            let ti = catalog_index(profile, &tl).ok_or_else(|| {
                format!("the target release {to} is on line {tl}, which the {} catalog does not know (lines: {}); if it is new, extend the catalog with a profile file (--profile FILE)", profile.name, known())
            })?;
            if ti < fi {
                return Ok(vec![]);
            }
            Ok(profile.releases.lines[fi..=ti]
                .iter()
                .map(|l| l.line.clone())
                .collect())
        }
        UpgradeRule::Semver => {
            let mut out = vec![fl];
            let (mut maj, mut min) = (from.major, from.minor);
            while (maj, min) < (to.major, to.minor) {
                if maj < to.major {
                    maj += 1;
                    min = 0;
                } else {
                    min += 1;
                }
                out.push(format!("{maj}.{min}"));
            }
            Ok(out)
        }
    }
}

fn rule_text(profile: &Profile) -> String {
    match profile.releases.rule {
        UpgradeRule::Catalog => format!(
            "{} upgrades one release line at a time, in catalog order ({})",
            profile.name,
            profile.releases.joined(" → ")
        ),
        UpgradeRule::Semver => format!(
            "{} upgrades a patch or the next minor directly; a skipped minor is walked one minor at a time; a new major starts at its .0",
            profile.name
        ),
    }
}

fn latest_of(profile: &Profile, line: &str) -> String {
    info(profile, line)
        .and_then(|l| l.latest)
        .unwrap_or_else(|| format!("{line}.x"))
}

/// Decides whether `target` may be rendered over `from`.
pub fn admit(
    profile: &Profile,
    chart: &str,
    from: Option<&Version>,
    target: &Version,
    allow_downgrade: bool,
) -> Result<Admission, Refusal> {
    let tl = line_of(target);
    // Which lines may the target be reached from (for the in-cluster gate)?
    let mut from_lines = vec![tl.clone()];
    match profile.releases.rule {
        UpgradeRule::Catalog => match catalog_index(profile, &tl) {
            Some(0) => {}
            Some(i) => from_lines.insert(0, profile.releases.lines[i - 1].line.clone()),
            None => {
                return Err(Refusal(format!(
                    "refusing to render {chart} {target}: its release line {tl} is not in the {} catalog (lines: {}).\n  fix: render a release the catalog knows, or extend the catalog with a profile file (`lockstep profiles show {} > profile.yaml`, add the line, then --profile profile.yaml)",
                    profile.name,
                    profile.releases.joined(", "),
                    profile.name
                )))
            }
        },
        UpgradeRule::Semver => {
            if target.minor > 0 {
                from_lines.insert(0, format!("{}.{}", target.major, target.minor - 1));
            }
        }
    }
    let Some(from) = from else {
        return Ok(Admission {
            target: target.clone(),
            from: None,
            steps: vec![],
            from_lines,
            downgrade: false,
        });
    };
    if target < from {
        if !allow_downgrade {
            let restore = if profile.releases.downgrade_supported {
                format!(
                    "a rollback needs each database downgraded first, with the newer image: take backups, then render with --allow-downgrade and --downgrade-revision DB=REVISION for each of: {}",
                    profile.migrations.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            } else {
                "downgrades are not supported by this application: restore the backup taken before the upgrade".to_owned()
            };
            return Err(Refusal(format!(
                "refusing to downgrade {chart} from {from} to {target}.\n  rule: downgrades are refused by default; the database schema of {from} may not work with {target}\n  fix:  {restore}"
            )));
        }
        if !profile.releases.downgrade_supported {
            return Err(Refusal(format!(
                "refusing to downgrade {chart} from {from} to {target}: the {} profile says downgrades are not supported.\n  fix: restore the database backup taken before upgrading to {from}, then deploy {target}",
                profile.name
            )));
        }
        let mut from_lines = from_lines;
        from_lines.push(line_of(from));
        return Ok(Admission {
            target: target.clone(),
            from: Some(from.clone()),
            steps: vec![],
            from_lines,
            downgrade: true,
        });
    }
    let lines = stops(profile, from, target).map_err(|why| {
        Refusal(format!(
            "refusing to upgrade {chart} from {from} to {target}: {why}.\n  fix: name the deployed release with --from (or correct lockstep.lock), or extend the catalog with --profile FILE"
        ))
    })?;
    if lines.len() > 2 {
        let path: Vec<String> = std::iter::once(from.to_string())
            .chain(lines[1..].iter().map(|l| format!("{l}.x")))
            .collect();
        let next = latest_of(profile, &lines[1]);
        return Err(Refusal(format!(
            "refusing to upgrade {chart} from {from} to {target}: that skips {} release line{}.\n  rule: {}\n  path: {}\n  now:  upgrade to {} first: `lockstep bump --to {next}` (or pin the chart to {next}), sync, then continue",
            lines.len() - 2,
            if lines.len() == 3 { "" } else { "s" },
            rule_text(profile),
            path.join(" → "),
            lines[1],
            next = next,
        )));
    }
    Ok(Admission {
        target: target.clone(),
        from: Some(from.clone()),
        steps: steps_between(profile, &lines),
        from_lines,
        downgrade: false,
    })
}

/// Every step from `from` up to `to`, legal or not (what `lockstep values migrate`
/// walks); empty when both are on one line. Err for a downgrade or an unknown line.
pub fn steps(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<Step>, Refusal> {
    if to < from {
        return Err(Refusal(format!(
            "{to} is older than {from}: only upgrades have steps"
        )));
    }
    let lines = stops(profile, from, to)
        .map_err(|why| Refusal(format!("no upgrade path from {from} to {to}: {why}")))?;
    Ok(steps_between(profile, &lines))
}

fn steps_between(profile: &Profile, lines: &[String]) -> Vec<Step> {
    lines
        .windows(2)
        .map(|w| Step {
            from_line: w[0].clone(),
            to_line: w[1].clone(),
            info: info(profile, &w[1]),
        })
        .collect()
}

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

fn check_rule(rule: &ValuesRule, values: &Value, effective: &Value) -> Option<(String, String)> {
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
        ValuesRule::Required {
            path,
            when,
            value,
            why,
        } => {
            let on = matches!(get(effective, when), Some(Value::Bool(true)))
                || get(effective, when).and_then(Value::as_str) == Some("true");
            (on && get(values, path).is_none()).then(|| {
                (
                    format!("`{path}` is not set while `{when}` is true: {why}"),
                    format!("set `{path}: {value}`"),
                )
            })
        }
    }
}

/// Looks up a dotted path in a values tree; a null value counts as unset.
pub fn get<'v>(values: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = values;
    for key in path.split('.') {
        cur = cur.as_mapping()?.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// Whether a dotted path is present in a values tree, even with a null value.
pub fn has_key(values: &Value, path: &str) -> bool {
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

fn find_matching<'v>(
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

fn contains_word(v: &Value, word: &str) -> bool {
    match v {
        Value::String(s) => s
            .split(|c: char| c.is_whitespace() || "|;&()'\"`".contains(c))
            .any(|t| t == word),
        Value::Sequence(s) => s.iter().any(|x| contains_word(x, word)),
        Value::Mapping(m) => m.values().any(|x| contains_word(x, word)),
        _ => false,
    }
}

/// One stop of an upgrade plan, as `lockstep plan` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStop {
    pub from: String,
    pub to: String,
    pub migrations: Vec<String>,
    pub one_time: Vec<String>,
    pub breaking: Vec<String>,
    pub requires: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub profile: String,
    pub from: String,
    pub to: String,
    pub stops: Vec<PlanStop>,
}

/// The whole path from `from` to `to`, every stop with what it brings.
pub fn plan(profile: &Profile, from: &Version, to: &Version) -> Result<Plan> {
    if to < from {
        return Err(anyhow!(Refusal(format!(
            "{to} is older than {from}: a plan covers upgrades; for a rollback see `lockstep render --allow-downgrade`"
        ))));
    }
    let lines = stops(profile, from, to)
        .map_err(|why| anyhow!(Refusal(format!("cannot plan {from} → {to}: {why}"))))?;
    let migrations: Vec<String> = profile
        .migrations
        .iter()
        .map(|m| format!("{}: {}", m.name, m.command.join(" ")))
        .collect();
    let mut out = Vec::new();
    if lines.len() == 1 {
        out.push(PlanStop {
            from: from.to_string(),
            to: to.to_string(),
            migrations: migrations.clone(),
            one_time: vec![],
            breaking: vec![],
            requires: vec![],
            notes: vec![],
        });
    }
    for (n, step) in steps_between(profile, &lines).into_iter().enumerate() {
        let info = step.info.clone();
        let stop_from = if n == 0 {
            from.to_string()
        } else {
            latest_of(profile, &step.from_line)
        };
        let stop_to = if step.to_line == line_of(to) {
            to.to_string()
        } else {
            latest_of(profile, &step.to_line)
        };
        out.push(PlanStop {
            from: stop_from,
            to: stop_to,
            migrations: migrations.clone(),
            one_time: info
                .iter()
                .flat_map(|i| &i.one_time)
                .map(|o| format!("{}: {} ({})", o.name, o.command.join(" "), o.why))
                .collect(),
            breaking: info
                .iter()
                .flat_map(|i| &i.breaking)
                .map(describe_rule)
                .collect(),
            requires: info.iter().flat_map(|i| i.requires.clone()).collect(),
            notes: info.iter().flat_map(|i| i.notes.clone()).collect(),
        });
    }
    Ok(Plan {
        profile: profile.name.clone(),
        from: from.to_string(),
        to: to.to_string(),
        stops: out,
    })
}

pub fn describe_rule(rule: &ValuesRule) -> String {
    match rule {
        ValuesRule::Moved { from, to } => format!("`{from}` moved to `{to}`"),
        ValuesRule::Removed { path, fix } => format!("`{path}` removed: {fix}"),
        ValuesRule::Forbidden { path, word, why } => {
            format!("`{path}` must not run `{word}`: {why}")
        }
        ValuesRule::Required {
            path,
            when,
            value,
            why,
        } => {
            format!(
                "when `{when}` is true, set `{path}` (to `{value}` for an existing install): {why}"
            )
        }
    }
}

impl Plan {
    /// The plan as a table a person reads before a maintenance window.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "Upgrade plan for {} from {} to {} ({} stop{}):\n",
            self.profile,
            self.from,
            self.to,
            self.stops.len(),
            if self.stops.len() == 1 { "" } else { "s" }
        );
        for (i, stop) in self.stops.iter().enumerate() {
            s += &format!("\n{}. {} → {}\n", i + 1, stop.from, stop.to);
            let mut section = |title: &str, items: &[String]| {
                if !items.is_empty() {
                    s += &format!("   {title}:\n");
                    for it in items {
                        s += &format!("     - {it}\n");
                    }
                }
            };
            section(
                "migrations (one Job each, before the new pods roll)",
                &stop.migrations,
            );
            section("one-time steps", &stop.one_time);
            section("breaking values changes", &stop.breaking);
            section("required settings", &stop.requires);
            section("notes", &stop.notes);
        }
        s
    }

    pub fn breaking_count(&self) -> usize {
        self.stops.iter().map(|s| s.breaking.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::built_in;

    fn v(s: &str) -> Version {
        parse_version(s).unwrap()
    }

    #[test]
    fn versions() {
        assert_eq!(v("3.8.3-python3.11"), Version::new(3, 8, 3));
        assert_eq!(v("v1.2"), Version::new(1, 2, 0));
        assert_eq!(v("2026.8.18172642"), Version::new(2026, 8, 18172642));
        assert_eq!(v("1.2.0-rc.1").pre.as_str(), "rc.1");
        assert!(parse_version("latest").is_none());
    }

    #[test]
    fn catalog_order_not_arithmetic() {
        let p = built_in("prefect-customer-managed").unwrap();
        assert!(admit(&p, "c", Some(&v("0.8.2")), &v("1.2.0"), false).is_ok());
        assert!(admit(&p, "c", Some(&v("0.8.2")), &v("0.8.5"), false).is_ok());
        let err = admit(&p, "c", Some(&v("0.6.1")), &v("1.2.0"), false)
            .unwrap_err()
            .0;
        assert!(err.contains("0.6.1 → 0.7.x → 0.8.x → 1.2.x"), "{err}");
        assert!(err.contains("lockstep bump --to 0.7.0"), "{err}");
        let err = admit(&p, "c", Some(&v("1.2.0")), &v("0.8.2"), false)
            .unwrap_err()
            .0;
        assert!(err.contains("downgrade"), "{err}");
        let err = admit(&p, "c", Some(&v("0.8.2")), &v("1.3.0"), false)
            .unwrap_err()
            .0;
        assert!(err.contains("not in the"), "{err}");
    }

    #[test]
    fn semver_rule() {
        let p = built_in("prefect-server").unwrap();
        assert!(admit(&p, "c", Some(&v("3.7.8")), &v("3.8.3"), false).is_ok());
        let err = admit(&p, "c", Some(&v("3.6.1")), &v("3.8.3"), false)
            .unwrap_err()
            .0;
        assert!(err.contains("3.6.1 → 3.7.x → 3.8.x"), "{err}");
        let a = admit(&p, "c", None, &v("3.8.3"), false).unwrap();
        assert_eq!(a.from_lines, vec!["3.7", "3.8"]);
    }
}
