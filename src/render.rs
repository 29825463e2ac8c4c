//! Render: run the real helm as a subprocess.
//!
//! Helm is `$HELM_BIN`, else `helm` on PATH. Every call is an argument vector
//! (never a shell), and user-supplied strings are passed only as the values of
//! flags lockstep chose (`--values=FILE`, `--set=K=V`), never as flags of their own.
//!
//! helm's output can be handed to the caller before helm has exited
//! ([`Running::finish_with`]): helm prints a render in one write and then takes
//! milliseconds to exit, and the rest of the pipeline runs in that time. A result
//! computed that way is used only if helm succeeds with exactly the bytes it was
//! computed from.
//!
//! `helm template` runs with Go's garbage collector held back until helm's heap
//! reaches 128 MiB (`GOGC=off`, `GOMEMLIMIT=128MiB`; see [`go_gc_env`]): a render
//! is short-lived and mostly garbage, and on two cores the collector's work is a
//! tenth or more of helm's wall time. Either variable set in lockstep's own environment
//! turns this off, and helm gets the environment as it is.
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
    })
}

impl Running {
    /// Waits for helm and returns what it printed on stdout; on failure, what it said
    /// on stderr.
    pub fn finish(self) -> Result<String> {
        self.finish_with(|_| ()).map(|(text, ())| text)
    }

    /// [`finish`](Running::finish), with `early` run on helm's output as soon as that
    /// has arrived, while helm is still shutting down. helm prints a render in one
    /// write and exits milliseconds later, and `early` is the rest of the caller's
    /// work; this way the two overlap.
    ///
    /// What the caller gets is exactly `(text, early(&text))` for the final output,
    /// or helm's failure. A result of `early` is kept only if helm then succeeded and
    /// printed nothing after the bytes `early` saw. Otherwise `early` runs again on the
    /// final text, so it must be a pure function of the text it is given. A
    /// snapshot that cuts a UTF-8 character is not passed to `early` at all.
    pub fn finish_with<T>(mut self, mut early: impl FnMut(&str) -> T) -> Result<(String, T)> {
        let what = self.what;
        let child = self.child.as_mut().expect("finished once");
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let shared = Shared::default();
        let (stderr_bytes, spoken) = std::thread::scope(|s| {
            let reader = s.spawn(|| shared.fill(stdout));
            let stderr_reader = s.spawn(|| {
                let mut buf = Vec::new();
                if let Some(mut e) = stderr {
                    let _ = std::io::Read::read_to_end(&mut e, &mut buf);
                }
                buf
            });
            let (mut seen, mut spoken) = (None, None);
            while let Some(snapshot) = shared.next_quiet_snapshot(seen) {
                seen = Some(snapshot.len());
                if let Ok(text) = std::str::from_utf8(&snapshot) {
                    spoken = Some((snapshot.len(), early(text)));
                }
            }
            let read = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let err = stderr_reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            read.with_context(|| format!("could not read the output of {what}"))?;
            Ok::<_, anyhow::Error>((err, spoken))
        })?;
        let mut child = self.child.take().expect("finished once");
        let status = child
            .wait()
            .with_context(|| format!("could not wait for {what}"))?;
        if !status.success() {
            let msg = String::from_utf8_lossy(&stderr_bytes);
            bail!(
                "{what} failed ({status}): {}\n  fix: correct the chart or values helm names above, and check it with `helm template`",
                msg.trim()
            );
        }
        let bytes = std::mem::take(&mut *shared.state.lock().expect("reader done"));
        let text = String::from_utf8(bytes.bytes)
            .with_context(|| format!("{what} printed output that is not UTF-8"))?;
        let result = match spoken {
            // The output only grows: the same length is the same bytes.
            Some((len, result)) if len == text.len() => result,
            _ => early(&text),
        };
        Ok((text, result))
    }
}

/// helm's stdout as it arrives, shared between the thread that reads it and the one
/// that works on it.
#[derive(Default)]
struct Shared {
    state: std::sync::Mutex<Output>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    eof: bool,
}

/// How long the output must stay unchanged before it is worked on: a render larger
/// than the pipe arrives in pieces microseconds apart.
const QUIET: std::time::Duration = std::time::Duration::from_micros(200);

impl Shared {
    /// Reads `from` to its end, publishing every piece.
    fn fill(&self, from: Option<std::process::ChildStdout>) -> std::io::Result<()> {
        let result = match from {
            Some(mut r) => {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match std::io::Read::read(&mut r, &mut buf) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            self.state
                                .lock()
                                .expect("no panic holding it")
                                .bytes
                                .extend_from_slice(&buf[..n]);
                            self.changed.notify_all();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                }
            }
            None => Ok(()),
        };
        self.state.lock().expect("no panic holding it").eof = true;
        self.changed.notify_all();
        result
    }

    /// A copy of the output once it has grown past `seen` bytes and then stayed the
    /// same for [`QUIET`]; `None` once the output is complete (the caller then works on
    /// the final text).
    fn next_quiet_snapshot(&self, seen: Option<usize>) -> Option<Vec<u8>> {
        let mut state = self.state.lock().expect("no panic holding it");
        loop {
            if state.eof {
                return None;
            }
            let len = state.bytes.len();
            if len == 0 || Some(len) == seen {
                state = self.changed.wait(state).expect("no panic holding it");
                continue;
            }
            let (next, timeout) = self
                .changed
                .wait_timeout(state, QUIET)
                .expect("no panic holding it");
            state = next;
            if timeout.timed_out() && state.bytes.len() == len && !state.eof {
                return Some(state.bytes.clone());
            }
        }
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
    start_render(helm, &args.argv(), "helm template")
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

    /// `sh -c SCRIPT` started as helm would be (the test's stand-in for helm).
    fn sh(script: &str) -> Running {
        let sh = which(std::ffi::OsStr::new("sh")).expect("sh on PATH");
        start(&sh, &["-c".into(), script.into()], "sh").unwrap()
    }

    #[test]
    fn a_render_holds_back_the_collector_unless_the_user_tuned_it() {
        let some = Some(std::ffi::OsStr::new("200"));
        assert_eq!(
            go_gc_env(None, None),
            &[("GOGC", "off"), ("GOMEMLIMIT", "128MiB")]
        );
        assert!(go_gc_env(some, None).is_empty());
        assert!(go_gc_env(None, some).is_empty());
        assert!(go_gc_env(some, some).is_empty());
    }

    #[test]
    fn the_render_variables_reach_helm() {
        let sh = which(std::ffi::OsStr::new("sh")).expect("sh on PATH");
        let script = r#"printf '%s/%s' "${GOGC-unset}" "${GOMEMLIMIT-unset}""#;
        let seen = start_render(&sh, &["-c".into(), script.into()], "sh")
            .unwrap()
            .finish()
            .unwrap();
        // The user's own values, when set, pass through as they are.
        let (gogc, limit) = (std::env::var("GOGC").ok(), std::env::var("GOMEMLIMIT").ok());
        let as_is = format!(
            "{}/{}",
            gogc.as_deref().unwrap_or("unset"),
            limit.as_deref().unwrap_or("unset")
        );
        let tuned = gogc.is_none() && limit.is_none();
        assert_eq!(seen, if tuned { "off/128MiB" } else { &as_is });
        // Other helm runs (history, show, upgrade) get the environment as it is.
        let plain = start(&sh, &["-c".into(), script.into()], "sh")
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(plain, as_is);
    }

    #[test]
    fn early_work_on_output_that_grew_later_is_done_again() {
        let mut seen = Vec::new();
        let (text, len) = sh("printf 'first'; sleep 0.3; printf ' second'")
            .finish_with(|t| {
                seen.push(t.to_owned());
                t.len()
            })
            .unwrap();
        assert_eq!(text, "first second");
        assert_eq!(len, text.len(), "the result is the final text's");
        assert_eq!(
            seen,
            ["first", "first second"],
            "worked on early, then again"
        );
    }

    #[test]
    fn early_work_on_the_final_output_is_used_without_a_second_run() {
        let mut seen = Vec::new();
        let t0 = std::time::Instant::now();
        let (text, (upper, at)) = sh("printf 'all of it'; sleep 0.5")
            .finish_with(|t| {
                seen.push(t.to_owned());
                (t.to_uppercase(), t0.elapsed())
            })
            .unwrap();
        assert_eq!((text.as_str(), upper.as_str()), ("all of it", "ALL OF IT"));
        assert_eq!(seen, ["all of it"], "once");
        assert!(
            t0.elapsed() - at > std::time::Duration::from_millis(250),
            "worked on while the process still ran: at {at:?}, done at {:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn a_failure_after_the_output_wins_over_early_work() {
        let mut ran = 0;
        let err = sh("printf 'looks fine'; sleep 0.2; echo 'Error: it was not' >&2; exit 1")
            .finish_with(|_| ran += 1)
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("sh failed") && msg.contains("Error: it was not"),
            "{msg}"
        );
        assert_eq!(ran, 1, "the early work ran, and its result was not used");
    }

    #[test]
    fn a_snapshot_that_cuts_a_character_is_not_worked_on() {
        let mut seen = Vec::new();
        let (text, ()) = sh("printf 'caf\\303'; sleep 0.3; printf '\\251'")
            .finish_with(|t| seen.push(t.to_owned()))
            .unwrap();
        assert_eq!(text, "café");
        assert_eq!(seen, ["café"]);
    }

    #[test]
    fn output_larger_than_a_pipe_arrives_whole() {
        // 1 MiB in one write: the reader sees it in pipe-sized pieces.
        let (text, len) = sh("head -c 1048576 /dev/zero | tr '\\0' x")
            .finish_with(str::len)
            .unwrap();
        assert_eq!((text.len(), len), (1 << 20, 1 << 20));
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
