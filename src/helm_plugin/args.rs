//! `helm lockstep` argv: the whitelist of flags, parsed into an [`Invocation`]; a flag
//! lockstep knows but will not pass on is refused with its reason, any other unknown flag
//! as unknown. Nothing here reads the environment, the cluster or a file.

use crate::fetch::PullOptions;
use crate::inject::Phase;
use crate::locate::WorkloadRef;
use crate::settings;
use std::path::PathBuf;

pub(crate) const USAGE: &str = "\
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
pub(crate) enum Action {
    Template,
    Plan,
    Install,
    Upgrade,
}

impl Action {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Template => "template",
            Action::Plan => "plan",
            Action::Install => "install",
            Action::Upgrade => "upgrade",
        }
    }
    pub(crate) fn deploys(self) -> bool {
        matches!(self, Action::Install | Action::Upgrade)
    }
}

/// An install/upgrade flag, validated, for helm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Behaviour {
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
pub(crate) enum PlanOutput {
    #[default]
    Text,
    Json,
}

/// A parsed `helm lockstep` command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Invocation {
    pub command: Option<Action>,
    pub release: String,
    pub chart: PathBuf,
    /// `--version`, `--repo` and helm's other pulling flags, for a chart not on disk.
    pub pull: PullOptions,
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
pub(crate) enum Parsed {
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
pub(crate) fn parse(args: &[String]) -> std::result::Result<Parsed, String> {
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
        let mut f = Flag {
            name,
            inline,
            args,
            next: &mut i,
        };
        if apply(&mut inv, &mut f)? {
            return Ok(Parsed::Help);
        }
    }
    finish(inv, &positional)
}

/// One flag as given: its name, its inline value, and the arguments after it.
struct Flag<'a> {
    name: String,
    inline: Option<String>,
    args: &'a [String],
    /// The index of the next argument: a value not given inline is taken from there.
    next: &'a mut usize,
}

impl Flag<'_> {
    /// The flag's value: inline, else the next argument.
    fn value(&mut self, what: &str) -> std::result::Result<String, String> {
        if let Some(v) = &self.inline {
            return Ok(v.clone());
        }
        match self.args.get(*self.next) {
            Some(v) => {
                *self.next += 1;
                Ok(v.clone())
            }
            None => Err(format!("{} needs a value ({what})", self.name)),
        }
    }

    /// A switch: given alone, `=true` or `=false`.
    fn on(&self) -> std::result::Result<bool, String> {
        match self.inline.as_deref() {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{} takes no value (got {v:?})", self.name)),
        }
    }
}

/// Applies one flag to `inv`; Ok(true): help was asked for. Over 80 lines on purpose:
/// one arm per flag of the whitelist, so that the whole whitelist reads in one place,
/// and anything else is refused (with its reason when lockstep knows the flag).
fn apply(inv: &mut Invocation, f: &mut Flag) -> std::result::Result<bool, String> {
    let name = f.name.clone();
    match name.as_str() {
        "-h" | "--help" => return Ok(true),
        "-f" | "--values" => {
            let v = f.value("a values file")?;
            inv.values.extend(v.split(',').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        "--set" => inv.set.push(f.value("KEY=VALUE")?),
        "--set-string" => inv.set_string.push(f.value("KEY=VALUE")?),
        "--version" => inv.pull.version = Some(f.value("the chart version")?),
        "--repo" => inv.pull.repo = Some(f.value("a chart repository URL")?),
        "--username" => inv.pull.username = Some(f.value("a user name")?),
        "--password-file" => inv.pull.password_file = Some(PathBuf::from(f.value("a file")?)),
        "--ca-file" => inv.pull.ca_file = Some(PathBuf::from(f.value("a file")?)),
        "--insecure-skip-tls-verify" => inv.pull.insecure_skip_tls_verify = f.on()?,
        "--plain-http" => inv.pull.plain_http = f.on()?,
        "--kube-version" => inv.kube_version = Some(f.value("a Kubernetes version")?),
        "--api-versions" => {
            let v = f.value("GROUP/VERSION")?;
            inv.api_versions.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
        }
        "--profile" => inv.profile = Some(f.value("a profile name or file")?),
        "--api-workload" => {
            let v = f.value("KIND/NAME[:CONTAINER]")?;
            inv.api_workload = Some(v.parse().map_err(|e: String| format!("--api-workload {e}"))?);
        }
        "--phase" => {
            let v = f.value("presync or sync")?;
            inv.phase = Some(settings::parse_phase(&v).map_err(|e| format!("--phase: {e}"))?);
        }
        "--from" => inv.from = Some(f.value("the deployed release's version")?),
        "--from-image" => inv.from_image = Some(f.value("an image")?),
        "--allow-downgrade" => inv.allow_downgrade = f.on()?,
        "--force-migrations" => inv.force_migrations = f.on()?,
        "--downgrade-revision" => inv.downgrade_revisions.push(f.value("DB=REVISION")?),
        "--gate-image" => inv.gate_image = Some(f.value("an image")?),
        "--job-template" => inv.job_template = Some(PathBuf::from(f.value("a file")?)),
        "-n" | "--namespace" => inv.namespace = Some(f.value("a namespace")?),
        "--kube-context" => inv.kube_context = Some(f.value("a kube context")?),
        "-o" | "--output" => {
            inv.output = match f.value("text or json")?.as_str() {
                "text" | "table" => PlanOutput::Text,
                "json" => PlanOutput::Json,
                o => return Err(format!("--output {o:?}: use text or json")),
            }
        }
        "--wait" => {
            let b = match f.inline.as_deref() {
                None | Some("true") => Behaviour::Wait(None),
                Some(s @ ("watcher" | "hookOnly" | "legacy")) => Behaviour::Wait(Some(s.to_owned())),
                Some(v) => return Err(format!("--wait={v}: use --wait, or --wait=watcher|hookOnly|legacy (Helm 4)")),
            };
            inv.behaviour.push(b);
        }
        "--wait-for-jobs" => push_bool(inv, f.on()?, Behaviour::WaitForJobs),
        "--timeout" => {
            let v = f.value("a duration such as 10m")?;
            if !is_go_duration(&v) {
                return Err(format!("--timeout {v:?} is not a duration: use e.g. 300s, 10m or 1h30m"));
            }
            inv.behaviour.push(Behaviour::Timeout(v));
        }
        "--atomic" | "--rollback-on-failure" => push_bool(inv, f.on()?, Behaviour::RollbackOnFailure),
        "--dry-run" => {
            let mode = match f.inline.as_deref() {
                None | Some("client") => "client",
                Some("server") => "server",
                Some(v) => return Err(format!("--dry-run={v}: use --dry-run, --dry-run=client or --dry-run=server")),
            };
            inv.behaviour.push(Behaviour::DryRun(mode.to_owned()));
        }
        "--create-namespace" => push_bool(inv, f.on()?, Behaviour::CreateNamespace),
        "--description" => inv.behaviour.push(Behaviour::Description(f.value("a description")?)),
        "--disable-openapi-validation" => push_bool(inv, f.on()?, Behaviour::DisableOpenapiValidation),
        "--skip-crds" => push_bool(inv, f.on()?, Behaviour::SkipCrds),
        "-i" | "--install" => push_bool(inv, f.on()?, Behaviour::Install),
        "--cleanup-on-fail" => push_bool(inv, f.on()?, Behaviour::CleanupOnFail),
        "--history-max" => {
            let v = f.value("a number")?;
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
    Ok(false)
}

/// The command, RELEASE and CHART, and the flags that belong to another command.
fn finish(mut inv: Invocation, positional: &[String]) -> std::result::Result<Parsed, String> {
    let Some(first) = positional.first() else {
        return Err("no command: use template, plan, install or upgrade".into());
    };
    inv.command = Some(match first.as_str() {
        "template" => Action::Template,
        "plan" => Action::Plan,
        "install" => Action::Install,
        "upgrade" => Action::Upgrade,
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
        ) && cmd != Action::Upgrade
        {
            return Err(format!(
                "{flag} is a flag of upgrade, not of {}",
                cmd.name()
            ));
        }
    }
    if inv.output != PlanOutput::Text && cmd != Action::Plan {
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
pub(crate) fn helm_flags(
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
pub(crate) fn is_go_duration(s: &str) -> bool {
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

#[cfg(test)]
mod tests;
