//! `Test`: one run of the built lockstep, stated as what goes in and what must come out
//! (just's `Test::new().args(..).stdout(..).status(..).run()` is the model).
//!
//! The binary runs with a cleared environment: PATH holds `.tools/bin` and the system
//! directories only, a private HOME/TMPDIR and helm homes under target/test-scratch,
//! LC_ALL=C, TZ=UTC, HELM_BIN the pinned helm 4, no kubeconfig, proxies on a closed port.
//! Anything else a test needs it sets with `.env(..)`.
//!
//! Unless the test says otherwise the run must exit 0. A non-zero status also checks the
//! failure contract: nothing on stdout, `error` on stderr. No run may panic. On failure the
//! panic message holds the command (environment, directory, argv; pasteable into a shell),
//! a diff of stdout against the expected text, and stderr.
#![allow(dead_code)]

use super::{repo, run_with_stdin, scratch, tool};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[must_use = "a Test does nothing until .run()"]
pub struct Test {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(OsString, Option<OsString>)>,
    dir: PathBuf,
    status: i32,
    stdout: Option<String>,
    stdout_contains: Vec<String>,
    stdout_lacks: Vec<String>,
    stderr: Option<String>,
    stderr_contains: Vec<String>,
    stderr_lacks: Vec<String>,
    env_clear: bool,
}

/// What a run printed, for the checks a test makes beyond the builder's.
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<i32>,
    pub command: String,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Test {
        Test {
            args: Vec::new(),
            stdin: Vec::new(),
            env: Vec::new(),
            dir: repo(),
            status: 0,
            stdout: None,
            stdout_contains: Vec::new(),
            stdout_lacks: Vec::new(),
            stderr: None,
            stderr_contains: Vec::new(),
            stderr_lacks: Vec::new(),
            env_clear: false,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Test {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Test {
        self.stdin = bytes.into();
        self
    }

    /// The file's bytes on stdin (a path relative to the repository).
    pub fn stdin_file(self, path: impl AsRef<Path>) -> Test {
        let p = repo().join(path);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        self.stdin(bytes)
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Test {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Test {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    /// Runs with only the variables the test sets with `.env(..)`, none of the defaults
    /// above: for a front-end whose whole environment is the contract (argocd-cmp-server's).
    pub fn env_clear(mut self) -> Test {
        self.env_clear = true;
        self
    }

    /// The working directory (relative to the repository, or absolute; default: the repository).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Test {
        self.dir = repo().join(dir);
        self
    }

    /// The exit code the run must end with (default 0).
    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    /// stdout, byte for byte.
    pub fn stdout(mut self, text: impl Into<String>) -> Test {
        self.stdout = Some(text.into());
        self
    }

    pub fn stdout_contains(mut self, s: impl Into<String>) -> Test {
        self.stdout_contains.push(s.into());
        self
    }

    pub fn stdout_lacks(mut self, s: impl Into<String>) -> Test {
        self.stdout_lacks.push(s.into());
        self
    }

    /// stderr, byte for byte.
    pub fn stderr(mut self, text: impl Into<String>) -> Test {
        self.stderr = Some(text.into());
        self
    }

    pub fn stderr_contains(mut self, s: impl Into<String>) -> Test {
        self.stderr_contains.push(s.into());
        self
    }

    pub fn stderr_lacks(mut self, s: impl Into<String>) -> Test {
        self.stderr_lacks.push(s.into());
        self
    }

    fn command(&self) -> Command {
        let home = scratch("test-home");
        let mut c = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        c.env_clear()
            .current_dir(&self.dir)
            .args(&self.args)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", repo().join(".tools/bin").display()),
            )
            .env("HOME", &home)
            .env("TMPDIR", scratch("test-tmp"))
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("TZ", "UTC")
            .env("HELM_BIN", tool("helm4"))
            .env("HELM_CACHE_HOME", scratch("helm-cache"))
            .env("HELM_CONFIG_HOME", scratch("helm-config"))
            .env("HELM_DATA_HOME", scratch("helm-data"))
            .env("KUBECONFIG", home.join("no-kubeconfig"));
        for p in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            c.env(p, "http://127.0.0.1:9");
        }
        if self.env_clear {
            c.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }

    /// The command as a shell line: the environment the test adds, the directory, argv.
    fn describe(&self) -> String {
        let q = |s: &OsStr| {
            let s = s.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        };
        let mut line = format!("cd {} && ", q(self.dir.as_os_str()));
        for (k, v) in &self.env {
            match v {
                Some(v) => line += &format!("{}={} ", q(k), q(v)),
                None => line += &format!("-u {} ", q(k)),
            }
        }
        line += "lockstep";
        for a in &self.args {
            line += " ";
            line += &q(a);
        }
        if !self.stdin.is_empty() {
            line += &format!(" < ({} bytes on stdin)", self.stdin.len());
        }
        line
    }

    /// Runs it and checks everything the test stated; returns what it printed.
    #[track_caller]
    pub fn run(self) -> Ran {
        let out: Output = run_with_stdin(self.command(), &self.stdin);
        let ran = Ran {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            status: out.status.code(),
            command: self.describe(),
        };
        let mut problems = Vec::new();
        if ran.status != Some(self.status) {
            problems.push(format!(
                "exit status {:?}, expected {}",
                ran.status, self.status
            ));
        }
        if ran.stderr.contains("panicked") {
            problems.push("lockstep panicked".to_owned());
        }
        if self.status != 0 {
            if !out.stdout.is_empty() {
                problems.push(format!(
                    "{} bytes on stdout: a failure prints nothing there",
                    out.stdout.len()
                ));
            }
            if !ran.stderr.contains("error") {
                problems.push("stderr does not name the error".to_owned());
            }
        }
        let mut diff = String::new();
        if let Some(want) = &self.stdout {
            if &ran.stdout != want {
                problems.push("stdout differs from the expected text".to_owned());
                diff = format!(
                    "--- stdout (- expected, + got):\n{}",
                    line_diff(want, &ran.stdout)
                );
            }
        }
        if let Some(want) = &self.stderr {
            if &ran.stderr != want {
                problems.push("stderr differs from the expected text".to_owned());
                diff += &format!(
                    "--- stderr (- expected, + got):\n{}",
                    line_diff(want, &ran.stderr)
                );
            }
        }
        for s in &self.stdout_contains {
            if !ran.stdout.contains(s.as_str()) {
                problems.push(format!("stdout lacks {s:?}"));
            }
        }
        for s in &self.stdout_lacks {
            if ran.stdout.contains(s.as_str()) {
                problems.push(format!("stdout contains {s:?}"));
            }
        }
        for s in &self.stderr_contains {
            if !ran.stderr.contains(s.as_str()) {
                problems.push(format!("stderr lacks {s:?}"));
            }
        }
        for s in &self.stderr_lacks {
            if ran.stderr.contains(s.as_str()) {
                problems.push(format!("stderr contains {s:?}"));
            }
        }
        if !problems.is_empty() {
            let shown = if ran.stdout.len() > 4000 && !diff.is_empty() {
                format!("({} bytes, diff above)", ran.stdout.len())
            } else {
                ran.stdout.clone()
            };
            panic!(
                "{}\ncommand: {}\n{diff}--- stdout:\n{shown}\n--- stderr:\n{}",
                problems.join("\n"),
                ran.command,
                ran.stderr
            );
        }
        ran
    }
}

/// The lines that differ between `want` and `got`, with two lines of context: common lines
/// at both ends are skipped, the middle is shown as removed (-) and added (+) lines.
pub fn line_diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.split_inclusive('\n').collect();
    let g: Vec<&str> = got.split_inclusive('\n').collect();
    let head = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let tail = w[head..]
        .iter()
        .rev()
        .zip(g[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = format!("@@ line {} @@\n", head + 1);
    let nl = |l: &str| {
        if l.ends_with('\n') {
            l.to_owned()
        } else {
            format!("{l}\\ no newline\n")
        }
    };
    for l in &w[head.saturating_sub(2)..head] {
        out += &format!(" {}", nl(l));
    }
    for l in &w[head..w.len() - tail] {
        out += &format!("-{}", nl(l));
    }
    for l in &g[head..g.len() - tail] {
        out += &format!("+{}", nl(l));
    }
    for l in w[w.len() - tail..].iter().take(2) {
        out += &format!(" {}", nl(l));
    }
    out
}
