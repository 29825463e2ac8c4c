//! Profiles: what lockstep knows about one application, as data.
//!
//! A profile says how to find the API workload, which migrations to run and with
//! which commands, which of the chart's own hooks to neutralize, how the app's
//! migrate-on-start switch is named, and the release catalog the upgrade gate
//! enforces. Built-in profiles are YAML files under `profiles/`, embedded in the
//! binary; a user's profile file has exactly the same format.
//!
//! This module owns parsing and validating profiles and choosing one for a chart.
//! It must not look at rendered manifests or run anything: a profile is data.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in profiles, in the order `lockstep profiles` lists them.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "prefect-server",
        include_str!("../profiles/prefect-server.yaml"),
    ),
    (
        "prefect-customer-managed",
        include_str!("../profiles/prefect-customer-managed.yaml"),
    ),
    ("generic", include_str!("../profiles/generic.yaml")),
];

/// Chart.yaml annotation that names the profile explicitly.
pub const PROFILE_ANNOTATION: &str = "lockstep.dev/profile";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Chart names this profile applies to when none is named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charts: Vec<String>,
    pub workload: WorkloadMatch,
    #[serde(default)]
    pub database: Database,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate_on_start: Option<MigrateOnStart>,
    pub migrations: Vec<Migration>,
    /// The chart's own migration hooks, replaced by lockstep's Jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chart_hooks: Vec<ResourceMatch>,
    #[serde(default)]
    pub job: JobDefaults,
    #[serde(default)]
    pub releases: Releases,
}

/// How the API workload is recognized among the rendered documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadMatch {
    #[serde(default = "default_workload_kinds")]
    pub kinds: Vec<String>,
    /// Labels the workload's metadata must carry (all of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// The workload's exact name, when labels are not enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The container that runs the API; default: the pod's only container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

fn default_workload_kinds() -> Vec<String> {
    vec!["Deployment".into(), "StatefulSet".into()]
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Database {
    /// Env variables that carry a database URL. A workload whose container has
    /// one of them shares the database with the API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// When the API's database URL is a literal starting with one of these
    /// prefixes, no migration Job belongs (e.g. SQLite on a volume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<SkipRule>,
    /// Resources of a database the chart itself bundles: in the `sync` phase they
    /// move to a wave before the Jobs, so a first install has a database to migrate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundled: Vec<ResourceMatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkipRule {
    pub value_prefix: String,
    pub reason: String,
}

/// The app's own migrate-on-start switch, turned off where the Job migrates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrateOnStart {
    pub env: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub off: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Migration {
    /// Short DNS-safe name: part of the Job name.
    pub name: String,
    pub command: Vec<String>,
    /// The downgrade command; `{revision}` is replaced by the target revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downgrade: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_env: Vec<RequiredEnv>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequiredEnv {
    /// The first release line that requires these variables; none: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub names: Vec<String>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMatch {
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobDefaults {
    #[serde(default = "default_deadline")]
    pub active_deadline_seconds: i64,
    #[serde(default = "default_backoff")]
    pub backoff_limit: i32,
    /// Wave (and Helm hook weight) of the first migration Job; the gate runs
    /// one wave earlier and each further migration one wave later.
    #[serde(default = "default_wave")]
    pub wave: i32,
    /// Annotations for the Jobs' pods (e.g. to keep a mesh sidecar out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

fn default_deadline() -> i64 {
    900
}
fn default_backoff() -> i32 {
    1
}
fn default_wave() -> i32 {
    -10
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            active_deadline_seconds: default_deadline(),
            backoff_limit: default_backoff(),
            wave: default_wave(),
            pod_annotations: BTreeMap::new(),
        }
    }
}

/// Where a release's version is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VersionSource {
    #[default]
    ChartVersion,
    AppVersion,
    /// The API container's image tag (`3.8.3-python3.11` → 3.8.3).
    ImageTag,
}

/// How "the next release" is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeRule {
    /// Lines in catalog order: the next line is the next entry, whatever its number.
    Catalog,
    /// Seed 003: patch and next minor are direct; a skipped minor is walked;
    /// a major goes to its `.0` from the last minor of the previous major.
    #[default]
    Semver,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Releases {
    #[serde(default)]
    pub version_from: VersionSource,
    #[serde(default)]
    pub rule: UpgradeRule,
    /// Downgrades are possible with per-database revisions (else: restore a backup).
    #[serde(default)]
    pub downgrade_supported: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
}

impl Releases {
    /// The catalog's lines joined with `sep`, for messages.
    pub fn joined(&self, sep: &str) -> String {
        self.lines
            .iter()
            .map(|l| l.line.as_str())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

/// One release line and what the step into it (from the previous line) means.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Line {
    /// `MAJOR.MINOR`: every version `MAJOR.MINOR.x` belongs to it.
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// The newest release of the line, named in "upgrade to it first" advice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "serde_yaml::with::singleton_map_recursive"
    )]
    pub breaking: Vec<ValuesRule>,
    /// Settings the new release requires (told to the user; env checks are in migrations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// One-time commands to run after the migrations of this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_time: Vec<OneTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OneTime {
    pub name: String,
    pub command: Vec<String>,
    pub why: String,
}

/// A values change a step breaks, checked against the user's merged values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ValuesRule {
    /// The key moved: `from` must not be set any more; set `to` instead.
    Moved { from: String, to: String },
    /// The key is gone; `fix` says what replaces it.
    Removed { path: String, fix: String },
    /// No string under `path` (`*` matches any one key) may contain the shell word `word`.
    Forbidden {
        path: String,
        word: String,
        why: String,
    },
    /// When `when` is true in the values, `path` must be set (to `value`, ideally).
    Required {
        path: String,
        when: String,
        value: String,
        why: String,
    },
}

impl Profile {
    /// Parses and checks a profile document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let profile: Profile = serde_yaml::from_str(text).with_context(|| {
            format!("{origin} is not a valid lockstep profile; `lockstep profiles show generic` prints a valid starting point")
        })?;
        profile
            .check()
            .with_context(|| format!("profile {origin}"))?;
        Ok(profile)
    }

    fn check(&self) -> Result<()> {
        if self.migrations.is_empty() {
            bail!("declares no migrations: add at least one under `migrations:`");
        }
        for m in &self.migrations {
            if !is_dns_label(&m.name) || m.name.len() > 20 {
                bail!(
                    "migration name {:?} must be a lower-case DNS label of at most 20 characters",
                    m.name
                );
            }
            if m.command.is_empty() {
                bail!("migration {:?} has an empty command", m.name);
            }
        }
        for l in &self.releases.lines {
            parse_line(&l.line)
                .with_context(|| format!("release line {:?} must be MAJOR.MINOR", l.line))?;
        }
        if self.releases.rule == UpgradeRule::Catalog && self.releases.lines.is_empty() {
            bail!("uses `rule: catalog` but lists no release lines");
        }
        Ok(())
    }

    /// The profile as the YAML `lockstep profiles show` prints.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a profile always serializes")
    }
}

/// Parses `MAJOR.MINOR` into numbers.
pub fn parse_line(line: &str) -> Result<(u64, u64)> {
    let (a, b) = line.split_once('.').context("no dot")?;
    Ok((a.parse()?, b.parse()?))
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Names and one-line descriptions of the built-in profiles.
pub fn built_in_names() -> Vec<(&'static str, String)> {
    BUILT_IN
        .iter()
        .map(|(name, text)| {
            let p = Profile::parse(text, name).expect("built-in profiles are valid");
            (*name, p.description)
        })
        .collect()
}

pub fn built_in(name: &str) -> Option<Profile> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Profile::parse(text, n).expect("built-in profiles are valid"))
}

/// Resolves `--profile NAME|FILE`: a built-in name, else a file path.
pub fn load(spec: &str) -> Result<Profile> {
    if let Some(p) = built_in(spec) {
        return Ok(p);
    }
    let path = Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read profile file {}", path.display()))?;
        return Profile::parse(&text, &path.display().to_string());
    }
    bail!(
        "unknown profile {spec:?}: it is neither a built-in profile ({}) nor a file; run `lockstep profiles` to list them",
        BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )
}

/// Chooses a profile for a chart: the `lockstep.dev/profile` annotation first,
/// then a built-in profile that lists the chart's name.
pub fn detect(chart_name: &str, annotation: Option<&str>) -> Result<(Profile, String)> {
    if let Some(spec) = annotation {
        let p = load(spec).with_context(|| {
            format!("Chart.yaml annotation {PROFILE_ANNOTATION}: {spec:?} names no profile")
        })?;
        return Ok((p, format!("annotation {PROFILE_ANNOTATION} in Chart.yaml")));
    }
    for (name, text) in BUILT_IN {
        let p = Profile::parse(text, name).expect("built-in profiles are valid");
        if p.charts.iter().any(|c| c == chart_name) {
            return Ok((p, format!("chart name {chart_name:?}")));
        }
    }
    bail!(
        "no profile matches chart {chart_name:?}: pick one with --profile NAME|FILE (built-in: {}), or add the annotation `{PROFILE_ANNOTATION}: NAME` to Chart.yaml",
        BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_parse_and_round_trip() {
        for (name, _) in built_in_names() {
            let p = built_in(name).unwrap();
            let again = Profile::parse(&p.to_yaml(), "round trip").unwrap();
            assert_eq!(again.to_yaml(), p.to_yaml());
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = built_in("generic").unwrap().to_yaml() + "migrationz: []\n";
        let err = format!("{:#}", Profile::parse(&text, "x.yaml").unwrap_err());
        assert!(err.contains("migrationz"), "{err}");
    }

    #[test]
    fn detect_by_chart_name_and_annotation() {
        assert_eq!(
            detect("prefect-server", None).unwrap().0.name,
            "prefect-server"
        );
        assert_eq!(
            detect("anything", Some("generic")).unwrap().0.name,
            "generic"
        );
        let err = format!("{:#}", detect("nginx", None).unwrap_err());
        assert!(
            err.contains("--profile") && err.contains("prefect-server"),
            "{err}"
        );
    }
}
