//! `lockstep argocd init|generate|parameters`, run the way argocd-cmp-server runs them
//! (Argo CD's config management plugin contract: argocd-cmp-server): in the app directory of
//! a fresh temporary copy of the repository (with or without `.git`), with a cleared
//! environment holding only what the sidecar and Argo CD provide, and no network (a dead
//! proxy). One behaviour per test; precedence and refusal rules as tables.
//!
//! Fixtures: examples/apps/{prefect-server,prefect-cloud} as they are, and tests/argocd/
//! (a probe chart that echoes what helm saw, and the offline check of the install
//! manifests; see its README).

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const SERVER: &str = "examples/apps/prefect-server";
const CLOUD: &str = "examples/apps/prefect-cloud";
const PROBE: &str = "tests/argocd/probe";

/// Both group/version and group/version/Kind entries, as Argo CD sends them.
const API_VERSIONS: &str = "v1,v1/ConfigMap,v1/Secret,v1/Service,apps/v1,apps/v1/Deployment,batch/v1,batch/v1/Job,\
autoscaling/v2,autoscaling/v2/HorizontalPodAutoscaler,networking.k8s.io/v1,networking.k8s.io/v1/Ingress,\
monitoring.coreos.com/v1,monitoring.coreos.com/v1/ServiceMonitor";
const KUBE_VERSION: &str = "1.33.1";

// ---------------------------------------------------------------------------------------
// Plumbing: the repository copy and the environment argocd-cmp-server gives a command.
// ---------------------------------------------------------------------------------------

/// A scratch area: `repo/` (the copy Argo CD sends), `bin/` (a `helm` symlink for PATH),
/// `home/` and the helm homes, `outside/` (files beside, not in, the repository).
struct Sandbox {
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Sandbox {
    /// A fresh copy of the files `git ls-files` lists (plus tests/argocd, which may be
    /// untracked while under review), with a `.git` directory when `git` is true.
    fn new(git: bool) -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("lockstep-argocd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sb = Sandbox { dir };
        let repo = sb.repo();
        std::fs::create_dir_all(&repo).unwrap();
        let ls = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(common::repo())
            .output()
            .expect("run git ls-files (the tests copy the repository the way Argo CD sends it)");
        assert!(
            ls.status.success(),
            "git ls-files failed: {}",
            String::from_utf8_lossy(&ls.stderr)
        );
        let mut copied = 0;
        for rel in ls.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let rel = std::str::from_utf8(rel).unwrap();
            if copy_entry(&common::repo().join(rel), &repo.join(rel)) {
                copied += 1;
            }
        }
        assert!(copied > 50, "copied only {copied} files of the repository");
        copy_tree(
            &common::repo().join("tests/argocd"),
            &repo.join("tests/argocd"),
        );
        if git {
            std::fs::create_dir_all(repo.join(".git/refs/heads")).unwrap();
            std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        }
        for d in [
            "bin",
            "home",
            "helm/cache",
            "helm/config",
            "helm/data",
            "outside",
        ] {
            std::fs::create_dir_all(sb.dir.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(tool("helm4"), sb.dir.join("bin/helm")).unwrap();
        sb
    }

    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.repo().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    /// A command of the plugin, for the app at `app` (relative to the repository root).
    fn argocd(&self, sub: &str, app: &str) -> Argo {
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("PATH", self.dir.join("bin").to_str().unwrap());
        set("HOME", self.dir.join("home").to_str().unwrap());
        set("HELM_BIN", tool("helm4").to_str().unwrap());
        set(
            "HELM_CACHE_HOME",
            self.dir.join("helm/cache").to_str().unwrap(),
        );
        set(
            "HELM_CONFIG_HOME",
            self.dir.join("helm/config").to_str().unwrap(),
        );
        set(
            "HELM_DATA_HOME",
            self.dir.join("helm/data").to_str().unwrap(),
        );
        // Offline: anything that tries the network fails fast.
        for p in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            set(p, "http://127.0.0.1:9");
        }
        let name = Path::new(app)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        set("ARGOCD_APP_NAME", &name);
        set("ARGOCD_APP_NAMESPACE", "argo-dest");
        set("ARGOCD_APP_PROJECT_NAME", "default");
        set(
            "ARGOCD_APP_REVISION",
            "0123456789abcdef0123456789abcdef01234567",
        );
        set("ARGOCD_APP_REVISION_SHORT", "0123456");
        set("ARGOCD_APP_REVISION_SHORT_8", "01234567");
        set("ARGOCD_APP_SOURCE_PATH", app);
        set(
            "ARGOCD_APP_SOURCE_REPO_URL",
            "https://git.example.com/platform/deploy.git",
        );
        set("ARGOCD_APP_SOURCE_TARGET_REVISION", "main");
        set("KUBE_VERSION", KUBE_VERSION);
        set("KUBE_API_VERSIONS", API_VERSIONS);
        set("ARGOCD_ENV_ENVIRONMENT", "production");
        set("ARGOCD_APP_PARAMETERS", "null");
        let mut a = Argo {
            sub: sub.to_owned(),
            cwd: self.path(app),
            env,
        };
        if sub == "parameters" {
            a = a.dynamic_env();
        }
        a
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The sandbox (with `.git`) every test that only runs commands shares: one copy of the
/// repository per test process instead of one per test. A test that writes to its sandbox
/// (a file, a symlink, a removed helm) makes its own with [`Sandbox::new`].
fn shared() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        remove_stale_sandboxes();
        Sandbox::new(true)
    })
}

/// The same without `.git` (the operator excluded it).
fn shared_no_git() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        remove_stale_sandboxes();
        Sandbox::new(false)
    })
}

/// A shared sandbox is never dropped (statics are not): the next run removes the sandboxes of
/// test processes that are gone.
fn remove_stale_sandboxes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("lockstep-argocd-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copies one file or symlink; false when it is gone from the working tree.
fn copy_entry(src: &Path, dst: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return false;
    };
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src).unwrap(), dst).unwrap();
    } else if meta.is_file() {
        std::fs::copy(src, dst).unwrap();
    } else {
        return false;
    }
    true
}

fn copy_tree(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let e = e.unwrap();
        let (s, d) = (e.path(), dst.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&s, &d);
        } else {
            copy_entry(&s, &d);
        }
    }
}

/// Every file below `dir` (symlinks as their target), `.git` excluded.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                if e.file_name() != ".git" {
                    walk(root, &p, out);
                }
            } else if ft.is_symlink() {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// One plugin command: exec in the app directory with exactly `env`.
struct Argo {
    sub: String,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
}

impl Argo {
    fn env(mut self, k: &str, v: &str) -> Argo {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }

    fn without(mut self, k: &str) -> Argo {
        self.env.remove(k);
        self
    }

    /// `ARGOCD_APP_PARAMETERS` plus the `PARAM_*` variables Argo CD derives from it.
    fn params(mut self, params: Json) -> Argo {
        self.env.retain(|k, _| !k.starts_with("PARAM_"));
        fn var(s: &str) -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        }
        for p in params.as_array().into_iter().flatten() {
            let name = format!("PARAM_{}", var(p["name"].as_str().unwrap()));
            if let Some(s) = p["string"].as_str() {
                self.env.insert(name.clone(), s.to_owned());
            }
            for (i, s) in p["array"].as_array().into_iter().flatten().enumerate() {
                self.env
                    .insert(format!("{name}_{i}"), s.as_str().unwrap().to_owned());
            }
            for (k, s) in p["map"].as_object().into_iter().flatten() {
                self.env
                    .insert(format!("{name}_{}", var(k)), s.as_str().unwrap().to_owned());
            }
        }
        self.env
            .insert("ARGOCD_APP_PARAMETERS".into(), params.to_string());
        self
    }

    /// The dynamic parameters command gets no namespace, revision or KUBE_*.
    fn dynamic_env(mut self) -> Argo {
        self.env.retain(|k, _| {
            !matches!(
                k.as_str(),
                "ARGOCD_APP_NAMESPACE"
                    | "ARGOCD_APP_PROJECT_NAME"
                    | "ARGOCD_APP_REVISION"
                    | "ARGOCD_APP_REVISION_SHORT"
                    | "ARGOCD_APP_REVISION_SHORT_8"
                    | "KUBE_VERSION"
                    | "KUBE_API_VERSIONS"
            )
        });
        self
    }

    /// The command as a [`Test`]: exactly this environment, in the app directory.
    fn test(&self) -> Test {
        let mut t = Test::new()
            .env_clear()
            .current_dir(&self.cwd)
            .args(["argocd", &self.sub]);
        for (k, v) in &self.env {
            t = t.env(k, v);
        }
        t
    }

    /// Success with manifests on stdout and nothing at all on stderr (recent cmp-server
    /// versions append stderr to stdout); generate never succeeds empty (Argo CD would
    /// prune the whole app).
    fn ok(&self) -> String {
        let out = self.test().stderr("").run();
        if self.sub == "generate" {
            assert!(
                !out.stdout.trim().is_empty(),
                "generate exited 0 with empty output\n{}",
                out.command
            );
        }
        out.stdout
    }

    /// A refusal with exit `code` (nothing on stdout, the error on stderr); add checks.
    fn refused(&self, code: i32) -> Test {
        self.test().status(code)
    }
}
/// The stream without the leading `# lockstep:` note lines.
fn strip_notes(s: &str) -> &str {
    let mut rest = s;
    while rest.starts_with("# lockstep:") {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

fn notes(s: &str) -> Vec<&str> {
    s.lines()
        .take_while(|l| l.starts_with("# lockstep:"))
        .collect()
}

fn data<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str, key: &str) -> &'a str {
    let d = find(docs, kind, name).unwrap_or_else(|| panic!("no {kind}/{name} in the render"));
    d["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{kind}/{name} has no data.{key}"))
}

fn containers(d: &serde_yaml::Value) -> &Vec<serde_yaml::Value> {
    d["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("a pod template with containers")
}

fn image_of(docs: &[serde_yaml::Value], kind: &str, name: &str, container: &str) -> String {
    let d = find(docs, kind, name).unwrap_or_else(|| panic!("no {kind}/{name}"));
    let c = containers(d)
        .iter()
        .find(|c| c["name"].as_str() == Some(container))
        .expect("the API container");
    c["image"].as_str().unwrap().to_owned()
}

/// The Argo CD hook phase of the migration Jobs (all of them must agree).
fn migration_hook(docs: &[serde_yaml::Value]) -> String {
    let hooks: Vec<&str> = docs
        .iter()
        .filter(|d| {
            d["kind"] == "Job"
                && d["metadata"]["labels"]["app.kubernetes.io/component"] == "database-migration"
        })
        .map(|d| {
            d["metadata"]["annotations"]["argocd.argoproj.io/hook"]
                .as_str()
                .expect("a hook annotation")
        })
        .collect();
    assert!(!hooks.is_empty(), "no migration Job in the render");
    assert!(
        hooks.iter().all(|h| *h == hooks[0]),
        "migration Jobs disagree on the hook: {hooks:?}"
    );
    hooks[0].to_owned()
}

/// The example Application of an app: its parameters and env, as Argo CD would send them.
struct Example {
    name: String,
    namespace: String,
    params: Json,
    env: Vec<(String, String)>,
}

fn example(app: &str) -> Example {
    let short = app.rsplit('/').next().unwrap();
    let path = common::repo().join(format!("examples/argocd/application-{short}.yaml"));
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let src = &y["spec"]["source"];
    assert_eq!(
        src["path"].as_str(),
        Some(app),
        "{} points at another app",
        path.display()
    );
    assert_eq!(src["plugin"]["name"].as_str(), Some("lockstep-v1"));
    let params: Json = serde_json::to_value(&src["plugin"]["parameters"]).unwrap();
    assert!(
        params.as_array().is_some_and(|a| a.len() >= 3),
        "{}: no parameters",
        path.display()
    );
    let env = src["plugin"]["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                format!("ARGOCD_ENV_{}", e["name"].as_str().unwrap()),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Example {
        name: y["metadata"]["name"].as_str().unwrap().to_owned(),
        namespace: y["spec"]["destination"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned(),
        params,
        env,
    }
}

fn kube_flags() -> Vec<String> {
    let mut a = vec![format!("--kube-version={KUBE_VERSION}")];
    a.extend(
        API_VERSIONS
            .split(',')
            .map(|v| format!("--api-versions={v}")),
    );
    a
}

/// `lockstep render ARGS` in `dir` (the CLI reads lockstep.yaml and lockstep.lock there).
fn cli_render(dir: &Path, args: &[String]) -> String {
    Test::new()
        .current_dir(dir)
        .arg("render")
        .args(args)
        .run()
        .stdout
}

// ---------------------------------------------------------------------------------------
// generate: the examples
// ---------------------------------------------------------------------------------------

/// An example app's generate outputs and the `lockstep render` each must equal.
struct ExampleRun {
    release: String,
    /// With .git, HELM_BIN set, the example Application's parameters and env.
    with_params: String,
    /// The CLI equivalent: lockstep.yaml supplies the values files (the Application repeats
    /// them), the parameters become `flags`.
    cli_with_params: String,
    flags: Vec<String>,
    /// Without .git (excluded by the operator), helm from PATH, no parameters (`null`).
    no_params: String,
    cli_no_params: String,
}

/// The example parameters as `lockstep render` flags.
fn example_flags(app: &str, ex: &Example, cfg: &serde_yaml::Value) -> Vec<String> {
    let mut flags = kube_flags();
    for p in ex.params.as_array().unwrap() {
        let s = || p["string"].as_str().unwrap();
        match p["name"].as_str().unwrap() {
            "values-files" => assert_eq!(
                serde_json::to_value(&cfg["values"]).unwrap(),
                p["array"],
                "{app}: the equivalence assumes the Application's values-files are lockstep.yaml's"
            ),
            "helm-parameters" => {
                for (k, v) in p["map"].as_object().unwrap() {
                    flags.push(format!("--set={k}={}", v.as_str().unwrap()));
                }
            }
            "release" => flags.push(format!("--release={}", s())),
            "phase" => flags.push(format!("--phase={}", s())),
            other => panic!("{app}: the example sets parameter {other}: extend this test"),
        }
    }
    flags
}

fn run_example(app: &str) -> ExampleRun {
    let ex = example(app);
    let cfg_text = std::fs::read_to_string(common::repo().join(app).join("lockstep.yaml")).unwrap();
    let cfg: serde_yaml::Value = serde_yaml::from_str(&cfg_text).unwrap();
    let sb = Sandbox::new(true);
    let mut cmd = sb
        .argocd("generate", app)
        .env("ARGOCD_APP_NAME", &ex.name)
        .env("ARGOCD_APP_NAMESPACE", &ex.namespace)
        .params(ex.params.clone());
    for (k, v) in &ex.env {
        cmd = cmd.env(k, v);
    }
    let flags = example_flags(app, &ex, &cfg);
    let sb2 = Sandbox::new(false);
    let no_params = sb2
        .argocd("generate", app)
        .without("HELM_BIN")
        .env("ARGOCD_APP_NAMESPACE", &ex.namespace)
        .ok();
    // The CLI knows the repository only by its .git (it has no ARGOCD_APP_SOURCE_PATH).
    std::fs::create_dir(sb2.path(".git")).unwrap();
    ExampleRun {
        release: cfg["release"].as_str().unwrap().to_owned(),
        with_params: cmd.ok(),
        cli_with_params: cli_render(&sb.path(app), &flags),
        flags,
        no_params,
        cli_no_params: cli_render(&sb2.path(app), &kube_flags()),
    }
}

fn server_run() -> &'static ExampleRun {
    static RUN: OnceLock<ExampleRun> = OnceLock::new();
    RUN.get_or_init(|| run_example(SERVER))
}

fn cloud_run() -> &'static ExampleRun {
    static RUN: OnceLock<ExampleRun> = OnceLock::new();
    RUN.get_or_init(|| run_example(CLOUD))
}

/// For each example app: generate equals `lockstep render`, byte for byte, with the example
/// Application's parameters and with none; both streams carry the migration Jobs with the
/// API image, the gate, and the record.
macro_rules! example_tests {
    ($($app:ident: $run:ident, $api:literal, $container:literal, $image:literal, $jobs:expr;)*) => {$(
        mod $app {
            use super::*;

            #[test]
            fn generate_with_the_example_parameters_equals_the_cli_render() {
                let r = $run();
                assert_ne!(notes(&r.with_params), Vec::<&str>::new(), "lockstep's notes lead");
                assert_eq!(
                    strip_notes(&r.with_params),
                    r.cli_with_params,
                    "generate differs from `lockstep render {}`",
                    r.flags.join(" ")
                );
            }

            #[test]
            fn generate_without_parameters_equals_the_cli_render() {
                let r = $run();
                assert_eq!(strip_notes(&r.no_params), r.cli_no_params);
            }

            #[test]
            fn the_api_runs_the_pinned_image() {
                let r = $run();
                for text in [&r.with_params, &r.no_params] {
                    assert_eq!(image_of(&docs(text), "Deployment", $api, $container), $image);
                }
            }

            #[test]
            fn every_migration_job_runs_the_api_image() {
                let r = $run();
                for text in [&r.with_params, &r.no_params] {
                    assert_eq!(job_images(&docs(text), &r.release, &$jobs), $jobs.map(|_| $image));
                }
            }

            #[test]
            fn the_gate_job_is_rendered() {
                let r = $run();
                for text in [&r.with_params, &r.no_params] {
                    let gate = format!("{}-lockstep-gate", r.release);
                    assert!(find(&docs(text), "Job", &gate).is_some(), "no Job {gate}");
                }
            }

            #[test]
            fn the_record_holds_the_api_image() {
                let r = $run();
                for text in [&r.with_params, &r.no_params] {
                    let rec = format!("{}-lockstep", r.release);
                    assert_eq!(data(&docs(text), "ConfigMap", &rec, "image"), $image);
                }
            }
        }
    )*};
}

/// The image of each container of the Jobs `<release>-<job>`, one per Job.
fn job_images<const N: usize>(
    d: &[serde_yaml::Value],
    release: &str,
    jobs: &[&str; N],
) -> [String; N] {
    jobs.map(|j| {
        let name = format!("{release}-{j}");
        let job = find(d, "Job", &name).unwrap_or_else(|| panic!("no Job {name}"));
        let images: Vec<&str> = containers(job)
            .iter()
            .map(|c| c["image"].as_str().unwrap())
            .collect();
        assert_eq!(images.len(), 1, "{name}: {images:?}");
        images[0].to_owned()
    })
}

example_tests! {
    server_example: server_run, "prefect-server", "prefect-server",
        "prefecthq/prefect:3.8.3-python3.11", ["migrate-database"];
    cloud_example: cloud_run, "customer-managed-orion", "orion",
        "registry.acme-corp.internal/mirror/prefect/customer-managed/server:2026.0115.100000",
        ["migrate-nebula", "migrate-orion", "migrate-events", "update-orion"];
}

/// Every distinct stream of both examples passes strict schema validation (one validator
/// run: it is the slow part).
#[test]
fn the_example_streams_validate() {
    let dir = scratch("argocd-generate");
    let mut streams: Vec<(String, &str)> = Vec::new();
    for (app, r) in [("server", server_run()), ("cloud", cloud_run())] {
        for (label, text) in [("params", &r.with_params), ("null", &r.no_params)] {
            if !streams
                .iter()
                .any(|(_, s)| strip_notes(s) == strip_notes(text))
            {
                streams.push((format!("{app}-{label}.yaml"), text));
            }
        }
    }
    let files: Vec<PathBuf> = streams
        .iter()
        .map(|(name, text)| {
            let f = dir.join(name);
            std::fs::write(&f, text).unwrap();
            f
        })
        .collect();
    validate(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// generate: what reaches helm
// ---------------------------------------------------------------------------------------

const PROBE_CM: &str = "probe-probe";

/// The probe rendered through a helm that records its argv and Go's collector settings,
/// then runs the real one; the stream and the `helm template` call's lines (each argument,
/// then `env GOGC=.. GOMEMLIMIT=..`).
fn logged_probe(env: &[(&str, &str)]) -> (Vec<serde_yaml::Value>, Vec<String>) {
    let sb = Sandbox::new(true);
    let log = sb.dir.join("helm-argv.log");
    let wrapper = sb.dir.join("bin/helm-logging");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{0}'; done\nprintf 'env GOGC=%s GOMEMLIMIT=%s\\n' \"${{GOGC-unset}}\" \"${{GOMEMLIMIT-unset}}\" >> '{0}'\necho '==end==' >> '{0}'\nexec '{1}' \"$@\"\n",
        log.display(),
        tool("helm4").display()
    );
    write_script(&wrapper, &script);
    let mut cmd = sb
        .argocd("generate", PROBE)
        .env("HELM_BIN", wrapper.to_str().unwrap());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let d = docs(&cmd.ok());
    let calls = std::fs::read_to_string(&log).unwrap();
    let template = calls
        .split("==end==\n")
        .find(|call| call.starts_with("template\n"))
        .expect("a helm template call");
    (d, template.lines().map(str::to_owned).collect())
}

const PROBE_APIS: &str =
    "apps/v1,monitoring.coreos.com/v1,monitoring.coreos.com/v1/ServiceMonitor,v1";

/// The probe with KUBE_VERSION 1.31.2 and [`PROBE_APIS`].
fn probe_with_capabilities() -> &'static (Vec<serde_yaml::Value>, Vec<String>) {
    static RUN: OnceLock<(Vec<serde_yaml::Value>, Vec<String>)> = OnceLock::new();
    RUN.get_or_init(|| {
        logged_probe(&[
            ("KUBE_VERSION", "1.31.2"),
            ("KUBE_API_VERSIONS", PROBE_APIS),
        ])
    })
}

/// Each KUBE_API_VERSIONS entry reaches helm as its own --api-versions, in order.
#[test]
fn each_api_version_reaches_helm_as_its_own_flag() {
    let (_, argv) = probe_with_capabilities();
    let given: Vec<&str> = argv
        .iter()
        .filter_map(|a| a.strip_prefix("--api-versions="))
        .collect();
    assert_eq!(
        given,
        PROBE_APIS.split(',').collect::<Vec<_>>(),
        "argv: {argv:?}"
    );
}

/// The chart sees a group/version and a group/version/Kind entry, and not a group it was
/// not given.
#[test]
fn the_chart_sees_the_api_versions() {
    let (d, _) = probe_with_capabilities();
    let seen = ["monitoringV1", "serviceMonitor", "unknownGroup"]
        .map(|k| data(d, "ConfigMap", PROBE_CM, k));
    assert_eq!(seen, ["true", "true", "false"]);
}

#[test]
fn kube_version_reaches_helm() {
    let (d, argv) = probe_with_capabilities();
    assert!(
        argv.contains(&"--kube-version=1.31.2".to_owned()),
        "argv: {argv:?}"
    );
    assert_eq!(data(d, "ConfigMap", PROBE_CM, "kubeVersion"), "v1.31.2");
}

#[test]
fn the_application_namespace_is_the_release_namespace() {
    let (d, _) = probe_with_capabilities();
    assert_eq!(data(d, "ConfigMap", PROBE_CM, "namespace"), "argo-dest");
}

/// The render runs with Go's collector held back (src/helm.rs go_gc_env)...
#[test]
fn helm_runs_with_the_go_collector_held_back() {
    let (_, argv) = probe_with_capabilities();
    assert_eq!(
        argv.last().map(String::as_str),
        Some("env GOGC=off GOMEMLIMIT=128MiB")
    );
}

/// ...unless the sidecar sets either variable: then helm gets it untouched.
#[test]
fn a_go_collector_setting_of_the_sidecar_reaches_helm_untouched() {
    let (_, argv) = logged_probe(&[("GOGC", "200")]);
    assert_eq!(
        argv.last().map(String::as_str),
        Some("env GOGC=200 GOMEMLIMIT=unset")
    );
}

/// Argo CD may send both empty (cluster info not known yet).
#[test]
fn empty_cluster_capabilities_are_tolerated() {
    let (d, _) = logged_probe(&[("KUBE_VERSION", ""), ("KUBE_API_VERSIONS", "")]);
    assert_eq!(data(&d, "ConfigMap", PROBE_CM, "monitoringV1"), "false");
    assert_ne!(data(&d, "ConfigMap", PROBE_CM, "kubeVersion"), "v1.31.2");
}

/// helm comes from PATH when HELM_BIN is unset.
#[test]
fn generate_finds_helm_on_path() {
    let sb = shared();
    let text = sb.argocd("generate", PROBE).without("HELM_BIN").ok();
    assert!(find(&docs(&text), "ConfigMap", "probe-lockstep").is_some());
}

/// No helm at all is an error, not an empty success.
#[test]
fn generate_without_helm_fails() {
    let sb = Sandbox::new(true);
    std::fs::remove_file(sb.dir.join("bin/helm")).unwrap();
    sb.argocd("generate", PROBE)
        .without("HELM_BIN")
        .refused(1)
        .stderr_contains("helm was not found")
        .run();
}

/// A render that yields no object fails: exit 0 with nothing would prune the whole app.
#[test]
fn generate_never_succeeds_empty() {
    let sb = shared();
    sb.argocd("generate", PROBE)
        .params(json!([{"name": "helm-parameters", "map": {"enabled": "false"}}]))
        .refused(1)
        .stderr("lockstep: error: the output of `helm template` is not a manifest stream lockstep can read: check that HELM_BIN is helm and that the chart renders Kubernetes objects: the manifest stream is empty: there is no Kubernetes object in it. Check that the chart renders something (`helm template`), and that the input is the rendered stream\n")
        .run();
}

// ---------------------------------------------------------------------------------------
// generate: refusals and precedence
// ---------------------------------------------------------------------------------------

fn from(v: &str) -> Json {
    json!([{"name": "from", "string": v}])
}

/// Sets the deployed release of `app`'s lockstep.lock to `deployed`: moved back to a release
/// the target cannot follow.
fn edit_lock(sb: &Sandbox, app: &str, deployed: &str) {
    let lock = format!("{app}/lockstep.lock");
    let text = sb.read(&lock);
    assert!(text.contains("version: "), "{lock}: {text}");
    let edited: String = text
        .lines()
        .map(|l| match l.trim_start().starts_with("version:") {
            true => format!("  version: {deployed}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    sb.write(&lock, &edited);
}

/// A skip is refused (exit 3) with the gate's path, from the `from` parameter, from
/// ARGOCD_ENV_LOCKSTEP_FROM, and from an edited lockstep.lock.
macro_rules! skip_cases {
    (in $make:expr; $($name:ident: |$sb:ident| $cmd:expr => $path:literal,)*) => {$(
        #[test]
        fn $name() {
            let $sb: &Sandbox = &$make;
            let cmd: Argo = $cmd;
            cmd.refused(3)
                .stderr_contains("refusing to upgrade")
                .stderr_contains(concat!("\n  path: ", $path, "\n"))
                .run();
        }
    )*};
}

skip_cases! { in shared();
    skip_from_the_parameter_is_refused_server:
        |sb| sb.argocd("generate", SERVER).params(from("3.5.0"))
        => "3.5.0 → 3.6.x → 3.7.x → 3.8.x",
    skip_from_the_parameter_is_refused_cloud:
        |sb| sb.argocd("generate", CLOUD).params(from("0.7.0"))
        => "0.7.0 → 0.8.x → 1.2.x",
    skip_from_the_env_is_refused_server:
        |sb| sb.argocd("generate", SERVER).env("ARGOCD_ENV_LOCKSTEP_FROM", "3.5.0")
        => "3.5.0 → 3.6.x → 3.7.x → 3.8.x",
    skip_from_the_env_is_refused_cloud:
        |sb| sb.argocd("generate", CLOUD).env("ARGOCD_ENV_LOCKSTEP_FROM", "0.7.0")
        => "0.7.0 → 0.8.x → 1.2.x",
}

skip_cases! { in Sandbox::new(true);
    skip_from_the_lock_file_is_refused_server:
        |sb| { edit_lock(sb, SERVER, "3.6.1"); sb.argocd("generate", SERVER) }
        => "3.6.1 → 3.7.x → 3.8.x",
    skip_from_the_lock_file_is_refused_cloud:
        |sb| { edit_lock(sb, CLOUD, "0.6.1"); sb.argocd("generate", CLOUD) }
        => "0.6.1 → 0.7.x → 0.8.x → 1.2.x",
}

/// The `from` parameter outranks lockstep.lock.
#[test]
fn the_from_parameter_outranks_the_lock_file() {
    let sb = Sandbox::new(true);
    edit_lock(&sb, SERVER, "3.6.1");
    let text = sb.argocd("generate", SERVER).params(from("3.8.0")).ok();
    let d = docs(&text);
    assert_eq!(
        data(&d, "ConfigMap", "prefect-server-lockstep", "release"),
        "3.8.3"
    );
}

/// A sandbox with files beside (not in) the repository and symlinks to them from the
/// prefect-server app directory: `hostname.yaml` to /etc/hostname, `linked/` to outside/.
fn sandbox_with_outside_files() -> Sandbox {
    let sb = Sandbox::new(true);
    let app = sb.path(SERVER);
    let outside = sb.dir.join("outside");
    std::fs::write(outside.join("values.yaml"), "server: {replicaCount: 7}\n").unwrap();
    std::fs::write(outside.join("profile.yaml"), "name: evil\n").unwrap();
    assert!(
        Path::new("/etc/hostname").exists(),
        "the symlink case needs /etc/hostname"
    );
    std::os::unix::fs::symlink("/etc/hostname", app.join("hostname.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside, app.join("linked")).unwrap();
    sb
}

/// The sandbox with outside files that the refusal cases share (they only run commands).
fn outside_sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(sandbox_with_outside_files)
}

fn values(v: &str) -> Json {
    json!([{"name": "values-files", "array": ["values-production.yaml", v]}])
}

fn profile(v: &str) -> Json {
    json!([{"name": "profile", "string": v}])
}

/// Paths from parameters, env or lockstep.yaml that leave the repository are refused before
/// anything is read (exit 1, naming the repository).
macro_rules! outside_cases {
    ($($name:ident: |$sb:ident| $cmd:expr => $error:literal,)*) => {$(
        #[test]
        fn $name() {
            let $sb = outside_sandbox();
            let cmd: Argo = $cmd;
            cmd.refused(1).stderr_contains($error).run();
        }
    )*};
}

outside_cases! {
    values_file_climbing_out_is_refused:
        |sb| sb.argocd("generate", SERVER).params(values("../../../../etc/passwd"))
        => "lockstep: error: values file \"../../../../etc/passwd\" leaves the repository ",
    values_file_absolute_is_refused:
        |sb| sb.argocd("generate", SERVER).params(values("/etc/passwd"))
        => "lockstep: error: values file \"/etc/passwd\" is an absolute path: paths must be relative to the app directory and stay inside the repository\n",
    values_file_symlinked_out_is_refused:
        |sb| sb.argocd("generate", SERVER).params(values("hostname.yaml"))
        => "lockstep: error: values file \"hostname.yaml\" resolves outside the repository (/etc/hostname): values files and charts must stay inside the repository\n",
    values_file_through_a_symlinked_directory_is_refused:
        |sb| sb.argocd("generate", SERVER).params(values("linked/values.yaml"))
        => "lockstep: error: values file \"linked/values.yaml\" resolves outside the repository (",
    profile_climbing_out_is_refused:
        |sb| sb.argocd("generate", SERVER).params(profile("../../../../outside/profile.yaml"))
        => "lockstep: error: profile file \"../../../../outside/profile.yaml\" leaves the repository ",
    profile_absolute_is_refused: |sb| {
        let p = sb.dir.join("outside/profile.yaml");
        sb.argocd("generate", SERVER).params(profile(p.to_str().unwrap()))
    }
        => "/outside/profile.yaml\" is an absolute path: paths must be relative to the app directory and stay inside the repository\n",
    profile_through_a_symlinked_directory_is_refused:
        |sb| sb.argocd("generate", SERVER).params(profile("linked/profile.yaml"))
        => "lockstep: error: profile file \"linked/profile.yaml\" resolves outside the repository (",
    values_files_from_the_env_outside_are_refused:
        |sb| sb.argocd("generate", SERVER).env("ARGOCD_ENV_LOCKSTEP_VALUES_FILES", "/etc/passwd")
        => "lockstep: error: values file \"/etc/passwd\" is an absolute path: paths must be relative to the app directory and stay inside the repository\n",
    profile_from_the_env_outside_is_refused:
        |sb| sb.argocd("generate", SERVER).env("ARGOCD_ENV_LOCKSTEP_PROFILE", "../../../../outside/profile.yaml")
        => "lockstep: error: profile file \"../../../../outside/profile.yaml\" leaves the repository ",
    init_with_a_values_file_outside_is_refused:
        |sb| sb.argocd("init", SERVER).params(values("../../../../etc/passwd"))
        => "lockstep: error: values file \"../../../../etc/passwd\" leaves the repository ",
}

/// lockstep.yaml's own chart path.
#[test]
fn a_chart_path_outside_in_lockstep_yaml_is_refused() {
    let sb = sandbox_with_outside_files();
    let cfg = format!("{SERVER}/lockstep.yaml");
    let text = sb.read(&cfg);
    let moved = text.replace(
        "chart: ../../charts/prefect-server",
        "chart: ../../../../outside",
    );
    assert_ne!(moved, text);
    sb.write(&cfg, &moved);
    sb.argocd("generate", SERVER)
        .refused(1)
        .stderr_contains("lockstep: error: chart \"../../../../outside\" leaves the repository ")
        .run();
}

/// Out of the app directory and back in, inside the repository: accepted and applied.
#[test]
fn a_values_file_out_of_the_app_but_in_the_repository_applies() {
    let sb = shared();
    let files = [
        "../../../examples/apps/prefect-server/values-production.yaml",
        "../../../tests/argocd/server-replicas.yaml",
    ];
    let text = sb
        .argocd("generate", SERVER)
        .params(json!([{"name": "values-files", "array": files}]))
        .ok();
    let d = docs(&text);
    let dep = find(&d, "Deployment", "prefect-server").unwrap();
    assert_eq!(
        dep["spec"]["replicas"].as_u64(),
        Some(3),
        "the second values file applies"
    );
}

fn helm_param(k: &str, v: &str) -> Json {
    json!([{"name": "helm-parameters", "map": {k: v}}])
}

/// The probe's `echo` and `other` with the helm parameter `echo` set to `value`.
fn echo_and_other(value: &str) -> [String; 2] {
    let sb = shared();
    let text = sb
        .argocd("generate", PROBE)
        .params(helm_param("echo", value))
        .ok();
    let d = docs(&text);
    ["echo", "other"].map(|k| data(&d, "ConfigMap", PROBE_CM, k).to_owned())
}

/// A helm parameter sets exactly one key: commas and `=` in a value stay in the value.
macro_rules! one_key_cases {
    ($($name:ident: $value:literal,)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(echo_and_other($value), [$value.to_owned(), "unset".to_owned()]);
        }
    )*};
}

one_key_cases! {
    a_comma_stays_in_the_value: "a,other=x",
    an_escaped_comma_stays_in_the_value: "b\\,other=y",
    an_escaped_backslash_and_comma_stay_in_the_value: "c\\\\,other=z",
    equals_signs_stay_in_the_value: "d=1,other=2,e",
}

/// helm's list syntax stays helm's (as with Argo CD's own helm parameters), still one key.
#[test]
fn a_helm_list_value_sets_one_key() {
    let [_, other] = echo_and_other("{x,other=w}");
    assert_eq!(other, "unset");
}

/// A key that is not a plain values path is refused, naming the key, never the value.
macro_rules! bad_key_cases {
    ($($name:ident: $key:literal,)*) => {$(
        #[test]
        fn $name() {
            let sb = shared();
            sb.argocd("generate", PROBE)
                .params(helm_param($key, "Pw-9fe1-not-here"))
                .refused(1)
                .stderr_contains("helm parameter")
                .stderr_lacks("Pw-9fe1-not-here")
                .run();
        }
    )*};
}

bad_key_cases! {
    a_key_with_a_comma_is_refused: "echo,other",
    a_key_with_a_space_is_refused: "echo other",
    a_key_with_an_equals_sign_is_refused: "echo=x",
    a_key_list_is_refused: "other,echo",
    a_key_with_an_empty_segment_is_refused: "echo..x",
    a_key_with_a_leading_dot_is_refused: ".echo",
    a_key_with_a_trailing_dot_is_refused: "echo.",
    an_empty_key_is_refused: "",
}

/// Parameters outrank lockstep.yaml's `set` for the same key.
#[test]
fn a_helm_parameter_outranks_lockstep_yaml_set() {
    let sb = shared();
    let tag = helm_param("global.prefect.image.prefectTag", "3.8.2-python3.11");
    let d = docs(&sb.argocd("generate", SERVER).params(tag).ok());
    let image = image_of(&d, "Deployment", "prefect-server", "prefect-server");
    let release = data(&d, "ConfigMap", "prefect-server-lockstep", "release");
    assert_eq!(
        (image.as_str(), release),
        ("prefecthq/prefect:3.8.2-python3.11", "3.8.2")
    );
}

// ---------------------------------------------------------------------------------------
// release, namespace and phase: parameters > env > lockstep.yaml > defaults
// ---------------------------------------------------------------------------------------

/// prefect-server generated as Application `app_name`, its lockstep.yaml naming no release.
fn server_as_application(app_name: &str) -> String {
    let sb = Sandbox::new(true);
    let cfg = format!("{SERVER}/lockstep.yaml");
    let text = sb.read(&cfg);
    assert!(text.contains("\nrelease: prefect-server\n"));
    sb.write(&cfg, &text.replace("\nrelease: prefect-server\n", "\n"));
    sb.argocd("generate", SERVER)
        .env("ARGOCD_APP_NAME", app_name)
        .ok()
}

/// `ns_name` apps (apps in any namespace): the release is the name without `ns_`, and the
/// namespace does not leak into the render.
#[test]
fn the_release_is_the_application_name_without_its_namespace() {
    let text = server_as_application("team-a_prefect-server");
    let d = docs(&text);
    assert!(
        find(&d, "ConfigMap", "prefect-server-lockstep").is_some(),
        "record ConfigMap"
    );
    assert!(find(&d, "Deployment", "prefect-server").is_some());
    assert!(
        !text.contains("team-a"),
        "the app's namespace leaked into the render"
    );
}

#[test]
fn another_application_name_is_another_release() {
    let d = docs(&server_as_application("team-a_billing"));
    assert!(find(&d, "ConfigMap", "billing-lockstep").is_some());
    let dep = find(&d, "Deployment", "prefect-server").expect("the chart pins its fullname");
    let instance = &dep["metadata"]["labels"]["app.kubernetes.io/instance"];
    assert_eq!(instance.as_str(), Some("billing"));
}

/// The release a generate of `cmd` records: `<release>-lockstep`.
fn recorded_release(cmd: Argo) -> String {
    let d = docs(&cmd.ok());
    let r = d
        .iter()
        .find(|x| {
            x["kind"] == "ConfigMap"
                && x["metadata"]["labels"]["app.kubernetes.io/component"] == "release-record"
        })
        .expect("the record ConfigMap");
    let name = r["metadata"]["name"].as_str().unwrap();
    name.strip_suffix("-lockstep")
        .expect("<release>-lockstep")
        .to_owned()
}

/// The probe's lockstep.yaml with `release: from-config` added.
fn probe_with_config_release(sb: &Sandbox) {
    let cfg = format!("{PROBE}/lockstep.yaml");
    sb.write(&cfg, &(sb.read(&cfg) + "release: from-config\n"));
}

/// One test per row: `$check` of what `$cmd` generates in the sandbox `$make`.
macro_rules! precedence {
    ($check:ident in $make:expr; $($name:ident: |$sb:ident| $cmd:expr => $want:expr,)*) => {$(
        #[test]
        fn $name() {
            let $sb: &Sandbox = &$make;
            let cmd: Argo = $cmd;
            assert_eq!($check(cmd), $want);
        }
    )*};
}

// The probe's lockstep.yaml sets no release; the chart's name is lockstep-probe.
precedence! { recorded_release in shared();
    release_defaults_to_the_chart_name:
        |sb| sb.argocd("generate", PROBE).without("ARGOCD_APP_NAME")
        => "lockstep-probe",
    release_is_the_application_name:
        |sb| sb.argocd("generate", PROBE).env("ARGOCD_APP_NAME", "plain")
        => "plain",
    release_drops_the_application_namespace:
        |sb| sb.argocd("generate", PROBE).env("ARGOCD_APP_NAME", "ops_app-name")
        => "app-name",
}

precedence! { recorded_release in Sandbox::new(true);
    release_of_lockstep_yaml_outranks_the_application_name: |sb| {
        probe_with_config_release(sb);
        sb.argocd("generate", PROBE).env("ARGOCD_APP_NAME", "ops_app-name")
    } => "from-config",
    release_of_the_env_outranks_lockstep_yaml: |sb| {
        probe_with_config_release(sb);
        sb.argocd("generate", PROBE).env("ARGOCD_ENV_LOCKSTEP_RELEASE", "from-env")
    } => "from-env",
    release_parameter_outranks_the_env: |sb| {
        probe_with_config_release(sb);
        sb.argocd("generate", PROBE)
            .env("ARGOCD_ENV_LOCKSTEP_RELEASE", "from-env")
            .params(json!([{"name": "release", "string": "from-param"}]))
    } => "from-param",
}

fn migration_hook_of(cmd: Argo) -> String {
    migration_hook(&docs(&cmd.ok()))
}

fn phase(p: &str) -> Json {
    json!([{"name": "phase", "string": p}])
}

// prefect-cloud's lockstep.yaml says sync; the probe's says nothing (default presync).
precedence! { migration_hook_of in shared();
    phase_defaults_to_presync:
        |sb| sb.argocd("generate", PROBE)
        => "PreSync",
    phase_of_lockstep_yaml_applies:
        |sb| sb.argocd("generate", CLOUD)
        => "Sync",
    phase_of_the_env_outranks_the_default:
        |sb| sb.argocd("generate", PROBE).env("ARGOCD_ENV_LOCKSTEP_PHASE", "sync")
        => "Sync",
    phase_of_the_env_outranks_lockstep_yaml:
        |sb| sb.argocd("generate", CLOUD).env("ARGOCD_ENV_LOCKSTEP_PHASE", "presync")
        => "PreSync",
    phase_parameter_sync_outranks_the_env:
        |sb| sb.argocd("generate", CLOUD).env("ARGOCD_ENV_LOCKSTEP_PHASE", "presync").params(phase("sync"))
        => "Sync",
    phase_parameter_presync_outranks_the_env:
        |sb| sb.argocd("generate", PROBE).env("ARGOCD_ENV_LOCKSTEP_PHASE", "sync").params(phase("presync"))
        => "PreSync",
}

#[test]
fn an_unknown_phase_is_refused() {
    let sb = shared();
    sb.argocd("generate", PROBE)
        .params(phase("later"))
        .refused(1)
        .stderr("lockstep: error: parameter phase: phase \"later\" is not `presync` or `sync`\n")
        .run();
}

/// A profile given as a file inside the repository works like the built-in name.
#[test]
fn a_profile_file_in_the_repository_works_like_its_name() {
    let sb = shared();
    let file = profile("../../../profiles/prefect-server.yaml");
    let text = sb.argocd("generate", SERVER).params(file).ok();
    let by_name = sb.argocd("generate", SERVER).ok();
    let d = docs(&text);
    assert_eq!(
        data(&d, "ConfigMap", "prefect-server-lockstep", "profile"),
        "prefect-server"
    );
    assert_eq!(strip_notes(&text), strip_notes(&by_name));
}

#[test]
fn an_unknown_profile_is_refused() {
    let sb = shared();
    sb.argocd("generate", SERVER)
        .params(profile("no-such-profile"))
        .refused(1)
        .stderr_contains("no-such-profile")
        .run();
}

// ---------------------------------------------------------------------------------------
// secrets: a Secret's value rendered by the chart never reaches stderr (shown in Argo CD's
// UI), nor the dynamic parameters' error announcement, whatever refuses the render.
// ---------------------------------------------------------------------------------------

/// prefect-cloud renders its database Secret from the URLs in cloud-secret-values.yaml.
const CLOUD_SECRET: &str = "Zq9-cloud-secret-7Wx";
/// prefect-server's bundled PostgreSQL: the subchart's Secret holds it base64-encoded.
const PG_SECRET: &str = "Pg-5ec2et-Qv81";
/// The probe: the Secret's URL holds it in plain text.
const PROBE_SECRET: &str = "Probe-sEcret-41x";

fn cloud_secret_files() -> Json {
    json!({"name": "values-files", "array": ["values-override.yaml", "../../../tests/argocd/cloud-secret-values.yaml"]})
}

fn hp(k: &str, v: &str) -> Json {
    json!({"name": "helm-parameters", "map": {k: v}})
}

fn pg_params() -> Json {
    json!({"name": "helm-parameters", "map": {"postgresql.enabled": "true", "postgresql.auth.password": PG_SECRET}})
}

/// Neither `secret` nor its base64 on stderr.
fn hides(t: Test, secret: &str) -> Test {
    t.stderr_lacks(secret)
        .stderr_lacks(base64(secret.as_bytes()))
}

/// `cmd` refused with `code`, hiding `secret`.
fn refused_without(cmd: Argo, code: i32, secret: &str) {
    hides(cmd.refused(code), secret).run();
}

/// Control: the render succeeds and carries the Secret.
#[test]
fn the_cloud_secret_values_render_the_database_secret() {
    let sb = shared();
    let text = sb
        .argocd("generate", CLOUD)
        .params(json!([cloud_secret_files()]))
        .ok();
    let d = docs(&text);
    let s = find(&d, "Secret", "customer-managed-database").expect("the chart's database Secret");
    let url = s["stringData"]["orion"].as_str().unwrap_or_default();
    assert!(url.contains(CLOUD_SECRET), "{s:?}");
}

/// `ingress.name` unset breaks a rule of 0.8.2 → 1.2.0 (lockstep.lock): lockstep refuses.
#[test]
fn a_values_rule_refusal_shows_no_secret() {
    let sb = shared();
    let cmd = sb
        .argocd("generate", CLOUD)
        .params(json!([cloud_secret_files(), hp("ingress.name", "null")]));
    hides(cmd.refused(3), CLOUD_SECRET)
        .stderr_contains("ingress.name")
        .run();
}

/// Values the chart itself refuses (its `fail`; lockstep may refuse them first).
#[test]
fn a_chart_failure_shows_no_secret() {
    let sb = shared();
    let bad = hp("global.authProvider.okta", "not-a-map");
    let cmd = sb
        .argocd("generate", CLOUD)
        .params(json!([cloud_secret_files(), bad]));
    hides(cmd.refused(1), CLOUD_SECRET)
        .stderr_contains("authProvider")
        .run();
}

#[test]
fn a_skip_shows_no_cloud_secret() {
    let sb = shared();
    let cmd = sb
        .argocd("generate", CLOUD)
        .params(json!([cloud_secret_files(), {"name": "from", "string": "0.7.0"}]));
    refused_without(cmd, 3, CLOUD_SECRET);
}

/// The dynamic parameters show the same refusal in the UI.
#[test]
fn the_parameters_error_shows_no_secret() {
    let sb = shared();
    let cmd = sb
        .argocd("parameters", CLOUD)
        .params(json!([cloud_secret_files(), {"name": "from", "string": "0.7.0"}]));
    let list = cmd.ok();
    assert!(list.contains("lockstep-error"), "{list}");
    assert!(!list.contains(CLOUD_SECRET), "{list}");
}

/// Control: the bundled PostgreSQL's Secret holds the password.
#[test]
fn the_postgresql_password_is_in_its_secret() {
    let sb = shared();
    let text = sb
        .argocd("generate", SERVER)
        .params(json!([pg_params()]))
        .ok();
    assert!(text.contains(&base64(PG_SECRET.as_bytes())));
}

#[test]
fn a_skip_shows_no_postgresql_password() {
    let sb = shared();
    let cmd = sb
        .argocd("generate", SERVER)
        .params(json!([pg_params(), {"name": "from", "string": "3.5.0"}]));
    refused_without(cmd, 3, PG_SECRET);
}

/// The probe's Secret holds the password in plain text; `$extra` refuses the render.
macro_rules! probe_secret_cases {
    ($($name:ident: $extra:expr => $code:literal,)*) => {$(
        #[test]
        fn $name() {
            let sb = shared();
            let cmd = sb.argocd("generate", PROBE).params(json!([hp("dbPassword", PROBE_SECRET), $extra]));
            refused_without(cmd, $code, PROBE_SECRET);
        }
    )*};
}

probe_secret_cases! {
    a_skip_shows_no_probe_secret: json!({"name": "from", "string": "3.5.0"}) => 3,
    a_downgrade_shows_no_probe_secret: json!({"name": "from", "string": "3.9.0"}) => 3,
    a_bad_phase_shows_no_probe_secret: json!({"name": "phase", "string": "never"}) => 1,
}

// ---------------------------------------------------------------------------------------
// parameters (dynamic)
// ---------------------------------------------------------------------------------------

fn static_names() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("deploy/argocd/plugin.yaml")).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let names: Vec<String> = y["spec"]["parameters"]["static"]
        .as_sequence()
        .expect("plugin.yaml has static parameters")
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.len() >= 6 && names.contains(&"values-files".to_owned()),
        "{names:?}"
    );
    names
}

/// Runs the parameters command (exit 0, stderr empty); parses and checks the announcement
/// list: a JSON array of objects in the shape Argo CD reads.
fn announcements(cmd: Argo) -> BTreeMap<String, Json> {
    let text = cmd.ok();
    let v: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {text}"));
    assert!(!list.is_empty());
    let statics = static_names();
    let mut out = BTreeMap::new();
    for a in list {
        let o = a
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {a}"));
        let name = o["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| panic!("no name: {a}"))
            .to_owned();
        assert!(o["title"].as_str().is_some_and(|t| !t.is_empty()), "{a}");
        assert!(o["tooltip"].as_str().is_some_and(|t| !t.is_empty()), "{a}");
        let ct = o["collectionType"]
            .as_str()
            .unwrap_or_else(|| panic!("no collectionType: {a}"));
        match ct {
            "string" => assert!(o.get("string").is_some_and(Json::is_string), "{a}"),
            "array" => assert!(
                o.get("array")
                    .is_some_and(|x| x.as_array().is_some_and(|x| x.iter().all(Json::is_string))),
                "{a}"
            ),
            "map" => assert!(
                o.get("map").is_some_and(|x| x
                    .as_object()
                    .is_some_and(|x| x.values().all(Json::is_string))),
                "{a}"
            ),
            other => panic!("collectionType {other:?}: {a}"),
        }
        for k in o.keys() {
            assert!(
                [
                    "name",
                    "title",
                    "tooltip",
                    "collectionType",
                    "string",
                    "array",
                    "map",
                    "required",
                    "itemType"
                ]
                .contains(&k.as_str()),
                "unknown key {k}: {a}"
            );
        }
        assert!(!statics.contains(&name), "{name} is a static parameter of plugin.yaml: announcing it again hides the user's value");
        assert!(
            out.insert(name.clone(), a.clone()).is_none(),
            "{name} announced twice"
        );
    }
    out
}

fn string_of<'a>(list: &'a BTreeMap<String, Json>, name: &str) -> &'a str {
    list.get(name)
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))["string"]
        .as_str()
        .unwrap()
}

/// What the dynamic parameters announce about the app: chart, API workload, plan.
fn announced(list: &BTreeMap<String, Json>) -> [&str; 3] {
    ["detected-chart", "detected-api-workload", "upgrade-plan"].map(|n| string_of(list, n))
}

/// The dynamic parameters command gets no namespace, revision or KUBE_*.
#[test]
fn parameters_run_without_the_namespace_and_cluster_settings() {
    let sb = shared_no_git();
    let cmd = sb.argocd("parameters", SERVER);
    let keys: Vec<&str> = cmd.env.keys().map(String::as_str).collect();
    for k in [
        "ARGOCD_APP_NAMESPACE",
        "ARGOCD_APP_REVISION",
        "KUBE_VERSION",
        "KUBE_API_VERSIONS",
    ] {
        assert!(!keys.contains(&k), "{k} in {keys:?}");
    }
}

#[test]
fn parameters_announce_the_server_chart_workload_and_plan() {
    let sb = shared_no_git();
    let l = announcements(sb.argocd("parameters", SERVER));
    assert_eq!(
        announced(&l),
        [
            "prefect-server 3.8.3 (release prefect-server, profile prefect-server)",
            "Deployment prefect/prefect-server container prefect-server image prefecthq/prefect:3.8.3-python3.11",
            "3.7.8 → 3.8.3: 0 breaking changes"
        ]
    );
}

#[test]
fn parameters_announce_the_cloud_chart_workload_and_plan() {
    let sb = shared_no_git();
    let ex = example(CLOUD);
    let cmd = sb
        .argocd("parameters", CLOUD)
        .env("ARGOCD_APP_NAME", &ex.name)
        .params(ex.params);
    let l = announcements(cmd);
    assert_eq!(
        announced(&l),
        [
            "prefect-cloud 1.2.0 (release customer-managed, profile prefect-customer-managed)",
            "Deployment customer-managed-orion container orion image registry.acme-corp.internal/mirror/prefect/customer-managed/server:2026.0115.100000",
            "0.8.2 → 1.2.0: 4 breaking changes, 1 one-time step"
        ]
    );
}

/// Parameters reach the dynamic command too.
#[test]
fn parameters_plan_from_the_from_parameter() {
    let sb = shared_no_git();
    let l = announcements(sb.argocd("parameters", SERVER).params(from("3.8.0")));
    assert_eq!(
        string_of(&l, "upgrade-plan"),
        "3.8.0 → 3.8.3: 0 breaking changes"
    );
}

/// A broken app still yields valid JSON (exit 0) with a `lockstep-error` announcement, and
/// nothing it could not detect.
macro_rules! broken_app_cases {
    (in $make:expr; $($name:ident: |$sb:ident| $cmd:expr => $error:literal,)*) => {$(
        #[test]
        fn $name() {
            let $sb: &Sandbox = &$make;
            let l = announcements($cmd);
            let e = string_of(&l, "lockstep-error");
            assert!(e.contains($error), "{e}");
            assert!(!l.contains_key("detected-chart"), "{l:?}");
        }
    )*};
}

broken_app_cases! { in shared();
    parameters_report_a_skip:
        |sb| sb.argocd("parameters", SERVER).params(from("3.5.0"))
        => "path: 3.5.0 → 3.6.x",
    parameters_report_a_path_outside:
        |sb| sb.argocd("parameters", SERVER).params(json!([{"name": "values-files", "array": ["/etc/passwd"]}]))
        => "values file \"/etc/passwd\" is an absolute path: paths must be relative to the app directory and stay inside the repository",
}

broken_app_cases! { in Sandbox::new(true);
    parameters_report_a_broken_lockstep_yaml: |sb| {
        let cfg = format!("{CLOUD}/lockstep.yaml");
        sb.write(&cfg, &(sb.read(&cfg) + "valuesFiles: [x.yaml]\n"));
        sb.argocd("parameters", CLOUD)
    } => "examples/apps/prefect-cloud/lockstep.yaml: unknown field `valuesFiles`, expected one of `chart`, `repo`, `chartVersion`, `version`, `release`, `namespace`, `profile`, `values`, `set`, `phase`, `apiWorkload`, `gateImage` at line 14 column 1",
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

/// Vendored charts/: nothing to do, nothing changes.
fn init_changes_nothing(app: &str) {
    let sb = Sandbox::new(true);
    let before = snapshot(&sb.repo());
    sb.argocd("init", app).test().run();
    assert!(
        before == snapshot(&sb.repo()),
        "init changed the repository copy"
    );
}

#[test]
fn init_changes_nothing_when_the_server_chart_is_vendored() {
    init_changes_nothing(SERVER);
}

#[test]
fn init_changes_nothing_when_the_cloud_chart_is_vendored() {
    init_changes_nothing(CLOUD);
}

const SERVER_CHARTS: &str = "examples/charts/prefect-server/charts";

/// A sandbox whose prefect-server chart has no charts/ (not vendored).
fn unvendored() -> Sandbox {
    let sb = Sandbox::new(true);
    std::fs::remove_dir_all(sb.path(SERVER_CHARTS)).unwrap();
    sb
}

#[test]
fn without_charts_generate_names_the_missing_dependency() {
    let sb = unvendored();
    sb.argocd("generate", SERVER)
        .refused(1)
        .stderr_contains("postgresql")
        .run();
}

/// No helm: init must fail, not pretend, and change nothing.
#[test]
fn init_without_helm_fails_and_changes_nothing() {
    let sb = unvendored();
    let before = snapshot(&sb.repo());
    let outside = sb.dir.join("outside");
    let cmd = sb
        .argocd("init", SERVER)
        .without("HELM_BIN")
        .env("PATH", outside.to_str().unwrap());
    cmd.refused(1).stderr_contains("helm").run();
    assert!(before == snapshot(&sb.repo()));
}

/// helm dependency build restores charts/ from file://, offline, and changes nothing else.
#[test]
fn init_restores_only_the_dependency() {
    let sb = unvendored();
    let before = snapshot(&sb.repo());
    sb.argocd("init", SERVER).without("HELM_BIN").test().run();
    let after = snapshot(&sb.repo());
    let changed: Vec<_> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let tgz = Path::new(SERVER_CHARTS).join("postgresql-0.1.0.tgz");
    assert_eq!((changed, removed), (vec![&tgz], vec![]));
}

/// And the render works again, with the dependency (its Secret) when enabled.
#[test]
fn after_init_the_dependency_renders() {
    let sb = unvendored();
    sb.argocd("init", SERVER).test().run();
    let params = json!([{"name": "helm-parameters", "map": {"postgresql.enabled": "true", "postgresql.auth.password": "x"}}]);
    let text = sb.argocd("generate", SERVER).params(params).ok();
    assert!(find(&docs(&text), "Secret", "prefect-server-postgresql").is_some());
}

// ---------------------------------------------------------------------------------------
// install manifests
// ---------------------------------------------------------------------------------------

/// tests/argocd/install/check.sh: kustomize build + schema + plugin.yaml shape checks.
#[test]
fn install_manifests_check() {
    tool("kubectl");
    let out = Command::new("bash")
        .arg(common::repo().join("tests/argocd/install/check.sh"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "check.sh failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    let (passed, failed) = last
        .strip_prefix("argocd-install: ")
        .and_then(|r| r.split_once(" passed, "))
        .unwrap_or_else(|| panic!("unexpected last line: {last}"));
    assert_eq!(failed, "0 failed", "{text}");
    assert!(passed.parse::<u32>().unwrap() >= 5, "{text}");
}
