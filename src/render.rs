//! Render: run the real helm as a subprocess.
//!
//! Helm is `$HELM_BIN`, else `helm` on PATH. Every call is an argument vector
//! (never a shell), and user-supplied strings are passed only as the values of
//! flags lockstep chose (`--values=FILE`, `--set=K=V`), never as flags of their own.
//!
//! This module owns talking to helm. It must not interpret what helm prints
//! beyond success and failure: `stream` splits the output.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to find helm, and what was tried, for the error message.
pub fn helm_bin() -> Result<PathBuf> {
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
pub struct TemplateArgs {
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
    pub fn argv(&self) -> Vec<OsString> {
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
pub fn run(helm: &Path, args: &[OsString], what: &'static str) -> Result<String> {
    start(helm, args, what)?.finish()
}

/// A helm run started by [`start`], so the caller can work while helm renders.
/// Collect it with [`Running::finish`]; dropped unfinished (the caller failed), it is
/// killed and reaped.
pub struct Running {
    child: Option<std::process::Child>,
    what: &'static str,
}

/// Starts helm with `args`, its stdout and stderr captured.
pub fn start(helm: &Path, args: &[OsString], what: &'static str) -> Result<Running> {
    let child = Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {} for {what}", helm.display()))?;
    Ok(Running {
        child: Some(child),
        what,
    })
}

impl Running {
    /// Waits for helm and returns what it printed on stdout; on failure, what it said
    /// on stderr.
    pub fn finish(mut self) -> Result<String> {
        let what = self.what;
        let child = self.child.take().expect("finished once");
        let out = child
            .wait_with_output()
            .with_context(|| format!("could not read the output of {what}"))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{what} failed ({}): {}\n  fix: correct the chart or values helm names above, and check it with `helm template`",
                out.status,
                msg.trim()
            );
        }
        String::from_utf8(out.stdout)
            .with_context(|| format!("{what} printed output that is not UTF-8"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs helm with `args` and returns what it printed and its exit status, whatever
/// that is: for callers that must tell one failure from another (the Helm plugin reads
/// `Error: release: not found` from `helm history` as a first install).
pub fn output(helm: &Path, args: &[OsString], what: &str) -> Result<std::process::Output> {
    Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {} for {what}", helm.display()))
}

/// Runs helm with `args` on the user's terminal (stdin, stdout and stderr inherited):
/// helm's messages and progress reach the user unchanged; the caller passes the exit
/// status on.
pub fn run_inherited(
    helm: &Path,
    args: &[OsString],
    what: &str,
) -> Result<std::process::ExitStatus> {
    Command::new(helm)
        .args(args)
        .status()
        .with_context(|| format!("could not run {} for {what}", helm.display()))
}

/// Starts `helm template`; [`Running::finish`] gives the rendered stream.
pub fn template(helm: &Path, args: &TemplateArgs) -> Result<Running> {
    start(helm, &args.argv(), "helm template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_run_is_killed_and_reaped() {
        let sleep = which(std::ffi::OsStr::new("sleep")).expect("sleep on PATH");
        let running = start(&sleep, &["30".into()], "sleep").unwrap();
        let pid = running.child.as_ref().unwrap().id();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        let t = std::time::Instant::now();
        drop(running);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped"
        );
    }

    #[test]
    fn a_finished_run_gives_stdout_or_its_failure_with_stderr() {
        let echo = which(std::ffi::OsStr::new("echo")).expect("echo on PATH");
        let out = start(&echo, &["hello".into()], "echo").unwrap().finish();
        assert_eq!(out.unwrap(), "hello\n");
        let ls = which(std::ffi::OsStr::new("ls")).expect("ls on PATH");
        let err = start(&ls, &["/no/such/path".into()], "ls")
            .unwrap()
            .finish();
        let msg = format!("{:#}", err.unwrap_err());
        assert!(
            msg.contains("ls failed") && msg.contains("/no/such/path"),
            "{msg}"
        );
    }
}
