//! The upgrade plan (`lockstep plan`): the stops from the deployed release to the
//! target, each with its notes, one-time steps and breaking values changes, as text
//! and as JSON.
//!
//! It must not decide a render; it only describes the path the gate's rules admit.

use super::path::*;
use super::*;

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
        ValuesRule::Required(r) => format!(
            "when `{}` is true, set `{}` (to `{}` for an existing install): {}",
            r.when, r.path, r.value, r.why
        ),
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

    pub(crate) fn breaking_count(&self) -> usize {
        self.stops.iter().map(|s| s.breaking.len()).sum()
    }
}
