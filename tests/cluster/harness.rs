//! The environment of the end-to-end scenarios on a real control plane: one cluster, one
//! PostgreSQL and one Redis per test binary run, shared by every scenario; each scenario gets
//! its own namespace, database, Redis database number and Helm release.
//!
//! * `LOCKSTEP_KUBE_BIN` (a directory with etcd, kube-apiserver, kube-controller-manager;
//!   CI's `.ci/run` unpacks the control-plane binaries there): `scripts/e2e-cluster.sh` starts a control
//!   plane in a temporary directory and `tests/cluster/pod_runner.py` plays the kubelet for
//!   Job pods. `e2e-cluster.sh watch` stops both servers by PID once this process has
//!   exited, however it exits (Rust's test harness has no teardown hook).
//! * `LOCKSTEP_E2E_KUBECONFIG`: an existing cluster (kind, k3d) whose kubelet runs the pods;
//!   no pod runner starts. Only the scenarios that need nothing of the runner's run there
//!   (see [`Env::runner`]).
//! * Neither: every scenario prints one line saying so and passes without running.
//!
//! PostgreSQL, Redis (`scripts/e2e-db.sh`) and the Prefect venvs (`scripts/install-e2e.sh`)
//! are required once a cluster is given: a missing one fails the test with the command that
//! installs it.

#![allow(dead_code)]

use crate::common::{repo, tool};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Env {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The pod runner's log and PID, when this run started one.
    pub runner: Option<(PathBuf, u32)>,
    pub pg_port: u16,
    pub pg_superuser: String,
    pub redis_port: u16,
    pub redis_password: String,
    helm_homes: Mutex<BTreeMap<u8, PathBuf>>,
    redis_dbs: AtomicU32,
}

static ENV: OnceLock<Option<Env>> = OnceLock::new();
static SKIP_SAID: OnceLock<()> = OnceLock::new();

/// The shared environment, started on first use; None (after one line on stderr) when no
/// cluster is configured.
pub fn env() -> Option<&'static Env> {
    let e = ENV.get_or_init(start).as_ref();
    if e.is_none() {
        SKIP_SAID.get_or_init(|| {
            let _ = writeln!(
                std::io::stderr(),
                "cluster e2e: skipped, needs LOCKSTEP_KUBE_BIN (kube binaries; .ci/run sets it) or LOCKSTEP_E2E_KUBECONFIG (an existing cluster)"
            );
        });
    }
    e
}

fn run_script(args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut c = Command::new("bash");
    c.args(args).current_dir(repo()).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run bash");
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `e2e-cluster.sh watch DIR PID` in its own session: stops DIR's servers once we are gone.
// It outlives this process on purpose: nothing here waits for it.
#[allow(clippy::zombie_processes)]
fn watch(dir: &Path) {
    Command::new("setsid")
        .arg("bash")
        .arg(repo().join("scripts/e2e-cluster.sh"))
        .arg("watch")
        .arg(dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the watcher");
}

fn start() -> Option<Env> {
    let bin = std::env::var_os("LOCKSTEP_KUBE_BIN").filter(|v| !v.is_empty());
    let existing = std::env::var_os("LOCKSTEP_E2E_KUBECONFIG").filter(|v| !v.is_empty());
    if bin.is_none() && existing.is_none() {
        return None;
    }
    for v in ["3.7.8", "3.8.3"] {
        assert!(
            prefect_bin(v).join("prefect").exists(),
            "{} is missing: run `bash scripts/install-e2e.sh`",
            prefect_bin(v).display()
        );
    }
    let t0 = Instant::now();
    // A directory the postgres user can reach (initdb runs as postgres when we are root).
    let dir = std::env::temp_dir().join(format!("lockstep-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = match (&existing, &bin) {
        (Some(k), _) => PathBuf::from(k),
        (None, Some(b)) => {
            let kube = dir.join("kube");
            std::fs::create_dir_all(&kube).unwrap();
            watch(&kube);
            run_script(
                &["scripts/e2e-cluster.sh", "start", kube.to_str().unwrap()],
                &[("LOCKSTEP_KUBE_BIN", Path::new(b))],
            );
            kube.join("kubeconfig")
        }
        (None, None) => unreachable!(),
    };
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    watch(&db);
    run_script(&["scripts/e2e-db.sh", "start", db.to_str().unwrap()], &[]);
    let vars: BTreeMap<String, String> = std::fs::read_to_string(db.join("db.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let pg_port: u16 = vars["PG_PORT"].parse().unwrap();
    let runner = if existing.is_none() {
        Some(start_runner(&dir, pg_port))
    } else {
        None
    };
    let _ = writeln!(
        std::io::stderr(),
        "cluster e2e: {}, PostgreSQL, Redis{} up in {:.1}s ({})",
        if existing.is_some() {
            "the LOCKSTEP_E2E_KUBECONFIG cluster"
        } else {
            "control plane"
        },
        if runner.is_some() { ", pod runner" } else { "" },
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    Some(Env {
        kubeconfig,
        runner,
        pg_port,
        pg_superuser: vars["PG_SUPERUSER"].clone(),
        redis_port: vars["REDIS_PORT"].parse().unwrap(),
        redis_password: vars["REDIS_PASSWORD"].clone(),
        helm_homes: Mutex::new(BTreeMap::new()),
        redis_dbs: AtomicU32::new(1),
        dir,
    })
}

pub fn prefect_bin(version: &str) -> PathBuf {
    repo().join(format!(".tools/prefect-{version}/bin"))
}

// The runner lives as long as this process (it exits when --parent is gone): never waited for.
#[allow(clippy::zombie_processes)]
fn start_runner(dir: &Path, pg_port: u16) -> (PathBuf, u32) {
    let kube = dir.join("kube");
    let cfg = std::fs::read_to_string(kube.join("kubeconfig")).unwrap();
    let server = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server in the kubeconfig")
        .to_owned();
    let log = dir.join("pod-runner.log");
    let work = dir.join("pods");
    std::fs::create_dir_all(&work).unwrap();
    let stderr = std::fs::File::create(dir.join("pod-runner.stderr")).unwrap();
    let child = Command::new("python3")
        .arg(repo().join("tests/cluster/pod_runner.py"))
        .arg("--server")
        .arg(server)
        .arg("--ca")
        .arg(kube.join("pki/ca.crt"))
        .arg("--token")
        .arg(kube.join("token"))
        .arg("--workdir")
        .arg(&work)
        .arg("--log")
        .arg(&log)
        .arg("--image-path")
        .arg(format!(
            r"^prefecthq/prefect:(\d+\.\d+\.\d+)(-|$)={}",
            repo().join(r".tools/prefect-\1/bin").display()
        ))
        .arg("--path")
        .arg(repo().join("tests/cluster/bin"))
        .arg("--image-file")
        .arg(format!(
            "/usr/bin/tini={}",
            repo().join("tests/cluster/image/tini").display()
        ))
        .arg("--image-file")
        .arg(format!(
            "/opt/prefect/entrypoint.sh={}",
            repo()
                .join("tests/cluster/image/prefect-entrypoint.sh")
                .display()
        ))
        // The chart's bundled PostgreSQL (`RELEASE-postgresql.NAMESPACE:5432` in its
        // connection Secret) is played by the shared server (argocd_sync.rs).
        .arg("--service")
        .arg(format!(
            r"\b[a-z0-9-]+-postgresql\.[a-z0-9-]+:5432\b=127.0.0.1:{pg_port}"
        ))
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the pod runner");
    (log, child.id())
}

impl Env {
    /// True when the pod runner plays the kubelet (scenarios with stand-in commands need it).
    pub fn runner(&self) -> bool {
        self.runner.is_some()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut c = Command::new(tool("kubectl"));
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        crate::common::run_with_stdin(c, input.as_bytes())
    }

    pub fn kubectl_apply(&self, ns: &str, yaml: &str) {
        let o = self.kubectl_stdin(&["-n", ns, "apply", "-f", "-"], yaml);
        assert!(
            o.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// psql as the superuser against `db`; tuples only, unaligned.
    pub fn psql(&self, db: &str, sql: &str) -> Output {
        Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.pg_port.to_string())
            .arg("-U")
            .arg(&self.pg_superuser)
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .expect("run psql")
    }

    pub fn psql_ok(&self, db: &str, sql: &str) -> String {
        let o = self.psql(db, sql);
        assert!(
            o.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    pub fn next_redis_db(&self) -> u32 {
        let n = self.redis_dbs.fetch_add(1, Ordering::SeqCst);
        assert!(n < 64, "e2e-db.sh starts Redis with 64 databases");
        n
    }

    /// HELM_* homes for helm `major` with the lockstep plugin installed from this checkout
    /// (its bin/lockstep a link to the binary under test), made once per run. The lock is
    /// held until the plugin is installed: a scenario on another thread waits for it.
    pub fn helm_home(&self, major: u8) -> PathBuf {
        let mut homes = self.helm_homes.lock().unwrap();
        if let Some(h) = homes.get(&major) {
            return h.clone();
        }
        let root = self.dir.join(format!("helm{major}"));
        let plugin = root.join("plugin-src");
        for d in ["tmp", "data", "config", "cache", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for d in ["bin", "scripts", "helm-postrender"] {
            std::fs::create_dir_all(plugin.join(d)).unwrap();
        }
        for f in [
            "plugin.yaml",
            "scripts/helm-plugin-install.sh",
            "helm-postrender/plugin.yaml",
        ] {
            std::fs::copy(repo().join(f), plugin.join(f)).unwrap();
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lockstep"), plugin.join("bin/lockstep"))
            .unwrap();
        // helm under the name `helm`, alone on PATH (the plugin's install hook looks for a
        // Helm 3 sharing the plugin directory).
        std::os::unix::fs::symlink(tool(&format!("helm{major}")), root.join("bin/helm")).unwrap();
        let out = self
            .helm_at(&root, major)
            .args(["plugin", "install"])
            .arg(&plugin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm{major} plugin install: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        homes.insert(major, root.clone());
        root
    }

    /// The real helm `major` against this cluster, the plugin installed, run from the repository.
    pub fn helm(&self, major: u8) -> Command {
        let root = self.helm_home(major);
        self.helm_at(&root, major)
    }

    fn helm_at(&self, root: &Path, major: u8) -> Command {
        let mut c = Command::new(root.join("bin/helm"));
        let path: OsString = format!("{}:/usr/bin:/bin", root.join("bin").display()).into();
        c.env_clear()
            .env("PATH", path)
            .env("HOME", root)
            .env("TMPDIR", root.join("tmp"))
            .env("HELM_DATA_HOME", root.join("data"))
            .env("HELM_CONFIG_HOME", root.join("config"))
            .env("HELM_CACHE_HOME", root.join("cache"))
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo())
            .stdin(Stdio::null());
        if major == 3 {
            c.env("HELM_PLUGINS", root.join("data/plugins"));
        }
        c
    }

    /// Panics when the pod runner this run started has exited (its stderr says why).
    pub fn check_runner(&self) {
        if let Some((_, pid)) = &self.runner {
            assert!(
                Path::new(&format!("/proc/{pid}")).exists()
                    && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap_or_default()
                        .contains(") Z "),
                "the pod runner exited: {}",
                std::fs::read_to_string(self.dir.join("pod-runner.stderr")).unwrap_or_default()
            );
        }
    }

    /// The pod runner's log lines about namespace `ns` (empty without a runner).
    pub fn runner_log(&self, ns: &str) -> Vec<String> {
        let Some((log, _)) = &self.runner else {
            return vec![];
        };
        let prefix = format!("{ns}/");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }
}

/// Polls `f` every 200 ms until it returns Some, or panics after `secs` naming `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
