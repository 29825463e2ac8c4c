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

/// The gate said no: exit code 3, nothing on stdout.
#[derive(Debug)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refusal {}

/// Reads a version leniently: `v1.2.3`, `1.2`, `3.8.3-python3.11` (→ 3.8.3),
/// `2.1.0-1` (a package revision: → 2.1.0). Only a suffix whose first identifier is
/// a pre-release word (`alpha`, `beta`, `rc`, `pre`, `dev`, `a`, `b`, then digits
/// only) stays a pre-release; the gate script classifies suffixes the same way.
pub fn parse_version(text: &str) -> Option<Version> {
    parse_release(text).map(|(v, _)| v)
}

/// A version, and whether it floats: `3.9` (or a tag `3.9-alpine`) names whichever
/// 3.9.x the registry serves, so it is never a downgrade of a 3.9.1.
pub fn parse_release(text: &str) -> Option<(Version, bool)> {
    let t = text.trim().trim_start_matches('v');
    if let Ok(v) = Version::parse(t) {
        if !v.pre.is_empty() && !is_prerelease(v.pre.as_str()) {
            return Some((Version::new(v.major, v.minor, v.patch), false));
        }
        return Some((v, false));
    }
    let nums: Vec<u64> = t
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.')
        .take(3)
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match nums.as_slice() {
        [a, b] => Some((Version::new(*a, *b, 0), true)),
        [a, b, c] => Some((Version::new(*a, *b, *c), false)),
        _ => None,
    }
}

/// Whether a semver pre-release text names a pre-release (and not a variant such
/// as `python3.11` or a package revision such as `1`). `templates/gate.sh` has the
/// same rule in `split_version`.
fn is_prerelease(pre: &str) -> bool {
    let id = pre.split('.').next().unwrap_or("");
    let word_len = id.bytes().take_while(u8::is_ascii_lowercase).count();
    let (word, tail) = id.split_at(word_len);
    tail.bytes().all(|b| b.is_ascii_digit())
        && matches!(word, "alpha" | "beta" | "rc" | "pre" | "dev" | "a" | "b")
}

pub fn line_of(v: &Version) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// The largest number the gate script compares (18 digits fit its arithmetic).
pub const MAX: u64 = 999_999_999_999_999_999;

/// A release's place in the order both halves of the gate use: major, minor,
/// patch, then a pre-release (0) before its release (1). Pre-releases of one
/// version are not ordered among themselves, and build metadata and variant
/// suffixes do not count: exactly what the gate script compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(pub u64, pub u64, pub u64, pub u64);

pub fn key(v: &Version) -> Key {
    Key(
        v.major.min(MAX),
        v.minor.min(MAX),
        v.patch.min(MAX),
        u64::from(v.pre.is_empty()),
    )
}

impl Key {
    fn line_start(major: u64, minor: u64) -> Key {
        Key(major, minor, 0, 0)
    }
    fn line_end(major: u64, minor: u64) -> Key {
        Key(major, minor, MAX, 1)
    }
    fn show(self) -> String {
        match self {
            Key(a, b, _, _) if b == MAX => format!("{a}.x"),
            Key(a, b, c, _) if c == MAX => format!("{a}.{b}.x"),
            Key(a, b, c, _) => format!("{a}.{b}.{c}"),
        }
    }
}

impl fmt::Display for Key {
    /// `M.m.p.f`, as the gate script reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}.{}", self.0, self.1, self.2, self.3)
    }
}

/// Live releases from `lo` to `hi`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lo: Key,
    pub hi: Key,
}

impl Range {
    pub fn contains(&self, k: Key) -> bool {
        self.lo <= k && k <= self.hi
    }
    fn line(major: u64, minor: u64) -> Range {
        Range {
            lo: Key::line_start(major, minor),
            hi: Key::line_end(major, minor),
        }
    }
    /// For people: `0.8.x`, `1.2.0`, `24.8.0 to 24.8.3`.
    pub fn describe(&self) -> String {
        let Range { lo, hi } = *self;
        if lo == Key::line_start(lo.0, lo.1) && hi == Key::line_end(lo.0, lo.1) {
            return format!("{}.{}.x", lo.0, lo.1);
        }
        if lo == Key(lo.0, 0, 0, 0) && hi == Key(lo.0, MAX, MAX, 1) {
            return format!("{}.x", lo.0);
        }
        let (l, h) = (lo.show(), hi.show());
        if l == h {
            l
        } else {
            format!("{l} to {h}")
        }
    }
    /// `LO:HI`, as the gate script reads `LOCKSTEP_FROM_RANGES`.
    pub fn script(&self) -> String {
        format!("{}:{}", self.lo, self.hi)
    }
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
    pub fn describe_ranges(&self) -> String {
        self.from_ranges
            .iter()
            .map(Range::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// The ranges for the gate script.
    pub fn script_ranges(&self) -> String {
        self.from_ranges
            .iter()
            .map(Range::script)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn info(profile: &Profile, line: &str) -> Option<Line> {
    profile
        .releases
        .lines
        .iter()
        .find(|l| l.line == line)
        .cloned()
}

/// Whether the profile's lines are the only lines (every rule but plain `semver`
/// without lines and `anyForward`).
fn listed(profile: &Profile) -> bool {
    match profile.releases.rule {
        UpgradeRule::AnyForward => false,
        UpgradeRule::Semver => !profile.releases.lines.is_empty(),
        UpgradeRule::Catalog | UpgradeRule::Calver => true,
    }
}

/// The profile's lines in upgrade order: as listed for `catalog`, by number otherwise.
fn ordered_lines(profile: &Profile) -> Vec<(u64, u64)> {
    let mut lines: Vec<(u64, u64)> = profile
        .releases
        .lines
        .iter()
        .filter_map(|l| parse_line(&l.line).ok())
        .collect();
    if profile.releases.rule != UpgradeRule::Catalog {
        lines.sort_unstable();
        lines.dedup();
    }
    lines
}

fn line_text((a, b): (u64, u64)) -> String {
    format!("{a}.{b}")
}

fn split_line(v: &Version) -> (u64, u64) {
    (v.major, v.minor)
}

/// The range of a line the target may be reached from: the whole line, or, with
/// `fromLatestPatch` and a known `latest`, from that patch on.
fn entry_range(profile: &Profile, (a, b): (u64, u64)) -> Range {
    let mut r = Range::line(a, b);
    if profile.releases.from_latest_patch {
        if let Some(latest) = info(profile, &line_text((a, b)))
            .and_then(|l| l.latest)
            .and_then(|l| parse_version(&l))
        {
            r.lo = key(&latest);
        }
    }
    r
}

/// THE rule: which live releases `target` may follow, and the newest live release
/// it does not downgrade. Both the render (`admit`, `plan`) and the in-cluster
/// gate (`LOCKSTEP_FROM_RANGES`) decide with exactly this. Err: the target's line
/// is unknown to a profile whose lines are the only lines.
pub fn predecessors(
    profile: &Profile,
    target: &Version,
    floating: bool,
) -> Result<(Vec<Range>, Key), String> {
    let t = key(target);
    let tl = split_line(target);
    let newest = if floating {
        Key::line_end(tl.0, tl.1)
    } else {
        t
    };
    let mut ranges = vec![Range {
        lo: if profile.releases.rule == UpgradeRule::AnyForward {
            Key(0, 0, 0, 0)
        } else {
            Key::line_start(tl.0, tl.1)
        },
        hi: newest,
    }];
    match profile.releases.rule {
        UpgradeRule::AnyForward => {}
        _ if !listed(profile) => {
            // Plain semver: the previous minor; a .0 from any line of the previous major
            // (which minor was its last is not known without a list of lines).
            if tl.1 > 0 {
                ranges.push(Range::line(tl.0, tl.1 - 1));
            } else if tl.0 > 0 {
                ranges.push(Range {
                    lo: Key(tl.0 - 1, 0, 0, 0),
                    hi: Key(tl.0 - 1, MAX, MAX, 1),
                });
            }
        }
        _ => {
            let lines = ordered_lines(profile);
            let i = lines.iter().position(|l| *l == tl).ok_or_else(|| {
                format!(
                    "its release line {} is not in the {} catalog (lines: {})",
                    line_text(tl),
                    profile.name,
                    profile.releases.joined(", ")
                )
            })?;
            if i > 0 {
                ranges.push(entry_range(profile, lines[i - 1]));
            }
        }
    }
    for j in &profile.releases.jumps {
        if parse_line(&j.to).ok() == Some(tl) {
            if let Ok(from) = parse_line(&j.from) {
                ranges.push(entry_range(profile, from));
            }
        }
    }
    // A hard stop below the target must have been deployed: nothing older follows.
    let stop = profile
        .releases
        .hard_stops
        .iter()
        .filter_map(|h| parse_version(&h.version))
        .map(|h| key(&h))
        .filter(|h| *h < t)
        .max();
    if let Some(h) = stop {
        for r in &mut ranges {
            r.lo = r.lo.max(h);
        }
    }
    ranges.retain(|r| r.lo <= r.hi);
    // Listed from the newest down, without duplicates.
    ranges.sort_by(|a, b| b.hi.cmp(&a.hi).then(b.lo.cmp(&a.lo)));
    ranges.dedup();
    ranges.reverse();
    Ok((ranges, newest))
}

/// One stop on an upgrade path.
#[derive(Debug, Clone)]
struct Node {
    version: Version,
    floating: bool,
    /// How the path shows it: the deployed release, `0.7.x`, a hard stop `24.8.0`.
    label: String,
    /// The release to name in "upgrade to it first".
    next: String,
    line: (u64, u64),
    hard_stop: bool,
}

/// The shortest upgrade path from `from` to `to` (both included), each hop one that
/// [`predecessors`] admits. Err(reason) when there is none.
fn walk(
    profile: &Profile,
    from: &Version,
    to: &Version,
    floating: bool,
) -> Result<Vec<Node>, String> {
    let (fl, tl) = (split_line(from), split_line(to));
    let lines: Vec<(u64, u64)> = if listed(profile) {
        let lines = ordered_lines(profile);
        if !lines.contains(&fl) {
            return Err(format!(
                "the deployed release {from} is on line {}, which the {} catalog does not know (lines: {})",
                line_text(fl),
                profile.name,
                profile.releases.joined(" → ")
            ));
        }
        lines
    } else if profile.releases.rule == UpgradeRule::AnyForward {
        ordered_lines(profile)
    } else {
        // Plain semver: the lines seed 003 walks, from the deployed line to the target's.
        let mut out = vec![fl];
        let (mut maj, mut min) = fl;
        while (maj, min) < tl && out.len() < 10_000 {
            if maj < tl.0 {
                maj += 1;
                min = 0;
            } else {
                min += 1;
            }
            out.push((maj, min));
        }
        out
    };
    let pos = |l: (u64, u64)| lines.iter().position(|x| *x == l);
    let order = |l: (u64, u64)| match (pos(l), pos(fl), pos(tl)) {
        (Some(p), _, _) => p as i64,
        _ => i64::MIN,
    };
    let (fo, to_o) = (order(fl), order(tl));
    let mut nodes = vec![Node {
        version: from.clone(),
        floating: false,
        label: from.to_string(),
        next: from.to_string(),
        line: fl,
        hard_stop: false,
    }];
    for &l in &lines {
        let o = order(l);
        let between = if profile.releases.rule == UpgradeRule::AnyForward || !listed(profile) {
            l > fl && l < tl
        } else {
            o > fo && o < to_o
        };
        if !between {
            continue;
        }
        let latest = info(profile, &line_text(l)).and_then(|i| i.latest);
        let version = latest
            .as_deref()
            .and_then(parse_version)
            .unwrap_or_else(|| Version::new(l.0, l.1, 0));
        nodes.push(Node {
            version,
            floating: true,
            label: format!("{}.x", line_text(l)),
            next: latest.unwrap_or_else(|| format!("{}.x", line_text(l))),
            line: l,
            hard_stop: false,
        });
    }
    let (fk, tk) = (key(from), key(to));
    for h in &profile.releases.hard_stops {
        let Some(v) = parse_version(&h.version) else {
            continue;
        };
        if fk < key(&v) && key(&v) < tk {
            nodes.push(Node {
                label: v.to_string(),
                next: v.to_string(),
                line: split_line(&v),
                floating: false,
                hard_stop: true,
                version: v,
            });
        }
    }
    nodes.push(Node {
        version: to.clone(),
        floating,
        label: format!("{}.x", line_text(tl)),
        next: to.to_string(),
        line: tl,
        hard_stop: false,
    });
    // In upgrade order: by line (catalog position), then by version.
    let last = nodes.len() - 1;
    let mut idx: Vec<usize> = (1..last).collect();
    // A hard stop before the line it belongs to, when both are the same release.
    idx.sort_by_key(|&i| {
        (
            order(nodes[i].line),
            key(&nodes[i].version),
            !nodes[i].hard_stop,
        )
    });
    let mut sorted = vec![nodes[0].clone()];
    sorted.extend(idx.into_iter().map(|i| nodes[i].clone()));
    sorted.push(nodes[last].clone());
    let nodes = sorted;
    // Breadth-first over hops forward that the rule admits.
    let preds: Vec<Option<Vec<Range>>> = nodes
        .iter()
        .map(|n| {
            predecessors(profile, &n.version, n.floating)
                .ok()
                .map(|p| p.0)
        })
        .collect();
    let mut prev: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut seen = vec![false; nodes.len()];
    seen[0] = true;
    let mut queue = std::collections::VecDeque::from([0usize]);
    while let Some(u) = queue.pop_front() {
        for v in u + 1..nodes.len() {
            if seen[v] {
                continue;
            }
            let admits = preds[v]
                .as_ref()
                .is_some_and(|r| r.iter().any(|r| r.contains(key(&nodes[u].version))));
            if admits {
                seen[v] = true;
                prev[v] = Some(u);
                queue.push_back(v);
            }
        }
    }
    if !seen[last] {
        return Err(format!(
            "no upgrade path from {from} to {to} under the {} profile's rules",
            profile.name
        ));
    }
    let mut path = vec![last];
    while let Some(p) = prev[*path.last().expect("not empty")] {
        path.push(p);
    }
    path.reverse();
    Ok(path.into_iter().map(|i| nodes[i].clone()).collect())
}

fn rule_text(profile: &Profile) -> String {
    let name = &profile.name;
    let one_at_a_time = |what: &str, how: &str| {
        format!(
            "{name} upgrades one {what} at a time{how} ({})",
            profile.releases.joined(" → ")
        )
    };
    let mut s = match profile.releases.rule {
        UpgradeRule::Catalog => one_at_a_time("release line", ", in catalog order"),
        UpgradeRule::Semver if listed(profile) => one_at_a_time("listed release line", ""),
        UpgradeRule::Semver => format!(
            "{name} upgrades a patch or the next minor directly; a skipped minor is walked one minor at a time; a new major starts at its .0"
        ),
        UpgradeRule::Calver => one_at_a_time("release (YEAR.MONTH)", ", in date order"),
        UpgradeRule::AnyForward => {
            format!("{name} upgrades to any later release, never past a hard stop")
        }
    };
    if profile.releases.from_latest_patch {
        s += "; the next line only from the latest patch of the current one";
    }
    if !profile.releases.jumps.is_empty() {
        let j: Vec<String> = profile
            .releases
            .jumps
            .iter()
            .map(|j| format!("{} → {}", j.from, j.to))
            .collect();
        s += &format!("; direct jumps: {}", j.join(", "));
    }
    if !profile.releases.hard_stops.is_empty() {
        let h: Vec<&str> = profile
            .releases
            .hard_stops
            .iter()
            .map(|h| h.version.as_str())
            .collect();
        s += &format!("; hard stops: {}", h.join(", "));
    }
    s
}

/// A release of `line` to name in a command: the catalog's latest of the line, else its
/// `.0`, a version `lockstep bump --to` accepts (`3.6.x` is not one).
fn release_to_name(profile: &Profile, line: &str) -> String {
    info(profile, line)
        .and_then(|l| l.latest)
        .unwrap_or_else(|| format!("{line}.0"))
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
pub fn admit_release(
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
        admission.downgrade = true;
        return Ok(admission);
    }
    let path = walk(profile, from, target, floating).map_err(|why| {
        Refusal(format!(
            "refusing to upgrade {chart} from {from} to {target}: {why}.\n  fix: name the deployed release with --from (or correct lockstep.lock), or extend the catalog with --profile FILE"
        ))
    })?;
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
    Err(Refusal(format!(
        "refusing to upgrade {chart} from {from} to {target}: that skips {what}.\n  rule: {}\n  path: {}\n  now:  upgrade to {stop} first: `lockstep bump --to {next}` (or pin the chart to {next}), sync, then continue",
        rule_text(profile),
        labels.join(" → "),
    )))
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
pub fn steps(profile: &Profile, from: &Version, to: &Version) -> Result<Vec<Step>, Refusal> {
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

/// The whole path from `from` to `to`, every stop with what it brings. Each stop
/// is a hop [`predecessors`] admits: what the render and the in-cluster gate allow.
pub fn plan(profile: &Profile, from: &Version, to: &Version) -> Result<Plan> {
    let (_, newest) = predecessors(profile, to, false)
        .map_err(|why| anyhow!(Refusal(format!("cannot plan {from} → {to}: {why}"))))?;
    if key(from) > newest {
        return Err(anyhow!(Refusal(format!(
            "{to} is older than {from}: a plan covers upgrades; for a rollback see `lockstep render --allow-downgrade`"
        ))));
    }
    let path = walk(profile, from, to, false)
        .map_err(|why| anyhow!(Refusal(format!("cannot plan {from} → {to}: {why}"))))?;
    let migrations: Vec<String> = profile
        .migrations
        .iter()
        .map(|m| format!("{}: {}", m.name, m.describe()))
        .collect();
    let mut out = Vec::new();
    for (n, hop) in path.windows(2).enumerate() {
        let (a, b) = (&hop[0], &hop[1]);
        let lines = if a.line == b.line {
            vec![]
        } else {
            crossed_lines(profile, &a.version, &b.version).unwrap_or_default()
        };
        let infos: Vec<Line> = steps_between(profile, &lines)
            .into_iter()
            .filter_map(|s| s.info)
            .collect();
        out.push(PlanStop {
            from: if n == 0 {
                from.to_string()
            } else {
                a.next.clone()
            },
            to: if n + 2 == path.len() {
                to.to_string()
            } else {
                b.next.clone()
            },
            migrations: migrations.clone(),
            one_time: infos
                .iter()
                .flat_map(|i| &i.one_time)
                .map(|o| format!("{}: {} ({})", o.name, o.command.join(" "), o.why))
                .collect(),
            breaking: infos
                .iter()
                .flat_map(|i| &i.breaking)
                .map(describe_rule)
                .collect(),
            requires: infos.iter().flat_map(|i| i.requires.clone()).collect(),
            notes: infos.iter().flat_map(|i| i.notes.clone()).collect(),
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
        assert_eq!(a.describe_ranges(), "3.7.x, 3.8.0 to 3.8.3");
    }

    fn profile(releases: &str) -> Profile {
        let text = format!(
            "name: t\nworkload: {{matchLabels: {{a: b}}}}\nmigrations: [{{name: m, command: [m]}}]\nreleases:\n{releases}"
        );
        Profile::parse(&text, "table").unwrap()
    }

    /// What the gate script, run by `sh` with the environment a render gives it,
    /// says of `live` (None: no record).
    fn script_allows(a: &Admission, live: &str) -> bool {
        let dir = std::env::temp_dir().join(format!(
            "lockstep-gate-table-{}-{}",
            std::process::id(),
            live.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("release"), format!("{live}\n")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(crate::template::GATE_SCRIPT)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(crate::inject::gate_env(a, "rec"))
            .env("LOCKSTEP_STATE_DIR", &dir)
            .env("LOCKSTEP_TERMINATION_LOG", dir.join("term"))
            .output()
            .expect("sh runs");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().all(|l| l.starts_with("lockstep gate: ")),
            "shell errors: {err}"
        );
        out.status.success()
    }

    /// Defect 7 of issue 17 and the version rules of issue 15: for each case the
    /// render (`admit`), the in-cluster gate script (run by `sh`) and `plan` agree,
    /// and say what the table says.
    #[test]
    fn render_gate_script_and_plan_agree_on_every_rule() {
        let plain = profile("  rule: semver");
        let listed =
            profile("  rule: semver\n  lines: [{line: '2.4'}, {line: '2.5'}, {line: '3.1'}]");
        let catalog = built_in("prefect-customer-managed").unwrap();
        let calver = profile(
            "  rule: calver\n  fromLatestPatch: true\n  lines: [{line: '2025.10'}, {line: '2025.12', latest: 2025.12.4}, {line: '2026.2'}, {line: '2026.4', latest: 2026.4.2}, {line: '2026.6', latest: 2026.6.3}, {line: '2026.8'}]",
        );
        let stops =
            profile("  rule: anyForward\n  hardStops: [{version: 23.11.0}, {version: 24.8.0}]");
        let lts = profile(
            "  rule: semver\n  jumps: [{from: '3.4', to: '3.10', why: LTS}]\n  lines: [{line: '3.4'}, {line: '3.5'}, {line: '3.6'}, {line: '3.7'}, {line: '3.8'}, {line: '3.9'}, {line: '3.10'}]",
        );
        // (profile, deployed, target, allowed)
        let table: &[(&Profile, &str, &str, bool)] = &[
            // majors: the defect: a .0 follows any line of the previous major
            (&plain, "2.5.3", "3.0.0", true),
            (&plain, "2.0.0", "3.0.2", true),
            (&plain, "2.5.3", "3.1.0", false),
            (&plain, "1.9.0", "3.0.0", false),
            (&plain, "3.0.0", "2.5.3", false),
            // minors and patches
            (&plain, "3.0.5", "3.1.2", true),
            (&plain, "3.0.5", "3.2.0", false),
            (&plain, "3.0.0", "3.0.1", true),
            (&plain, "3.0.1", "3.0.1", true),
            (&plain, "3.0.1", "3.0.0", false),
            // pre-releases and package revisions
            (&plain, "2.1.0", "2.1.0-1", true),
            (&plain, "2.1.0-1", "2.1.0", true),
            (&plain, "2.1.0", "2.1.0-rc.1", false),
            (&plain, "2.1.0-rc.1", "2.1.0", true),
            (&plain, "2.0.3", "2.1.0-rc.1", true),
            (&plain, "2.1.0-rc.1", "2.1.0-rc.2", true),
            (&plain, "2.1.0-beta2", "2.1.0", true),
            (&plain, "2.1.1", "2.1.0-beta2", false),
            (&plain, "3.8.3-python3.11", "3.8.3", true),
            (&plain, "2.1.0+build.7", "2.1.0", true),
            // only the listed lines
            (&listed, "2.5.1", "3.1.0", true),
            (&listed, "2.4.9", "3.1.0", false),
            (&listed, "2.4.0", "2.6.0", false),
            (&listed, "2.3.0", "2.4.0", false),
            // catalog order, whatever the numbers
            (&catalog, "0.8.2", "1.2.0", true),
            (&catalog, "0.6.1", "1.2.0", false),
            (&catalog, "0.8.0", "0.8.2", true),
            // calver: listed lines only, from the latest patch
            (&calver, "2026.6.3", "2026.8.0", true),
            (&calver, "2026.6.4", "2026.8.1", true),
            (&calver, "2026.6.1", "2026.8.0", false),
            (&calver, "2026.4.2", "2026.8.0", false),
            (&calver, "2025.12.4", "2026.2.0", true),
            (&calver, "2025.12.4", "2026.7.0", false),
            (&calver, "2026.8.1", "2026.8.0", false),
            // hard stops
            (&stops, "24.6.0", "24.8.0", true),
            (&stops, "24.6.0", "24.9.0", false),
            (&stops, "24.8.0", "25.1.0", true),
            (&stops, "24.8.1", "24.9.0", true),
            (&stops, "23.6.2", "24.8.0", false),
            (&stops, "24.9.0", "24.8.0", false),
            // LTS to LTS, minor to minor
            (&lts, "3.4.3", "3.10.0", true),
            (&lts, "3.4.3", "3.5.0", true),
            (&lts, "3.4.3", "3.9.0", false),
            (&lts, "3.9.1", "3.10.0", true),
        ];
        for (p, from, to, allowed) in table {
            let (f, t) = (v(from), v(to));
            let render = admit(p, "c", Some(&f), &t, false).is_ok();
            let Ok(a) = admit(p, "c", None, &t, false) else {
                // An unknown line: the render refuses, no gate is emitted.
                assert!(!render && !allowed, "{} {from} → {to}", p.name);
                continue;
            };
            let script = script_allows(&a, from);
            let plan = plan(p, &f, &t);
            let plan_direct = plan.as_ref().is_ok_and(|pl| pl.stops.len() == 1);
            assert_eq!(render, *allowed, "render: {} {from} → {to}", p.name);
            assert_eq!(
                script,
                *allowed,
                "gate script: {} {from} → {to}: {}",
                p.name,
                a.script_ranges()
            );
            if key(&f) <= key(&t) {
                assert_eq!(
                    plan_direct, *allowed,
                    "plan: {} {from} → {to}: {plan:?}",
                    p.name
                );
            }
            // Every stop of a plan is a step both halves allow.
            if let Ok(pl) = plan {
                for s in &pl.stops {
                    let (sf, st) = (parse_version(&s.from), parse_version(&s.to));
                    if let (Some(sf), Some(st)) = (sf, st) {
                        let a = admit(p, "c", None, &st, false).unwrap();
                        assert!(
                            admit(p, "c", Some(&sf), &st, false).is_ok(),
                            "plan stop {} → {}",
                            s.from,
                            s.to
                        );
                        assert!(
                            script_allows(&a, &s.from),
                            "plan stop {} → {} in the script",
                            s.from,
                            s.to
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn floating_tags_never_downgrade_their_line() {
        let p = profile("  rule: semver\n  lines: [{line: '3.8'}, {line: '3.9'}]");
        let (t, floating) = parse_release("3.9").unwrap();
        assert!(floating);
        assert!(!parse_release("3.9.1").unwrap().1);
        for (live, ok) in [
            ("3.9.1", true),
            ("3.9.7", true),
            ("3.8.2", true),
            ("3.10.0", false),
            ("3.7.0", false),
        ] {
            let r = admit_release(&p, "kong", Some(&v(live)), &t, true, false).is_ok();
            let a = admit_release(&p, "kong", None, &t, true, false).unwrap();
            assert_eq!(r, ok, "render: {live} → 3.9");
            assert_eq!(script_allows(&a, live), ok, "script: {live} → 3.9");
        }
        // Pinned, 3.9.0 is a downgrade of 3.9.1.
        assert!(admit(&p, "kong", Some(&v("3.9.1")), &t, false).is_err());
    }
}
