//! A helm run under way: its time limit, the watchdog that kills its process group,
//! and the readers of its output.
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
    pub(crate) fn finish(mut self) -> Result<String> {
        let what = self.what;
        let child = self.child.as_mut().expect("finished once");
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let pid = child.id();
        let done = (std::sync::Mutex::new(false), std::sync::Condvar::new());
        let deadline = self.deadline;
        let (read, stderr_bytes, stopped) = std::thread::scope(|s| {
            let watchdog = s.spawn(|| watch(pid, deadline, &done));
            let stderr_reader = s.spawn(|| read_all(stderr).unwrap_or_default());
            let read = read_all(stdout);
            let err = stderr_reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            *done.0.lock().expect("no panic holding it") = true;
            done.1.notify_all();
            let stopped = watchdog
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (read, err, stopped)
        });
        let bytes = match stopped {
            Stopped::No => read.with_context(|| format!("could not read the output of {what}"))?,
            _ => Vec::new(),
        };
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
        String::from_utf8(bytes).with_context(|| format!("{what} printed output that is not UTF-8"))
    }
}

/// All of `from` (nothing when there is no such stream).
fn read_all<R: std::io::Read>(from: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut r) = from {
        r.read_to_end(&mut buf)?;
    }
    Ok(buf)
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
