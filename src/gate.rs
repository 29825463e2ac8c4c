//! The upgrade gate: which release is being rendered, whether it may follow the
//! deployed one, and what the values must look like after each step.
//!
//! It owns version parsing, the catalog's path rule (catalog order or seed 003's
//! semver rule), the refusal messages, the values checks, and the upgrade plan.
//! It must not read files or manifests itself: callers hand it versions and
//! values; the in-cluster half of the gate is emitted by `inject` from the
//! `Admission` computed here.

use crate::profile::{parse_line, Line, Profile, UpgradeRule, ValuesRule};
use anyhow::{anyhow, Result};
use semver::Version;
use serde::Serialize;
use serde_yaml::Value;
use std::fmt;

mod path;
mod plan;
mod rules;
#[cfg(test)]
mod tests;
mod version;

pub(crate) use path::predecessors;
use path::{
    info, line_text, listed, ordered_lines, release_to_name, rule_text, split_line, walk, Node,
};
pub use plan::{describe_rule, plan, Plan, PlanStop};
pub use rules::{check_values, check_values_with, Finding};
pub(crate) use rules::{get, has_key};
pub use version::{key, line_of, parse_release, parse_version, Key, Range, MAX};

/// The gate said no: exit code 3, nothing on stdout.
#[derive(Debug)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refusal {}

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
    /// The target floats (`3.9`): any release of its line.
    pub floating: bool,
    pub from: Option<Version>,
    /// Lines crossed from the deployed release to the target (their values rules,
    /// one-time steps and notes apply).
    pub steps: Vec<Step>,
    /// The live releases the target may follow: what the in-cluster gate accepts.
    /// The render's own decision is membership in these same ranges
    /// ([`predecessors`]).
    pub from_ranges: Vec<Range>,
    /// The newest live release the target does not downgrade.
    pub newest: Key,
    /// A downgrade was asked for and allowed.
    pub downgrade: bool,
}

impl Admission {
    /// The ranges for people: `0.8.x, 1.2.0`.
    pub(crate) fn describe_ranges(&self) -> String {
        self.from_ranges
            .iter()
            .map(Range::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// The ranges for the gate script.
    pub(crate) fn script_ranges(&self) -> String {
        self.from_ranges
            .iter()
            .map(Range::script)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Decides whether `target` may be rendered over `from`.
pub fn admit(
    profile: &Profile,
    chart: &str,
    from: Option<&Version>,
    target: &Version,
    allow_downgrade: bool,
) -> Result<Admission, Refusal> {
    admit_release(profile, chart, from, target, false, allow_downgrade)
}

/// [`admit`] for a target that may float (`3.9`: any 3.9.x).
pub(crate) fn admit_release(
    profile: &Profile,
    chart: &str,
    from: Option<&Version>,
    target: &Version,
    floating: bool,
    allow_downgrade: bool,
) -> Result<Admission, Refusal> {
    let (from_ranges, newest) = predecessors(profile, target, floating).map_err(|why| {
        Refusal(format!(
            "refusing to render {chart} {target}: {why}.\n  fix: render a release the catalog knows, or extend the catalog with a profile file (`lockstep profiles show {} > profile.yaml`, add the line, then --profile profile.yaml)",
            profile.name
        ))
    })?;
    let mut admission = Admission {
        target: target.clone(),
        floating,
        from: from.cloned(),
        steps: vec![],
        from_ranges,
        newest,
        downgrade: false,
    };
    let Some(from) = from else {
        return Ok(admission);
    };
    let k = key(from);
    if admission.from_ranges.iter().any(|r| r.contains(k)) {
        admission.steps = crossed(profile, from, target).unwrap_or_default();
        return Ok(admission);
    }
    if k > newest {
        downgrade(profile, chart, from, target, allow_downgrade)?;
        admission.downgrade = true;
        return Ok(admission);
    }
    let path = walk(profile, from, target, floating).map_err(|why| {
        Refusal(format!(
            "refusing to upgrade {chart} from {from} to {target}: {why}.\n  fix: name the deployed release with --from (or correct lockstep.lock), or extend the catalog with --profile FILE"
        ))
    })?;
    Err(skipping(profile, chart, from, target, &path))
}

/// A downgrade from `from` to `target`: refused unless asked for and the profile
/// supports it.
fn downgrade(
    profile: &Profile,
    chart: &str,
    from: &Version,
    target: &Version,
    allow_downgrade: bool,
) -> Result<(), Refusal> {
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
    Ok(())
}

/// The refusal of an upgrade that skips the stops between the ends of `path`.
fn skipping(
    profile: &Profile,
    chart: &str,
    from: &Version,
    target: &Version,
    path: &[Node],
) -> Refusal {
    let skipped = &path[1..path.len() - 1];
    let what = if skipped.iter().all(|n| !n.hard_stop) {
        format!(
            "{} release line{}",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "{} required stop{} (hard stops must be deployed on the way)",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" }
        )
    };
    let labels: Vec<&str> = path.iter().map(|n| n.label.as_str()).collect();
    let first = &path[1];
    let stop = if first.hard_stop {
        first.next.clone()
    } else {
        line_text(first.line)
    };
    // A version `bump` accepts, where the path shows a line (`3.6.x`).
    let next = if first.floating {
        release_to_name(profile, &line_text(first.line))
    } else {
        first.next.clone()
    };
    Refusal(format!(
        "refusing to upgrade {chart} from {from} to {target}: that skips {what}.\n  rule: {}\n  path: {}\n  now:  upgrade to {stop} first: `lockstep bump --to {next}` (or pin the chart to {next}), sync, then continue",
        rule_text(profile),
        labels.join(" → "),
    ))
}

/// The lines from `from`'s to `to`'s, both included, in upgrade order: every line
/// whose values rules, one-time steps and notes an upgrade between them crosses.
fn crossed_lines(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<String>, String> {
    let (fl, tl) = (split_line(from), split_line(to));
    if fl == tl {
        return Ok(vec![line_text(fl)]);
    }
    let mut out = vec![fl];
    if listed(profile) {
        let lines = ordered_lines(profile);
        let pos = |l| lines.iter().position(|x| *x == l);
        let (Some(fi), Some(ti)) = (pos(fl), pos(tl)) else {
            let unknown = if pos(fl).is_none() { fl } else { tl };
            return Err(format!(
                "line {} is not in the {} catalog (lines: {})",
                line_text(unknown),
                profile.name,
                profile.releases.joined(" → ")
            ));
        };
        if ti < fi {
            return Ok(vec![]);
        }
        out.extend(&lines[fi + 1..=ti]);
    } else {
        let path = walk(profile, from, to, false)?;
        for n in &path[1..] {
            if !out.contains(&n.line) {
                out.push(n.line);
            }
        }
        for l in ordered_lines(profile) {
            if l > fl && l < tl && !out.contains(&l) {
                out.push(l);
            }
        }
        out.sort_unstable();
    }
    Ok(out.into_iter().map(line_text).collect())
}

fn crossed(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<Step>, String> {
    Ok(steps_between(profile, &crossed_lines(profile, from, to)?))
}

/// Every step from `from` up to `to`, legal or not (what `lockstep values migrate`
/// walks); empty when both are on one line. Err for a downgrade or an unknown line.
pub(crate) fn steps(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<Step>, Refusal> {
    if key(to) < key(from) {
        return Err(Refusal(format!(
            "{to} is older than {from}: only upgrades have steps"
        )));
    }
    crossed(profile, from, to)
        .map_err(|why| Refusal(format!("no upgrade path from {from} to {to}: {why}")))
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
