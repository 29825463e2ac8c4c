//! The Helm plugin front-end: `helm lockstep template|plan|install|upgrade RELEASE CHART [flags]`.
//!
//! Helm runs `$HELM_PLUGIN_DIR/bin/lockstep helm ARGS...` with its plugin environment:
//! `HELM_BIN`, `HELM_NAMESPACE`, `HELM_KUBECONTEXT` (helm strips its global flags such as
//! `-n` and `--kube-context` from ARGS and passes them this way).
//!
//! This module
//! * parses a whitelist of flags: the render flags lockstep understands, lockstep's own,
//!   and a few install/upgrade flags that are validated and handed to helm in their
//!   `--flag=value` form. Nothing the user typed reaches helm as a flag of its own;
//! * reads the deployed release from the cluster with the real helm (`helm history`,
//!   `helm get metadata`, and for image-tag profiles `helm get manifest` read by
//!   [`stream`]/[`locate`]);
//! * builds a [`Request`] and runs the shared pipeline ([`crate::run`]) into a buffer, so a
//!   gate refusal exits 3 before helm changes anything;
//! * for install/upgrade, wraps the final stream into a temporary chart whose only template
//!   is `{{ .Files.Get "lockstep/manifests.yaml" }}`: helm takes the documents carrying
//!   `helm.sh/hook` as real hooks (Helm 3 post-renderers can neither see nor create
//!   hooks), nothing is templated twice, and helm's own exit code and messages pass through.
//!
//! It owns no stage: rendering, locating, gating and injecting are the pipeline's.

use crate::fetch::TempDir;
use crate::inject::Phase;
use crate::locate::{self, WorkloadRef};
use crate::profile::{Profile, VersionSource};
use crate::settings::{self, ClusterRelease, FrontEnd, Inputs, Layer, Setting};
use crate::{exit, gate, render, source, stream, ChartInput, Input, Request};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const USAGE: &str = "\
Usage:
  helm lockstep template RELEASE CHART [flags]   print the manifests, lockstep's Jobs as hooks
  helm lockstep plan     RELEASE CHART [flags]   the upgrade plan from the deployed release
  helm lockstep install  RELEASE CHART [flags]   helm install, lockstep's Jobs as real hooks
  helm lockstep upgrade  RELEASE CHART [flags]   helm upgrade, lockstep's Jobs as real hooks

CHART is what helm takes: a chart directory, a packaged .tgz, REPO/CHART (added with
`helm repo add`), a chart name with --repo URL, or oci://HOST/PATH/CHART; a chart not on
disk is fetched once with `helm pull` into a private temporary directory.
The deployed release is read from the cluster (helm history, then helm get metadata of the
newest deployed revision) in the namespace and kube context given to helm (-n,
--kube-context); no release is a first install. An upgrade that skips a release is refused
(exit 3) before helm runs anything.

Chart flags (as for helm template):
  -f, --values FILE             values file (repeatable, or comma-separated)
      --set KEY=VALUE           (repeatable)
      --set-string KEY=VALUE    (repeatable)
      --version VERSION         the version to fetch; for a local chart, the version it must be
      --repo URL                chart repository URL: CHART is a chart name in it
      --username USER           repository or registry user (else LOCKSTEP_REPO_USERNAME)
      --password-file FILE      the password (else LOCKSTEP_REPO_PASSWORD; no --password)
      --ca-file FILE, --insecure-skip-tls-verify, --plain-http (oci://)  as helm's
      --kube-version VERSION    Kubernetes version for Capabilities
      --api-versions GROUP/VERSION  (repeatable, or comma-separated)
lockstep flags:
      --profile NAME|FILE       (default: chosen from the chart)
      --api-workload KIND/NAME[:CONTAINER]
      --phase presync|sync      (default: sync for a first install, else presync)
      --from VERSION            template and plan: the deployed release, the cluster is not
                                asked; install and upgrade: only used when the cluster has no
                                deployed revision, and must agree with it otherwise
      --from-image IMAGE        the deployed image, for downgrade Jobs (default: read from
                                the deployed release's manifest)
      --allow-downgrade
      --force-migrations        run the migrations even when the release record says done
      --downgrade-revision DB=REVISION  (repeatable)
      --gate-image IMAGE
      --job-template FILE
plan:
  -o, --output text|json
install and upgrade (validated, then passed to helm):
      --wait[=watcher|hookOnly|legacy]  (strategies are Helm 4's)
      --wait-for-jobs
      --timeout DURATION        e.g. 10m, 1h30m
      --atomic | --rollback-on-failure  (the right name for the helm version is passed)
      --dry-run[=client|server]
      --create-namespace
      --description TEXT
      --disable-openapi-validation
      --skip-crds
upgrade:
  -i, --install
      --cleanup-on-fail
      --history-max N

Exit codes: 0 success; 1 error (helm failed, no API workload, ...); 2 usage; 3 the upgrade
gate refused. install and upgrade exit with helm's own code once helm runs.";

/// What `helm lockstep` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Template,
    Plan,
    Install,
    Upgrade,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Template => "template",
            Command::Plan => "plan",
            Command::Install => "install",
            Command::Upgrade => "upgrade",
        }
    }
    fn deploys(self) -> bool {
        matches!(self, Command::Install | Command::Upgrade)
    }
}

/// An install/upgrade flag, validated, for helm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// `--wait`, or a Helm 4 strategy.
    Wait(Option<String>),
    WaitForJobs,
    Timeout(String),
    /// `--atomic` (Helm 3) = `--rollback-on-failure` (Helm 4).
    RollbackOnFailure,
    /// client or server.
    DryRun(String),
    CreateNamespace,
    Description(String),
    DisableOpenapiValidation,
    SkipCrds,
    Install,
    CleanupOnFail,
    HistoryMax(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanOutput {
    #[default]
    Text,
    Json,
}

/// A parsed `helm lockstep` command line.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub command: Option<Command>,
    pub release: String,
    pub chart: PathBuf,
    /// `--version`, `--repo` and helm's other pulling flags, for a chart not on disk.
    pub pull: crate::fetch::PullOptions,
    /// The chart was fetched: `chart` is the pulled .tgz.
    pub pulled: bool,
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
    pub profile: Option<String>,
    pub api_workload: Option<WorkloadRef>,
    pub phase: Option<Phase>,
    pub from: Option<String>,
    pub from_image: Option<String>,
    pub allow_downgrade: bool,
    pub force_migrations: bool,
    pub downgrade_revisions: Vec<String>,
    pub gate_image: Option<String>,
    pub job_template: Option<PathBuf>,
    /// Only when lockstep is run directly: helm turns these into HELM_NAMESPACE/HELM_KUBECONTEXT.
    pub namespace: Option<String>,
    pub kube_context: Option<String>,
    pub behaviour: Vec<Behaviour>,
    pub output: PlanOutput,
}

/// The result of parsing: run, or print the usage.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Run(Box<Invocation>),
}

/// Flags whose meaning lockstep knows but will not pass on, with the reason.
fn refused_flag(name: &str) -> Option<&'static str> {
    Some(match name {
        "--no-hooks" => "it would skip lockstep's migration Jobs, which are hooks: the database would not be migrated",
        "--post-renderer" | "--post-renderer-args" => "lockstep is the renderer here; with Helm 4 use `helm install|upgrade ... --post-renderer lockstep-postrender` instead of `helm lockstep`",
        "--reuse-values" | "--reset-values" | "--reset-then-reuse-values" => {
            "lockstep renders the chart itself, from the values given on this command line: pass every values file (-f) and --set again"
        }
        "--set-file" | "--set-json" | "--set-literal" => "lockstep reads values from -f, --set and --set-string only: put this value into a values file",
        "--password" => "a password on a command line shows in process lists and shell history: set LOCKSTEP_REPO_PASSWORD, or pass --password-file FILE",
        "--devel" | "--verify" | "--keyring" | "--cert-file" | "--key-file" | "--pass-credentials" => {
            "helm lockstep fetches charts with --version, --repo, --username, --password-file, --ca-file, --insecure-skip-tls-verify and --plain-http only: `helm pull` the chart yourself for anything else, then pass the .tgz"
        }
        "--dependency-update" => "build the chart's dependencies first (`helm dependency build CHART`), then pass the chart",
        "--generate-name" | "-g" | "--name-template" => "lockstep needs the release name: pass RELEASE",
        _ => return None,
    })
}

/// Parses the arguments after `lockstep helm`. Err is a usage error (exit 2).
pub fn parse(args: &[String]) -> std::result::Result<Parsed, String> {
    let mut inv = Invocation::default();
    let mut positional: Vec<String> = Vec::new();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_positional || arg == "-" || !arg.starts_with('-') {
            positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        // The flag's name and its inline value: --name=value, -xVALUE, -x=VALUE.
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_owned())),
                None => (arg.clone(), None),
            }
        } else {
            let short: String = arg.chars().take(2).collect();
            let rest = &arg[short.len()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            (short, (!rest.is_empty()).then(|| rest.to_owned()))
        };
        // A value: inline, else the next argument.
        let mut value = |what: &str| -> std::result::Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            match args.get(i) {
                Some(v) => {
                    i += 1;
                    Ok(v.clone())
                }
                None => Err(format!("{name} needs a value ({what})")),
            }
        };
        let flag_bool = |inline: &Option<String>| -> std::result::Result<bool, String> {
            match inline.as_deref() {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(v) => Err(format!("{name} takes no value (got {v:?})")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-f" | "--values" => {
                let v = value("a values file")?;
                inv.values.extend(v.split(',').filter(|s| !s.is_empty()).map(PathBuf::from));
            }
            "--set" => inv.set.push(value("KEY=VALUE")?),
            "--set-string" => inv.set_string.push(value("KEY=VALUE")?),
            "--version" => inv.pull.version = Some(value("the chart version")?),
            "--repo" => inv.pull.repo = Some(value("a chart repository URL")?),
            "--username" => inv.pull.username = Some(value("a user name")?),
            "--password-file" => inv.pull.password_file = Some(PathBuf::from(value("a file")?)),
            "--ca-file" => inv.pull.ca_file = Some(PathBuf::from(value("a file")?)),
            "--insecure-skip-tls-verify" => inv.pull.insecure_skip_tls_verify = flag_bool(&inline)?,
            "--plain-http" => inv.pull.plain_http = flag_bool(&inline)?,
            "--kube-version" => inv.kube_version = Some(value("a Kubernetes version")?),
            "--api-versions" => {
                let v = value("GROUP/VERSION")?;
                inv.api_versions.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
            }
            "--profile" => inv.profile = Some(value("a profile name or file")?),
            "--api-workload" => {
                let v = value("KIND/NAME[:CONTAINER]")?;
                inv.api_workload = Some(v.parse().map_err(|e: String| format!("--api-workload {e}"))?);
            }
            "--phase" => {
                let v = value("presync or sync")?;
                inv.phase = Some(settings::parse_phase(&v).map_err(|e| format!("--phase: {e}"))?);
            }
            "--from" => inv.from = Some(value("the deployed release's version")?),
            "--from-image" => inv.from_image = Some(value("an image")?),
            "--allow-downgrade" => inv.allow_downgrade = flag_bool(&inline)?,
            "--force-migrations" => inv.force_migrations = flag_bool(&inline)?,
            "--downgrade-revision" => inv.downgrade_revisions.push(value("DB=REVISION")?),
            "--gate-image" => inv.gate_image = Some(value("an image")?),
            "--job-template" => inv.job_template = Some(PathBuf::from(value("a file")?)),
            "-n" | "--namespace" => inv.namespace = Some(value("a namespace")?),
            "--kube-context" => inv.kube_context = Some(value("a kube context")?),
            "-o" | "--output" => {
                inv.output = match value("text or json")?.as_str() {
                    "text" | "table" => PlanOutput::Text,
                    "json" => PlanOutput::Json,
                    o => return Err(format!("--output {o:?}: use text or json")),
                }
            }
            "--wait" => {
                let b = match inline.as_deref() {
                    None | Some("true") => Behaviour::Wait(None),
                    Some(s @ ("watcher" | "hookOnly" | "legacy")) => Behaviour::Wait(Some(s.to_owned())),
                    Some(v) => return Err(format!("--wait={v}: use --wait, or --wait=watcher|hookOnly|legacy (Helm 4)")),
                };
                inv.behaviour.push(b);
            }
            "--wait-for-jobs" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::WaitForJobs),
            "--timeout" => {
                let v = value("a duration such as 10m")?;
                if !is_go_duration(&v) {
                    return Err(format!("--timeout {v:?} is not a duration: use e.g. 300s, 10m or 1h30m"));
                }
                inv.behaviour.push(Behaviour::Timeout(v));
            }
            "--atomic" | "--rollback-on-failure" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::RollbackOnFailure),
            "--dry-run" => {
                let mode = match inline.as_deref() {
                    None | Some("client") => "client",
                    Some("server") => "server",
                    Some(v) => return Err(format!("--dry-run={v}: use --dry-run, --dry-run=client or --dry-run=server")),
                };
                inv.behaviour.push(Behaviour::DryRun(mode.to_owned()));
            }
            "--create-namespace" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::CreateNamespace),
            "--description" => inv.behaviour.push(Behaviour::Description(value("a description")?)),
            "--disable-openapi-validation" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::DisableOpenapiValidation),
            "--skip-crds" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::SkipCrds),
            "-i" | "--install" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::Install),
            "--cleanup-on-fail" => push_bool(&mut inv, flag_bool(&inline)?, Behaviour::CleanupOnFail),
            "--history-max" => {
                let v = value("a number")?;
                let n = v.parse().map_err(|_| format!("--history-max {v:?} is not a number"))?;
                inv.behaviour.push(Behaviour::HistoryMax(n));
            }
            other => {
                return Err(match refused_flag(other) {
                    Some(why) => format!("{other} is not supported by helm lockstep: {why}"),
                    None => format!("unknown or unsupported flag {other}: helm lockstep passes no flag to helm it does not know (the supported flags are listed below)"),
                })
            }
        }
    }
    let Some(first) = positional.first() else {
        return Err("no command: use template, plan, install or upgrade".into());
    };
    inv.command = Some(match first.as_str() {
        "template" => Command::Template,
        "plan" => Command::Plan,
        "install" => Command::Install,
        "upgrade" => Command::Upgrade,
        "help" => return Ok(Parsed::Help),
        other => {
            return Err(format!(
                "unknown command {other:?}: use template, plan, install or upgrade"
            ))
        }
    });
    let cmd = inv.command.expect("just set");
    match &positional[1..] {
        [release, chart] => {
            inv.release = release.clone();
            inv.chart = PathBuf::from(chart);
        }
        [] | [_] => {
            return Err(format!(
                "{} needs RELEASE and CHART: helm lockstep {} RELEASE CHART [flags]",
                cmd.name(),
                cmd.name()
            ))
        }
        more => {
            return Err(format!(
                "{} takes RELEASE and CHART, got {} arguments: {}",
                cmd.name(),
                more.len(),
                more.join(" ")
            ))
        }
    }
    if let Some(problem) = settings::release_name_problem(&inv.release) {
        return Err(problem);
    }
    // Flags that belong to other commands.
    for b in &inv.behaviour {
        let flag = behaviour_flag(b);
        if !cmd.deploys() {
            return Err(format!(
                "{flag} is a flag of install and upgrade, not of {}",
                cmd.name()
            ));
        }
        if matches!(
            b,
            Behaviour::Install | Behaviour::CleanupOnFail | Behaviour::HistoryMax(_)
        ) && cmd != Command::Upgrade
        {
            return Err(format!(
                "{flag} is a flag of upgrade, not of {}",
                cmd.name()
            ));
        }
    }
    if inv.output != PlanOutput::Text && cmd != Command::Plan {
        return Err(format!("--output is a flag of plan, not of {}", cmd.name()));
    }
    Ok(Parsed::Run(Box::new(inv)))
}

fn push_bool(inv: &mut Invocation, on: bool, b: Behaviour) {
    if on {
        inv.behaviour.push(b);
    }
}

fn behaviour_flag(b: &Behaviour) -> &'static str {
    match b {
        Behaviour::Wait(_) => "--wait",
        Behaviour::WaitForJobs => "--wait-for-jobs",
        Behaviour::Timeout(_) => "--timeout",
        Behaviour::RollbackOnFailure => "--atomic/--rollback-on-failure",
        Behaviour::DryRun(_) => "--dry-run",
        Behaviour::CreateNamespace => "--create-namespace",
        Behaviour::Description(_) => "--description",
        Behaviour::DisableOpenapiValidation => "--disable-openapi-validation",
        Behaviour::SkipCrds => "--skip-crds",
        Behaviour::Install => "--install",
        Behaviour::CleanupOnFail => "--cleanup-on-fail",
        Behaviour::HistoryMax(_) => "--history-max",
    }
}

/// The behaviour flags in the form the given helm major version understands.
pub fn helm_flags(
    behaviour: &[Behaviour],
    helm_major: u64,
) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for b in behaviour {
        out.push(match b {
            Behaviour::Wait(None) => "--wait".to_owned(),
            Behaviour::Wait(Some(s)) if helm_major >= 4 => format!("--wait={s}"),
            Behaviour::Wait(Some(s)) => {
                return Err(format!(
                    "--wait={s}: wait strategies are Helm 4's; with Helm 3 use --wait"
                ))
            }
            Behaviour::WaitForJobs => "--wait-for-jobs".to_owned(),
            Behaviour::Timeout(d) => format!("--timeout={d}"),
            Behaviour::RollbackOnFailure if helm_major >= 4 => "--rollback-on-failure".to_owned(),
            Behaviour::RollbackOnFailure => "--atomic".to_owned(),
            Behaviour::DryRun(m) => format!("--dry-run={m}"),
            Behaviour::CreateNamespace => "--create-namespace".to_owned(),
            Behaviour::Description(d) => format!("--description={d}"),
            Behaviour::DisableOpenapiValidation => "--disable-openapi-validation".to_owned(),
            Behaviour::SkipCrds => "--skip-crds".to_owned(),
            Behaviour::Install => "--install".to_owned(),
            Behaviour::CleanupOnFail => "--cleanup-on-fail".to_owned(),
            Behaviour::HistoryMax(n) => format!("--history-max={n}"),
        });
    }
    Ok(out)
}

/// Go's time.ParseDuration syntax: `0`, or one or more DECIMAL UNIT (ns, us, µs, ms, s, m, h).
pub fn is_go_duration(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Entry point of `lockstep helm ...`.
pub fn main(args: &[String], notes: &mut Vec<String>) -> Result<()> {
    let inv = match parse(args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return Ok(());
        }
        Ok(Parsed::Run(inv)) => inv,
        Err(msg) => return Err(usage(&msg)),
    };
    // A chart not on disk is pulled once; `_pulled` keeps it until helm is done with it.
    let mut inv = inv;
    let (path, _pulled) = crate::fetch::resolve(&inv.chart.to_string_lossy(), &inv.pull)?;
    inv.pulled = _pulled.is_some();
    inv.chart = path;
    let helm = render::helm_bin()?;
    match inv.command.expect("parse sets the command") {
        Command::Template => {
            let req = build_request(&helm, &inv, notes)?;
            let mut buf = Vec::new();
            crate::run(&req, &mut buf, notes)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)?;
            out.flush()?;
            Ok(())
        }
        Command::Plan => plan(&helm, &inv, notes),
        Command::Install | Command::Upgrade => deploy(&helm, &inv, notes),
    }
}

/// A usage error (exit 2): the message, then the usage.
fn usage(msg: &str) -> anyhow::Error {
    exit::Usage(format!("{msg}\n\n{USAGE}")).into()
}

/// Where the release lives: the namespace and kube context helm was given.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub namespace: Option<String>,
    pub kube_context: Option<String>,
}

impl Connection {
    /// The namespace as the settings resolve it; the kube context (no setting of the
    /// render) from `--kube-context`, else helm's HELM_KUBECONTEXT.
    fn new(namespace: Option<String>, inv: &Invocation) -> Connection {
        Connection {
            namespace,
            kube_context: inv.kube_context.clone().or_else(|| env("HELM_KUBECONTEXT")),
        }
    }

    fn args(&self) -> Vec<OsString> {
        let mut a = Vec::new();
        if let Some(ns) = &self.namespace {
            a.push(format!("--namespace={ns}").into());
        }
        if let Some(ctx) = &self.kube_context {
            a.push(format!("--kube-context={ctx}").into());
        }
        a
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "namespace {}",
            self.namespace.as_deref().unwrap_or("(helm's default)")
        );
        if let Some(ctx) = &self.kube_context {
            s += &format!(", kube context {ctx}");
        }
        s
    }
}

/// One entry of `helm history -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Revision {
    pub revision: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub chart: String,
}

/// `helm get metadata -o json`, read leniently (Helm 4 adds keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub chart: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub app_version: Option<String>,
}

/// What the history says about the deployed release.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// The newest revision whose status is `deployed`.
    Deployed(u64),
    /// No revision ever reached the cluster (only failed or pending installs): a first install.
    NeverDeployed(String),
    /// Revisions that were deployed once, none deployed now (an uninstall with --keep-history).
    Unclear(String),
}

pub fn pick(history: &[Revision]) -> Pick {
    if let Some(r) = history
        .iter()
        .filter(|r| r.status == "deployed")
        .max_by_key(|r| r.revision)
    {
        return Pick::Deployed(r.revision);
    }
    let list = history
        .iter()
        .map(|r| format!("{} {} ({})", r.revision, r.status, r.chart))
        .collect::<Vec<_>>()
        .join(", ");
    if history.iter().any(|r| {
        matches!(
            r.status.as_str(),
            "superseded" | "uninstalled" | "uninstalling"
        )
    }) {
        Pick::Unclear(list)
    } else {
        Pick::NeverDeployed(list)
    }
}

/// Reads the deployed release from the cluster. None: nothing was ever deployed (first install).
pub fn lookup(
    helm: &Path,
    conn: &Connection,
    release: &str,
    chart: &source::ChartMeta,
    profile: &Profile,
    api_workload: Option<&WorkloadRef>,
    notes: &mut Vec<String>,
) -> Result<Option<ClusterRelease>> {
    let mut args: Vec<OsString> = vec!["history".into(), release.into(), "--output=json".into()];
    args.extend(conn.args());
    let out = render::output(helm, &args, "helm history")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("release: not found") {
            notes.push(format!(
                "no release {release} in {}: a first install",
                conn.describe()
            ));
            return Ok(None);
        }
        bail!(
            "cannot read the deployed release: `helm history {release}` failed ({}): {}\n  fix: check the cluster connection (kubeconfig, --kube-context, -n); lockstep does not guess the deployed release. Without a cluster, `helm lockstep template|plan ... --from VERSION` names the deployed release and renders offline",
            out.status,
            stderr.trim()
        );
    }
    let history: Vec<Revision> = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("`helm history {release} -o json` printed something that is not a JSON list of revisions: {}", String::from_utf8_lossy(&out.stdout).trim())
    })?;
    let revision = match pick(&history) {
        Pick::Deployed(n) => n,
        Pick::NeverDeployed(list) if history.is_empty() => {
            notes.push(format!("release {release} has no revisions in {}: a first install ({list})", conn.describe()));
            return Ok(None);
        }
        Pick::NeverDeployed(list) => {
            notes.push(format!("release {release} was never deployed (revisions: {list}): treated as a first install"));
            return Ok(None);
        }
        Pick::Unclear(list) => bail!(
            "release {release} has no deployed revision, but was deployed before (revisions: {list}): its database may still hold that release's schema.\n  fix: name the release the database is at with --from VERSION"
        ),
    };
    let mut args: Vec<OsString> = vec![
        "get".into(),
        "metadata".into(),
        release.into(),
        format!("--revision={revision}").into(),
        "--output=json".into(),
    ];
    args.extend(conn.args());
    let out = render::output(helm, &args, "helm get metadata")?;
    if !out.status.success() {
        bail!(
            "cannot read revision {revision} of release {release}: `helm get metadata` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("`helm get metadata {release} --revision {revision} -o json` printed something that is not release metadata")
    })?;
    if meta.chart != chart.name {
        bail!(
            "release {release} (revision {revision}) runs the chart {:?}, not {:?}: lockstep cannot compare releases of different charts.\n  fix: check the release name and namespace; for template and plan, --from VERSION names the deployed release without asking the cluster",
            meta.chart,
            chart.name
        );
    }
    let image = match profile.releases.version_from {
        VersionSource::ImageTag => Some(deployed_image(
            helm,
            conn,
            release,
            revision,
            profile,
            api_workload,
        )?),
        _ => None,
    };
    let tag = image
        .as_deref()
        .map(locate::ImageRef::parse)
        .and_then(|i| i.tag);
    let fields = settings::ReleaseFields {
        chart_version: &meta.version,
        app_version: meta.app_version.as_deref(),
        image_tag: tag.as_deref(),
    };
    let (what, text) = settings::release_field(profile, fields);
    let version = gate::parse_version(&text).ok_or_else(|| {
        anyhow!(
            "cannot tell which release is deployed: the {what} {text:?} of release {release} revision {revision} is not a version (profile {} reads releases.versionFrom: {what})",
            profile.name
        )
    })?;
    notes.push(format!(
        "deployed: release {release} revision {revision}, {} {} ({what} {text}) in {}",
        meta.chart,
        meta.version,
        conn.describe()
    ));
    Ok(Some(ClusterRelease {
        release: release.to_owned(),
        revision,
        chart: meta.chart,
        version,
        image,
    }))
}

/// The API image of a deployed revision, from its manifest, found as the pipeline finds it.
fn deployed_image(
    helm: &Path,
    conn: &Connection,
    release: &str,
    revision: u64,
    profile: &Profile,
    api_workload: Option<&WorkloadRef>,
) -> Result<String> {
    let mut args: Vec<OsString> = vec![
        "get".into(),
        "manifest".into(),
        release.into(),
        format!("--revision={revision}").into(),
    ];
    args.extend(conn.args());
    let out = render::output(helm, &args, "helm get manifest")?;
    if !out.status.success() {
        bail!(
            "cannot read the manifest of release {release} revision {revision}: `helm get manifest` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8(out.stdout)
        .context("`helm get manifest` printed output that is not UTF-8")?;
    let s = stream::split(&text)
        .with_context(|| format!("the manifest of release {release} revision {revision}"))?;
    let names = locate::Names {
        release: Some(release),
        charts: &profile.charts,
    };
    let api = locate::find(&s, profile, api_workload, names).with_context(|| {
        format!(
            "cannot find the API image in the manifest of release {release} revision {revision}"
        )
    })?;
    Ok(api.image.full)
}

/// Gathers the flags, HELM_NAMESPACE and the deployed release (from the cluster, unless
/// `--from` names it for template and plan) for the settings layer.
fn build_request(helm: &Path, inv: &Invocation, notes: &mut Vec<String>) -> Result<Request> {
    let cmd = inv.command.expect("parsed");
    let mut inputs = Inputs::new(
        FrontEnd::HelmPlugin {
            plan: cmd == Command::Plan,
        },
        Input::Chart(ChartInput {
            path: inv.chart.clone(),
            values: inv.values.clone(),
            set: inv.set.clone(),
            set_string: inv.set_string.clone(),
            kube_version: inv.kube_version.clone(),
            api_versions: inv.api_versions.clone(),
        }),
    );
    inputs.flags = Layer {
        release: Some(inv.release.clone()),
        namespace: inv.namespace.clone(),
        profile: inv.profile.clone(),
        api_workload: inv.api_workload.clone(),
        phase: inv.phase,
        job_template: inv.job_template.clone(),
        gate_image: inv.gate_image.clone(),
        from: inv.from.clone(),
        from_image: inv.from_image.clone(),
        allow_downgrade: Some(inv.allow_downgrade),
        force_migrations: Some(inv.force_migrations),
        downgrade_revisions: Some(inv.downgrade_revisions.clone()),
    };
    inputs.platform.namespace = env("HELM_NAMESPACE");
    let namespace = inputs.pick(Setting::Namespace, |l| l.namespace);
    let conn = Connection::new(namespace.map(|(_, ns)| ns), inv);
    let meta = source::read_chart(&inv.chart)?.meta;
    let root = crate::chart_repository(None, &inv.chart)?;
    let chart = settings::ChartAt {
        meta: &meta,
        root: &root,
        path: &inv.chart,
    };
    // The pipeline notes its choice of profile; the same choice here is not noted twice.
    let profile = settings::choose_profile(inv.profile.as_deref(), Some(chart), &mut Vec::new())?;
    if !inv.pulled {
        crate::fetch::check_version(&inv.chart, inv.pull.version.as_deref(), &meta)?;
    }
    inputs.cluster = if inv.from.is_some() && !cmd.deploys() {
        notes.push(format!(
            "the deployed release is {} (--from); the cluster was not asked",
            inv.from.as_deref().unwrap_or_default()
        ));
        None
    } else {
        let mut d = lookup(
            helm,
            &conn,
            &inv.release,
            &meta,
            &profile,
            inv.api_workload.as_ref(),
            notes,
        )?;
        // A downgrade Job runs the deployed (newer) image: read it from the deployed manifest.
        if let Some(d) = d
            .as_mut()
            .filter(|d| inv.allow_downgrade && inv.from_image.is_none() && d.image.is_none())
        {
            d.image = Some(deployed_image(
                helm,
                &conn,
                &inv.release,
                d.revision,
                &profile,
                inv.api_workload.as_ref(),
            )?);
        }
        d
    };
    settings::resolve(inputs, notes)
}

/// A variable of helm's plugin environment; empty counts as not set.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// `helm lockstep plan`: the stops from the deployed release to the chart's.
fn plan(helm: &Path, inv: &Invocation, notes: &mut Vec<String>) -> Result<()> {
    let req = build_request(helm, inv, notes)?;
    // The target as the pipeline reads it; the gate's verdict is the plan's to explain.
    let target_req = Request {
        from: None,
        ..req.clone()
    };
    let mut scratch = Vec::new();
    let rendered = crate::obtain(&target_req, &mut scratch)?;
    let a = crate::analyze(&target_req, &rendered.text, &rendered.origin, &mut scratch)?;
    let text = match req.from.as_deref() {
        Some(f) => {
            let from = gate::parse_version(f).ok_or_else(|| anyhow!("--from {f:?} is not a version (e.g. 0.8.2)"))?;
            let p = gate::plan(&a.profile, &from, &a.target)?;
            match inv.output {
                PlanOutput::Text => p.to_text(),
                PlanOutput::Json => serde_json::to_string_pretty(&p)? + "\n",
            }
        }
        None => match inv.output {
            PlanOutput::Text => format!(
                "First install of {} {} as release {} (profile {}): no deployed release, nothing to upgrade from.\n",
                a.chart.name, a.target, inv.release, a.profile.name
            ),
            PlanOutput::Json => {
                serde_json::to_string_pretty(&serde_json::json!({
                    "profile": a.profile.name,
                    "from": null,
                    "to": a.target.to_string(),
                    "firstInstall": true,
                    "stops": [],
                }))? + "\n"
            }
        },
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The one template of the temporary chart: the final stream, as it is.
pub const TEMPLATE: &str = "{{ .Files.Get \"lockstep/manifests.yaml\" }}\n";

/// Splits the final stream for the temporary chart: CustomResourceDefinitions that came
/// from a chart's `crds/` directory (helm template's `# Source: .../crds/...`) go back to
/// `crds/`, where helm installs them once and never upgrades or deletes them, as it would
/// for the original chart; everything else goes to `lockstep/manifests.yaml`.
pub fn split_crds(text: &str) -> Result<(String, String)> {
    let s = stream::split(text)?;
    if s.json {
        return Ok((String::new(), text.to_owned()));
    }
    let (mut crds, mut rest) = (String::new(), String::new());
    for d in &s.docs {
        let from_crds_dir = d
            .head
            .as_ref()
            .is_some_and(|h| h.kind == "CustomResourceDefinition")
            && d.raw.lines().any(|l| {
                l.strip_prefix("# Source: ")
                    .is_some_and(|p| p.split('/').rev().skip(1).any(|seg| seg == "crds"))
            });
        let out = if from_crds_dir { &mut crds } else { &mut rest };
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&d.raw);
    }
    Ok((crds, rest))
}

/// Writes the temporary chart into `dir`: Chart.yaml from the original (dependencies
/// removed: they are rendered already), the single template, and the stream as a file.
pub fn write_chart(dir: &Path, chart_yaml: &str, stream: &str) -> Result<PathBuf> {
    let mut meta: serde_yaml::Value = serde_yaml::from_str(chart_yaml)
        .context("`helm show chart` printed something that is not a Chart.yaml")?;
    let map = meta.as_mapping_mut().ok_or_else(|| {
        anyhow!("`helm show chart` printed something that is not a Chart.yaml mapping")
    })?;
    map.remove("dependencies");
    let name = map
        .get("name")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("chart")
        .to_owned();
    let safe = if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
    {
        name
    } else {
        "chart".to_owned()
    };
    let root = dir.join(safe);
    let (crds, manifests) = split_crds(stream)?;
    let write = |file: &str, text: &str| -> Result<()> {
        let path = root.join(file);
        let dir = path.parent().unwrap_or(&root);
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("cannot write the temporary chart's {}", path.display()))
    };
    write("Chart.yaml", &crate::yaml::to_string_of(&meta)?)?;
    write("templates/lockstep.yaml", TEMPLATE)?;
    write("lockstep/manifests.yaml", &manifests)?;
    if !crds.is_empty() {
        write("crds/lockstep-crds.yaml", &crds)?;
    }
    Ok(root)
}

/// The major version of helm (3 or 4).
fn helm_major(helm: &Path) -> Result<u64> {
    let v = render::run(
        helm,
        &["version".into(), "--template={{.Version}}".into()],
        "helm version",
    )?;
    gate::parse_version(v.trim())
        .map(|v| v.major)
        .ok_or_else(|| {
            anyhow!(
                "cannot read helm's version from {:?} (`{} version`)",
                v.trim(),
                helm.display()
            )
        })
}

/// What `--timeout` adds to the longest hook Job deadline: pod start and Helm's own
/// deletes before and after the hook.
pub const HOOK_TIMEOUT_MARGIN_SECONDS: i64 = 120;

/// Helm's `--timeout` applies to each hook (pkg/action/hooks.go, WatchUntilReady): at
/// least the longest `activeDeadlineSeconds` of the stream's hook Jobs plus a margin, or
/// None when no hook Job has a deadline.
pub fn hook_timeout(stream: &str) -> Result<Option<i64>> {
    let mut longest: Option<i64> = None;
    for doc in crate::stream::split(stream)?.docs.iter() {
        let Some(h) = &doc.head else { continue };
        if h.kind != "Job" || !doc.raw.contains("helm.sh/hook") {
            continue;
        }
        let v = doc.value()?;
        let is_hook = v
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("helm.sh/hook"))
            .is_some();
        let deadline = v
            .get("spec")
            .and_then(|s| s.get("activeDeadlineSeconds"))
            .and_then(serde_yaml::Value::as_i64);
        if let (true, Some(d)) = (is_hook, deadline) {
            longest = Some(longest.map_or(d, |l| l.max(d)));
        }
    }
    Ok(longest.map(|l| l + HOOK_TIMEOUT_MARGIN_SECONDS))
}

/// `helm lockstep install|upgrade`.
fn deploy(helm: &Path, inv: &Invocation, notes: &mut Vec<String>) -> Result<()> {
    let cmd = inv.command.expect("parsed");
    let flags = match helm_flags(&inv.behaviour, helm_major(helm)?) {
        Ok(f) => f,
        Err(msg) => return Err(usage(&msg)),
    };
    let req = build_request(helm, inv, notes)?;
    let conn = Connection::new(req.namespace.clone(), inv);
    let mut buf = Vec::new();
    crate::run(&req, &mut buf, notes)?;
    let stream = String::from_utf8(buf).context("the final stream is not UTF-8")?;
    let mut flags = flags;
    if !inv
        .behaviour
        .iter()
        .any(|b| matches!(b, Behaviour::Timeout(_)))
    {
        if let Some(secs) = hook_timeout(&stream)? {
            notes.push(format!(
                "--timeout={secs}s: helm waits that long for each hook (the longest hook Job's activeDeadlineSeconds plus {HOOK_TIMEOUT_MARGIN_SECONDS}s); with helm's default 300s a long migration would be marked failed while it runs, and the retry would delete it mid-run. Pass --timeout to choose another"
            ));
            flags.push(format!("--timeout={secs}s"));
        }
    }

    let chart_abs = inv
        .chart
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", inv.chart.display()))?;
    let chart_yaml = render::run(
        helm,
        &["show".into(), "chart".into(), chart_abs.into_os_string()],
        "helm show chart",
    )?;
    let tmp = TempDir::new("lockstep-helm")?;
    let chart_dir = write_chart(&tmp.0, &chart_yaml, &stream)?;

    let mut args: Vec<OsString> = vec![
        cmd.name().into(),
        inv.release.clone().into(),
        chart_dir.into_os_string(),
    ];
    args.extend(conn.args());
    // The user's values go on record in the release (`helm get values`); the temporary
    // chart does not read them: the stream is rendered already.
    for f in &inv.values {
        let mut s = OsString::from("--values=");
        s.push(f.as_os_str());
        args.push(s);
    }
    args.extend(inv.set.iter().map(|s| OsString::from(format!("--set={s}"))));
    args.extend(
        inv.set_string
            .iter()
            .map(|s| OsString::from(format!("--set-string={s}"))),
    );
    args.extend(flags.into_iter().map(OsString::from));

    // lockstep's notes first, then helm on the user's terminal.
    for n in notes.drain(..) {
        eprintln!("lockstep: {n}");
    }
    let status = render::run_inherited(helm, &args, &format!("helm {}", cmd.name()));
    drop(tmp);
    let status = status?;
    if !status.success() {
        return Err(exit::Passed(status.code().unwrap_or(exit::ERROR)).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn run(s: &str) -> Invocation {
        match parse(&args(s)) {
            Ok(Parsed::Run(i)) => *i,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse(&args(s)) {
            Err(e) => e,
            other => panic!("{s}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn whitelist() {
        let i = run("upgrade rel ./chart -f a.yaml,b.yaml --values=c.yaml -fd.yaml --set x=1 --set-string=y=2 --wait --timeout 10m --atomic --dry-run -i --history-max=3 --profile generic --phase sync --api-versions a/v1,b/v1");
        assert_eq!(i.command, Some(Command::Upgrade));
        assert_eq!(
            (i.release.as_str(), i.chart.as_path()),
            ("rel", Path::new("./chart"))
        );
        assert_eq!(
            i.values,
            ["a.yaml", "b.yaml", "c.yaml", "d.yaml"].map(PathBuf::from)
        );
        assert_eq!(
            (i.set, i.set_string),
            (vec!["x=1".to_owned()], vec!["y=2".to_owned()])
        );
        assert_eq!(i.api_versions, ["a/v1", "b/v1"]);
        assert_eq!(i.phase, Some(Phase::Sync));
        assert_eq!(
            helm_flags(&i.behaviour, 3).unwrap(),
            [
                "--wait",
                "--timeout=10m",
                "--atomic",
                "--dry-run=client",
                "--install",
                "--history-max=3"
            ]
        );
        assert_eq!(
            helm_flags(&i.behaviour, 4).unwrap(),
            [
                "--wait",
                "--timeout=10m",
                "--rollback-on-failure",
                "--dry-run=client",
                "--install",
                "--history-max=3"
            ]
        );
        let i = run("install rel chart --wait=legacy --description=a,b --dry-run=server");
        assert!(helm_flags(&i.behaviour, 3).unwrap_err().contains("Helm 4"));
        assert_eq!(
            helm_flags(&i.behaviour, 4).unwrap(),
            ["--wait=legacy", "--description=a,b", "--dry-run=server"]
        );
    }

    #[test]
    fn refusals_are_usage_errors() {
        assert!(err("install rel chart --no-hooks").contains("migration Jobs"));
        assert!(err("upgrade rel chart --reuse-values").contains("values"));
        assert!(err("install rel chart --post-renderer x").contains("lockstep-postrender"));
        assert!(err("install rel chart --force").contains("unknown or unsupported flag --force"));
        assert!(err("install rel chart --timeout 5").contains("not a duration"));
        assert!(err("install rel chart --install").contains("flag of upgrade"));
        assert!(err("template rel chart --wait").contains("install and upgrade"));
        assert!(err("template rel chart -o json").contains("plan"));
        assert!(err("template rel").contains("RELEASE and CHART"));
        assert!(err("template rel chart extra").contains("got 3"));
        assert!(err("template Rel chart").contains("not valid"));
        assert!(err("frobnicate rel chart").contains("unknown command"));
        assert!(err("install rel chart --dry-run=true").contains("--dry-run=client"));
        assert!(err("template rel chart --set").contains("needs a value"));
        assert!(matches!(parse(&args("--help")), Ok(Parsed::Help)));
        assert!(matches!(
            parse(&args("template rel chart -h")),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn hook_timeout_covers_the_longest_hook_job_deadline() {
        let job = |name: &str, hook: &str, deadline: i64| {
            format!("---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations:\n    helm.sh/hook: {hook}\nspec:\n  activeDeadlineSeconds: {deadline}\n  template: {{spec: {{containers: []}}}}\n")
        };
        let stream = [
            job("gate", "pre-install", 300),
            job("migrate", "pre-install,pre-upgrade", 1800),
            "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: not-a-hook}\nspec: {activeDeadlineSeconds: 99999, template: {spec: {containers: []}}}\n".to_owned(),
        ]
        .concat();
        assert_eq!(
            hook_timeout(&stream).unwrap(),
            Some(1800 + HOOK_TIMEOUT_MARGIN_SECONDS)
        );
        assert_eq!(
            hook_timeout("---\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap(),
            None
        );
    }

    #[test]
    fn durations() {
        for ok in ["0", "5m", "300s", "1h30m", "1.5h", "10ms", "2µs"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "5", "m", "1.2.3s", "10 m", "5mm", "-5m", "1d"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    fn rev(revision: u64, status: &str) -> Revision {
        Revision {
            revision,
            status: status.to_owned(),
            chart: "c-1.0.0".to_owned(),
        }
    }

    #[test]
    fn newest_deployed_revision() {
        let h = vec![rev(1, "superseded"), rev(2, "deployed"), rev(3, "failed")];
        assert_eq!(pick(&h), Pick::Deployed(2));
        assert!(matches!(
            pick(&[rev(1, "failed"), rev(2, "pending-install")]),
            Pick::NeverDeployed(_)
        ));
        assert!(matches!(
            pick(&[rev(1, "superseded"), rev(2, "uninstalled")]),
            Pick::Unclear(_)
        ));
        assert!(matches!(pick(&[]), Pick::NeverDeployed(_)));
        let json = r#"[{"revision":1,"updated":"x","status":"deployed","chart":"c-1.0.0","app_version":"1","description":"Install complete"}]"#;
        let h: Vec<Revision> = serde_json::from_str(json).unwrap();
        assert_eq!(pick(&h), Pick::Deployed(1));
        let m: Metadata = serde_json::from_str(
            r#"{"name":"p","chart":"prefect-cloud","version":"0.8.2","appVersion":"3.1.0","namespace":"p","revision":2,"status":"deployed","deployedAt":"x","labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                m.chart.as_str(),
                m.version.as_str(),
                m.app_version.as_deref()
            ),
            ("prefect-cloud", "0.8.2", Some("3.1.0"))
        );
    }

    #[test]
    fn crds_from_the_crds_directory_go_back_there() {
        let text = "---\n# Source: app/crds/widgets.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n---\n# Source: app/templates/crd.yaml\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\n---\n# Source: app/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: crds\n";
        let (crds, rest) = split_crds(text).unwrap();
        assert!(
            crds.contains("widgets.example.com") && !crds.contains("gadgets"),
            "{crds}"
        );
        assert!(
            rest.contains("gadgets.example.com")
                && rest.contains("kind: ConfigMap")
                && !rest.contains("widgets"),
            "{rest}"
        );
    }

    #[test]
    fn temporary_chart() {
        let dir = std::env::temp_dir().join(format!("lockstep-helm-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chart = "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n- name: db\n  version: 0.1.0\n";
        let root = write_chart(
            &dir,
            chart,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        )
        .unwrap();
        assert_eq!(root, dir.join("app"));
        let meta = std::fs::read_to_string(root.join("Chart.yaml")).unwrap();
        assert!(
            meta.contains("name: app") && !meta.contains("dependencies"),
            "{meta}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("templates/lockstep.yaml")).unwrap(),
            TEMPLATE
        );
        assert!(
            std::fs::read_to_string(root.join("lockstep/manifests.yaml"))
                .unwrap()
                .contains("kind: ConfigMap")
        );
        assert!(!root.join("crds").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
