//! helm: every helm command lockstep runs (`helm template`, and for the front-ends
//! `history`, `get`, `show`, `pull`, `repo add`, `install`/`upgrade`), as a subprocess.
//!
//! Helm is `$HELM_BIN`, else `helm` on PATH. Every call is an argument vector
//! (never a shell), and user-supplied strings are passed only as the values of
//! flags lockstep chose (`--values=FILE`, `--set=K=V`), never as flags of their own.
//!
//! `helm template` runs with Go's garbage collector held back until helm's heap
//! reaches 128 MiB (`GOGC=off`, `GOMEMLIMIT=128MiB`; see [`go_gc_env`]): a render
//! is short-lived and mostly garbage, and on two cores the collector's work is a
//! tenth or more of helm's wall time. Either variable set in lockstep's own environment
//! turns this off, and helm gets the environment as it is.
//!
//! Values a user sets (`--set`, `--set-string`, lockstep.yaml `set:`, Argo CD's
//! `helm-parameters`) reach `helm template` as a values file lockstep writes into a
//! private temporary directory (mode 0700, the file 0600, removed when helm is done),
//! never as `--set` arguments: helm's `--set` parser quotes what it cannot parse in its
//! error, and helm's stderr reaches the Argo CD UI. What helm says on failure is relayed
//! with every such value blanked out.
//!
//! Every helm run started here has a time limit ([`timeout`]: `--helm-timeout`,
//! `LOCKSTEP_HELM_TIMEOUT`, default [`DEFAULT_TIMEOUT`], within Argo CD's 60 s for a
//! plugin command). helm runs in a process group of its own; past the limit, or when
//! helm has exited but a process it started still holds its output open, the whole
//! group is killed and the error says what happened and how to raise the limit.
//!
//! This module owns talking to helm. It must not interpret what helm prints
//! beyond success and failure: `stream` splits the output.

use crate::private_dir::PrivateDir;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod running;
#[cfg(test)]
mod tests;

/// How to find helm, and what was tried, for the error message.
pub(crate) fn helm_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("HELM_BIN").filter(|b| !b.is_empty()) {
        let p = PathBuf::from(&bin);
        if p.components().count() > 1 {
            if is_executable(&p) {
                return Ok(p);
            }
        } else if let Some(found) = which(&bin) {
            return Ok(found);
        }
        bail!(
            "HELM_BIN is set to {:?}, which is not an executable file. Point HELM_BIN at helm, or unset it to use `helm` from PATH (install helm: https://helm.sh/docs/intro/install/, or `scripts/install-tools.sh` in lockstep's repository)",
            p.display()
        );
    }
    which(&OsString::from("helm")).context(
        "helm was not found: HELM_BIN is not set and there is no `helm` on PATH. Install helm 3.x or 4.x (https://helm.sh/docs/intro/install/, or `scripts/install-tools.sh` in lockstep's repository), or set HELM_BIN to its path",
    )
}

fn which(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Everything `helm template` is told.
#[derive(Debug, Clone, Default)]
pub(crate) struct TemplateArgs {
    pub release: String,
    pub chart: PathBuf,
    pub namespace: Option<String>,
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

impl TemplateArgs {
    /// The arguments of `helm template`, `--set` and `--set-string` included (as
    /// helm would take them by hand; [`template`] passes them as a values file).
    pub(crate) fn argv(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["template".into(), self.release.clone().into()];
        a.push(safe_path(&self.chart));
        if let Some(ns) = &self.namespace {
            a.push(format!("--namespace={ns}").into());
        }
        if let Some(v) = &self.kube_version {
            a.push(format!("--kube-version={v}").into());
        }
        for v in &self.api_versions {
            a.push(format!("--api-versions={v}").into());
        }
        for f in &self.values {
            let mut s = OsString::from("--values=");
            s.push(f.as_os_str());
            a.push(s);
        }
        for s in &self.set {
            a.push(format!("--set={s}").into());
        }
        for s in &self.set_string {
            a.push(format!("--set-string={s}").into());
        }
        a.push("--include-crds".into());
        a
    }
}

/// A path helm cannot mistake for a flag.
fn safe_path(p: &Path) -> OsString {
    if p.as_os_str().to_string_lossy().starts_with('-') {
        Path::new(".").join(p).into_os_string()
    } else {
        p.as_os_str().to_owned()
    }
}

/// Runs helm with `args`, returning stdout; helm's own message on failure.
pub(crate) fn run(helm: &Path, args: &[OsString], what: &'static str) -> Result<String> {
    start(helm, args, what)?.finish()
}

/// A helm run started by [`start`], so the caller can work while helm renders.
/// Collect it with [`Running::finish`]; dropped unfinished (the caller failed), it is
/// killed with its process group and reaped.
pub(crate) struct Running {
    child: Option<std::process::Child>,
    what: &'static str,
    /// When helm must have finished.
    deadline: std::time::Instant,
    limit: std::time::Duration,
    /// Texts blanked out of helm's messages (the values a user set).
    redact: Vec<String>,
    /// Values files whose values are blanked out of helm's messages too.
    values_files: Vec<PathBuf>,
    /// The generated values file's directory, removed when this is dropped.
    values_dir: Option<PrivateDir>,
}

/// How long helm may run when nothing says otherwise: Argo CD gives a plugin command
/// 60 s (the repo-server's exec timeout), and lockstep needs time before and after.
pub(crate) const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

static TIMEOUT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// Sets the time limit for every helm run of this process (`--helm-timeout`); the first
/// call wins.
pub fn set_timeout(limit: std::time::Duration) {
    let _ = TIMEOUT.set(limit);
}

/// The time limit for a helm run: `--helm-timeout`, else `LOCKSTEP_HELM_TIMEOUT` (or, from
/// an Argo CD Application's plugin env, `ARGOCD_ENV_LOCKSTEP_HELM_TIMEOUT`), else
/// [`DEFAULT_TIMEOUT`].
pub(crate) fn timeout() -> Result<std::time::Duration> {
    if let Some(t) = TIMEOUT.get() {
        return Ok(*t);
    }
    for var in ["LOCKSTEP_HELM_TIMEOUT", "ARGOCD_ENV_LOCKSTEP_HELM_TIMEOUT"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let v = v.to_string_lossy();
            return parse_timeout(&v).map_err(|e| anyhow::anyhow!("{var}: {e}"));
        }
    }
    Ok(DEFAULT_TIMEOUT)
}

/// `90`, `90s` or `2m`: a whole number of seconds or minutes, at least 1 s.
pub fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && n <= 24 * 3600 => Ok(std::time::Duration::from_secs(n * unit)),
        _ => Err(format!(
            "{s:?} is not a time limit: give whole seconds (e.g. 50 or 50s) or minutes (2m)"
        )),
    }
}

/// Starts helm with `args`, its stdout and stderr captured.
pub(crate) fn start(helm: &Path, args: &[OsString], what: &'static str) -> Result<Running> {
    spawn(Command::new(helm), helm, args, what)
}

/// How much heap helm may grow before Go collects garbage, for `helm template`.
/// Measured (bench/README.md): renders of the Prefect charts and of a 1 MB chart run
/// 10–17 % faster than with Go's default (helm 4.3; 10 % with helm 3.19 on
/// prefect-cloud); an 8.7 MB render peaks at 166 MB RSS against 144 MB with Go's
/// default, where `GOGC=off` alone takes 459 MB.
const GO_MEMORY_LIMIT: &str = "128MiB";

/// The variables to give helm for a render, given lockstep's own `GOGC` and
/// `GOMEMLIMIT`: none when the user has set either (their tuning wins), else the
/// collector held back until [`GO_MEMORY_LIMIT`].
fn go_gc_env(
    gogc: Option<&std::ffi::OsStr>,
    gomemlimit: Option<&std::ffi::OsStr>,
) -> &'static [(&'static str, &'static str)] {
    if gogc.is_some() || gomemlimit.is_some() {
        &[]
    } else {
        &[("GOGC", "off"), ("GOMEMLIMIT", GO_MEMORY_LIMIT)]
    }
}

fn spawn(mut cmd: Command, helm: &Path, args: &[OsString], what: &'static str) -> Result<Running> {
    let limit = timeout()?;
    // A group of its own: a time limit kills helm and whatever it started.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {} for {what}", helm.display()))?;
    Ok(Running {
        child: Some(child),
        what,
        deadline: std::time::Instant::now() + limit,
        limit,
        redact: Vec::new(),
        values_files: Vec::new(),
        values_dir: None,
    })
}

/// How much of helm's stderr is relayed: its first lines name the problem; a chart can
/// make helm print megabytes, and Argo CD shows all of it in its UI.
const RELAYED_BYTES: usize = 8 << 10;

/// helm's stderr as relayed: at most [`RELAYED_BYTES`], cut at a character boundary.
fn relayed(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    if text.len() <= RELAYED_BYTES {
        return text.into_owned();
    }
    let mut cut = RELAYED_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n  … ({} more bytes of helm's output not shown)",
        &text[..cut],
        text.len() - cut
    )
}

/// `text` with every value in `secrets` (and its quoted form, as Go's `%q` writes it)
/// replaced: helm's messages can quote a value, and they reach the Argo CD UI.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        let quoted = format!("{s:?}");
        let inner = &quoted[1..quoted.len() - 1];
        for form in [s.as_str(), inner] {
            if !form.is_empty() && out.contains(form) {
                out = out.replace(form, "(a value you set, not shown)");
            }
        }
    }
    out
}

/// Runs helm with `args` and returns what it printed and its exit status, whatever
/// that is: for callers that must tell one failure from another (the Helm plugin reads
/// `Error: release: not found` from `helm history` as a first install).
pub(crate) fn output(helm: &Path, args: &[OsString], what: &str) -> Result<std::process::Output> {
    Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {} for {what}", helm.display()))
}

/// Runs helm with `args` on the user's terminal (stdin, stdout and stderr inherited):
/// helm's messages and progress reach the user unchanged; the caller passes the exit
/// status on.
pub(crate) fn run_inherited(
    helm: &Path,
    args: &[OsString],
    what: &str,
) -> Result<std::process::ExitStatus> {
    Command::new(helm)
        .args(args)
        .status()
        .with_context(|| format!("could not run {} for {what}", helm.display()))
}

/// Starts `helm template`; [`Running::finish`] gives the rendered stream. The values of
/// `--set` and `--set-string` go to helm as a generated values file, last (so they
/// win over every `-f`, as helm's own `--set` does); see [`set_values_yaml`].
pub(crate) fn template(helm: &Path, args: &TemplateArgs) -> Result<Running> {
    // The chart's own values and the user's values files: blanked from helm's messages.
    let values_files = (args
        .chart
        .join("values.yaml")
        .is_file()
        .then(|| args.chart.join("values.yaml"))
        .into_iter())
    .chain(args.values.iter().cloned())
    .collect();
    if args.set.is_empty() && args.set_string.is_empty() {
        let mut running = start_render(helm, &args.argv(), "helm template")?;
        running.values_files = values_files;
        return Ok(running);
    }
    let (yaml, secrets) = set_values_yaml(&args.set, &args.set_string)?;
    let dir = PrivateDir::new("lockstep-values", "the values given to helm")?;
    let file = dir.write("set-values.yaml", &yaml, "the values given to helm")?;
    let mut plain = args.clone();
    plain.set.clear();
    plain.set_string.clear();
    plain.values.push(file);
    let mut running = start_render(helm, &plain.argv(), "helm template")?;
    running.redact = secrets;
    running.values_files = values_files;
    running.values_dir = Some(dir);
    Ok(running)
}

/// The `--set` and `--set-string` items as one values document, and the values they
/// set (to keep out of messages). helm's `--set` semantics, as far as they are sound
/// here: `a.b=c` nests (`\.` keeps a dot in a key), items apply in order, `,` separates
/// items (`\,` keeps one in a value); `--set` types `true`/`false`/`null` (any case),
/// and whole numbers without a leading zero as int64; `--set-string` keeps strings.
/// Not taken (refused, with a message): list indices (`a[0]=x`). A value written as
/// `{a,b}` stays that text (helm's `--set` would make a list of it).
pub(crate) fn set_values_yaml(
    set: &[String],
    set_string: &[String],
) -> Result<(String, Vec<String>)> {
    let mut secrets = Vec::new();
    for item in set.iter().chain(set_string) {
        for (path, value) in crate::source::parse_set(item)? {
            if path.iter().any(|k| k.contains(['[', ']'])) {
                bail!(
                    "--set key {:?} uses a list index: lockstep passes values to helm as a values file, where a list is written whole. Put the list into a values file",
                    path.join(".")
                );
            }
            if value.len() >= 3 {
                secrets.push(value);
            }
        }
    }
    let values = crate::source::merged_values(None, &[], set, set_string)?;
    // Written for YAML 1.1 readers (helm's): `on`, `0755` and the like stay strings.
    let yaml = crate::yaml::to_string(&values);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Ok((yaml, secrets))
}

/// [`start`] for a render: with [`go_gc_env`]'s variables.
fn start_render(helm: &Path, args: &[OsString], what: &'static str) -> Result<Running> {
    let mut cmd = Command::new(helm);
    let gc = go_gc_env(
        std::env::var_os("GOGC").as_deref(),
        std::env::var_os("GOMEMLIMIT").as_deref(),
    );
    cmd.envs(gc.iter().copied());
    spawn(cmd, helm, args, what)
}
