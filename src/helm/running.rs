//! A helm run under way: its time limit and the watchdog that kills its process group,
//! the reader of its output, and the early work on that output while helm exits
//! ([`Running::finish_with`]).
//!
//! It must not build helm's arguments or environment (the parent module does).

use super::*;

/// Kills the process group `pid` leads (helm and what it started).
pub(super) fn kill_group(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Whether process `pid` (a child not yet reaped) has exited, leaving it waitable.
pub(super) fn has_exited(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        let id: libc::id_t = pid;
        // SAFETY: waitid with WNOWAIT only reports; `info` is a valid, zeroed siginfo_t.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        false
    }
}

/// Why a helm run was stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    No,
    /// Past the time limit.
    Timeout,
    /// helm exited, but a process it started kept its output open.
    Lingering,
}

/// How long a process helm started may keep helm's output open after helm exited.
pub(super) const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Watches a helm run until `done` is set: kills its process group past `deadline`, or
/// [`LINGER`] after helm itself exited with its output still open.
pub(super) fn watch(
    pid: u32,
    deadline: std::time::Instant,
    done: &(std::sync::Mutex<bool>, std::sync::Condvar),
) -> Stopped {
    let (lock, cv) = done;
    let mut finished = lock.lock().expect("no panic holding it");
    let mut exited_at: Option<std::time::Instant> = None;
    loop {
        if *finished {
            return Stopped::No;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            kill_group(pid);
            return Stopped::Timeout;
        }
        if exited_at.is_none() && has_exited(pid) {
            exited_at = Some(now);
        }
        if exited_at.is_some_and(|t| now - t >= LINGER) {
            kill_group(pid);
            return Stopped::Lingering;
        }
        let step = (deadline - now).min(std::time::Duration::from_millis(50));
        finished = cv
            .wait_timeout(finished, step)
            .expect("no panic holding it")
            .0;
    }
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
        let pid = child.id();
        let shared = Shared::default();
        let done = (std::sync::Mutex::new(false), std::sync::Condvar::new());
        let deadline = self.deadline;
        let (stderr_bytes, spoken, stopped) = std::thread::scope(|s| {
            let watchdog = s.spawn(|| watch(pid, deadline, &done));
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
            *done.0.lock().expect("no panic holding it") = true;
            done.1.notify_all();
            let stopped = watchdog
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if stopped == Stopped::No {
                read.with_context(|| format!("could not read the output of {what}"))?;
            }
            Ok::<_, anyhow::Error>((err, spoken, stopped))
        })?;
        let mut child = self.child.take().expect("finished once");
        let status = child
            .wait()
            .with_context(|| format!("could not wait for {what}"))?;
        let raise = "raise the limit with --helm-timeout SECONDS or the environment variable LOCKSTEP_HELM_TIMEOUT (in Argo CD: the plugin env LOCKSTEP_HELM_TIMEOUT, within the repo-server's own timeout for a plugin, 60 s by default)";
        match stopped {
            Stopped::Timeout => bail!(
                "{what} did not finish within {} s and was stopped, with every process it started. A chart that fetches dependencies or charts over the network, or renders for long, can take this long: check that `helm` alone finishes, or {raise}",
                self.limit.as_secs()
            ),
            Stopped::Lingering => bail!(
                "{what} exited ({status}), but a process it started kept its output open for {} s; it was stopped, with every process helm started. Check HELM_BIN and helm's plugins and post-renderers: nothing helm starts may outlive it",
                LINGER.as_secs()
            ),
            Stopped::No => {}
        }
        if !status.success() {
            let msg = match crate::guard::value_texts(&self.values_files) {
                Ok(mut texts) => {
                    texts.extend(self.redact.iter().cloned());
                    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
                    redact(&relayed(&stderr_bytes), &texts)
                }
                Err(e) => format!("(helm's message is not shown: it may quote values; {e:#})"),
            };
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
pub(super) struct Shared {
    state: std::sync::Mutex<Output>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
pub(super) struct Output {
    bytes: Vec<u8>,
    eof: bool,
}

/// How long the output must stay unchanged before it is worked on: a render larger
/// than the pipe arrives in pieces microseconds apart.
pub(super) const QUIET: std::time::Duration = std::time::Duration::from_micros(200);

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
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
