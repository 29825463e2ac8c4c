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

mod check;

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
    ("temporal", include_str!("../profiles/temporal.yaml")),
    ("kong", include_str!("../profiles/kong.yaml")),
    ("authentik", include_str!("../profiles/authentik.yaml")),
    ("sentry", include_str!("../profiles/sentry.yaml")),
    ("generic", include_str!("../profiles/generic.yaml")),
];

/// Longest one-time step name: `<release>-<name>` must leave room for a shortened
/// release and its hash within a Job name's 63 characters.
pub(crate) const MAX_STEP_NAME: usize = 30;

/// Chart.yaml annotation that names the profile explicitly.
pub(crate) const PROFILE_ANNOTATION: &str = "lockstep.dev/profile";

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
    /// Chart Jobs that look like migrations (by name or command) but stay, on
    /// purpose: no warning for them (e.g. Sentry's Kafka topic bootstrap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_hooks: Vec<ResourceMatch>,
    /// Steps that run after the new pods rolled (Argo CD PostSync, Helm
    /// post-install,post-upgrade), gated by the release record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_rollout: Vec<Migration>,
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
    /// Labels the workload's pod template must carry (all of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// The workload's name, when labels are not enough: exact, or a pattern with
    /// `*`, `{release}` (the Helm release) and `{fullname}` (the release, or
    /// `<release>-<chart>` when the release does not contain the chart's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The container that runs the API; default: the pod's only container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The image's entrypoint as a chart may write it in `command` (e.g.
    /// `[/usr/bin/tini, -g, --, /opt/prefect/entrypoint.sh]`): a container whose
    /// command is this runs through the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
}

/// The workload kinds lockstep reads pods from, the one list of them. All three run
/// migrate-on-start (inject switches it off in each); an API workload is one of
/// [`API_KINDS`], since a DaemonSet's pod per node is never the API.
pub(crate) const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// The kinds an API workload may have (a profile's default `workload.kinds`).
pub(crate) const API_KINDS: &[&str] = WORKLOAD_KINDS.split_at(2).0;

fn default_workload_kinds() -> Vec<String> {
    API_KINDS.iter().map(|k| (*k).to_owned()).collect()
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

/// Where a step runs: the API container unless `workload` names another container
/// of the render; `image` replaces the image with an expression tied to the release.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runs {
    /// Another workload (any kind with a pod template, a chart's Job included) and
    /// container: its image, env, envFrom, volumes and pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<ContainerRef>,
    /// An image expression: `{api.repository}`, `{api.tag}`, `{api.digest}`,
    /// `{version}` (the release); e.g. `getsentry/snuba:{api.tag}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerRef {
    pub kind: String,
    /// Exact or a pattern, as `workload.name`.
    pub name: String,
    /// A container or init container; default: the pod's only container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// Whether a step's command replaces the image's entrypoint or runs through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Entrypoint {
    /// `command:` is the step's argv.
    #[default]
    Replace,
    /// `args:` is the step's argv, run by the image's entrypoint, when the source
    /// container runs through it (no `command`, or `workload.entrypoint`).
    Keep,
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
    /// The command of an upgrade (and of a first install, unless `firstInstall`).
    pub command: Vec<String>,
    /// The command when no release is recorded (a first install), chosen in the pod
    /// from the release record (needs `/bin/sh` in the image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_install: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub runs: Runs,
    #[serde(default, skip_serializing_if = "is_default")]
    pub entrypoint: Entrypoint,
    /// Extra env (set after the source container's, replacing the same names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<k8s_openapi::api::core::v1::EnvFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<k8s_openapi::api::core::v1::Volume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<k8s_openapi::api::core::v1::VolumeMount>,
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

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Migration {
    /// The commands for people: `kong migrations up (first install: kong migrations bootstrap)`.
    pub(crate) fn describe(&self) -> String {
        let mut s = self.command.join(" ");
        if !self.first_install.is_empty() {
            s += &format!(" (first install: {})", self.first_install.join(" "));
        }
        s
    }
}

/// A document of the render, by kind and any of: name (exact or pattern), name
/// suffix, metadata labels, pod-template labels, container command. All given
/// must match.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMatch {
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Exact name or pattern: `*`, `{release}`, `{fullname}` (as `workload.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Words a container's command + args contain, in this order (e.g.
    /// `[snuba, migrations, migrate]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
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
    /// Chart hooks that stay and that the migrations must follow (e.g. the Secrets
    /// a chart creates as hooks): the migrations start one wave after the latest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<ResourceMatch>,
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
            after: Vec::new(),
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
    /// Without `lines`, seed 003: patch and next minor are direct; a skipped minor
    /// is walked; a major's `.0` follows any line of the previous major. With
    /// `lines`, only the listed lines, in numeric order.
    #[default]
    Semver,
    /// `YEAR.MONTH.patch` releases: only the listed lines, in date order (authentik's
    /// even months, Sentry's monthly releases).
    Calver,
    /// Any later release, as long as no hard stop is skipped.
    AnyForward,
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
    /// The next line only from the latest patch of the current one (its `latest`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_latest_patch: bool,
    /// Direct jumps the rule does not give (e.g. LTS to LTS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jumps: Vec<Jump>,
    /// Releases no upgrade may skip: an upgrade past one starts from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hard_stops: Vec<HardStop>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jump {
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HardStop {
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

impl Releases {
    /// The catalog's lines joined with `sep`, for messages.
    pub(crate) fn joined(&self, sep: &str) -> String {
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
    Required(RequiredRule),
}

/// A values key a release requires when another one is true: the gate checks it, `plan`
/// describes it and `values migrate` sets it, each from this one type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequiredRule {
    pub path: String,
    pub when: String,
    pub value: String,
    pub why: String,
}

/// Parses `MAJOR.MINOR` into numbers.
pub(crate) fn parse_line(line: &str) -> Result<(u64, u64)> {
    let (a, b) = line.split_once('.').context("no dot")?;
    Ok((a.parse()?, b.parse()?))
}

pub(crate) fn is_dns_label(s: &str) -> bool {
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
pub(crate) fn detect(chart_name: &str, annotation: Option<&str>) -> Result<(Profile, String)> {
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
