//! Settings: the one place where what a front-end gathered becomes a [`Request`].
//!
//! A front-end (the CLI in `main.rs`, [`crate::argocd`], [`crate::helm_plugin`]) only
//! gathers its raw inputs into [`Inputs`]: one [`Layer`] per source (flags, Argo CD
//! parameters, the environment, the cluster's deployed release, lockstep.yaml,
//! lockstep.lock, what the platform sets), each value typed and checked for its form
//! where it was read, so its error can name the flag, variable or file. [`resolve`]
//! then applies [`PRECEDENCE`], the only statement of which source wins, picks the
//! phase's default, checks the release name and returns the [`Request`].
//!
//! The module also owns the two choices every front-end needs before or during a
//! render: the profile ([`choose_profile`]) and which field of the chart or image
//! carries the release ([`release_field`]).
//!
//! It must not read files, the environment or the cluster itself: that is gathering,
//! and belongs to the front-ends.

use crate::config;
use crate::inject::Phase;
use crate::locate::WorkloadRef;
use crate::profile::{self, Profile, VersionSource};
use crate::source::ChartMeta;
use crate::{Input, Request};
use anyhow::{anyhow, bail, Result};
use semver::Version;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Command-line flags: `lockstep render|inject`, `helm lockstep` (RELEASE included).
    Flag,
    /// Argo CD parameters (`ARGOCD_APP_PARAMETERS`).
    Parameter,
    /// The user's environment: `LOCKSTEP_FROM` (CLI), `ARGOCD_ENV_LOCKSTEP_*` (Argo CD).
    Env,
    /// The release deployed in the cluster, read by the Helm plugin.
    Cluster,
    /// The app's lockstep.yaml.
    Config,
    /// lockstep.lock beside it.
    Lock,
    /// What the platform sets: `ARGOCD_APP_NAME`, `ARGOCD_APP_NAMESPACE`, `HELM_NAMESPACE`.
    Platform,
}

/// A setting of the [`Request`] that more than one source can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    Release,
    Namespace,
    Profile,
    ApiWorkload,
    Phase,
    JobTemplate,
    GateImage,
    From,
    FromImage,
    AllowDowngrade,
    ForceMigrations,
    DowngradeRevisions,
}

use Source::*;

/// Which source wins, per setting: the first in its list that has a value. A front-end
/// that has no such source (the Helm plugin reads no lockstep.yaml) leaves that layer
/// empty. The README's precedence table is this one.
///
/// `From` puts the cluster first: the Helm plugin's `--from` is used only when the
/// cluster has no deployed revision, and must agree with it otherwise. `FromImage` puts
/// the flag first: a downgrade may name the image to run.
pub(crate) const PRECEDENCE: &[(Setting, &[Source])] = &[
    (Setting::Release, &[Flag, Parameter, Env, Config, Platform]),
    (Setting::Namespace, &[Flag, Env, Config, Platform]),
    (Setting::Profile, &[Flag, Parameter, Env, Config]),
    (Setting::ApiWorkload, &[Flag, Config]),
    (Setting::Phase, &[Flag, Parameter, Env, Config]),
    (Setting::JobTemplate, &[Flag]),
    (Setting::GateImage, &[Flag, Config]),
    (Setting::From, &[Cluster, Flag, Parameter, Env, Lock]),
    (Setting::FromImage, &[Flag, Cluster, Lock]),
    (Setting::AllowDowngrade, &[Flag]),
    (Setting::ForceMigrations, &[Flag, Parameter, Env]),
    (Setting::DowngradeRevisions, &[Flag]),
];

/// The values one source gives; `None`: this source says nothing about the setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub release: Option<String>,
    pub namespace: Option<String>,
    /// A built-in profile name or a profile file.
    pub profile: Option<String>,
    pub api_workload: Option<WorkloadRef>,
    pub phase: Option<Phase>,
    pub job_template: Option<PathBuf>,
    pub gate_image: Option<String>,
    pub from: Option<String>,
    pub from_image: Option<String>,
    pub allow_downgrade: Option<bool>,
    pub force_migrations: Option<bool>,
    /// `DB=REVISION` items, checked by [`parse_downgrade_revisions`].
    pub downgrade_revisions: Option<Vec<String>>,
}

impl Layer {
    /// What lockstep.yaml says (the CLI and Argo CD read the same file).
    pub fn from_config(cfg: &config::AppConfig) -> Result<Layer> {
        Ok(Layer {
            release: cfg.release.clone(),
            namespace: cfg.namespace.clone(),
            profile: cfg.profile.clone(),
            api_workload: cfg
                .api_workload
                .as_deref()
                .map(|s| {
                    s.parse()
                        .map_err(|e: String| anyhow!("lockstep.yaml apiWorkload: {e}"))
                })
                .transpose()?,
            phase: cfg.phase,
            gate_image: cfg.gate_image.clone(),
            ..Layer::default()
        })
    }

    /// What lockstep.lock says.
    pub fn from_lock(lock: Option<config::Lock>) -> Layer {
        let (from, from_image) = match lock {
            Some(l) => (Some(l.deployed.version), l.deployed.image),
            None => (None, None),
        };
        Layer {
            from,
            from_image,
            ..Layer::default()
        }
    }
}

/// The release the Helm plugin found deployed in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterRelease {
    pub release: String,
    pub revision: u64,
    pub chart: String,
    pub version: Version,
    pub image: Option<String>,
}

/// Which front-end gathered the inputs: each has its own default phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    Cli,
    ArgoCd,
    /// `helm lockstep`; `plan` renders nothing to install, so no first-install phase.
    HelmPlugin {
        plan: bool,
    },
}

/// Everything a front-end gathered, before any precedence is applied.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub front_end: FrontEnd,
    pub input: Input,
    /// The repository every path must stay in, when the front-end knows it.
    pub repository: Option<PathBuf>,
    /// Where a profile file named by a setting is resolved, inside the repository
    /// `(repository, directory)`; None: as given.
    pub profile_base: Option<(PathBuf, PathBuf)>,
    pub flags: Layer,
    pub params: Layer,
    pub env: Layer,
    pub cluster: Option<ClusterRelease>,
    pub config: Layer,
    pub lock: Layer,
    pub platform: Layer,
}

impl Inputs {
    pub fn new(front_end: FrontEnd, input: Input) -> Inputs {
        Inputs {
            front_end,
            input,
            repository: None,
            profile_base: None,
            flags: Layer::default(),
            params: Layer::default(),
            env: Layer::default(),
            cluster: None,
            config: Layer::default(),
            lock: Layer::default(),
            platform: Layer::default(),
        }
    }

    fn layer(&self, source: Source) -> Layer {
        match source {
            Flag => self.flags.clone(),
            Parameter => self.params.clone(),
            Env => self.env.clone(),
            Cluster => match &self.cluster {
                Some(c) => Layer {
                    from: Some(c.version.to_string()),
                    from_image: c.image.clone(),
                    ..Layer::default()
                },
                None => Layer::default(),
            },
            Config => self.config.clone(),
            Lock => self.lock.clone(),
            Platform => self.platform.clone(),
        }
    }

    /// The winning value of `setting` and where it came from, by [`PRECEDENCE`].
    pub(crate) fn pick<T>(
        &self,
        setting: Setting,
        get: impl Fn(Layer) -> Option<T>,
    ) -> Option<(Source, T)> {
        let (_, order) = PRECEDENCE
            .iter()
            .find(|(s, _)| *s == setting)
            .expect("every setting is in the table");
        order
            .iter()
            .find_map(|&src| get(self.layer(src)).map(|v| (src, v)))
    }
}

/// Picks values by [`PRECEDENCE`] and remembers which source each came from.
struct Picker<'a> {
    inputs: &'a Inputs,
    won: Vec<(Setting, Source)>,
}

impl Picker<'_> {
    fn value<T>(&mut self, setting: Setting, get: impl Fn(Layer) -> Option<T>) -> Option<T> {
        let (source, value) = self.inputs.pick(setting, get)?;
        self.won.push((setting, source));
        Some(value)
    }
}

/// Applies [`PRECEDENCE`] to what a front-end gathered; notes say what was chosen
/// where a user would otherwise wonder (the Helm plugin's first-install phase).
pub fn resolve(inputs: Inputs, notes: &mut Vec<String>) -> Result<Request> {
    resolve_traced(inputs, notes).map(|(request, _)| request)
}

/// [`resolve`], and which source gave each setting that has a value.
fn resolve_traced(
    inputs: Inputs,
    notes: &mut Vec<String>,
) -> Result<(Request, Vec<(Setting, Source)>)> {
    use Setting as S;
    let mut p = Picker {
        inputs: &inputs,
        won: Vec::new(),
    };
    let release = p.value(S::Release, |l| l.release);
    if let Some(name) = &release {
        if let Some(problem) = release_name_problem(name) {
            bail!("{problem}. Pass a valid --release");
        }
    }
    let profile = match p.value(S::Profile, |l| l.profile) {
        Some(spec) => Some(match &inputs.profile_base {
            Some((root, dir)) if profile::built_in(&spec).is_none() => {
                config::inside(root, dir, &spec, "profile file")?
                    .display()
                    .to_string()
            }
            _ => spec,
        }),
        None => None,
    };
    let from = p.value(S::From, |l| l.from);
    if let (Some(c), Some(f)) = (&inputs.cluster, &inputs.flags.from) {
        let fv = crate::gate::parse_version(f)
            .ok_or_else(|| anyhow!("--from {f:?} is not a version (e.g. 0.8.2)"))?;
        if fv != c.version {
            bail!(
                "--from {f} disagrees with the cluster: release {} revision {} is {} {}.\n  fix: drop --from: install and upgrade read the deployed release from the cluster",
                c.release,
                c.revision,
                c.chart,
                c.version
            );
        }
    }
    let phase = match p.value(S::Phase, |l| l.phase) {
        Some(p) => p,
        None => default_phase(&inputs, from.is_none(), release.as_deref(), notes),
    };
    let revisions = p
        .value(S::DowngradeRevisions, |l| l.downgrade_revisions)
        .unwrap_or_default();
    let mut req = Request::new(inputs.input.clone());
    req.release = release;
    req.namespace = p.value(S::Namespace, |l| l.namespace);
    req.profile = profile;
    req.api_workload = p.value(S::ApiWorkload, |l| l.api_workload);
    req.phase = phase;
    req.job_template = p.value(S::JobTemplate, |l| l.job_template);
    req.gate_image = p.value(S::GateImage, |l| l.gate_image);
    req.from = from;
    req.from_image = p.value(S::FromImage, |l| l.from_image);
    req.allow_downgrade = p.value(S::AllowDowngrade, |l| l.allow_downgrade) == Some(true);
    req.force_migrations = p.value(S::ForceMigrations, |l| l.force_migrations) == Some(true);
    req.downgrade_revisions = parse_downgrade_revisions(&revisions)?;
    let won = p.won;
    req.repository = inputs.repository;
    Ok((req, won))
}

/// The phase when no source names one: presync, except for a first install by the Helm
/// plugin, whose Jobs need the Secrets and ServiceAccounts of the same install.
fn default_phase(
    inputs: &Inputs,
    first_install: bool,
    release: Option<&str>,
    notes: &mut Vec<String>,
) -> Phase {
    match inputs.front_end {
        FrontEnd::HelmPlugin { plan: false } if first_install => {
            notes.push(format!(
                "first install of {}: the migration Jobs run post-install (--phase sync), once the Secrets and ServiceAccounts they use exist; pass --phase presync to run them before",
                release.unwrap_or_default()
            ));
            Phase::Sync
        }
        _ => Phase::Presync,
    }
}

/// `--downgrade-revision DB=REVISION` items, as every front-end takes them.
pub(crate) fn parse_downgrade_revisions(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((db, rev)) = item.split_once('=') else {
            bail!("--downgrade-revision {item:?} is not DB=REVISION (e.g. orion=2a2090e47993)");
        };
        if db.is_empty()
            || rev.is_empty()
            || !rev.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("--downgrade-revision {item:?}: a revision is an alembic id like 2a2090e47993");
        }
        out.insert(db.to_owned(), rev.to_owned());
    }
    Ok(out)
}

/// Why `name` cannot be a helm release name, or None when it can.
pub(crate) fn release_name_problem(name: &str) -> Option<String> {
    (name.len() > 53 || !profile::is_dns_label(name)).then(|| {
        format!("release name {name:?} is not valid: helm release names are lower-case DNS labels (a-z, 0-9, '-') of at most 53 characters")
    })
}

/// `presync` or `sync`, as a parameter, a variable or a flag of the Helm plugin gives it.
pub(crate) fn parse_phase(s: &str) -> Result<Phase, String> {
    match s {
        "presync" => Ok(Phase::Presync),
        "sync" => Ok(Phase::Sync),
        other => Err(format!("phase {other:?} is not `presync` or `sync`")),
    }
}

/// A chart, for choosing its profile: its metadata, the repository it must stay in and
/// its path (a directory or a .tgz). A stream's chart (from labels) has empty paths.
pub(crate) struct ChartAt<'a> {
    pub meta: &'a ChartMeta,
    pub root: &'a Path,
    pub path: &'a Path,
}

/// The profile: the one named (`spec`: `--profile` or its equivalents), else the
/// chart's annotation, else by the chart's name.
pub(crate) fn choose_profile(
    spec: Option<&str>,
    chart: Option<ChartAt>,
    notes: &mut Vec<String>,
) -> Result<Profile> {
    if let Some(spec) = spec {
        return profile::load(spec);
    }
    let Some(ChartAt { meta, root, path }) = chart else {
        bail!("cannot choose a profile: the stream carries no `helm.sh/chart` label on any workload. Pass --profile NAME|FILE (`lockstep profiles` lists them)");
    };
    // A profile file named by the chart obeys the rule for every path: it stays inside
    // the repository (relative to the chart directory, or to a packaged chart's).
    let annotation = match meta.annotations.get(profile::PROFILE_ANNOTATION) {
        Some(spec) if profile::built_in(spec).is_none() && !root.as_os_str().is_empty() => {
            let base = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            let base = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            let what = "profile file (Chart.yaml annotation lockstep.dev/profile)";
            Some(
                config::inside(root, base, spec, what)?
                    .display()
                    .to_string(),
            )
        }
        other => other.cloned(),
    };
    let (p, why) = profile::detect(&meta.name, annotation.as_deref())?;
    notes.push(format!("profile {} (chosen by {why})", p.name));
    Ok(p)
}

/// The fields a release can be read from ([`VersionSource`]).
pub(crate) struct ReleaseFields<'a> {
    pub chart_version: &'a str,
    pub app_version: Option<&'a str>,
    pub image_tag: Option<&'a str>,
}

/// Which field carries the release, by the profile's `releases.versionFrom`: its name
/// for messages, and its text.
pub(crate) fn release_field(profile: &Profile, f: ReleaseFields) -> (&'static str, String) {
    match profile.releases.version_from {
        VersionSource::ChartVersion => ("chart version", f.chart_version.to_owned()),
        VersionSource::AppVersion => (
            "chart appVersion",
            f.app_version.unwrap_or_default().to_owned(),
        ),
        VersionSource::ImageTag => ("API image tag", f.image_tag.unwrap_or_default().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every source a front-end gathers, each with a value for every setting (its own
    /// where the form allows; `from` agrees with the cluster's 1.0.0, or resolve refuses).
    fn full(front_end: FrontEnd, sources: &[Source]) -> Inputs {
        let mut i = Inputs::new(front_end, Input::Stream(String::new().into()));
        for &s in sources {
            let tag = format!("{s:?}").to_lowercase();
            let layer = Layer {
                release: Some(tag.clone()),
                namespace: Some(tag.clone()),
                profile: Some(tag.clone()),
                api_workload: Some(format!("Deployment/{tag}").parse().unwrap()),
                phase: Some(Phase::Sync),
                job_template: Some(PathBuf::from(&tag)),
                gate_image: Some(tag.clone()),
                from: Some("1.0.0".into()),
                from_image: Some(tag.clone()),
                allow_downgrade: Some(true),
                force_migrations: Some(true),
                downgrade_revisions: Some(vec![format!("{tag}=1")]),
            };
            match s {
                Flag => i.flags = layer,
                Parameter => i.params = layer,
                Env => i.env = layer,
                Config => i.config = layer,
                Lock => i.lock = layer,
                Platform => i.platform = layer,
                Cluster => {
                    i.cluster = Some(ClusterRelease {
                        release: tag.clone(),
                        revision: 1,
                        chart: tag.clone(),
                        version: Version::new(1, 0, 0),
                        image: Some(tag.clone()),
                    })
                }
            }
        }
        i
    }

    /// The sources each front-end gathers (main.rs, argocd.rs, helm_plugin.rs).
    const FRONT_ENDS: &[(FrontEnd, &[Source])] = &[
        (FrontEnd::Cli, &[Flag, Env, Config, Lock]),
        (FrontEnd::ArgoCd, &[Parameter, Env, Config, Lock, Platform]),
        (
            FrontEnd::HelmPlugin { plan: false },
            &[Flag, Cluster, Platform],
        ),
    ];

    /// The source `resolve` took `setting` from.
    fn winner(i: &Inputs, setting: Setting) -> Option<Source> {
        let (_, won) = resolve_traced(i.clone(), &mut Vec::new()).expect("resolves");
        won.iter()
            .find(|(s, _)| *s == setting)
            .map(|&(_, source)| source)
    }

    /// For each setting and front-end: with every source present the table's first wins;
    /// take it away and the next wins; a source the table does not list never wins.
    #[test]
    fn precedence_per_setting_and_front_end() {
        for (setting, order) in PRECEDENCE {
            for (fe, gathered) in FRONT_ENDS {
                let mut present: Vec<Source> = gathered.to_vec();
                let expected: Vec<Source> = order
                    .iter()
                    .copied()
                    .filter(|s| gathered.contains(s))
                    .collect();
                for want in &expected {
                    let got = winner(&full(*fe, &present), *setting);
                    assert_eq!(got, Some(*want), "{setting:?} in {fe:?} from {present:?}");
                    present.retain(|s| s != want);
                }
                assert_eq!(
                    winner(&full(*fe, &present), *setting),
                    None,
                    "{setting:?} {fe:?}"
                );
            }
        }
    }

    #[test]
    fn every_setting_is_in_the_table_once() {
        for (i, (s, order)) in PRECEDENCE.iter().enumerate() {
            assert!(!order.is_empty(), "{s:?}");
            assert!(PRECEDENCE[i + 1..].iter().all(|(t, _)| t != s), "{s:?}");
        }
        assert_eq!(PRECEDENCE.len(), 12);
    }

    /// The `--phase` bug of stop 11: a flag given must win over lockstep.yaml, and the
    /// Helm plugin's first-install default must not override a phase given.
    #[test]
    fn phase_flag_wins_over_config_and_defaults() {
        let mut i = Inputs::new(FrontEnd::Cli, Input::Stream(String::new().into()));
        i.config.phase = Some(Phase::Sync);
        i.flags.phase = Some(Phase::Presync);
        let mut notes = Vec::new();
        assert_eq!(
            resolve(i.clone(), &mut notes).unwrap().phase,
            Phase::Presync
        );
        i.flags.phase = None;
        assert_eq!(resolve(i, &mut notes).unwrap().phase, Phase::Sync);
        let mut h = Inputs::new(
            FrontEnd::HelmPlugin { plan: false },
            Input::Stream(String::new().into()),
        );
        h.flags.release = Some("r".into());
        assert_eq!(resolve(h.clone(), &mut notes).unwrap().phase, Phase::Sync);
        assert!(notes.iter().any(|n| n.contains("first install of r")));
        h.flags.phase = Some(Phase::Presync);
        assert_eq!(
            resolve(h.clone(), &mut notes).unwrap().phase,
            Phase::Presync
        );
        h.flags.phase = None;
        h.front_end = FrontEnd::HelmPlugin { plan: true };
        assert_eq!(resolve(h, &mut notes).unwrap().phase, Phase::Presync);
    }

    #[test]
    fn cluster_and_flag_must_agree() {
        let mut i = full(FrontEnd::HelmPlugin { plan: false }, &[Cluster]);
        i.flags.from = Some("1.0.0".into());
        assert_eq!(
            resolve(i.clone(), &mut Vec::new()).unwrap().from.as_deref(),
            Some("1.0.0")
        );
        i.flags.from = Some("0.9.0".into());
        let err = format!("{:#}", resolve(i, &mut Vec::new()).unwrap_err());
        assert!(err.contains("disagrees with the cluster"), "{err}");
    }

    #[test]
    fn release_names_are_checked() {
        let mut i = Inputs::new(FrontEnd::Cli, Input::Stream(String::new().into()));
        i.config.release = Some("Bad_Name".into());
        let err = format!("{:#}", resolve(i, &mut Vec::new()).unwrap_err());
        assert!(
            err.contains("is not valid") && err.contains("--release"),
            "{err}"
        );
    }

    /// The README's precedence table (Development) is this one.
    #[test]
    fn the_readme_states_this_table() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("<!-- precedence")
            .nth(1)
            .and_then(|t| t.split("<!-- /precedence -->").next())
            .expect("README has the precedence table");
        let rows: Vec<Vec<String>> = table
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| setting"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect();
        let name = |s: Source| match s {
            Flag => "flag",
            Parameter => "parameter",
            Env => "env",
            Cluster => "cluster",
            Config => "lockstep.yaml",
            Lock => "lockstep.lock",
            Platform => "platform",
        };
        let ours: Vec<Vec<String>> = PRECEDENCE
            .iter()
            .map(|(setting, order)| {
                let s = format!("{setting:?}");
                let mut row = vec![s[..1].to_lowercase() + &s[1..]];
                row.extend(order.iter().map(|&o| name(o).to_owned()));
                row
            })
            .collect();
        assert_eq!(rows, ours);
    }
}
