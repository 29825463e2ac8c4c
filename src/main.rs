//! The `lockstep` command line: a thin adapter that builds a [`lockstep::Request`]
//! (or calls the gate's plan) and maps errors to exit codes. It owns no stage.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lockstep::config::{self, AppConfig, Lock};
use lockstep::inject::Phase;
use lockstep::locate::WorkloadRef;
use lockstep::settings::{self, FrontEnd, Inputs, Layer};
use lockstep::{exit, gate, profile, ChartInput, Input, Request};
use std::io::Write;
use std::path::{Path, PathBuf};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 error (bad input, helm failed, no API workload, ...); 2 usage; 3 the upgrade gate refused (a skipped release, a downgrade, values a step breaks).\nOn any error nothing is written to stdout.";

#[derive(Parser)]
#[command(name = "lockstep", version, about = "Database migrations locked to the API image, injected as hooks into Helm renders; refuses upgrades that skip a release.", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Render CHART with helm and inject the migration Jobs and the upgrade gate.
    #[command(after_help = EXIT_CODES)]
    Render(Box<RenderArgs>),
    /// The same work on an already rendered stream read from stdin.
    #[command(after_help = EXIT_CODES)]
    Inject(Common),
    /// List the built-in profiles, or print one (`profiles show NAME`).
    Profiles {
        #[command(subcommand)]
        cmd: Option<ProfilesCmd>,
    },
    /// The upgrade path from one release to another, stop by stop.
    #[command(after_help = EXIT_CODES)]
    Plan(PlanArgs),
    /// Move the app's pinned version (lockstep.yaml) one legal step and record the release it leaves.
    #[command(after_help = EXIT_CODES)]
    Bump(BumpArgs),
    /// Values files across releases.
    Values {
        #[command(subcommand)]
        cmd: ValuesCmd,
    },
    /// The Argo CD config-management plugin's commands (run by argocd-cmp-server).
    Argocd {
        #[command(subcommand)]
        cmd: ArgocdCmd,
    },
    /// The Helm plugin (`helm lockstep ...`): run by helm with its plugin environment.
    #[command(disable_help_flag = true)]
    Helm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The sha256 of the sources this binary was built from (build.rs): two builds of one
    /// version differ here. Read by the Helm plugin's install/update hook.
    #[command(hide = true)]
    BuildId,
}

/// build.rs's id behind a fixed marker, kept whole in the binary so that a release tool
/// (or a test) can find it in the file.
const BUILD_ID_RECORD: &str = concat!("lockstep-build-id:", env!("LOCKSTEP_BUILD_ID"));

/// `--phase`: when the migration Jobs run ([`Phase`]).
#[derive(Clone, Copy, clap::ValueEnum)]
enum PhaseArg {
    /// Argo CD PreSync / Helm pre-install,pre-upgrade: before anything changes.
    Presync,
    /// Argo CD Sync hooks at negative waves / Helm post-install,pre-upgrade, with
    /// the render's Secrets, ConfigMaps and ServiceAccounts moved earlier:
    /// first installs and upgrades both work.
    Sync,
}

impl From<PhaseArg> for Phase {
    fn from(p: PhaseArg) -> Phase {
        match p {
            PhaseArg::Presync => Phase::Presync,
            PhaseArg::Sync => Phase::Sync,
        }
    }
}

/// The Argo CD plugin's commands ([`lockstep::argocd`]).
#[derive(Subcommand)]
enum ArgocdCmd {
    /// Build chart dependencies when the chart needs them (offline when charts/ is vendored).
    #[command(after_help = lockstep::argocd::INPUTS)]
    Init,
    /// Print the manifests (the rendered chart with lockstep's hooks).
    #[command(after_help = lockstep::argocd::INPUTS)]
    Generate,
    /// The dynamic parameters: what lockstep detected, as Argo CD parameter announcements.
    #[command(after_help = lockstep::argocd::INPUTS)]
    Parameters,
}

#[derive(Subcommand)]
enum ProfilesCmd {
    /// Print a profile as YAML: a valid starting point for a profile file.
    Show {
        /// A built-in profile (`lockstep profiles` lists them) or a profile file.
        name: String,
    },
}

#[derive(Subcommand)]
enum ValuesCmd {
    /// Rewrite a values file for the moves the release steps require.
    Migrate(lockstep::values::MigrateArgs),
}

#[derive(Args)]
struct Common {
    /// Release name (default: the chart's name; for `inject`, the stream's instance label).
    #[arg(long)]
    release: Option<String>,
    /// Namespace of the release: helm's --namespace, and where lockstep's Jobs and record go (default: lockstep.yaml's, else none, as helm).
    #[arg(short = 'n', long, value_name = "NS")]
    namespace: Option<String>,
    /// A built-in profile name or a profile file (default: chosen from the chart).
    #[arg(long)]
    profile: Option<String>,
    /// The API workload, when the profile cannot find it: KIND/NAME[:CONTAINER].
    #[arg(long, value_name = "KIND/NAME[:CONTAINER]")]
    api_workload: Option<WorkloadRef>,
    /// presync: Argo CD PreSync, Helm pre-install,pre-upgrade. sync: Sync hooks at negative waves, for first installs. Default: lockstep.yaml's phase, else presync; given here, it wins.
    #[arg(long, value_enum)]
    phase: Option<PhaseArg>,
    /// Replace the embedded Job template.
    #[arg(long, value_name = "FILE")]
    job_template: Option<PathBuf>,
    /// The deployed release (else LOCKSTEP_FROM, else lockstep.lock).
    #[arg(long, value_name = "VERSION")]
    from: Option<String>,
    /// The deployed release's image, for downgrade Jobs (else lockstep.lock).
    #[arg(long, value_name = "IMAGE")]
    from_image: Option<String>,
    /// Allow a downgrade: emits downgrade Jobs that run with the deployed image. Take backups first.
    #[arg(long)]
    allow_downgrade: bool,
    /// Run the migrations (and downgrades) even when the release record says this release and image are migrated already.
    #[arg(long)]
    force_migrations: bool,
    /// Target revision of one database for a downgrade (repeat per database).
    #[arg(long, value_name = "DB=REVISION")]
    downgrade_revision: Vec<String>,
    /// Image of the in-cluster gate step (default: the API image; it needs /bin/sh).
    #[arg(long, value_name = "IMAGE")]
    gate_image: Option<String>,
    /// The lock file to read the deployed release from (default: lockstep.lock beside lockstep.yaml, or in the current directory).
    #[arg(long, value_name = "FILE")]
    lock: Option<PathBuf>,
}

#[derive(Args)]
struct RenderArgs {
    /// What helm template takes: a chart directory, a packaged .tgz, REPO/CHART (a repository added with `helm repo add`), a chart name with --repo URL, or oci://HOST/PATH/CHART (default: lockstep.yaml's chart, else the current directory).
    chart: Option<String>,
    /// A values file, as helm's -f (repeat; later files win; after lockstep.yaml's `values`).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    values: Vec<PathBuf>,
    /// Set a value, as helm's --set (repeat); each K=V reaches helm as one --set=K=V argument.
    #[arg(long, value_name = "K=V")]
    set: Vec<String>,
    /// Set a value as a string, as helm's --set-string (repeat).
    #[arg(long, value_name = "K=V")]
    set_string: Vec<String>,
    /// Kubernetes version for the chart's Capabilities, as helm's --kube-version (default: helm's).
    #[arg(long, value_name = "VERSION")]
    kube_version: Option<String>,
    /// An API version for the chart's Capabilities, as helm's --api-versions (repeat).
    #[arg(long, value_name = "GROUP/VERSION")]
    api_versions: Vec<String>,
    /// The app config (default: ./lockstep.yaml when it exists and no CHART is given).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long helm may run before it is stopped, e.g. 50s or 2m (else LOCKSTEP_HELM_TIMEOUT, else 45s).
    #[arg(long, value_name = "DURATION", value_parser = lockstep::helm::parse_timeout)]
    helm_timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pull: PullArgs,
    #[command(flatten)]
    common: Common,
}

/// helm's flags for fetching a chart, passed to `helm pull` (credentials never on a command line).
#[derive(Args)]
struct PullArgs {
    /// Chart repository URL, as helm's --repo: CHART is a chart name in it.
    #[arg(long, value_name = "URL")]
    repo: Option<String>,
    /// The chart version (or constraint) to fetch, as helm's --version; for a local chart, the version it must be.
    #[arg(long = "version", value_name = "VERSION")]
    chart_version: Option<String>,
    /// Repository or registry user name (else LOCKSTEP_REPO_USERNAME).
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// A file holding the repository password (else LOCKSTEP_REPO_PASSWORD). There is no --password: a password on a command line shows in process lists.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// CA bundle for the repository's TLS certificate, as helm's --ca-file.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Skip checking the repository's TLS certificate, as helm's flag.
    #[arg(long)]
    insecure_skip_tls_verify: bool,
    /// Use plain HTTP for an oci:// registry, as helm's --plain-http.
    #[arg(long)]
    plain_http: bool,
    /// Refused: pass the password in LOCKSTEP_REPO_PASSWORD or --password-file.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    password: Option<String>,
}

impl PullArgs {
    fn options(self) -> Result<lockstep::fetch::PullOptions> {
        if self.password.is_some() {
            // The value is not shown: it is a secret.
            bail!("--password is not accepted: a password on a command line shows in process lists and shell history. Set LOCKSTEP_REPO_PASSWORD, or pass --password-file FILE");
        }
        Ok(lockstep::fetch::PullOptions {
            repo: self.repo,
            version: self.chart_version,
            username: self.username,
            password_file: self.password_file,
            ca_file: self.ca_file,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            plain_http: self.plain_http,
        })
    }
}

#[derive(Args)]
struct PlanArgs {
    /// The deployed release (default: LOCKSTEP_FROM, else lockstep.lock's deployed version).
    #[arg(long, value_name = "VERSION")]
    from: Option<String>,
    /// The release to upgrade to (default: lockstep.yaml's version).
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    /// A built-in profile name or a profile file (default: lockstep.yaml's profile).
    #[arg(long)]
    profile: Option<String>,
    /// The app config (default: ./lockstep.yaml when it exists); its lockstep.lock is the one beside it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// text: a table to read; json: for CI.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Args)]
struct BumpArgs {
    /// The release to pin (one legal step from the pinned one; the refusal of a skip names it).
    #[arg(long, value_name = "VERSION")]
    to: String,
    /// The app config to change (default: ./lockstep.yaml).
    #[arg(long, value_name = "FILE", default_value = config::CONFIG_FILE)]
    config: PathBuf,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let mut notes = Vec::new();
    let result = dispatch(cli.cmd, &mut notes);
    for n in &notes {
        eprintln!("lockstep: {n}");
    }
    if let Err(e) = result {
        // A tool that had the terminal said why it failed.
        if !e.is::<exit::Passed>() {
            eprintln!("lockstep: error: {e:#}");
        }
        std::process::exit(exit::code(&e));
    }
}

fn dispatch(cmd: Cmd, notes: &mut Vec<String>) -> Result<()> {
    let stdout = std::io::stdout();
    match cmd {
        Cmd::Render(args) => {
            // `_pulled` keeps a fetched chart on disk until the render is done.
            let (req, _pulled) = render_request(args)?;
            lockstep::run(&req, &mut stdout.lock(), notes)
        }
        Cmd::Inject(common) => {
            let text = lockstep::source::Text::from_stdin()?;
            let req = common_request(Input::Stream(text), common, None, Path::new("."))?;
            lockstep::run(&req, &mut stdout.lock(), notes)
        }
        Cmd::Profiles { cmd: None } => {
            let mut out = stdout.lock();
            for (name, desc) in profile::built_in_names() {
                writeln!(out, "{name:26} {desc}")?;
            }
            Ok(())
        }
        Cmd::Profiles {
            cmd: Some(ProfilesCmd::Show { name }),
        } => {
            let p = profile::load(&name)?;
            stdout.lock().write_all(p.to_yaml().as_bytes())?;
            Ok(())
        }
        Cmd::Plan(args) => {
            let (name, from, to) = plan_inputs(&args)?;
            let p = profile::load(&name)?;
            let from = version(&from, "--from")?;
            let to = version(&to, "--to")?;
            let plan = gate::plan(&p, &from, &to)?;
            let text = match args.output {
                Output::Text => plan.to_text(),
                Output::Json => serde_json::to_string_pretty(&plan)? + "\n",
            };
            stdout.lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Cmd::Bump(args) => bump(&args, notes),
        Cmd::Values {
            cmd: ValuesCmd::Migrate(args),
        } => lockstep::values::migrate(&args, &mut stdout.lock(), notes),
        Cmd::Argocd { cmd } => {
            let cmd = match cmd {
                ArgocdCmd::Init => lockstep::argocd::Step::Init,
                ArgocdCmd::Generate => lockstep::argocd::Step::Generate,
                ArgocdCmd::Parameters => lockstep::argocd::Step::Parameters,
            };
            lockstep::argocd::main(cmd, &mut stdout.lock(), notes)
        }
        Cmd::Helm { args } => lockstep::helm_plugin::main(&args, notes),
        Cmd::BuildId => {
            let id = BUILD_ID_RECORD.trim_start_matches("lockstep-build-id:");
            writeln!(stdout.lock(), "{id}").map_err(Into::into)
        }
    }
}

/// The profile, `--from` and `--to` of `plan`: flags, then (for the deployed release)
/// LOCKSTEP_FROM, then the app's lockstep.yaml and the lockstep.lock beside it, as `render`
/// reads them.
fn plan_inputs(args: &PlanArgs) -> Result<(String, String, String)> {
    let config_path = match &args.config {
        Some(c) => Some(c.clone()),
        None => Some(PathBuf::from(config::CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let cfg = config_path.as_deref().map(AppConfig::load).transpose()?;
    let dir = config_path
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock = match &cfg {
        Some(_) => Lock::load(&dir.join(config::LOCK_FILE))?,
        None => None,
    };
    let name = match (args.profile.clone(), cfg.as_ref().and_then(|c| c.profile.clone())) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) if cfg.is_some() => bail!("lockstep.yaml names no profile: pass --profile NAME|FILE"),
        (None, None) => bail!("which application? pass --profile NAME|FILE (`lockstep profiles` lists them), or run in a directory with a lockstep.yaml"),
    };
    let from = args
        .from
        .clone()
        .or_else(|| std::env::var("LOCKSTEP_FROM").ok().filter(|s| !s.is_empty()))
        .or_else(|| lock.map(|l| l.deployed.version))
        .ok_or_else(|| anyhow!("which release is deployed? pass --from VERSION (or set LOCKSTEP_FROM, or run in an app directory with a lockstep.lock)"))?;
    let to = args
        .to
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.version.clone()))
        .ok_or_else(|| anyhow!("which release to plan for? pass --to VERSION (or run in an app directory whose lockstep.yaml pins a `version`)"))?;
    Ok((name, from, to))
}

fn version(s: &str, flag: &str) -> Result<semver::Version> {
    lockstep::guard::version(s, flag)?;
    gate::parse_version(s).ok_or_else(|| anyhow!("{flag} {s:?} is not a version (e.g. 0.8.2)"))
}

/// lockstep.yaml for `render` (`--config`, else ./lockstep.yaml when no CHART is given)
/// and the directory its paths are relative to.
fn render_config(args: &RenderArgs) -> Result<(Option<AppConfig>, PathBuf)> {
    let config_path = match (&args.config, &args.chart) {
        (Some(c), _) => Some(c.clone()),
        (None, None) if Path::new(config::CONFIG_FILE).is_file() => {
            Some(PathBuf::from(config::CONFIG_FILE))
        }
        _ => None,
    };
    let cfg = config_path.as_deref().map(AppConfig::load).transpose()?;
    let dir = config_path
        .as_deref()
        .and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((cfg, dir))
}

fn render_request(args: Box<RenderArgs>) -> Result<(Request, Option<lockstep::fetch::Pulled>)> {
    if let Some(t) = args.helm_timeout {
        lockstep::helm::set_timeout(t);
    }
    let (cfg, dir) = render_config(&args)?;
    let mut pull = args.pull.options()?;
    let mut source = config::ChartSource::Path(PathBuf::from(args.chart.as_deref().unwrap_or(".")));
    let mut chart = ChartInput {
        path: PathBuf::new(),
        values: args.values,
        set: args.set,
        set_string: args.set_string,
        kube_version: args.kube_version,
        api_versions: args.api_versions,
    };
    if let Some(cfg) = &cfg {
        let real = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve the app directory {}", dir.display()))?;
        let root = config::enclosing_repository(&real);
        if args.chart.is_none() {
            source = cfg
                .chart_source(&root, &dir)?
                .ok_or_else(|| anyhow!("lockstep.yaml names no `chart`"))?;
        }
        let mut values = cfg.values_in(&root, &dir)?;
        values.append(&mut chart.values);
        chart.values = values;
        let mut sets = cfg.set_strings(|_| false)?;
        sets.append(&mut chart.set_string);
        chart.set_string = sets;
    }
    let pulled = match source {
        config::ChartSource::Path(p) if args.chart.is_none() => {
            chart.path = p;
            None
        }
        config::ChartSource::Path(p) => {
            let (path, pulled) = lockstep::fetch::resolve(&p.to_string_lossy(), &pull)?;
            chart.path = path;
            pulled
        }
        config::ChartSource::Fetch {
            chart: c,
            pull: from_cfg,
        } => {
            pull.repo = pull.repo.or(from_cfg.repo);
            pull.version = pull.version.or(from_cfg.version);
            let (path, pulled) = lockstep::fetch::resolve(&c, &pull)?;
            chart.path = path;
            pulled
        }
    };
    if pulled.is_none() && pull.version.is_some() && chart.path.exists() {
        let meta = lockstep::source::read_chart(&chart.path)?.meta;
        lockstep::fetch::check_version(&chart.path, pull.version.as_deref(), &meta)?;
    }
    let req = common_request(Input::Chart(chart), args.common, cfg.as_ref(), &dir)?;
    Ok((req, pulled))
}

/// Gathers the flags, `LOCKSTEP_FROM`, lockstep.yaml and lockstep.lock; the settings
/// layer applies the precedence.
fn common_request(input: Input, c: Common, cfg: Option<&AppConfig>, dir: &Path) -> Result<Request> {
    let mut inputs = Inputs::new(FrontEnd::Cli, input);
    inputs.flags = Layer {
        release: c.release,
        namespace: c.namespace,
        profile: c.profile,
        api_workload: c.api_workload,
        phase: c.phase.map(Phase::from),
        job_template: c.job_template,
        gate_image: c.gate_image,
        from: c.from,
        from_image: c.from_image,
        allow_downgrade: Some(c.allow_downgrade),
        force_migrations: Some(c.force_migrations),
        downgrade_revisions: Some(c.downgrade_revision),
    };
    inputs.env.from = std::env::var("LOCKSTEP_FROM")
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(cfg) = cfg {
        inputs.config = Layer::from_config(cfg)?;
    }
    let lock_path = c.lock.unwrap_or_else(|| dir.join(config::LOCK_FILE));
    inputs.lock = Layer::from_lock(Lock::load(&lock_path)?);
    settings::resolve(inputs, &mut Vec::new())
}

/// `lockstep bump --to V`: one legal step from the pinned version.
fn bump(args: &BumpArgs, notes: &mut Vec<String>) -> Result<()> {
    let cfg = AppConfig::load(&args.config)?;
    let current = cfg.version.clone().ok_or_else(|| {
        anyhow!(
            "{} sets no `version` to bump from; add `version: CURRENT`",
            args.config.display()
        )
    })?;
    let from = version(&current, "lockstep.yaml version")?;
    let to = version(&args.to, "--to")?;
    let profile_name = cfg.profile.clone().ok_or_else(|| {
        anyhow!(
            "{} names no `profile`; bump needs the profile's catalog",
            args.config.display()
        )
    })?;
    let p = profile::load(&profile_name)?;
    if to == from {
        bail!("{} is already pinned to {current}", args.config.display());
    }
    gate::admit(&p, &profile_name, Some(&from), &to, false).map_err(anyhow::Error::new)?;
    let dir = args
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock_path = dir.join(config::LOCK_FILE);
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let new_text = config::set_version_line(&text, &args.to)
        .with_context(|| format!("{}", args.config.display()))?;
    // A corrupt lock is reported, not replaced: it may hold the only record of the image.
    let image = Lock::load(&lock_path)?.and_then(|l| l.deployed.image);
    let lock = Lock {
        deployed: config::Deployed {
            version: current.clone(),
            image,
        },
    };
    // Both files or neither: a lock without its pin (or the reverse) misleads the next render.
    config::write_all_or_none(&[(&lock_path, lock.to_text()?), (&args.config, new_text)])?;
    notes.push(format!(
        "pinned {} → {}; {} records {current} as deployed. Commit both files; the render now checks the step {current} → {}",
        current,
        args.to,
        lock_path.display(),
        args.to
    ));
    Ok(())
}
