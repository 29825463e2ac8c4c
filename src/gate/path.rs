//! Upgrade paths: which live releases a target may follow ([`predecessors`], the one
//! rule the render, the in-cluster gate and `plan` share), and the shortest walk from a
//! deployed release to a target through the lines and hard stops between.
//!
//! It must not build refusal messages beyond the reason (`gate` does) or read values.

use super::*;

pub(super) fn info(profile: &Profile, line: &str) -> Option<Line> {
    profile
        .releases
        .lines
        .iter()
        .find(|l| l.line == line)
        .cloned()
}

/// Whether the profile's lines are the only lines (every rule but plain `semver`
/// without lines and `anyForward`).
pub(super) fn listed(profile: &Profile) -> bool {
    match profile.releases.rule {
        UpgradeRule::AnyForward => false,
        UpgradeRule::Semver => !profile.releases.lines.is_empty(),
        UpgradeRule::Catalog | UpgradeRule::Calver => true,
    }
}

/// The profile's lines in upgrade order: as listed for `catalog`, by number otherwise.
pub(super) fn ordered_lines(profile: &Profile) -> Vec<(u64, u64)> {
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

pub(super) fn line_text((a, b): (u64, u64)) -> String {
    format!("{a}.{b}")
}

pub(super) fn split_line(v: &Version) -> (u64, u64) {
    (v.major, v.minor)
}

/// The range of a line the target may be reached from: the whole line, or, with
/// `fromLatestPatch` and a known `latest`, from that patch on.
pub(super) fn entry_range(profile: &Profile, (a, b): (u64, u64)) -> Range {
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
pub(crate) fn predecessors(
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
pub(super) struct Node {
    pub(super) version: Version,
    pub(super) floating: bool,
    /// How the path shows it: the deployed release, `0.7.x`, a hard stop `24.8.0`.
    pub(super) label: String,
    /// The release to name in "upgrade to it first".
    pub(super) next: String,
    pub(super) line: (u64, u64),
    pub(super) hard_stop: bool,
}

/// The shortest upgrade path from `from` to `to` (both included), each hop one that
/// [`predecessors`] admits. Err(reason) when there is none.
pub(super) fn walk(
    profile: &Profile,
    from: &Version,
    to: &Version,
    floating: bool,
) -> Result<Vec<Node>, String> {
    let lines = walked_lines(profile, from, to)?;
    let nodes = stops(profile, &lines, from, to, floating);
    shortest_path(profile, &nodes, from, to)
}

/// The release lines a walk from `from` to `to` may stop on, in upgrade order: the
/// catalog's, or (plain semver) every minor from the deployed line to the target's.
pub(super) fn walked_lines(
    profile: &Profile,
    from: &Version,
    to: &Version,
) -> Result<Vec<(u64, u64)>, String> {
    let (fl, tl) = (split_line(from), split_line(to));
    Ok(if listed(profile) {
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
    })
}

/// The stops of a walk in upgrade order: the deployed release, the latest of each line
/// between, the hard stops between, the target.
pub(super) fn stops(
    profile: &Profile,
    lines: &[(u64, u64)],
    from: &Version,
    to: &Version,
    floating: bool,
) -> Vec<Node> {
    let (fl, tl) = (split_line(from), split_line(to));
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
    for &l in lines {
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
    nodes.extend(hard_stops_between(profile, from, to));
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
    sorted
}

/// The profile's hard stops strictly between `from` and `to`.
pub(super) fn hard_stops_between(profile: &Profile, from: &Version, to: &Version) -> Vec<Node> {
    let (fk, tk) = (key(from), key(to));
    let mut nodes = Vec::new();
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
    nodes
}

/// Breadth-first over hops forward that the rule admits: the shortest path from the
/// first stop to the last.
pub(super) fn shortest_path(
    profile: &Profile,
    nodes: &[Node],
    from: &Version,
    to: &Version,
) -> Result<Vec<Node>, String> {
    let last = nodes.len() - 1;
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

pub(super) fn rule_text(profile: &Profile) -> String {
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
pub(super) fn release_to_name(profile: &Profile, line: &str) -> String {
    info(profile, line)
        .and_then(|l| l.latest)
        .unwrap_or_else(|| format!("{line}.0"))
}
