//! The Helm plugin end to end, with the real helm 3.19 and 4.3 (`.tools/bin/helm3`,
//! `.tools/bin/helm4`): the plugin is installed with `helm plugin install` into a
//! per-test HELM_DATA_HOME, run as `helm lockstep ...`, and reads releases from
//! tests/fake-kube (a read-only fake Kubernetes API holding real Helm release Secrets).
//!
//! helm is run through a small wrapper (`bin/helm` in each test's directory) that runs
//! the real binary under the wrapper's name, so helm sets HELM_BIN to the wrapper and
//! every helm call the plugin makes goes through it: the wrapper logs the call, keeps a
//! copy of the chart given to `install`/`upgrade` (LOCKSTEP_TEST_SNAPSHOT), and can
//! fail those on purpose (LOCKSTEP_TEST_HELM_EXIT).

mod common;

use common::{docs, repo, scratch, stderr, stdout, tool};
use serde_yaml::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PREFECT_CLOUD: &str = "examples/charts/prefect-cloud-1.2.0";
const PREFECT_CLOUD_VALUES: &str = "examples/values/prefect-cloud/values-1.2.0.yaml";
const PREFECT_SERVER: &str = "examples/charts/prefect-server";
const CRD_APP: &str = "tests/data/helm_plugin/crd-app";

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/helm_plugin").join(name)
}

/// One helm (3 or 4) with the plugin installed in its own directories.
struct Helm {
    real: PathBuf,
    root: PathBuf,
    wrapper: PathBuf,
    env: Vec<(String, OsString)>,
}

impl Helm {
    /// Installs the plugin from a copy of the repository's plugin files, its bin/lockstep
    /// a link to the binary under test (the install hook then neither builds nor downloads).
    fn new(name: &str, major: u8) -> Helm {
        let real = tool(&format!("helm{major}"));
        let root = scratch(&format!("helm-plugin-{name}-helm{major}"));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "bin",
            "tmp",
            "data",
            "config",
            "cache",
            "plugin/bin",
            "plugin/scripts",
            "plugin/helm-postrender",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let wrapper = root.join("bin/helm");
        std::fs::write(
            &wrapper,
            format!(
                r#"#!/bin/bash
# tests/helm_plugin.rs: log the call, keep the chart given to install/upgrade, maybe fail.
printf '%s\n' "$*" >> "$LOCKSTEP_TEST_HELM_LOG"
case "$1" in
install | upgrade)
	if [ -n "${{LOCKSTEP_TEST_SNAPSHOT:-}}" ]; then cp -R "$3" "$LOCKSTEP_TEST_SNAPSHOT"; fi
	if [ -n "${{LOCKSTEP_TEST_HELM_EXIT:-}}" ]; then
		echo "Error: simulated helm failure" >&2
		exit "$LOCKSTEP_TEST_HELM_EXIT"
	fi
	;;
esac
exec -a "$0" '{}' "$@"
"#,
                real.display()
            ),
        )
        .unwrap();
        chmod_x(&wrapper);
        let plugin = root.join("plugin");
        std::fs::copy(repo().join("plugin.yaml"), plugin.join("plugin.yaml")).unwrap();
        let hook = plugin.join("scripts/helm-plugin-install.sh");
        std::fs::copy(repo().join("scripts/helm-plugin-install.sh"), &hook).unwrap();
        chmod_x(&hook);
        std::fs::copy(
            repo().join("helm-postrender/plugin.yaml"),
            plugin.join("helm-postrender/plugin.yaml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lockstep"), plugin.join("bin/lockstep"))
            .unwrap();

        let mut env: Vec<(String, OsString)> = vec![
            // Only this helm on PATH: the install hook looks for a Helm 3 sharing the plugins directory.
            (
                "PATH".into(),
                format!("{}:/usr/bin:/bin", root.join("bin").display()).into(),
            ),
            ("HOME".into(), root.clone().into()),
            ("TMPDIR".into(), root.join("tmp").into()),
            ("HELM_DATA_HOME".into(), root.join("data").into()),
            ("HELM_CONFIG_HOME".into(), root.join("config").into()),
            ("HELM_CACHE_HOME".into(), root.join("cache").into()),
            (
                "LOCKSTEP_TEST_HELM_LOG".into(),
                root.join("helm-calls.log").into(),
            ),
            // No cluster unless a test starts the fake one.
            ("KUBECONFIG".into(), root.join("no-kubeconfig").into()),
        ];
        if major == 3 {
            env.push(("HELM_PLUGINS".into(), root.join("data/plugins").into()));
        }
        let h = Helm {
            real,
            root,
            wrapper,
            env,
        };
        let out = h.run(&["plugin", "install", plugin.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "helm{major} plugin install failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        h
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.wrapper);
        c.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(repo());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run helm")
    }

    fn set(&mut self, key: &str, value: impl Into<OsString>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn use_cluster(&mut self, kube: &FakeKube) {
        self.set("KUBECONFIG", kube.kubeconfig.clone());
    }

    /// Every helm call made through the wrapper since the last `clear_calls`, one per line.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("helm-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Asserts that helm was called with exactly `call` (what follows `helm`).
    #[track_caller]
    fn assert_called(&self, call: &str) {
        let calls = self.calls();
        assert!(
            calls.iter().any(|c| c == call),
            "no `helm {call}` in {calls:?}"
        );
    }

    /// Asserts that no helm call starts with any of `prefixes` (`install `, `upgrade `, ...).
    #[track_caller]
    fn assert_not_called(&self, prefixes: &[&str]) {
        let calls = self.calls();
        for p in prefixes {
            assert!(
                !calls.iter().any(|c| c.starts_with(p)),
                "helm {p}ran: {calls:?}"
            );
        }
    }

    /// The first helm call that starts with `prefix`.
    #[track_caller]
    fn call(&self, prefix: &str) -> String {
        let calls = self.calls();
        calls
            .iter()
            .find(|c| c.starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no `helm {prefix}...` in {calls:?}"))
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.root.join("helm-calls.log"));
    }

    /// What is left in the TMPDIR helm and lockstep were given.
    fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// `lockstep render` run directly with the same helm, for comparisons.
    fn direct_render(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .arg("render")
            .args(args)
            .env_remove("LOCKSTEP_FROM")
            .env("HELM_BIN", &self.real)
            .env("HELM_DATA_HOME", self.root.join("data"))
            .env("HELM_CONFIG_HOME", self.root.join("config"))
            .env("HELM_CACHE_HOME", self.root.join("cache"))
            .current_dir(repo())
            .output()
            .unwrap();
        ok(&out, "lockstep render")
    }
}

impl Drop for Helm {
    /// A passing test leaves nothing behind; a failing one keeps its directory to look at.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// `both_helms!(check: helm3_test, helm4_test)`: `check(3)` and `check(4)` as two tests.
macro_rules! both_helms {
    ($check:ident: $h3:ident, $h4:ident) => {
        #[test]
        fn $h3() {
            $check(3);
        }

        #[test]
        fn $h4() {
            $check(4);
        }
    };
}

/// `lockstep CMD RELEASE CHART -n NAMESPACE EXTRA...`: the plugin's command line.
fn plugin_cmd<'a>(
    cmd: &'a str,
    release: &'a str,
    chart: &'a str,
    namespace: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec!["lockstep", cmd, release, chart, "-n", namespace];
    a.extend_from_slice(extra);
    a
}

/// `lockstep CMD prefect PREFECT_CLOUD -n prefect -f PREFECT_CLOUD_VALUES EXTRA...`: the
/// plugin's command line for the prefect-cloud release of the fake clusters.
fn cloud_cmd<'a>(cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "lockstep",
        cmd,
        "prefect",
        PREFECT_CLOUD,
        "-n",
        "prefect",
        "-f",
        PREFECT_CLOUD_VALUES,
    ];
    a.extend_from_slice(extra);
    a
}

/// A plugin install whose cluster holds tests/fake-kube/prefect-releases.json (revision 1
/// superseded 0.7.0, 2 deployed 0.8.2, 3 failed 1.2.0).
fn with_prefect_releases(name: &str, major: u8, apps: bool) -> (Helm, FakeKube) {
    let mut helm = Helm::new(name, major);
    let kube = FakeKube::start(
        &helm.root,
        "prefect",
        &repo().join("tests/fake-kube/prefect-releases.json"),
        apps,
    );
    helm.use_cluster(&kube);
    (helm, kube)
}

/// Asserts success (see [`ok`]) and that stderr says `needle`; returns stdout.
#[track_caller]
fn ok_saying(out: &Output, what: &str, needle: &str) -> String {
    let text = ok(out, what);
    assert!(stderr(out).contains(needle), "{what}: {}", stderr(out));
    text
}

/// Asserts lockstep's failure contract (`code`, nothing on stdout, `error` on stderr) and
/// that stderr says `needle`.
#[track_caller]
fn fails_saying(out: &Output, code: i32, needle: &str) {
    let err = common::fails(out, code);
    assert!(err.contains(needle), "{err}");
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: expected success, got {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// The fake Kubernetes API, stopped when dropped.
struct FakeKube {
    child: Child,
    log: PathBuf,
    kubeconfig: PathBuf,
}

impl FakeKube {
    /// `apps`: the variant with discovery for the kinds the example charts render (Helm 3's
    /// `install --dry-run=client` maps every object through discovery).
    fn start(root: &Path, name: &str, releases: &Path, apps: bool) -> FakeKube {
        let script = if apps {
            data("fake_kube_apps.py")
        } else {
            repo().join("tests/fake-kube/fake_kube.py")
        };
        let dir = root.join(format!("kube-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (port, kubeconfig, log) = (
            dir.join("port"),
            dir.join("kubeconfig"),
            dir.join("requests.log"),
        );
        let child = Command::new("python3")
            .arg(&script)
            .arg("--releases")
            .arg(releases)
            .arg("--port-file")
            .arg(&port)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .args(["--max-seconds", "180"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 runs tests/fake-kube/fake_kube.py");
        let mut kube = FakeKube {
            child,
            log,
            kubeconfig,
        };
        let start = Instant::now();
        while !port.exists() {
            if let Some(status) = kube.child.try_wait().unwrap() {
                panic!("fake-kube exited ({status}):\n{}", kube.requests());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "fake-kube did not start:\n{}",
                kube.requests()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        kube
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests that would change the cluster (the fake answers them 405).
    fn writes(&self) -> Vec<String> {
        self.requests()
            .lines()
            .filter(|l| {
                ["POST ", "PUT ", "PATCH ", "DELETE "]
                    .iter()
                    .any(|m| l.contains(m))
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn releases_file(root: &Path, name: &str, json: &serde_json::Value) -> PathBuf {
    let p = root.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(json).unwrap()).unwrap();
    p
}

fn kind_name(d: &Value) -> (String, String) {
    (
        d["kind"].as_str().unwrap_or_default().to_owned(),
        d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn hook(d: &Value) -> Option<&str> {
    d["metadata"]["annotations"]["helm.sh/hook"].as_str()
}

fn by_lockstep(d: &Value) -> bool {
    d["metadata"]["labels"]["app.kubernetes.io/managed-by"].as_str() == Some("lockstep")
}

/// The documents as a sorted list of their YAML: equal iff the same objects, whatever the order.
fn multiset(stream: &str) -> Vec<String> {
    let mut v: Vec<String> = docs(stream)
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    v.sort();
    v
}

/// The lockstep Jobs of a stream, by name, with their helm hook annotation.
fn lockstep_jobs(stream: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = docs(stream)
        .iter()
        .filter(|d| d["kind"] == "Job" && by_lockstep(d))
        .map(|d| (kind_name(d).1, hook(d).unwrap_or("(no hook)").to_owned()))
        .collect();
    v.sort();
    v
}

/// The HOOKS and MANIFEST sections of `helm install|upgrade --dry-run` output.
fn dry_run_sections(out: &str) -> (String, String) {
    let hooks_at = out
        .find("\nHOOKS:\n")
        .unwrap_or_else(|| panic!("no HOOKS: section in\n{out}"));
    let manifest_at = out
        .find("\nMANIFEST:\n")
        .unwrap_or_else(|| panic!("no MANIFEST: section in\n{out}"));
    assert!(
        hooks_at < manifest_at,
        "HOOKS: comes before MANIFEST:\n{out}"
    );
    let hooks = out[hooks_at + 8..manifest_at].to_owned();
    let rest = &out[manifest_at + 11..];
    let manifest = rest
        .find("\nNOTES:\n")
        .map_or(rest, |n| &rest[..n])
        .to_owned();
    (hooks, manifest)
}

// ---- the plugin loads; template for a first install ---------------------------------------

fn plugin_loads_and_templates_a_first_install(major: u8) {
    let mut helm = Helm::new("first-install", major);
    let list = ok(&helm.run(&["plugin", "list"]), "helm plugin list");
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"lockstep"),
        "helm{major} plugin list:\n{list}"
    );
    // The Helm 4 post-renderer is its own plugin; Helm 3 cannot load it and must not get it.
    assert_eq!(
        names.contains(&"lockstep-postrender"),
        major == 4,
        "helm{major} plugin list:\n{list}"
    );

    let empty = releases_file(&helm.root, "none.json", &serde_json::json!([]));
    let kube = FakeKube::start(&helm.root, "empty", &empty, false);
    helm.use_cluster(&kube);
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect-server",
        PREFECT_SERVER,
        "prefect",
        &[],
    ));
    let text = ok(&out, "helm lockstep template");
    let err = stderr(&out);
    assert!(
        err.contains("no release prefect-server in namespace prefect: a first install"),
        "{err}"
    );

    let all = docs(&text);
    let deployment =
        common::find(&all, "Deployment", "prefect-server").expect("the chart's Deployment");
    let api_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    let jobs: Vec<&Value> = all.iter().filter(|d| d["kind"] == "Job").collect();
    assert_eq!(jobs.len(), 2, "the gate and one migration Job:\n{text}");
    for job in &jobs {
        assert!(by_lockstep(job), "{job:?}");
        // A first install: the migration is post-install (phase sync), once the Secret and
        // ServiceAccount exist; the gate stays pre-install, before anything is created.
        let want = if job["metadata"]["labels"]["app.kubernetes.io/component"] == "upgrade-gate" {
            "pre-install,pre-upgrade"
        } else {
            "post-install,pre-upgrade"
        };
        assert_eq!(hook(job), Some(want), "{job:?}");
    }
    let migrate = jobs
        .iter()
        .find(|j| j["metadata"]["labels"]["app.kubernetes.io/component"] == "database-migration")
        .unwrap();
    assert_eq!(
        migrate["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some(api_image)
    );

    // The same pipeline as `lockstep render`, byte for byte, with the same helm.
    let direct = helm.direct_render(&[
        PREFECT_SERVER,
        "--release",
        "prefect-server",
        "-n",
        "prefect",
        "--phase",
        "sync",
    ]);
    assert_eq!(text, direct);

    helm.assert_called("history prefect-server --output=json --namespace=prefect");
    helm.assert_not_called(&["install ", "upgrade "]);
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
}

both_helms!(plugin_loads_and_templates_a_first_install: helm3_plugin_loads_and_templates_a_first_install, helm4_plugin_loads_and_templates_a_first_install);

// ---- coexistence with another plugin ------------------------------------------------------

fn loads_next_to_another_plugin(major: u8) {
    let helm = Helm::new("coexist", major);
    ok(
        &helm.run(&[
            "plugin",
            "install",
            data("trivial-plugin").to_str().unwrap(),
        ]),
        "install the trivial plugin",
    );
    let list = ok(&helm.run(&["plugin", "list"]), "helm plugin list");
    for name in ["lockstep", "hello"] {
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "helm{major} plugin list lacks {name}:\n{list}"
        );
    }
    let hello = ok(&helm.run(&["hello", "there"]), "helm hello");
    assert!(
        hello.contains("hello from the trivial plugin: there"),
        "{hello}"
    );
    let usage = ok(&helm.run(&["lockstep", "--help"]), "helm lockstep --help");
    assert!(
        usage.contains("helm lockstep upgrade  RELEASE CHART"),
        "{usage}"
    );
    if major == 3 {
        let plugins = std::fs::read_dir(helm.root.join("data/plugins"))
            .unwrap()
            .count();
        assert_eq!(
            plugins, 2,
            "Helm 3's plugins directory holds lockstep and hello only"
        );
    }
}

both_helms!(loads_next_to_another_plugin: helm3_loads_lockstep_next_to_another_plugin, helm4_loads_lockstep_next_to_another_plugin);

// ---- Helm 4's post-renderer -----------------------------------------------------------------

#[test]
fn helm4_post_renderer_adds_the_jobs_as_hooks() {
    let helm = Helm::new("postrender", 4);
    let args = [
        "template",
        "prefect",
        PREFECT_CLOUD,
        "-n",
        "prefect",
        "-f",
        PREFECT_CLOUD_VALUES,
        "--post-renderer",
        "lockstep-postrender",
    ];
    let text = ok(
        &helm.run(&args),
        "helm template --post-renderer lockstep-postrender",
    );
    let all = docs(&text);
    let jobs = lockstep_jobs(&text);
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prefect-lockstep-gate",
            "prefect-migrate-events",
            "prefect-migrate-nebula",
            "prefect-migrate-orion"
        ],
        "{text}"
    );
    assert!(
        jobs.iter().all(|(_, h)| h == "pre-install,pre-upgrade"),
        "{jobs:?}"
    );
    // The chart's own migration hook reached the post-renderer and was replaced.
    assert!(
        common::find(&all, "Job", "prefect-db-migrations").is_none(),
        "{text}"
    );
    assert!(
        !text.contains("postrenderer.helm.sh/postrender-filename"),
        "helm strips its annotation"
    );
    // Helm sorted lockstep's Jobs into hooks: printed after every resource.
    let first_hook = all.iter().position(|d| hook(d).is_some()).unwrap();
    assert!(
        all[first_hook..].iter().all(|d| hook(d).is_some()),
        "hooks come last:\n{text}"
    );
    // The same objects as `lockstep render` (no deployed release known to either; the
    // post-renderer is not told the namespace and the chart sets none: neither does lockstep).
    let direct = helm.direct_render(&[
        PREFECT_CLOUD,
        "--release",
        "prefect",
        "-f",
        PREFECT_CLOUD_VALUES,
    ]);
    assert_eq!(multiset(&text), multiset(&direct));

    // --no-hooks drops them: helm holds them as hooks, not as resources.
    let mut no_hooks = args.to_vec();
    no_hooks.push("--no-hooks");
    let text = ok(
        &helm.run(&no_hooks),
        "helm template --no-hooks --post-renderer lockstep-postrender",
    );
    assert!(lockstep_jobs(&text).is_empty(), "{text}");
    assert!(
        common::find(&docs(&text), "ConfigMap", "prefect-lockstep").is_none(),
        "the release record is a hook too: only hooks that ran after the migrations write it"
    );

    // A chart with a subchart: name the profile through --post-renderer-args.
    let text = ok(
        &helm.run(&[
            "template",
            "prefect-server",
            PREFECT_SERVER,
            "-n",
            "prefect",
            "--post-renderer",
            "lockstep-postrender",
            "--post-renderer-args=--profile=prefect-server",
        ]),
        "helm template prefect-server --post-renderer lockstep-postrender",
    );
    let names: Vec<String> = lockstep_jobs(&text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "prefect-server-lockstep-gate",
            "prefect-server-migrate-database"
        ],
        "{text}"
    );
}

// ---- the deployed release from the cluster --------------------------------------------------

fn reads_the_newest_deployed_revision(major: u8) {
    // Revision 1 superseded 0.7.0, 2 deployed 0.8.2, 3 failed 1.2.0.
    let (helm, kube) = with_prefect_releases("lookup", major, false);
    let out = helm.run(&cloud_cmd("template", &[]));
    let text = ok_saying(
        &out,
        "helm lockstep template",
        "deployed: release prefect revision 2",
    );
    // 0.8 → 1.2 brings a one-time step: only there when the deployed release is 0.8.2.
    let jobs: Vec<String> = lockstep_jobs(&text).into_iter().map(|(n, _)| n).collect();
    assert!(
        jobs.contains(&"prefect-update-orion".to_owned()),
        "{jobs:?}"
    );
    let direct = helm.direct_render(&[
        PREFECT_CLOUD,
        "--release",
        "prefect",
        "-n",
        "prefect",
        "-f",
        PREFECT_CLOUD_VALUES,
        "--from",
        "0.8.2",
    ]);
    assert_eq!(text, direct);
    helm.assert_called("get metadata prefect --revision=2 --output=json --namespace=prefect");
    let calls = helm.calls();
    assert!(
        !calls.iter().any(|c| c.contains("--revision=3")),
        "the failed revision 3 is skipped: {calls:?}"
    );

    let plan = ok(&helm.run(&cloud_cmd("plan", &[])), "plan");
    assert!(
        plan.starts_with("Upgrade plan for prefect-customer-managed from 0.8.2 to 1.2.0 (1 stop)"),
        "{plan}"
    );
    assert!(plan.contains("update-orion"), "{plan}");
    let json = ok(
        &helm.run(&plugin_cmd(
            "plan",
            "prefect",
            PREFECT_CLOUD,
            "prefect",
            &["-o", "json"],
        )),
        "plan -o json",
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (
            v["from"].as_str(),
            v["to"].as_str(),
            v["stops"].as_array().map(Vec::len)
        ),
        (Some("0.8.2"), Some("1.2.0"), Some(1))
    );

    // helm's --kube-context reaches lockstep as HELM_KUBECONTEXT and every lookup gets it.
    helm.clear_calls();
    let args = [
        "--kube-context",
        "fake-kube",
        "lockstep",
        "plan",
        "prefect",
        PREFECT_CLOUD,
        "-n",
        "prefect",
    ];
    ok(&helm.run(&args), "plan --kube-context fake-kube");
    helm.assert_called(
        "history prefect --output=json --namespace=prefect --kube-context=fake-kube",
    );
    let out = helm.run(&[
        "--kube-context",
        "nope",
        "lockstep",
        "plan",
        "prefect",
        PREFECT_CLOUD,
        "-n",
        "prefect",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"nope\""),
        "helm's message names the context: {}",
        stderr(&out)
    );
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
}

both_helms!(reads_the_newest_deployed_revision: helm3_reads_the_newest_deployed_revision, helm4_reads_the_newest_deployed_revision);

fn refuses_a_skipped_release_before_helm_runs(major: u8) {
    let mut helm = Helm::new("refuse", major);
    let releases = releases_file(
        &helm.root,
        "prefect-0.6.1.json",
        &serde_json::json!([
            {"name": "prefect", "namespace": "prefect", "revision": 1, "status": "superseded",
             "chart": {"name": "prefect-cloud", "version": "0.5.2", "appVersion": "2025.0601.000000"}},
            {"name": "prefect", "namespace": "prefect", "revision": 2, "status": "deployed",
             "chart": {"name": "prefect-cloud", "version": "0.6.1", "appVersion": "2025.0801.000000"}}
        ]),
    );
    let kube = FakeKube::start(&helm.root, "prefect-0.6.1", &releases, true);
    helm.use_cluster(&kube);
    for cmd in ["upgrade", "install", "template"] {
        helm.clear_calls();
        let out = helm.run(&cloud_cmd(cmd, &[]));
        assert_eq!(
            out.status.code(),
            Some(3),
            "helm{major} lockstep {cmd}: exit 3\n{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("refusing to upgrade prefect-cloud from 0.6.1 to 1.2.0"),
            "{err}"
        );
        helm.call("history prefect ");
        helm.assert_not_called(&["install ", "upgrade ", "show chart"]);
    }
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
    assert!(helm.tmp_entries().is_empty(), "{:?}", helm.tmp_entries());
}

both_helms!(refuses_a_skipped_release_before_helm_runs: helm3_refuses_a_skipped_release_before_helm_runs, helm4_refuses_a_skipped_release_before_helm_runs);

// ---- install and upgrade through the temporary chart ----------------------------------------

fn first_install_dry_run(major: u8) {
    let mut helm = Helm::new("install", major);
    let empty = releases_file(&helm.root, "none.json", &serde_json::json!([]));
    let kube = FakeKube::start(&helm.root, "empty", &empty, true);
    helm.use_cluster(&kube);
    let snapshot = helm.root.join("snapshot");
    helm.set("LOCKSTEP_TEST_SNAPSHOT", snapshot.clone());
    let out = helm.run(&plugin_cmd(
        "install",
        "prefect-server",
        PREFECT_SERVER,
        "prefect",
        &["--dry-run=client", "--disable-openapi-validation"],
    ));
    let text = ok(&out, "helm lockstep install --dry-run=client");
    let (hooks, manifest) = dry_run_sections(&text);
    let hook_jobs: Vec<String> = lockstep_jobs(&hooks).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        hook_jobs,
        [
            "prefect-server-lockstep-gate",
            "prefect-server-migrate-database"
        ],
        "HOOKS:\n{hooks}"
    );
    let resources = docs(&manifest);
    assert!(
        resources.iter().all(|d| hook(d).is_none()),
        "MANIFEST: holds no hook:\n{manifest}"
    );
    assert!(
        common::find(&resources, "Deployment", "prefect-server").is_some(),
        "{manifest}"
    );
    assert!(
        common::find(&resources, "ConfigMap", "prefect-server-lockstep").is_none(),
        "the record is not part of the release: {manifest}"
    );
    assert!(
        common::find(&docs(&hooks), "ConfigMap", "prefect-server-lockstep").is_some(),
        "the record is a hook: {hooks}"
    );

    let install = helm.call("install ");
    let argv: Vec<&str> = install.split(' ').collect();
    assert_eq!(argv[1], "prefect-server");
    assert!(
        argv[2].starts_with(helm.root.join("tmp").to_str().unwrap()),
        "the temporary chart is in TMPDIR: {install}"
    );
    assert_eq!(
        argv[3..],
        [
            "--namespace=prefect",
            "--dry-run=client",
            "--disable-openapi-validation",
            // No --timeout given: the migration Job's 900 s deadline plus 120 s.
            "--timeout=1020s"
        ]
    );
    assert!(
        helm.tmp_entries().is_empty(),
        "the temporary chart is removed: {:?}",
        helm.tmp_entries()
    );
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());

    // The temporary chart helm installed: the original's metadata and the final stream.
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(snapshot.join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(
        (chart_yaml["name"].as_str(), chart_yaml["version"].as_str()),
        (Some("prefect-server"), Some("2026.8.18172642"))
    );
    assert_eq!(chart_yaml["appVersion"].as_str(), Some("3.8.3"));
    assert!(chart_yaml.get("dependencies").is_none(), "{chart_yaml:?}");
    assert_eq!(
        std::fs::read_to_string(snapshot.join("templates/lockstep.yaml")).unwrap(),
        "{{ .Files.Get \"lockstep/manifests.yaml\" }}\n"
    );
    let stream = std::fs::read_to_string(snapshot.join("lockstep/manifests.yaml")).unwrap();
    let template = ok(
        &helm.run(&plugin_cmd(
            "template",
            "prefect-server",
            PREFECT_SERVER,
            "prefect",
            &[],
        )),
        "template",
    );
    assert_eq!(
        stream, template,
        "the temporary chart carries exactly what `helm lockstep template` prints"
    );

    // Both helms see the hooks as hooks, and the objects are lockstep's, document for document.
    for h in ["helm3", "helm4"] {
        let snap = snapshot.to_str().unwrap();
        let rendered = ok(
            &helm_tool(
                &helm,
                h,
                &["template", "prefect-server", snap, "-n", "prefect"],
            ),
            "helm template SNAPSHOT",
        );
        assert_eq!(
            multiset(&rendered),
            multiset(&stream),
            "{h} template of the temporary chart"
        );
        let no_hooks = ok(
            &helm_tool(
                &helm,
                h,
                &[
                    "template",
                    "prefect-server",
                    snap,
                    "-n",
                    "prefect",
                    "--no-hooks",
                ],
            ),
            "--no-hooks",
        );
        let mut expected: Vec<String> = docs(&stream)
            .iter()
            .filter(|d| hook(d).is_none())
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect();
        expected.sort();
        assert_eq!(
            multiset(&no_hooks),
            expected,
            "{h} --no-hooks drops exactly the hooks"
        );
        assert!(lockstep_jobs(&no_hooks).is_empty());
    }
}

/// A real helm (not the wrapper) in the test's directories.
fn helm_tool(helm: &Helm, name: &str, args: &[&str]) -> Output {
    Command::new(tool(name))
        .args(args)
        .env_clear()
        .envs(helm.env.iter().map(|(k, v)| (k, v)))
        .env("KUBECONFIG", helm.root.join("no-kubeconfig"))
        .current_dir(repo())
        .output()
        .unwrap()
}

both_helms!(first_install_dry_run: helm3_first_install_dry_run, helm4_first_install_dry_run);

fn upgrade_dry_run(major: u8) {
    let (helm, kube) = with_prefect_releases("upgrade", major, true);
    let out = helm.run(&cloud_cmd(
        "upgrade",
        &[
            "--dry-run=client",
            "--disable-openapi-validation",
            "--timeout",
            "10m",
            "--wait",
            "--atomic",
        ],
    ));
    let text = ok(&out, "helm lockstep upgrade --dry-run=client");
    assert!(
        text.contains("REVISION: 4"),
        "the upgrade follows the 3 revisions in the cluster:\n{text}"
    );
    let (hooks, manifest) = dry_run_sections(&text);
    let jobs = lockstep_jobs(&hooks);
    assert!(
        jobs.iter()
            .any(|(n, h)| n == "prefect-update-orion" && h == "pre-install,pre-upgrade"),
        "{jobs:?}"
    );
    assert!(lockstep_jobs(&manifest).is_empty(), "{manifest}");
    let upgrade = helm.call("upgrade ");
    let atomic = if major == 3 {
        "--atomic"
    } else {
        "--rollback-on-failure"
    };
    let tail = format!(
        "--namespace=prefect --values={PREFECT_CLOUD_VALUES} --dry-run=client --disable-openapi-validation --timeout=10m --wait {atomic}"
    );
    assert!(
        upgrade.ends_with(&tail),
        "{upgrade}\nwanted the tail {tail}"
    );
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
    assert!(helm.tmp_entries().is_empty(), "{:?}", helm.tmp_entries());
}

both_helms!(upgrade_dry_run: helm3_upgrade_dry_run, helm4_upgrade_dry_run);

/// appVersion profile (generic), CRDs back in crds/, and helm's exit code and message.
#[test]
fn helm4_crds_app_version_and_helm_exit_code() {
    let mut helm = Helm::new("crds", 4);
    let releases = releases_file(
        &helm.root,
        "widgets.json",
        &serde_json::json!([
            {"name": "widgets", "namespace": "apps", "revision": 1, "status": "deployed",
             "chart": {"name": "crd-app", "version": "0.3.0", "appVersion": "1.0.0"}}
        ]),
    );
    let kube = FakeKube::start(&helm.root, "widgets", &releases, false);
    helm.use_cluster(&kube);
    // The chart version is the same as deployed: the release (appVersion) is 1.0.0 → 1.1.0.
    let plan = ok(
        &helm.run(&plugin_cmd("plan", "widgets", CRD_APP, "apps", &[])),
        "plan",
    );
    assert!(
        plan.starts_with("Upgrade plan for generic from 1.0.0 to 1.1.0"),
        "{plan}"
    );

    let snapshot = helm.root.join("snapshot");
    helm.set("LOCKSTEP_TEST_SNAPSHOT", snapshot.clone());
    helm.set("LOCKSTEP_TEST_HELM_EXIT", "42");
    let out = helm.run(&plugin_cmd(
        "upgrade",
        "widgets",
        CRD_APP,
        "apps",
        &["--set", "image=registry.example/widgets/api:1.1.0"],
    ));
    assert_eq!(
        out.status.code(),
        Some(42),
        "helm's exit code passes through\n{}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("Error: simulated helm failure"), "{err}");
    assert!(
        !err.contains("lockstep: error"),
        "helm's failure is helm's message: {err}"
    );
    assert!(
        helm.tmp_entries().is_empty(),
        "removed after a failure too: {:?}",
        helm.tmp_entries()
    );

    let crds = std::fs::read_to_string(snapshot.join("crds/lockstep-crds.yaml")).unwrap();
    assert_eq!(
        docs(&crds).iter().map(kind_name).collect::<Vec<_>>(),
        [(
            "CustomResourceDefinition".into(),
            "widgets.example.com".into()
        )]
    );
    let stream = std::fs::read_to_string(snapshot.join("lockstep/manifests.yaml")).unwrap();
    assert!(
        !stream.contains("kind: CustomResourceDefinition"),
        "{stream}"
    );
    assert!(
        common::find(&docs(&stream), "Widget", "widgets-default").is_some(),
        "{stream}"
    );
    let snap = snapshot.to_str().unwrap();
    let shown = ok(
        &helm_tool(&helm, "helm4", &["show", "crds", snap]),
        "helm show crds",
    );
    assert!(shown.contains("name: widgets.example.com"), "{shown}");
    let full = ok(
        &helm_tool(
            &helm,
            "helm3",
            &["template", "widgets", snap, "-n", "apps", "--include-crds"],
        ),
        "helm3 template",
    );
    let template = ok(
        &helm.run(&plugin_cmd("template", "widgets", CRD_APP, "apps", &[])),
        "helm lockstep template",
    );
    assert_eq!(multiset(&full), multiset(&template));
}

// ---- the image-tag profile: the deployed release is the image in its manifest ---------------

fn prefect_server_manifest(helm: &Helm, tag: &str) -> String {
    ok(
        &helm_tool(
            helm,
            "helm4",
            &[
                "template",
                "prefect-server",
                PREFECT_SERVER,
                "-n",
                "prefect",
                "--set",
                &format!("global.prefect.image.prefectTag={tag}"),
            ],
        ),
        "helm template for a release record",
    )
}

#[test]
fn helm4_image_tag_release_is_read_from_the_manifest() {
    let mut helm = Helm::new("image-tag", 4);
    // Same chart version and appVersion as the chart rendered: only the image tells.
    let chart = serde_json::json!({"name": "prefect-server", "version": "2026.8.18172642", "appVersion": "3.8.3"});
    let record = |ns: &str, rev: u32, status: &str, tag: &str| {
        serde_json::json!({"name": "prefect-server", "namespace": ns, "revision": rev, "status": status,
                           "chart": chart, "manifest": prefect_server_manifest(&helm, tag)})
    };
    let releases = releases_file(
        &helm.root,
        "prefect-server.json",
        &serde_json::json!([
            record("ok", 1, "deployed", "3.7.8-python3.11"),
            record("ok", 2, "failed", "3.8.3-python3.11"),
            record("old", 1, "deployed", "3.6.1-python3.11"),
        ]),
    );
    let kube = FakeKube::start(&helm.root, "prefect-server", &releases, false);
    helm.use_cluster(&kube);

    let plan = ok(
        &helm.run(&plugin_cmd(
            "plan",
            "prefect-server",
            PREFECT_SERVER,
            "ok",
            &[],
        )),
        "plan",
    );
    assert!(
        plan.starts_with("Upgrade plan for prefect-server from 3.7.8 to 3.8.3"),
        "{plan}"
    );
    helm.assert_called("get manifest prefect-server --revision=1 --namespace=ok");
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect-server",
        PREFECT_SERVER,
        "ok",
        &[],
    ));
    ok_saying(
        &out,
        "template over 3.7.8",
        "API image tag 3.7.8-python3.11",
    );

    let out = helm.run(&plugin_cmd(
        "template",
        "prefect-server",
        PREFECT_SERVER,
        "old",
        &[],
    ));
    fails_saying(&out, 3, "from 3.6.1 to 3.8.3");
}

// ---- usage and errors -------------------------------------------------------------------------

#[test]
fn helm4_usage_and_error_paths() {
    let mut helm = Helm::new("errors", 4);
    let usage = |out: &Output, needle: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        assert!(out.stdout.is_empty());
        let err = stderr(out);
        assert!(err.contains(needle), "{err}");
        assert!(
            err.contains("--timeout DURATION") && err.contains("--set-string KEY=VALUE"),
            "lists what is supported: {err}"
        );
    };
    usage(
        &helm.run(&["lockstep", "install", "x", PREFECT_SERVER, "--force"]),
        "unknown or unsupported flag --force",
    );
    usage(
        &helm.run(&["lockstep", "upgrade", "x", PREFECT_SERVER, "--no-hooks"]),
        "migration Jobs",
    );
    usage(
        &helm.run(&[
            "lockstep",
            "template",
            "x",
            PREFECT_SERVER,
            "--password",
            "pw-x1",
        ]),
        "LOCKSTEP_REPO_PASSWORD",
    );
    usage(
        &helm.run(&[
            "lockstep",
            "upgrade",
            "x",
            PREFECT_SERVER,
            "--timeout",
            "soon",
        ]),
        "not a duration",
    );
    // Refused before lockstep asked helm anything (the install hook ran `helm version`).
    assert!(
        helm.calls()
            .iter()
            .all(|c| ["lockstep ", "plugin ", "version "]
                .iter()
                .any(|p| c.starts_with(p))),
        "{:?}",
        helm.calls()
    );

    // A repository chart is fetched with helm; a repository never added says how to add it.
    let out = helm.run(&["lockstep", "template", "x", "bitnami/postgresql"]);
    fails_saying(&out, 1, "helm repo add");

    // --version checks the local chart.
    let out = helm.run(&[
        "lockstep",
        "template",
        "x",
        PREFECT_CLOUD,
        "--version",
        "1.1.0",
        "--from",
        "0.8.2",
        "-f",
        PREFECT_CLOUD_VALUES,
    ]);
    fails_saying(&out, 1, "is prefect-cloud 1.2.0");

    // An unreachable cluster is an error, not a first install.
    std::fs::write(
        helm.root.join("dead-kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: t}}]\n",
    )
    .unwrap();
    helm.set("KUBECONFIG", helm.root.join("dead-kubeconfig"));
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect-server",
        PREFECT_SERVER,
        "prefect",
        &[],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("cluster unreachable") && !err.contains("first install"),
        "{err}"
    );
    // ... that says how to render without a cluster.
    assert!(
        err.contains("--from VERSION") && err.contains("offline"),
        "{err}"
    );
    // template with --from does not ask the cluster.
    helm.clear_calls();
    let text = ok(
        &helm.run(&cloud_cmd("template", &["--from", "0.8.2"])),
        "template --from",
    );
    assert!(lockstep_jobs(&text)
        .iter()
        .any(|(n, _)| n == "prefect-update-orion"));
    helm.assert_not_called(&["history"]);

    // A release that never reached the cluster is a first install; one uninstalled with
    // --keep-history is not guessed.
    let releases = releases_file(
        &helm.root,
        "odd.json",
        &serde_json::json!([
            {"name": "prefect", "namespace": "failed", "revision": 1, "status": "failed",
             "chart": {"name": "prefect-cloud", "version": "1.2.0", "appVersion": "x"}},
            {"name": "prefect", "namespace": "gone", "revision": 1, "status": "superseded",
             "chart": {"name": "prefect-cloud", "version": "0.7.0", "appVersion": "x"}},
            {"name": "prefect", "namespace": "gone", "revision": 2, "status": "uninstalled",
             "chart": {"name": "prefect-cloud", "version": "0.8.2", "appVersion": "x"}},
            {"name": "prefect", "namespace": "other", "revision": 1, "status": "deployed",
             "chart": {"name": "prefect-server", "version": "2026.8.18172642", "appVersion": "3.8.3"}},
            {"name": "prefect", "namespace": "deployed", "revision": 1, "status": "deployed",
             "chart": {"name": "prefect-cloud", "version": "0.8.2", "appVersion": "x"}}
        ]),
    );
    let kube = FakeKube::start(&helm.root, "odd", &releases, false);
    helm.use_cluster(&kube);
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect",
        PREFECT_CLOUD,
        "failed",
        &["-f", PREFECT_CLOUD_VALUES],
    ));
    ok_saying(&out, "never deployed", "was never deployed");
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect",
        PREFECT_CLOUD,
        "gone",
        &["-f", PREFECT_CLOUD_VALUES],
    ));
    fails_saying(&out, 1, "--from VERSION");
    let out = helm.run(&plugin_cmd(
        "template",
        "prefect",
        PREFECT_CLOUD,
        "other",
        &["-f", PREFECT_CLOUD_VALUES],
    ));
    fails_saying(&out, 1, "runs the chart \"prefect-server\"");
    // install and upgrade read the cluster even with --from, which must agree with it.
    helm.clear_calls();
    let out = helm.run(&plugin_cmd(
        "upgrade",
        "prefect",
        PREFECT_CLOUD,
        "deployed",
        &["-f", PREFECT_CLOUD_VALUES, "--from", "0.7.0"],
    ));
    fails_saying(&out, 1, "--from 0.7.0 disagrees with the cluster");
    helm.assert_not_called(&["upgrade "]);
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
}
