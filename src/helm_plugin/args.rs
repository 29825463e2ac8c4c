//! `helm lockstep` argv: the whitelist of flags ([`FLAGS`]), parsed by clap into an
//! [`Invocation`]; a flag lockstep knows but will not pass on is refused with its reason,
//! any other unknown flag as unknown. clap's types stay in this file; its help and error
//! texts are not used (the usage is [`USAGE`], the messages are lockstep's own). Nothing
//! here reads the environment, the cluster or a file.

use crate::fetch::PullOptions;
use crate::inject::Phase;
use crate::locate::WorkloadRef;
use crate::settings::{self, Layer};
use crate::ChartInput;
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
    /// CHART (`path`; once fetched, the pulled .tgz), the values and the render flags.
    pub chart: ChartInput,
    /// `--version`, `--repo` and helm's other pulling flags, for a chart not on disk.
    pub pull: PullOptions,
    /// The chart was fetched: `chart.path` is the pulled .tgz.
    pub pulled: bool,
    /// RELEASE and lockstep's own flags, as the settings layer of flags. `-n` is its
    /// namespace: only when lockstep is run directly (helm turns it into HELM_NAMESPACE).
    pub flags: Layer,
    /// Only when lockstep is run directly: helm turns it into HELM_KUBECONTEXT.
    pub kube_context: Option<String>,
    pub behaviour: Vec<Behaviour>,
    pub output: PlanOutput,
}

impl Invocation {
    /// RELEASE.
    pub(crate) fn release(&self) -> &str {
        self.flags.release.as_deref().unwrap_or_default()
    }
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

/// What a flag sets. One flag may have two spellings (`-f`, `--values`): each spelling is
/// its own clap argument, so that a message names the flag as it was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Help,
    Values,
    Set,
    SetString,
    Version,
    Repo,
    Username,
    PasswordFile,
    CaFile,
    InsecureSkipTlsVerify,
    PlainHttp,
    KubeVersion,
    ApiVersions,
    Profile,
    ApiWorkload,
    Phase,
    From,
    FromImage,
    AllowDowngrade,
    ForceMigrations,
    DowngradeRevision,
    GateImage,
    JobTemplate,
    Namespace,
    KubeContext,
    Output,
    Wait,
    WaitForJobs,
    Timeout,
    RollbackOnFailure,
    DryRun,
    CreateNamespace,
    Description,
    DisableOpenapiValidation,
    SkipCrds,
    Install,
    CleanupOnFail,
    HistoryMax,
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy)]
enum Takes {
    /// `--name VALUE`, `--name=VALUE`, `-xVALUE`, `-x=VALUE`, `-x VALUE`; the text says
    /// what the value is, for "needs a value".
    Value(&'static str),
    /// A value, split at commas (empty parts dropped).
    List(&'static str),
    /// Nothing, or only `=VALUE` (switches: `=true`/`=false`; `--wait=`, `--dry-run=`).
    Inline,
}

/// The whitelist: every spelling lockstep accepts. Anything else is refused, with its
/// reason when lockstep knows the flag ([`refused_flag`]).
#[rustfmt::skip]
const FLAGS: &[(&str, Key, Takes)] = &[
    ("-h",                           Key::Help,                     Takes::Inline),
    ("--help",                       Key::Help,                     Takes::Inline),
    ("-f",                           Key::Values,                   Takes::List("a values file")),
    ("--values",                     Key::Values,                   Takes::List("a values file")),
    ("--set",                        Key::Set,                      Takes::Value("KEY=VALUE")),
    ("--set-string",                 Key::SetString,                Takes::Value("KEY=VALUE")),
    ("--version",                    Key::Version,                  Takes::Value("the chart version")),
    ("--repo",                       Key::Repo,                     Takes::Value("a chart repository URL")),
    ("--username",                   Key::Username,                 Takes::Value("a user name")),
    ("--password-file",              Key::PasswordFile,             Takes::Value("a file")),
    ("--ca-file",                    Key::CaFile,                   Takes::Value("a file")),
    ("--insecure-skip-tls-verify",   Key::InsecureSkipTlsVerify,    Takes::Inline),
    ("--plain-http",                 Key::PlainHttp,                Takes::Inline),
    ("--kube-version",               Key::KubeVersion,              Takes::Value("a Kubernetes version")),
    ("--api-versions",               Key::ApiVersions,              Takes::List("GROUP/VERSION")),
    ("--profile",                    Key::Profile,                  Takes::Value("a profile name or file")),
    ("--api-workload",               Key::ApiWorkload,              Takes::Value("KIND/NAME[:CONTAINER]")),
    ("--phase",                      Key::Phase,                    Takes::Value("presync or sync")),
    ("--from",                       Key::From,                     Takes::Value("the deployed release's version")),
    ("--from-image",                 Key::FromImage,                Takes::Value("an image")),
    ("--allow-downgrade",            Key::AllowDowngrade,           Takes::Inline),
    ("--force-migrations",           Key::ForceMigrations,          Takes::Inline),
    ("--downgrade-revision",         Key::DowngradeRevision,        Takes::Value("DB=REVISION")),
    ("--gate-image",                 Key::GateImage,                Takes::Value("an image")),
    ("--job-template",               Key::JobTemplate,              Takes::Value("a file")),
    ("-n",                           Key::Namespace,                Takes::Value("a namespace")),
    ("--namespace",                  Key::Namespace,                Takes::Value("a namespace")),
    ("--kube-context",               Key::KubeContext,              Takes::Value("a kube context")),
    ("-o",                           Key::Output,                   Takes::Value("text or json")),
    ("--output",                     Key::Output,                   Takes::Value("text or json")),
    ("--wait",                       Key::Wait,                     Takes::Inline),
    ("--wait-for-jobs",              Key::WaitForJobs,              Takes::Inline),
    ("--timeout",                    Key::Timeout,                  Takes::Value("a duration such as 10m")),
    ("--atomic",                     Key::RollbackOnFailure,        Takes::Inline),
    ("--rollback-on-failure",        Key::RollbackOnFailure,        Takes::Inline),
    ("--dry-run",                    Key::DryRun,                   Takes::Inline),
    ("--create-namespace",           Key::CreateNamespace,          Takes::Inline),
    ("--description",                Key::Description,              Takes::Value("a description")),
    ("--disable-openapi-validation", Key::DisableOpenapiValidation, Takes::Inline),
    ("--skip-crds",                  Key::SkipCrds,                 Takes::Inline),
    ("-i",                           Key::Install,                  Takes::Inline),
    ("--install",                    Key::Install,                  Takes::Inline),
    ("--cleanup-on-fail",            Key::CleanupOnFail,            Takes::Inline),
    ("--history-max",                Key::HistoryMax,               Takes::Value("a number")),
];

/// Positional arguments: the command, RELEASE and CHART (counted in [`finish`]).
const POSITIONAL: &str = "positional";

/// A flag's value, checked.
#[derive(Debug, Clone)]
enum Given {
    Text(String),
    On(bool),
    Workload(WorkloadRef),
    Phase(Phase),
    Output(PlanOutput),
    Behaviour(Behaviour),
}

/// Why parsing stops: help was asked for, or a usage error (the message).
#[derive(Debug)]
enum Stop {
    Help,
    Usage(String),
}

/// The clap command: one argument per spelling of [`FLAGS`], and the positionals. clap
/// keeps the values as given; [`given`] checks them in argv order, so that the first
/// problem on the command line is the one reported, as clap would not for a value it
/// holds back while it looks at the next argument.
fn command() -> clap::Command {
    let flags = FLAGS.iter().map(|&(name, key, takes)| {
        let arg = clap::Arg::new(name).action(clap::ArgAction::Append);
        let arg = match name.strip_prefix("--") {
            Some(long) => arg.long(long),
            None => arg.short(name.chars().nth(1).expect("-x")),
        };
        match takes {
            Takes::Value(_) => arg.num_args(1).allow_hyphen_values(true),
            Takes::List(_) => arg
                .num_args(1)
                .allow_hyphen_values(true)
                .value_delimiter(','),
            // Given alone: a switch is on, --dry-run is client, --wait is helm's default.
            Takes::Inline => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value(if key == Key::DryRun { "client" } else { "true" }),
        }
    });
    clap::Command::new("helm lockstep")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args(flags)
        .arg(
            clap::Arg::new(POSITIONAL)
                .num_args(0..)
                .action(clap::ArgAction::Append),
        )
}

/// Checks the value `name` (a spelling of `key`) was given.
fn given(name: &str, key: Key, takes: Takes, v: &str) -> std::result::Result<Given, Stop> {
    Ok(match key {
        Key::Help => return Err(Stop::Help),
        Key::ApiWorkload => Given::Workload(
            v.parse()
                .map_err(|e: String| Stop::Usage(format!("--api-workload {e}")))?,
        ),
        Key::Phase => Given::Phase(
            settings::parse_phase(v).map_err(|e| Stop::Usage(format!("--phase: {e}")))?,
        ),
        Key::Output => Given::Output(match v {
            "text" | "table" => PlanOutput::Text,
            "json" => PlanOutput::Json,
            o => return Err(Stop::Usage(format!("--output {o:?}: use text or json"))),
        }),
        Key::Wait => Given::Behaviour(Behaviour::Wait(match v {
            "true" => None,
            "watcher" | "hookOnly" | "legacy" => Some(v.to_owned()),
            _ => {
                return Err(Stop::Usage(format!(
                    "--wait={v}: use --wait, or --wait=watcher|hookOnly|legacy (Helm 4)"
                )))
            }
        })),
        Key::DryRun => match v {
            "client" | "server" => Given::Behaviour(Behaviour::DryRun(v.to_owned())),
            _ => {
                return Err(Stop::Usage(format!(
                    "--dry-run={v}: use --dry-run, --dry-run=client or --dry-run=server"
                )))
            }
        },
        Key::Timeout if !is_go_duration(v) => {
            return Err(Stop::Usage(format!(
                "--timeout {v:?} is not a duration: use e.g. 300s, 10m or 1h30m"
            )))
        }
        Key::Timeout => Given::Behaviour(Behaviour::Timeout(v.to_owned())),
        Key::HistoryMax => {
            Given::Behaviour(Behaviour::HistoryMax(v.parse().map_err(|_| {
                Stop::Usage(format!("--history-max {v:?} is not a number"))
            })?))
        }
        _ if matches!(takes, Takes::Inline) => Given::On(match v {
            "true" => true,
            "false" => false,
            _ => return Err(Stop::Usage(format!("{name} takes no value (got {v:?})"))),
        }),
        _ => Given::Text(v.to_owned()),
    })
}

/// Parses the arguments after `lockstep helm`. Err is a usage error (exit 2).
pub(crate) fn parse(args: &[String]) -> std::result::Result<Parsed, String> {
    // clap stops at an unknown flag or a missing value; the flags before it are parsed
    // again without stopping, since one of them may be the first problem.
    let (matches, stopped) = match command().try_get_matches_from(args) {
        Ok(m) => (m, None),
        Err(e) => {
            let before = command().ignore_errors(true).try_get_matches_from(args);
            (before.unwrap_or_default(), Some(clap_problem(&e)))
        }
    };
    let inv = match in_argv_order(&matches) {
        Ok(inv) => inv,
        Err(Stop::Help) => return Ok(Parsed::Help),
        Err(Stop::Usage(m)) => return Err(m),
    };
    if let Some(problem) = stopped {
        return Err(problem);
    }
    let positional: Vec<String> = matches
        .get_many::<String>(POSITIONAL)
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    finish(inv, &positional)
}

/// The flags' values checked and applied in argv order (the last one given wins).
fn in_argv_order(matches: &clap::ArgMatches) -> std::result::Result<Invocation, Stop> {
    let mut given_at: Vec<(usize, &str, Key, Takes, &String)> = Vec::new();
    for &(name, key, takes) in FLAGS {
        if let (Some(at), Some(values)) =
            (matches.indices_of(name), matches.get_many::<String>(name))
        {
            given_at.extend(at.zip(values).map(|(i, v)| (i, name, key, takes, v)));
        }
    }
    given_at.sort_by_key(|g| g.0);
    let mut inv = Invocation::default();
    for (_, name, key, takes, v) in given_at {
        apply(&mut inv, key, given(name, key, takes, v)?);
    }
    Ok(inv)
}

/// The usage error a clap error stands for: a flag without its value, or a flag not in
/// [`FLAGS`] (refused with its reason when lockstep knows it).
fn clap_problem(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    // The flag as clap shows it: `--name` or `-x`, then its value name, if any.
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split([' ', '=']).next().unwrap_or_default(),
        _ => "",
    };
    match (e.kind(), FLAGS.iter().find(|f| f.0 == flag)) {
        (ErrorKind::InvalidValue, Some((_, _, Takes::Value(what) | Takes::List(what)))) => {
            format!("{flag} needs a value ({what})")
        }
        _ => match refused_flag(flag) {
            Some(why) => format!("{flag} is not supported by helm lockstep: {why}"),
            None => format!("unknown or unsupported flag {flag}: helm lockstep passes no flag to helm it does not know (the supported flags are listed below)"),
        },
    }
}

/// Applies one flag's value to `inv`.
fn apply(inv: &mut Invocation, key: Key, value: Given) {
    let text = |v: Given| match v {
        Given::Text(t) => t,
        other => unreachable!("{key:?} takes text, not {other:?}"),
    };
    match (key, value) {
        (_, Given::Workload(w)) => inv.flags.api_workload = Some(w),
        (_, Given::Phase(p)) => inv.flags.phase = Some(p),
        (_, Given::Output(o)) => inv.output = o,
        (_, Given::Behaviour(b)) => inv.behaviour.push(b),
        (Key::InsecureSkipTlsVerify, Given::On(on)) => inv.pull.insecure_skip_tls_verify = on,
        (Key::PlainHttp, Given::On(on)) => inv.pull.plain_http = on,
        (Key::AllowDowngrade, Given::On(on)) => inv.flags.allow_downgrade = Some(on),
        (Key::ForceMigrations, Given::On(on)) => inv.flags.force_migrations = Some(on),
        (_, Given::On(false)) => {}
        (_, Given::On(true)) => inv.behaviour.push(switch_behaviour(key)),
        (Key::Values, v) => {
            let v = text(v);
            if !v.is_empty() {
                inv.chart.values.push(PathBuf::from(v));
            }
        }
        (Key::ApiVersions, v) => {
            let v = text(v);
            if !v.is_empty() {
                inv.chart.api_versions.push(v);
            }
        }
        (Key::Set, v) => inv.chart.set.push(text(v)),
        (Key::SetString, v) => inv.chart.set_string.push(text(v)),
        (Key::DowngradeRevision, v) => inv
            .flags
            .downgrade_revisions
            .get_or_insert_with(Vec::new)
            .push(text(v)),
        (Key::Description, v) => inv.behaviour.push(Behaviour::Description(text(v))),
        (Key::Version, v) => inv.pull.version = Some(text(v)),
        (Key::Repo, v) => inv.pull.repo = Some(text(v)),
        (Key::Username, v) => inv.pull.username = Some(text(v)),
        (Key::PasswordFile, v) => inv.pull.password_file = Some(PathBuf::from(text(v))),
        (Key::CaFile, v) => inv.pull.ca_file = Some(PathBuf::from(text(v))),
        (Key::KubeVersion, v) => inv.chart.kube_version = Some(text(v)),
        (Key::Profile, v) => inv.flags.profile = Some(text(v)),
        (Key::From, v) => inv.flags.from = Some(text(v)),
        (Key::FromImage, v) => inv.flags.from_image = Some(text(v)),
        (Key::GateImage, v) => inv.flags.gate_image = Some(text(v)),
        (Key::JobTemplate, v) => inv.flags.job_template = Some(PathBuf::from(text(v))),
        (Key::Namespace, v) => inv.flags.namespace = Some(text(v)),
        (Key::KubeContext, v) => inv.kube_context = Some(text(v)),
        (key, v) => unreachable!("{key:?} = {v:?}: checked by `given`"),
    }
}

/// The behaviour a switch turns on.
fn switch_behaviour(key: Key) -> Behaviour {
    match key {
        Key::WaitForJobs => Behaviour::WaitForJobs,
        Key::RollbackOnFailure => Behaviour::RollbackOnFailure,
        Key::CreateNamespace => Behaviour::CreateNamespace,
        Key::DisableOpenapiValidation => Behaviour::DisableOpenapiValidation,
        Key::SkipCrds => Behaviour::SkipCrds,
        Key::Install => Behaviour::Install,
        Key::CleanupOnFail => Behaviour::CleanupOnFail,
        other => unreachable!("{other:?} is not a behaviour switch"),
    }
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
            inv.flags.release = Some(release.clone());
            inv.chart.path = PathBuf::from(chart);
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
    if let Some(problem) = settings::release_name_problem(inv.release()) {
        return Err(problem);
    }
    // The switches and lists are said by the flags even when not given: the flags'
    // layer wins over lockstep.yaml for them.
    let f = &mut inv.flags;
    f.allow_downgrade.get_or_insert(false);
    f.force_migrations.get_or_insert(false);
    f.downgrade_revisions.get_or_insert_with(Vec::new);
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
