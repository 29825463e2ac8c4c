//! Edits to the chart's own documents: drop its migration hooks, warn about Jobs that
//! look like migrations and stay, turn migrate-on-start off in the workloads that share
//! the database, and (sync phase) move the Jobs' dependencies to an earlier wave.
//!
//! It must not add documents (`jobs` and `record` do).

use super::*;
use crate::stream::Head;

/// The resources of a database the chart bundles (profile `database.bundled`).
pub(super) fn bundled_database(
    stream: &Stream,
    profile: &Profile,
) -> Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for doc in &stream.docs {
        let Some(h) = &doc.head else { continue };
        let rules = &profile.database.bundled;
        if !rules.iter().any(|m| m.kind == h.kind) {
            continue;
        }
        let v = doc.value()?;
        let names = Names {
            release: None,
            charts: &profile.charts,
        };
        if rules
            .iter()
            .any(|m| m.kind == h.kind.as_ref() && matches(m, &h.name, v, names))
        {
            out.insert((h.kind.to_string(), h.name.to_string()));
        }
    }
    Ok(out)
}

/// `sync` phase: the dependencies go to a wave before the Jobs.
pub(super) fn move_earlier(
    stream: &Stream,
    deps: &BTreeSet<(String, String)>,
    wave: i32,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        let is_dep = deps.iter().any(|(k, n)| *k == h.kind && *n == h.name);
        if !is_dep || out.edits.contains_key(&i) {
            continue;
        }
        let mut v = doc.value()?.clone();
        let meta = v
            .as_mapping_mut()
            .and_then(|m| m.get_mut("metadata"))
            .and_then(Value::as_mapping_mut);
        let Some(meta) = meta else { continue };
        let ann = meta
            .entry("annotations".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        if !ann.is_mapping() {
            *ann = Value::Mapping(Default::default());
        }
        ann.as_mapping_mut().expect("just made a mapping").insert(
            "argocd.argoproj.io/sync-wave".into(),
            wave.to_string().into(),
        );
        notes.push(format!(
            "sync phase: {} moves to wave {wave}, before the migration Jobs",
            doc.describe()
        ));
        out.edits.insert(i, Edit::Replace(v));
    }
    Ok(())
}

/// Whether a document (its name and parsed value; the kind is checked by the
/// caller) matches every criterion `m` gives.
pub(super) fn matches(m: &ResourceMatch, name: &str, v: &Value, names: Names) -> bool {
    m.name.as_ref().is_none_or(|p| names.matches(p, name))
        && m.name_suffix
            .as_ref()
            .is_none_or(|s| name.ends_with(s.as_str()))
        && locate::labels_match(&locate::labels(v), &m.match_labels)
        && locate::labels_match(&locate::pod_labels(v), &m.pod_labels)
        && (m.command.is_empty() || commands(v).iter().any(|c| contains_run(c, &m.command)))
}

/// Each container's (and init container's) command followed by its args, split
/// into words (a `sh -c` string counts word by word).
pub(super) fn commands(v: &Value) -> Vec<Vec<String>> {
    let spec = v
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .or_else(|| v.get("spec"));
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in spec
            .and_then(|s| s.get(list))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let mut words = Vec::new();
            for field in ["command", "args"] {
                for w in c
                    .get(field)
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if let Some(w) = w.as_str() {
                        words.extend(w.split_whitespace().map(str::to_owned));
                    }
                }
            }
            out.push(words);
        }
    }
    out
}

/// Whether `words` contains `run` as consecutive words.
pub(super) fn contains_run(words: &[String], run: &[String]) -> bool {
    !run.is_empty() && words.windows(run.len()).any(|w| w == run)
}

/// Whether one of `matchers` matches the document with head `h` and value `v`.
fn any_matches(matchers: &[ResourceMatch], h: &Head, v: &Value, names: Names) -> bool {
    matchers
        .iter()
        .any(|m| m.kind == h.kind.as_ref() && matches(m, &h.name, v, names))
}

pub(super) fn drop_chart_hooks(
    stream: &Stream,
    profile: &Profile,
    names: Names,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !profile.chart_hooks.iter().any(|m| m.kind == h.kind) {
            continue;
        }
        let v = doc.value()?;
        if any_matches(&profile.chart_hooks, h, v, names) {
            let hook = v
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("helm.sh/hook"))
                .and_then(Value::as_str)
                .map(|s| format!(" (helm.sh/hook: {s})"))
                .unwrap_or_default();
            notes.push(format!(
                "removed the chart's own migration hook {}{hook}: lockstep's Jobs replace it, with the API's exact image and full env, once, before the sync",
                doc.describe()
            ));
            out.edits.insert(i, Edit::Drop);
        }
    }
    Ok(())
}

/// Warns about a Job that stays in the render and looks like a migration: it runs
/// one of the profile's commands, or its name says migrat, schema or db-init.
pub(super) fn warn_staying_migrations(
    stream: &Stream,
    profile: &Profile,
    names: Names,
    out: &Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !matches!(h.kind.as_ref(), "Job" | "CronJob") || out.edits.contains_key(&i) {
            continue;
        }
        let v = doc.value()?;
        if any_matches(&profile.keep_hooks, h, v, names) {
            continue;
        }
        let runs = commands(v);
        let command = profile
            .migrations
            .iter()
            .chain(&profile.post_rollout)
            .flat_map(|m| [&m.command, &m.first_install])
            .find(|c| runs.iter().any(|w| contains_run(w, c)));
        let lower = h.name.to_ascii_lowercase();
        let word = ["migrat", "schema", "db-init"]
            .into_iter()
            .find(|w| lower.contains(w));
        let why = match (command, word) {
            (Some(c), _) => format!("it runs `{}`", c.join(" ")),
            (None, Some(w)) => format!("its name contains {w:?}"),
            (None, None) => continue,
        };
        notes.push(format!(
            "WARNING: {} stays in the render and looks like a migration ({why}): if it migrates the database, add it to the profile's chartHooks so it is removed; else ignore this",
            doc.describe()
        ));
    }
    Ok(())
}

/// Sets the migrate-on-start switch off in every workload container that shares
/// the database (has a database URL or the switch itself).
pub(super) fn migrate_on_start_off(
    stream: &Stream,
    profile: &Profile,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    let Some(mos) = &profile.migrate_on_start else {
        return Ok(());
    };
    let switch: Vec<&str> = std::iter::once(mos.env.as_str())
        .chain(mos.aliases.iter().map(String::as_str))
        .collect();
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !crate::profile::WORKLOAD_KINDS.contains(&h.kind.as_ref()) || out.edits.contains_key(&i)
        {
            continue;
        }
        let mut v = doc.value()?.clone();
        let mut changed = Vec::new();
        let containers = v
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec"))
            .and_then(|s| s.get_mut("containers"))
            .and_then(Value::as_sequence_mut);
        for c in containers.into_iter().flatten() {
            switch_off_in(c, profile, mos, &switch, &mut changed)?;
        }
        if !changed.is_empty() {
            notes.push(format!(
                "migrate-on-start off in {} ({}): the Job migrates once, before pods roll",
                doc.describe(),
                changed.join(", ")
            ));
            out.edits.insert(i, Edit::Replace(v));
        }
    }
    Ok(())
}

/// One container of a workload: when it shares the database (has a database URL or the
/// switch), every switch variable set off, or the switch added; what changed goes to
/// `changed` as `container: NAME=VALUE`.
fn switch_off_in(
    c: &mut Value,
    profile: &Profile,
    mos: &crate::profile::MigrateOnStart,
    switch: &[&str],
    changed: &mut Vec<String>,
) -> Result<()> {
    let cname = c
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let Some(cmap) = c.as_mapping_mut() else {
        return Ok(());
    };
    let env = cmap
        .entry("env".into())
        .or_insert_with(|| Value::Sequence(vec![]));
    let Some(env) = env.as_sequence_mut() else {
        return Ok(());
    };
    let names: Vec<String> = env
        .iter()
        .filter_map(|e| e.get("name")?.as_str().map(str::to_owned))
        .collect();
    let shares = names
        .iter()
        .any(|n| profile.database.env.contains(n) || switch.contains(&n.as_str()));
    if !shares {
        if env.is_empty() {
            cmap.remove("env");
        }
        return Ok(());
    }
    let mut found = false;
    for e in env.iter_mut() {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !switch.contains(&name) {
            continue;
        }
        found = true;
        if e.get("value").and_then(Value::as_str) != Some(mos.off.as_str())
            || e.get("valueFrom").is_some()
        {
            let name = name.to_owned();
            let em = e.as_mapping_mut().expect("env entries are maps");
            em.remove("valueFrom");
            em.insert("value".into(), mos.off.clone().into());
            changed.push(format!("{cname}: {name}={}", mos.off));
        }
    }
    if !found {
        let var = EnvVar {
            name: mos.env.clone(),
            value: Some(mos.off.clone()),
            value_from: None,
        };
        env.push(serde_yaml::to_value(var)?);
        changed.push(format!("{cname}: {}={} (added)", mos.env, mos.off));
    }
    Ok(())
}
