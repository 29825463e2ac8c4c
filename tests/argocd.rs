//! `lockstep argocd init|generate|parameters`, run the way argocd-cmp-server runs them
//! (Argo CD's config management plugin contract: argocd-cmp-server): in the app directory of a fresh temporary copy
//! of the repository (with or without `.git`), with a cleared environment holding only what
//! the sidecar and Argo CD provide, and no network (a dead proxy).
//!
//! Fixtures: examples/apps/{prefect-server,prefect-cloud} as they are, and tests/data/argocd/
//! (a probe chart that echoes what helm saw; see its README).

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const SERVER: &str = "examples/apps/prefect-server";
const CLOUD: &str = "examples/apps/prefect-cloud";
const PROBE: &str = "tests/data/argocd/probe";

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
    /// A fresh copy of the files `git ls-files` lists (plus tests/data/argocd, which may be
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
            &common::repo().join("tests/data/argocd"),
            &repo.join("tests/data/argocd"),
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

    fn run(&self) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["argocd", &self.sub])
            .current_dir(&self.cwd)
            .env_clear()
            .envs(&self.env)
            .output()
            .expect("run lockstep");
        if self.sub == "generate" && out.status.success() {
            assert!(
                !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
                "generate exited 0 with empty output (Argo CD would prune the whole app)"
            );
        }
        out
    }

    /// Success with manifests on stdout and nothing at all on stderr (recent cmp-server
    /// versions append stderr to stdout).
    fn ok(&self) -> String {
        let out = self.run();
        let text = ok(&out);
        assert!(
            out.stderr.is_empty(),
            "stderr must stay empty on success, got:\n{}",
            stderr(&out)
        );
        text
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
    let out = lockstep()
        .arg("render")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    ok(&out)
}

// ---------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------

/// Both examples, with and without `.git`, with the example Application's parameters and
/// with none (`null`): the output is `lockstep render`'s, byte for byte, carries the
/// migration Jobs with the API image, and passes strict schema validation.
#[test]
fn generate_examples_equal_the_cli_render_and_validate() {
    let scratch = scratch("argocd-generate");
    let (mut files, mut streams) = (Vec::new(), Vec::new());
    for (app, api, container, image, jobs) in [
        (
            SERVER,
            "prefect-server",
            "prefect-server",
            "prefecthq/prefect:3.8.3-python3.11",
            &["migrate-database"][..],
        ),
        (
            CLOUD,
            "customer-managed-orion",
            "orion",
            "registry.acme-corp.internal/mirror/prefect/customer-managed/server:2026.0115.100000",
            &[
                "migrate-nebula",
                "migrate-orion",
                "migrate-events",
                "update-orion",
            ][..],
        ),
    ] {
        let ex = example(app);
        let cfg: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(common::repo().join(app).join("lockstep.yaml")).unwrap(),
        )
        .unwrap();
        let release = cfg["release"].as_str().unwrap().to_owned();

        // 1. With .git, HELM_BIN set, the example Application's parameters and env.
        let sb = Sandbox::new(true);
        let mut cmd = sb
            .argocd("generate", app)
            .env("ARGOCD_APP_NAME", &ex.name)
            .env("ARGOCD_APP_NAMESPACE", &ex.namespace)
            .params(ex.params.clone());
        for (k, v) in &ex.env {
            cmd = cmd.env(k, v);
        }
        let with_params = cmd.ok();
        // The CLI equivalent: lockstep.yaml supplies the values files (the Application
        // repeats them), the parameters become flags.
        let mut flags = kube_flags();
        for p in ex.params.as_array().unwrap() {
            match p["name"].as_str().unwrap() {
                "values-files" => assert_eq!(
                    serde_json::to_value(&cfg["values"]).unwrap(),
                    p["array"],
                    "{app}: the equivalence below assumes the Application's values-files are lockstep.yaml's"
                ),
                "helm-parameters" => {
                    for (k, v) in p["map"].as_object().unwrap() {
                        flags.push(format!("--set={k}={}", v.as_str().unwrap()));
                    }
                }
                "release" => flags.push(format!("--release={}", p["string"].as_str().unwrap())),
                "phase" => flags.push(format!("--phase={}", p["string"].as_str().unwrap())),
                other => panic!("{app}: the example sets parameter {other}: extend this test"),
            }
        }
        let cli = cli_render(&sb.path(app), &flags);
        assert!(
            !notes(&with_params).is_empty(),
            "{app}: expected lockstep's notes as leading comments"
        );
        assert_eq!(
            strip_notes(&with_params),
            cli,
            "{app}: generate (example parameters) differs from `lockstep render {}`",
            flags.join(" ")
        );

        // 2. Without .git (excluded by the operator), helm from PATH, no parameters (`null`).
        let sb2 = Sandbox::new(false);
        let no_params = sb2
            .argocd("generate", app)
            .without("HELM_BIN")
            .env("ARGOCD_APP_NAMESPACE", &ex.namespace)
            .ok();
        // The CLI knows the repository only by its .git (it has no ARGOCD_APP_SOURCE_PATH).
        std::fs::create_dir(sb2.path(".git")).unwrap();
        let cli = cli_render(&sb2.path(app), &kube_flags());
        assert_eq!(
            strip_notes(&no_params),
            cli,
            "{app}: generate (no parameters) differs from `lockstep render`"
        );

        for (label, text) in [("params", &with_params), ("null", &no_params)] {
            let d = docs(text);
            assert_eq!(
                image_of(&d, "Deployment", api, container),
                image,
                "{app}: API image"
            );
            for j in jobs {
                let name = format!("{release}-{j}");
                let job = find(&d, "Job", &name)
                    .unwrap_or_else(|| panic!("{app} ({label}): no Job {name}"));
                for c in containers(job) {
                    assert_eq!(
                        c["image"].as_str(),
                        Some(image),
                        "{app}: Job {name} runs another image than the API"
                    );
                }
            }
            assert!(
                find(&d, "Job", &format!("{release}-lockstep-gate")).is_some(),
                "{app}: no gate Job"
            );
            assert_eq!(
                data(&d, "ConfigMap", &format!("{release}-lockstep"), "image"),
                image
            );
            // Validation is the slow part: each distinct stream once.
            if !streams.contains(&strip_notes(text).to_owned()) {
                streams.push(strip_notes(text).to_owned());
                let f = scratch.join(format!("{}-{label}.yaml", app.rsplit('/').next().unwrap()));
                std::fs::write(&f, text).unwrap();
                files.push(f);
            }
        }
    }
    validate(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
}

/// Each KUBE_API_VERSIONS entry reaches helm as its own --api-versions (group/version and
/// group/version/Kind), KUBE_VERSION as --kube-version; empty values are tolerated. The
/// render gets Go's collector settings from lockstep, or the sidecar's own when it sets them.
#[test]
fn generate_passes_the_cluster_capabilities_to_helm() {
    let sb = Sandbox::new(true);
    // A helm that records its argv and Go's collector settings, then runs the real one.
    let log = sb.dir.join("helm-argv.log");
    let wrapper = sb.dir.join("bin/helm-logging");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{0}'; done\nprintf 'env GOGC=%s GOMEMLIMIT=%s\\n' \"${{GOGC-unset}}\" \"${{GOMEMLIMIT-unset}}\" >> '{0}'\necho '==end==' >> '{0}'\nexec '{1}' \"$@\"\n",
            log.display(),
            tool("helm4").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let apis = "apps/v1,monitoring.coreos.com/v1,monitoring.coreos.com/v1/ServiceMonitor,v1";
    let out = sb
        .argocd("generate", PROBE)
        .env("HELM_BIN", wrapper.to_str().unwrap())
        .env("KUBE_VERSION", "1.31.2")
        .env("KUBE_API_VERSIONS", apis)
        .ok();
    let d = docs(&out);
    let cm = "probe-probe";
    assert_eq!(data(&d, "ConfigMap", cm, "monitoringV1"), "true");
    assert_eq!(data(&d, "ConfigMap", cm, "serviceMonitor"), "true");
    assert_eq!(data(&d, "ConfigMap", cm, "unknownGroup"), "false");
    assert_eq!(data(&d, "ConfigMap", cm, "kubeVersion"), "v1.31.2");
    assert_eq!(
        data(&d, "ConfigMap", cm, "namespace"),
        "argo-dest",
        "ARGOCD_APP_NAMESPACE is the release namespace"
    );

    let argv = std::fs::read_to_string(&log).unwrap();
    let template: Vec<&str> = argv
        .split("==end==\n")
        .map(|call| call.lines().collect::<Vec<_>>())
        .find(|call| call.first() == Some(&"template"))
        .expect("a helm template call")
        .clone();
    let given: Vec<&str> = template
        .iter()
        .filter_map(|a| a.strip_prefix("--api-versions="))
        .collect();
    assert_eq!(
        given,
        apis.split(',').collect::<Vec<_>>(),
        "one --api-versions per entry, in order; argv: {template:?}"
    );
    assert!(
        template.contains(&"--kube-version=1.31.2"),
        "argv: {template:?}"
    );
    // The render runs with Go's collector held back (src/helm.rs go_gc_env)...
    assert_eq!(
        template.last(),
        Some(&"env GOGC=off GOMEMLIMIT=128MiB"),
        "argv: {template:?}"
    );
    // ...unless the sidecar sets either variable: then helm gets it untouched.
    std::fs::remove_file(&log).unwrap();
    sb.argocd("generate", PROBE)
        .env("HELM_BIN", wrapper.to_str().unwrap())
        .env("GOGC", "200")
        .ok();
    let calls = std::fs::read_to_string(&log).unwrap();
    let template_env = calls
        .split("==end==\n")
        .find(|call| call.starts_with("template\n"))
        .and_then(|call| call.lines().last())
        .expect("a helm template call");
    assert_eq!(template_env, "env GOGC=200 GOMEMLIMIT=unset");

    // Argo CD may send both empty (cluster info not known yet).
    let out = sb
        .argocd("generate", PROBE)
        .env("KUBE_VERSION", "")
        .env("KUBE_API_VERSIONS", "")
        .ok();
    let d = docs(&out);
    assert_eq!(data(&d, "ConfigMap", cm, "monitoringV1"), "false");
    assert_ne!(data(&d, "ConfigMap", cm, "kubeVersion"), "v1.31.2");
}

/// helm comes from PATH when HELM_BIN is unset; no helm at all is an error, not an empty success.
#[test]
fn generate_finds_helm_on_path_or_fails() {
    let sb = Sandbox::new(true);
    let text = sb.argocd("generate", PROBE).without("HELM_BIN").ok();
    assert!(find(&docs(&text), "ConfigMap", "probe-lockstep").is_some());
    std::fs::remove_file(sb.dir.join("bin/helm")).unwrap();
    let e = fails(&sb.argocd("generate", PROBE).without("HELM_BIN").run(), 1);
    assert!(e.contains("helm was not found"), "{e}");
}

/// A render that yields no object fails: exit 0 with nothing would prune the whole app.
#[test]
fn generate_never_succeeds_empty() {
    let sb = Sandbox::new(true);
    let out = sb
        .argocd("generate", PROBE)
        .params(json!([{"name": "helm-parameters", "map": {"enabled": "false"}}]))
        .run();
    let e = fails(&out, 1);
    assert!(e.contains("empty") || e.contains("no manifests"), "{e}");
}

/// A skip is refused with the gate's path, from the `from` parameter, from ARGOCD_ENV, and
/// from an edited lockstep.lock; `from` outranks lockstep.lock.
#[test]
fn skips_are_refused() {
    let sb = Sandbox::new(true);
    let from = |v: &str| json!([{"name": "from", "string": v}]);
    let cases = [
        (SERVER, "3.5.0", "path: 3.5.0 → 3.6.x → 3.7.x → 3.8.x"),
        (CLOUD, "0.7.0", "path: 0.7.0 → 0.8.x → 1.2.x"),
    ];
    for (app, skip, path) in cases {
        let e = fails(&sb.argocd("generate", app).params(from(skip)).run(), 3);
        assert!(
            e.contains(path) && e.contains("refusing to upgrade"),
            "{app}: {e}"
        );
        let e = fails(
            &sb.argocd("generate", app)
                .env("ARGOCD_ENV_LOCKSTEP_FROM", skip)
                .run(),
            3,
        );
        assert!(e.contains(path), "{app} (env): {e}");
    }
    // lockstep.lock moved back to a release the target cannot follow.
    for (app, deployed, path) in [
        (SERVER, "3.6.1", "path: 3.6.1 → 3.7.x → 3.8.x"),
        (CLOUD, "0.6.1", "path: 0.6.1 → 0.7.x → 0.8.x → 1.2.x"),
    ] {
        let lock = format!("{app}/lockstep.lock");
        let text = sb.read(&lock);
        assert!(text.contains("version: "), "{lock}: {text}");
        let edited: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("version:") {
                    format!("  version: {deployed}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        sb.write(&lock, &edited);
        let e = fails(&sb.argocd("generate", app).run(), 3);
        assert!(e.contains(path), "{app} (lockstep.lock {deployed}): {e}");
    }
    // The parameter outranks the lock file.
    let text = sb.argocd("generate", SERVER).params(from("3.8.0")).ok();
    assert_eq!(
        data(
            &docs(&text),
            "ConfigMap",
            "prefect-server-lockstep",
            "release"
        ),
        "3.8.3"
    );
}

/// Paths from parameters, env or lockstep.yaml that leave the repository are refused before
/// anything is read; a path that climbs out and back in is fine.
#[test]
fn paths_outside_the_repository_are_refused() {
    let sb = Sandbox::new(true);
    let app = sb.path(SERVER);
    let outside = sb.dir.join("outside");
    std::fs::write(outside.join("values.yaml"), "server: {replicaCount: 7}\n").unwrap();
    std::fs::write(outside.join("profile.yaml"), "name: evil\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", app.join("hostname.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside, app.join("linked")).unwrap();
    assert!(
        Path::new("/etc/hostname").exists(),
        "the symlink case needs /etc/hostname"
    );

    let values =
        |v: &str| json!([{"name": "values-files", "array": ["values-production.yaml", v]}]);
    let profile = |v: &str| json!([{"name": "profile", "string": v}]);
    let refused = [
        (
            "values-files ../../../../etc/passwd",
            sb.argocd("generate", SERVER)
                .params(values("../../../../etc/passwd")),
        ),
        (
            "values-files absolute",
            sb.argocd("generate", SERVER).params(values("/etc/passwd")),
        ),
        (
            "values-files symlink to /etc/hostname",
            sb.argocd("generate", SERVER)
                .params(values("hostname.yaml")),
        ),
        (
            "values-files through a symlinked directory",
            sb.argocd("generate", SERVER)
                .params(values("linked/values.yaml")),
        ),
        (
            "profile ../..",
            sb.argocd("generate", SERVER)
                .params(profile("../../../../outside/profile.yaml")),
        ),
        (
            "profile absolute",
            sb.argocd("generate", SERVER)
                .params(profile(outside.join("profile.yaml").to_str().unwrap())),
        ),
        (
            "profile through a symlink",
            sb.argocd("generate", SERVER)
                .params(profile("linked/profile.yaml")),
        ),
        (
            "env values files",
            sb.argocd("generate", SERVER)
                .env("ARGOCD_ENV_LOCKSTEP_VALUES_FILES", "/etc/passwd"),
        ),
        (
            "env profile",
            sb.argocd("generate", SERVER).env(
                "ARGOCD_ENV_LOCKSTEP_PROFILE",
                "../../../../outside/profile.yaml",
            ),
        ),
        (
            "init",
            sb.argocd("init", SERVER)
                .params(values("../../../../etc/passwd")),
        ),
    ];
    for (what, cmd) in refused {
        let e = fails(&cmd.run(), 1);
        assert!(e.contains("repository"), "{what}: {e}");
    }
    // lockstep.yaml's own chart path.
    let cfg = sb.read(&format!("{SERVER}/lockstep.yaml"));
    sb.write(
        &format!("{SERVER}/lockstep.yaml"),
        &cfg.replace(
            "chart: ../../charts/prefect-server",
            "chart: ../../../../outside",
        ),
    );
    let e = fails(&sb.argocd("generate", SERVER).run(), 1);
    assert!(e.contains("repository") && e.contains("chart"), "{e}");
    sb.write(&format!("{SERVER}/lockstep.yaml"), &cfg);

    // Out of the app directory and back in, inside the repository: accepted and applied.
    let text = sb
        .argocd("generate", SERVER)
        .params(json!([{"name": "values-files", "array": ["../../../examples/apps/prefect-server/values-production.yaml", "../../../tests/data/argocd/server-replicas.yaml"]}]))
        .ok();
    let d = docs(&text);
    let dep = find(&d, "Deployment", "prefect-server").unwrap();
    assert_eq!(
        dep["spec"]["replicas"].as_u64(),
        Some(3),
        "the second values file applies"
    );
}

/// A helm parameter sets exactly one key: commas and `=` in a value stay in the value, and a
/// key that is not a plain values path is refused (naming the key, never the value).
#[test]
fn helm_parameters_set_one_key_each() {
    let sb = Sandbox::new(true);
    let hp = |k: &str, v: &str| json!([{"name": "helm-parameters", "map": {k: v}}]);
    for value in ["a,other=x", "b\\,other=y", "c\\\\,other=z", "d=1,other=2,e"] {
        let text = sb.argocd("generate", PROBE).params(hp("echo", value)).ok();
        let d = docs(&text);
        assert_eq!(
            data(&d, "ConfigMap", "probe-probe", "echo"),
            value,
            "the value arrives verbatim"
        );
        assert_eq!(
            data(&d, "ConfigMap", "probe-probe", "other"),
            "unset",
            "value {value:?} set another key"
        );
    }
    // helm's list syntax stays helm's (as with Argo CD's own helm parameters), still one key.
    let d = docs(
        &sb.argocd("generate", PROBE)
            .params(hp("echo", "{x,other=w}"))
            .ok(),
    );
    assert_eq!(data(&d, "ConfigMap", "probe-probe", "other"), "unset");
    for key in [
        "echo,other",
        "echo other",
        "echo=x",
        "other,echo",
        "echo..x",
        ".echo",
        "echo.",
        "",
    ] {
        let e = fails(
            &sb.argocd("generate", PROBE)
                .params(hp(key, "Pw-9fe1-not-here"))
                .run(),
            1,
        );
        assert!(e.contains("helm parameter"), "key {key:?}: {e}");
        assert!(
            !e.contains("Pw-9fe1-not-here"),
            "key {key:?}: the value reached stderr: {e}"
        );
    }
    // Parameters outrank lockstep.yaml's `set` for the same key.
    let tag = hp("global.prefect.image.prefectTag", "3.8.2-python3.11");
    let text = sb.argocd("generate", SERVER).params(tag).ok();
    let d = docs(&text);
    assert_eq!(
        image_of(&d, "Deployment", "prefect-server", "prefect-server"),
        "prefecthq/prefect:3.8.2-python3.11"
    );
    assert_eq!(
        data(&d, "ConfigMap", "prefect-server-lockstep", "release"),
        "3.8.2"
    );
}

// ---------------------------------------------------------------------------------------
// release, namespace and phase: parameters > env > lockstep.yaml > defaults
// ---------------------------------------------------------------------------------------

#[test]
fn release_comes_from_the_application_name() {
    let sb = Sandbox::new(true);
    // The example's lockstep.yaml names the release: remove it.
    let cfg_path = format!("{SERVER}/lockstep.yaml");
    let cfg = sb.read(&cfg_path);
    assert!(cfg.contains("\nrelease: prefect-server\n"));
    sb.write(&cfg_path, &cfg.replace("\nrelease: prefect-server\n", "\n"));
    let text = sb
        .argocd("generate", SERVER)
        .env("ARGOCD_APP_NAME", "team-a_prefect-server")
        .ok();
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
    let text = sb
        .argocd("generate", SERVER)
        .env("ARGOCD_APP_NAME", "team-a_billing")
        .ok();
    let d = docs(&text);
    assert!(find(&d, "ConfigMap", "billing-lockstep").is_some());
    let dep = find(&d, "Deployment", "prefect-server").expect("the chart pins its fullname");
    assert_eq!(
        dep["metadata"]["labels"]["app.kubernetes.io/instance"].as_str(),
        Some("billing")
    );
}

#[test]
fn release_precedence() {
    let sb = Sandbox::new(true);
    let record = |a: Argo| -> String {
        let d = docs(&a.ok());
        let r = d
            .iter()
            .find(|x| {
                x["kind"] == "ConfigMap"
                    && x["metadata"]["labels"]["app.kubernetes.io/component"] == "release-record"
            })
            .expect("the record ConfigMap");
        r["metadata"]["name"]
            .as_str()
            .unwrap()
            .strip_suffix("-lockstep")
            .expect("<release>-lockstep")
            .to_owned()
    };
    let param = json!([{"name": "release", "string": "from-param"}]);
    // The probe's lockstep.yaml sets no release; the chart's name is lockstep-probe.
    assert_eq!(
        record(sb.argocd("generate", PROBE).without("ARGOCD_APP_NAME")),
        "lockstep-probe",
        "default: the chart name"
    );
    assert_eq!(
        record(
            sb.argocd("generate", PROBE)
                .env("ARGOCD_APP_NAME", "ops_app-name")
        ),
        "app-name"
    );
    assert_eq!(
        record(sb.argocd("generate", PROBE).env("ARGOCD_APP_NAME", "plain")),
        "plain"
    );
    let cfg = format!("{PROBE}/lockstep.yaml");
    sb.write(&cfg, &(sb.read(&cfg) + "release: from-config\n"));
    assert_eq!(
        record(
            sb.argocd("generate", PROBE)
                .env("ARGOCD_APP_NAME", "ops_app-name")
        ),
        "from-config"
    );
    let env = |a: Argo| a.env("ARGOCD_ENV_LOCKSTEP_RELEASE", "from-env");
    assert_eq!(record(env(sb.argocd("generate", PROBE))), "from-env");
    assert_eq!(
        record(env(sb.argocd("generate", PROBE)).params(param)),
        "from-param"
    );
}

#[test]
fn phase_precedence() {
    let sb = Sandbox::new(true);
    let hook = |a: Argo| migration_hook(&docs(&a.ok()));
    let param = |p: &str| json!([{"name": "phase", "string": p}]);
    // prefect-cloud's lockstep.yaml says sync; the probe's says nothing (default presync).
    assert_eq!(hook(sb.argocd("generate", PROBE)), "PreSync");
    assert_eq!(hook(sb.argocd("generate", CLOUD)), "Sync");
    assert_eq!(
        hook(
            sb.argocd("generate", PROBE)
                .env("ARGOCD_ENV_LOCKSTEP_PHASE", "sync")
        ),
        "Sync"
    );
    assert_eq!(
        hook(
            sb.argocd("generate", CLOUD)
                .env("ARGOCD_ENV_LOCKSTEP_PHASE", "presync")
        ),
        "PreSync"
    );
    assert_eq!(
        hook(
            sb.argocd("generate", CLOUD)
                .env("ARGOCD_ENV_LOCKSTEP_PHASE", "presync")
                .params(param("sync"))
        ),
        "Sync"
    );
    assert_eq!(
        hook(
            sb.argocd("generate", PROBE)
                .env("ARGOCD_ENV_LOCKSTEP_PHASE", "sync")
                .params(param("presync"))
        ),
        "PreSync"
    );
    let e = fails(
        &sb.argocd("generate", PROBE).params(param("later")).run(),
        1,
    );
    assert!(e.contains("phase") && e.contains("later"), "{e}");
}

/// A profile given as a file inside the repository works like the built-in name.
#[test]
fn profile_parameter_accepts_a_file_in_the_repository() {
    let sb = Sandbox::new(true);
    let text = sb
        .argocd("generate", SERVER)
        .params(json!([{"name": "profile", "string": "../../../profiles/prefect-server.yaml"}]))
        .ok();
    let by_name = sb.argocd("generate", SERVER).ok();
    assert_eq!(
        data(
            &docs(&text),
            "ConfigMap",
            "prefect-server-lockstep",
            "profile"
        ),
        "prefect-server"
    );
    assert_eq!(strip_notes(&text), strip_notes(&by_name));
    let e = fails(
        &sb.argocd("generate", SERVER)
            .params(json!([{"name": "profile", "string": "no-such-profile"}]))
            .run(),
        1,
    );
    assert!(e.contains("no-such-profile"), "{e}");
}

// ---------------------------------------------------------------------------------------
// secrets
// ---------------------------------------------------------------------------------------

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Secret's value rendered by the chart never reaches stderr (shown in Argo CD's UI), nor
/// the dynamic parameters' error announcement, whatever refuses the render.
#[test]
fn secret_values_never_reach_stderr() {
    let sb = Sandbox::new(true);
    let no_leak = |what: &str, o: &Output, secret: &str| {
        let e = stderr(o);
        assert!(!e.is_empty(), "{what}: expected an error");
        assert!(
            !e.contains(secret) && !e.contains(&b64(secret)),
            "{what}: the secret reached stderr:\n{e}"
        );
    };

    // prefect-cloud renders its database Secret from the URLs in cloud-secret-values.yaml.
    let secret = "Zq9-cloud-secret-7Wx";
    let files = json!({"name": "values-files", "array": ["values-override.yaml", "../../../tests/data/argocd/cloud-secret-values.yaml"]});
    let from = |v: &str| json!({"name": "from", "string": v});
    let hp = |k: &str, v: &str| json!({"name": "helm-parameters", "map": {k: v}});
    // Control: the render succeeds and carries the Secret.
    let text = sb
        .argocd("generate", CLOUD)
        .params(json!([files.clone()]))
        .ok();
    let s = find(&docs(&text), "Secret", "customer-managed-database")
        .cloned()
        .expect("the chart's database Secret");
    assert!(
        s["stringData"]["orion"]
            .as_str()
            .is_some_and(|u| u.contains(secret)),
        "{s:?}"
    );
    // `ingress.name` unset breaks a rule of 0.8.2 → 1.2.0 (lockstep.lock): lockstep refuses.
    let o = sb
        .argocd("generate", CLOUD)
        .params(json!([files.clone(), hp("ingress.name", "null")]))
        .run();
    let e = fails(&o, 3);
    assert!(e.contains("ingress.name"), "{e}");
    no_leak("values rule", &o, secret);
    // Values the chart itself refuses (its `fail`; lockstep may refuse them first).
    let o = sb
        .argocd("generate", CLOUD)
        .params(json!([
            files.clone(),
            hp("global.authProvider.okta", "not-a-map")
        ]))
        .run();
    let code = o.status.code().unwrap_or(-1);
    assert!(code == 1 || code == 3, "exit {code}");
    let e = fails(&o, code);
    assert!(e.contains("authProvider"), "{e}");
    no_leak("chart failure", &o, secret);
    // A skip.
    let o = sb
        .argocd("generate", CLOUD)
        .params(json!([files.clone(), from("0.7.0")]))
        .run();
    fails(&o, 3);
    no_leak("skip", &o, secret);
    // The dynamic parameters show the same refusal in the UI.
    let o = sb
        .argocd("parameters", CLOUD)
        .params(json!([files.clone(), from("0.7.0")]))
        .run();
    let list = ok(&o);
    assert!(
        list.contains("lockstep-error") && !list.contains(secret),
        "{list}"
    );

    // prefect-server with its bundled PostgreSQL: the subchart's Secret holds the password
    // base64-encoded.
    let secret = "Pg-5ec2et-Qv81";
    let pg = json!({"name": "helm-parameters", "map": {"postgresql.enabled": "true", "postgresql.auth.password": secret}});
    let text = sb
        .argocd("generate", SERVER)
        .params(json!([pg.clone()]))
        .ok();
    assert!(
        text.contains(&b64(secret)),
        "control: the Secret holds the password"
    );
    let o = sb
        .argocd("generate", SERVER)
        .params(json!([pg, from("3.5.0")]))
        .run();
    fails(&o, 3);
    no_leak("prefect-server skip", &o, secret);

    // The probe: the Secret's URL holds the password in plain text.
    let secret = "Probe-sEcret-41x";
    let pw = hp("dbPassword", secret);
    for (what, extra, code) in [
        ("skip", from("3.5.0"), 3),
        ("downgrade", from("3.9.0"), 3),
        ("bad phase", json!({"name": "phase", "string": "never"}), 1),
    ] {
        let o = sb
            .argocd("generate", PROBE)
            .params(json!([pw.clone(), extra]))
            .run();
        fails(&o, code);
        no_leak(what, &o, secret);
    }
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

/// Parses and checks the announcement list: a JSON array of objects in the shape Argo CD reads.
fn announcements(o: &Output) -> BTreeMap<String, Json> {
    let text = ok(o);
    assert!(
        o.stderr.is_empty(),
        "parameters: stderr must stay empty, got:\n{}",
        stderr(o)
    );
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

#[test]
fn parameters_announce_chart_workload_and_plan() {
    let sb = Sandbox::new(false);
    let cmd = sb.argocd("parameters", SERVER);
    assert!(!cmd.env.contains_key("ARGOCD_APP_NAMESPACE") && !cmd.env.contains_key("KUBE_VERSION"));
    let l = announcements(&cmd.run());
    let chart = string_of(&l, "detected-chart");
    assert!(
        chart.contains("prefect-server") && chart.contains("3.8.3"),
        "{chart}"
    );
    let api = string_of(&l, "detected-api-workload");
    assert!(
        api.contains("Deployment")
            && api.contains("prefect-server")
            && api.contains("prefecthq/prefect:3.8.3-python3.11"),
        "{api}"
    );
    assert_eq!(
        string_of(&l, "upgrade-plan"),
        "3.7.8 → 3.8.3: 0 breaking changes"
    );

    let ex = example(CLOUD);
    let l = announcements(
        &sb.argocd("parameters", CLOUD)
            .env("ARGOCD_APP_NAME", &ex.name)
            .params(ex.params.clone())
            .run(),
    );
    let chart = string_of(&l, "detected-chart");
    assert!(
        chart.contains("prefect-cloud 1.2.0") && chart.contains("customer-managed"),
        "{chart}"
    );
    let api = string_of(&l, "detected-api-workload");
    assert!(api.contains("customer-managed-orion") && api.contains("registry.acme-corp.internal/mirror/prefect/customer-managed/server:2026.0115.100000"), "{api}");
    assert_eq!(
        string_of(&l, "upgrade-plan"),
        "0.8.2 → 1.2.0: 4 breaking changes, 1 one-time step"
    );

    // Parameters reach the dynamic command too.
    let l = announcements(
        &sb.argocd("parameters", SERVER)
            .params(json!([{"name": "from", "string": "3.8.0"}]))
            .run(),
    );
    assert_eq!(
        string_of(&l, "upgrade-plan"),
        "3.8.0 → 3.8.3: 0 breaking changes"
    );
}

/// A broken app still yields valid JSON (exit 0) with a `lockstep-error` announcement.
#[test]
fn parameters_report_a_broken_app() {
    let sb = Sandbox::new(true);
    let check = |o: Output, needle: &str| {
        let l = announcements(&o);
        let e = string_of(&l, "lockstep-error");
        assert!(e.contains(needle), "{e}");
        assert!(!l.contains_key("detected-chart"), "{l:?}");
    };
    check(
        sb.argocd("parameters", SERVER)
            .params(json!([{"name": "from", "string": "3.5.0"}]))
            .run(),
        "path: 3.5.0 → 3.6.x",
    );
    check(
        sb.argocd("parameters", SERVER)
            .params(json!([{"name": "values-files", "array": ["/etc/passwd"]}]))
            .run(),
        "repository",
    );
    let cfg = format!("{CLOUD}/lockstep.yaml");
    sb.write(&cfg, &(sb.read(&cfg) + "valuesFiles: [x.yaml]\n"));
    check(sb.argocd("parameters", CLOUD).run(), "lockstep.yaml");
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

#[test]
fn init_builds_missing_dependencies_offline_and_changes_nothing_else() {
    let sb = Sandbox::new(true);
    // Vendored charts/: nothing to do, nothing changes.
    for app in [SERVER, CLOUD] {
        let before = snapshot(&sb.repo());
        ok(&sb.argocd("init", app).run());
        assert!(
            before == snapshot(&sb.repo()),
            "{app}: init changed the repository copy"
        );
    }

    // charts/ removed (not vendored): helm dependency build restores it from file://.
    let charts = sb.path("examples/charts/prefect-server/charts");
    std::fs::remove_dir_all(&charts).unwrap();
    let before = snapshot(&sb.repo());
    let e = fails(&sb.argocd("generate", SERVER).run(), 1);
    assert!(
        e.contains("postgresql"),
        "without charts/ helm names the missing dependency: {e}"
    );
    // No helm: init must fail, not pretend.
    let no_helm = sb
        .argocd("init", SERVER)
        .without("HELM_BIN")
        .env("PATH", sb.dir.join("outside").to_str().unwrap())
        .run();
    assert!(!no_helm.status.success(), "init without helm succeeded");
    assert!(before == snapshot(&sb.repo()));

    ok(&sb.argocd("init", SERVER).without("HELM_BIN").run());
    let after = snapshot(&sb.repo());
    let tgz = charts.join("postgresql-0.1.0.tgz");
    assert!(tgz.is_file(), "init did not restore {}", tgz.display());
    let changed: Vec<_> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(
        changed,
        vec![Path::new(
            "examples/charts/prefect-server/charts/postgresql-0.1.0.tgz"
        )],
        "init changed more than charts/"
    );
    assert!(
        before.keys().all(|k| after.contains_key(k)),
        "init removed files"
    );
    // And the render works again, with the dependency (its Secret) when enabled.
    let text = sb.argocd("generate", SERVER).params(json!([{"name": "helm-parameters", "map": {"postgresql.enabled": "true", "postgresql.auth.password": "x"}}])).ok();
    assert!(find(&docs(&text), "Secret", "prefect-server-postgresql").is_some());
}

// ---------------------------------------------------------------------------------------
// install manifests
// ---------------------------------------------------------------------------------------

/// tests/argocd-install/check.sh: kustomize build + schema + plugin.yaml shape checks.
#[test]
fn install_manifests_check() {
    tool("kubectl");
    let out = Command::new("bash")
        .arg(common::repo().join("tests/argocd-install/check.sh"))
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
