//! Checks of the API container's environment before any Job is built: the variables
//! the migrations require, and whether the database settings reach it at all.
//!
//! It must not edit documents; a check either fails the render or adds a note.

use super::*;

/// Warns when none of `database.env` reaches the API container, by `env` or by an
/// `envFrom` source of the render; a source outside the render cannot be checked.
pub(super) fn check_database_env(
    stream: &Stream,
    profile: &Profile,
    api: &ApiWorkload,
    notes: &mut Vec<String>,
) {
    if profile.database.env.is_empty() {
        return;
    }
    let mut unknown = false;
    for name in &profile.database.env {
        if api.has_env(name) {
            return;
        }
        match env_from_provides(stream, api, name) {
            Some(true) => return,
            None => unknown = true,
            Some(false) => {}
        }
    }
    let list = profile.database.env.join(", ");
    if unknown {
        notes.push(format!(
            "cannot verify the database settings: none of {list} is set in {}'s env, and it takes env from objects outside this render (envFrom); make sure they set one",
            api.describe()
        ));
    } else {
        notes.push(format!(
            "WARNING: none of the profile's database.env ({list}) reaches {}, by env or envFrom: the migration would not find the database. Set the database in the chart's values, or fix database.env in the profile",
            api.describe()
        ));
    }
}

/// Required variables of the migrations, from the lines the profile names.
pub(super) fn check_required_env(
    stream: &Stream,
    profile: &Profile,
    api: &ApiWorkload,
    admission: &Admission,
    notes: &mut Vec<String>,
) -> Result<()> {
    let target_line = line_of(&admission.target);
    for m in &profile.migrations {
        for req in &m.required_env {
            if let Some(since) = &req.since {
                if !line_at_or_after(profile, &target_line, since) {
                    continue;
                }
            }
            for name in &req.names {
                if api.has_env(name) {
                    continue;
                }
                match env_from_provides(stream, api, name) {
                    Some(true) => continue,
                    None => {
                        notes.push(format!(
                            "cannot verify {name} for the {} migration: {} takes env from objects outside this render (envFrom); make sure they set it",
                            m.name,
                            api.describe()
                        ));
                        continue;
                    }
                    Some(false) => {}
                }
                bail!(
                    "the {} migration requires {name}, which {} does not set ({}). Set it in the chart's values and render again",
                    m.name,
                    api.describe(),
                    req.why.trim()
                );
            }
        }
    }
    Ok(())
}

/// Some(true): an envFrom source in the render has the key; Some(false): none
/// could; None: an envFrom source is outside the render.
pub(super) fn env_from_provides(stream: &Stream, api: &ApiWorkload, name: &str) -> Option<bool> {
    let mut unknown = false;
    for src in api.container.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let Some(key) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let (kind, obj) = match (&src.config_map_ref, &src.secret_ref) {
            (Some(c), _) => ("ConfigMap", c.name.clone()),
            (_, Some(s)) => ("Secret", s.name.clone()),
            _ => continue,
        };
        let doc = stream.docs.iter().find(|d| {
            d.head
                .as_ref()
                .is_some_and(|h| h.kind == kind && h.name == obj)
        });
        match doc.and_then(|d| d.value().ok()) {
            Some(v) => {
                let has = ["data", "stringData"]
                    .iter()
                    .any(|f| v.get(f).and_then(|d| d.get(key)).is_some());
                if has {
                    return Some(true);
                }
            }
            None => unknown = true,
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

pub(super) fn line_at_or_after(profile: &Profile, line: &str, since: &str) -> bool {
    let lines = &profile.releases.lines;
    match (
        lines.iter().position(|l| l.line == line),
        lines.iter().position(|l| l.line == since),
    ) {
        (Some(a), Some(b)) => a >= b,
        _ => match (
            crate::profile::parse_line(line),
            crate::profile::parse_line(since),
        ) {
            (Ok(a), Ok(b)) => a >= b,
            _ => true,
        },
    }
}
