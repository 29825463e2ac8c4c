//! Hostile repositories, parameters, environments and streams.
//!
//! lockstep runs inside Argo CD's repo-server on repositories users control. Each case
//! here is an attack a user could mount, run the way Argo CD runs the plugin (a cleared
//! environment, the Argo CD variables, the app directory as working directory) or as the
//! CLI runs, and names the [`Rule`] it holds (the README's "Security" section lists the
//! rules with these tests). Every case checks the failure contract (its exit code,
//! nothing on stdout on failure, the cause named on stderr) and that no secret planted
//! for it (an outside file's text, a value a user set) appears on stderr or stdout.
//!
//! Fixture: tests/data/hostile/app (see its README), copied into a scratch repository
//! per case.
mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use Rule::*;

/// What lockstep guarantees against hostile input (README, "Security").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Every file lockstep or helm reads on lockstep's behalf resolves inside the
    /// repository: lockstep.yaml, lockstep.lock, the chart tree (symlinks included),
    /// `file://` dependencies, values and profile files (the Chart.yaml annotation too).
    ReadsStayInside,
    /// Errors never carry a file's text or a value a user set.
    NothingEchoed,
    /// A stream never holds two objects with the group, kind, namespace and name of
    /// one lockstep adds.
    NoCollisions,
    /// The Job copies the pod as Kubernetes reads it (YAML merge keys resolved as
    /// go-yaml v2 does), or lockstep refuses.
    NoSilentDifference,
    /// Strings that reach manifests or messages are checked where they enter.
    CheckedOnEntry,
    /// Reading a stream takes time linear in its size (nesting bounded, JSON split in
    /// one pass), and memory a small constant per document.
    Bounded,
    /// helm runs under a time limit; past it helm and everything it started is killed,
    /// and the error says how to raise the limit.
    HelmTimeLimit,
    /// No input makes lockstep panic or read memory it does not own.
    Sound,
}

const OUTSIDE_SECRET: &str = "OUTSIDE-SECRET-4417";
/// Secrets planted by the cases: none may ever reach stderr.
const SECRETS: &[&str] = &[
    OUTSIDE_SECRET,
    "SUPERSECRET99",
    "SUPERSECRET98",
    "FAILSECRET-77",
    "LOCKSECRET-31",
    "password=hunter2",
];

// ---------------------------------------------------------------------------------------
// A scratch repository: repo/ (with .git) holding app/ (the fixture chart and app),
// outside/ beside it (files a hostile repository points at), bin/ (fake helms).
// ---------------------------------------------------------------------------------------

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = scratch("hostile").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let s = Scratch { dir };
        copy_dir(&repo().join("tests/data/hostile/app"), &s.path("app"));
        std::fs::create_dir_all(s.path(".git")).unwrap();
        for d in ["outside", "bin"] {
            std::fs::create_dir_all(s.dir.join(d)).unwrap();
        }
        std::fs::write(s.outside("secret.txt"), format!("{OUTSIDE_SECRET}\n")).unwrap();
        // A valid lock, and a chart, outside the repository.
        std::fs::write(
            s.outside("valid.lock"),
            "deployed:\n  version: 3.7.8\n  image: prefecthq/prefect:3.7.8-python3.11\n",
        )
        .unwrap();
        copy_dir(&repo().join("tests/data/hostile/app"), &s.outside("chart"));
        std::fs::write(
            s.outside("chart/files/note.txt"),
            format!("{OUTSIDE_SECRET}\n"),
        )
        .unwrap();
        std::fs::write(
            s.outside("profile.yaml"),
            lockstep::profile::built_in("prefect-server")
                .unwrap()
                .to_yaml(),
        )
        .unwrap();
        s
    }

    /// A path in the repository.
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join("repo").join(rel)
    }

    fn outside(&self, rel: &str) -> PathBuf {
        self.dir.join("outside").join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Replaces `rel` with a symlink to `target`.
    fn link(&self, rel: &str, target: &Path) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_dir_all(&p);
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// The app's Chart.yaml: the fixture chart's name and versions, then `rest`.
    fn chart_yaml(&self, rest: &str) {
        self.write(
            "app/Chart.yaml",
            &format!("apiVersion: v2\nname: lockstep-hostile\nversion: 0.1.0\nappVersion: \"3.8.3\"\n{rest}"),
        );
    }

    /// An executable script in bin/.
    fn script(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.join("bin").join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// `lockstep argocd SUB` as argocd-cmp-server runs it for the app `app`.
    fn argocd(&self, sub: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        c.args(["argocd", sub])
            .current_dir(self.path("app"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.join("bin"))
            .env("HELM_BIN", tool("helm4"))
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("ARGOCD_APP_NAME", "hostile")
            .env("ARGOCD_APP_NAMESPACE", "apps")
            .env("ARGOCD_APP_SOURCE_PATH", "app")
            .env(
                "ARGOCD_APP_SOURCE_REPO_URL",
                "https://git.example.com/x.git",
            )
            .env("ARGOCD_APP_PARAMETERS", "null")
            .env("KUBE_VERSION", "1.33.1");
        c
    }

    /// `argocd SUB` with these parameters (`ARGOCD_APP_PARAMETERS`).
    fn argocd_with(&self, sub: &str, params: serde_json::Value) -> Command {
        let mut c = self.argocd(sub);
        c.env("ARGOCD_APP_PARAMETERS", params.to_string());
        c
    }

    /// `lockstep ARGS` in the app directory.
    fn cli(&self, args: &[&str]) -> Command {
        let mut c = lockstep();
        c.args(args).current_dir(self.path("app"));
        c
    }
}

fn hp(key: &str, value: &str) -> serde_json::Value {
    json!([{"name": "helm-parameters", "map": {key: value}}])
}

/// What a run gave, and how long it took.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `cmd` with `stdin`, killing it after `limit` (a hang is a failure, not a stuck test).
fn run(mut cmd: Command, stdin: &[u8], limit: Duration) -> Ran {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lockstep");
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut sin, &data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let e = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t.elapsed();
    let _ = w.join();
    let (o, e) = (o.join().unwrap(), e.join().unwrap());
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        took,
    }
}

// ---------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    rule: Rule,
    /// The case of issue 14 this reproduces, when it is one (0: a case of our own).
    issue: u8,
    /// Makes the repository hostile and gives the command and its stdin.
    setup: fn(&Scratch) -> (Command, Vec<u8>),
    code: i32,
    /// Substrings of stderr (or, for a success, of stdout).
    expect: &'static [&'static str],
    /// The run must end within this many seconds.
    within: u64,
}

const fn case(
    name: &'static str,
    rule: Rule,
    issue: u8,
    code: i32,
    expect: &'static [&'static str],
    setup: fn(&Scratch) -> (Command, Vec<u8>),
) -> Case {
    Case {
        name,
        rule,
        issue,
        setup,
        code,
        expect,
        within: 60,
    }
}

impl Case {
    /// The run must end within `secs` seconds.
    const fn within(self, secs: u64) -> Case {
        Case {
            within: secs,
            ..self
        }
    }
}

fn no_stdin(c: Command) -> (Command, Vec<u8>) {
    (c, Vec::new())
}

/// `argocd generate`, as Argo CD runs it.
fn generate(s: &Scratch) -> (Command, Vec<u8>) {
    no_stdin(s.argocd("generate"))
}

/// `argocd generate` with these parameters.
fn generate_with(s: &Scratch, params: serde_json::Value) -> (Command, Vec<u8>) {
    no_stdin(s.argocd_with("generate", params))
}

/// `argocd generate` with the `values-files` parameter.
fn values_files(s: &Scratch, files: &[&str]) -> (Command, Vec<u8>) {
    generate_with(s, json!([{"name": "values-files", "array": files}]))
}

/// `lockstep render . --profile prefect-server ARGS` in the app directory.
fn render(s: &Scratch, args: &[&str]) -> (Command, Vec<u8>) {
    let mut all = vec!["render", ".", "--profile", "prefect-server"];
    all.extend_from_slice(args);
    no_stdin(s.cli(&all))
}

/// `lockstep inject --profile prefect-server` reading `stream`.
fn inject(s: &Scratch, stream: String) -> (Command, Vec<u8>) {
    (
        s.cli(&["inject", "--profile", "prefect-server"]),
        stream.into_bytes(),
    )
}

/// tests/bad/base.yaml: a stream with the API workload.
fn base() -> String {
    std::fs::read_to_string(repo().join("tests/bad/base.yaml")).unwrap()
}

const OUTSIDE_REFUSED: &[&str] = &["outside the repository"];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // case(name, rule, issue case (0: our own), exit code, expected on stderr (stdout on success), setup)
    // --- Reads outside the repository --------------------------------------------------
    case("lockstep.yaml is a symlink to an outside file", ReadsStayInside, 1, 1, &["the app config", "resolves outside the repository", "Replace the symlink"], |s| {
        s.link("app/lockstep.yaml", &s.outside("secret.txt"));
        generate(s)
    }),
    case("lockstep.yaml inside the repository but not YAML: the error quotes none of it", NothingEchoed, 1, 1, &["not a valid lockstep config"], |s| {
        s.write("app/lockstep.yaml", "chart: [password=hunter2\n");
        generate(s)
    }),
    case("lockstep.yaml with a secret where a list belongs", NothingEchoed, 0, 1, &["not a valid lockstep config", "(a value, not shown)"], |s| {
        s.write("app/lockstep.yaml", "profile: prefect-server\nvalues: password=hunter2\n");
        generate(s)
    }),
    case("lockstep.lock is a symlink to an outside file holding a password", ReadsStayInside, 2, 1, &["the lock file", "resolves outside the repository"], |s| {
        std::fs::write(s.outside("creds"), "password=hunter2\nLOCKSECRET-31\n").unwrap();
        s.link("app/lockstep.lock", &s.outside("creds"));
        generate(s)
    }),
    case("lockstep.lock is a symlink to an outside valid lock (would be used silently)", ReadsStayInside, 2, 1, &["the lock file", "resolves outside the repository"], |s| {
        s.link("app/lockstep.lock", &s.outside("valid.lock"));
        generate(s)
    }),
    case("the dynamic parameters of an app whose lock points outside", NothingEchoed, 2, 0, &["lockstep-error", "resolves outside the repository"], |s| {
        std::fs::write(s.outside("creds"), "password=hunter2\n").unwrap();
        s.link("app/lockstep.lock", &s.outside("creds"));
        no_stdin(s.argocd("parameters"))
    }),
    case("a chart file read by .Files.Get is a symlink out of the repository", ReadsStayInside, 3, 1, &["symlink files/note.txt", "resolves outside the repository", "remove the symlink"], |s| {
        s.link("app/files/note.txt", &s.outside("secret.txt"));
        generate(s)
    }),
    case("a template is a symlink out of the repository", ReadsStayInside, 3, 1, &["symlink templates/leak.yaml", "resolves outside the repository"], |s| {
        s.link("app/templates/leak.yaml", &s.outside("secret.txt"));
        generate(s)
    }),
    case("a subchart in charts/ is a symlink to a chart outside", ReadsStayInside, 3, 1, &["symlink charts/outside", "resolves outside the repository"], |s| {
        s.link("app/charts/outside", &s.outside("chart"));
        generate(s)
    }),
    case("the templates directory is a symlink out of the repository", ReadsStayInside, 0, 1, OUTSIDE_REFUSED, |s| {
        s.link("app/templates", &s.outside("chart/templates"));
        generate(s)
    }),
    case("a symlinked directory inside the repository leads on out of it", ReadsStayInside, 0, 1, &["note.txt", "resolves outside the repository"], |s| {
        std::fs::create_dir_all(s.path("shared")).unwrap();
        s.link("shared/note.txt", &s.outside("secret.txt"));
        s.link("app/files", &s.path("shared"));
        generate(s)
    }),
    case("a relative symlink climbing out of the repository", ReadsStayInside, 0, 1, OUTSIDE_REFUSED, |s| {
        s.link("app/files/note.txt", Path::new("../../../outside/secret.txt"));
        generate(s)
    }),
    case("a dangling symlink in the chart (a target that may appear later)", ReadsStayInside, 0, 1, &["symlink files/later.txt", "target does not exist"], |s| {
        s.link("app/files/later.txt", Path::new("/nonexistent/lockstep/secret"));
        generate(s)
    }),
    case("a symlink loop in the chart", ReadsStayInside, 0, 1, &["target does not exist"], |s| {
        s.link("app/files/a", Path::new("b"));
        s.link("app/files/b", Path::new("a"));
        generate(s)
    }),
    case("the chart itself (chart:) is a symlink to a chart outside", ReadsStayInside, 0, 1, &["chart \"../charts/ext\" resolves outside the repository"], |s| {
        s.link("charts/ext", &s.outside("chart"));
        s.write("app/lockstep.yaml", "chart: ../charts/ext\nprofile: prefect-server\n");
        generate(s)
    }),
    case("argocd init: a dependency from file:///abs/path outside the repository", ReadsStayInside, 4, 1, &["dependency \"ext\"", "is an absolute path", "`file://` dependencies must name a directory inside the repository"], |s| {
        let chart = format!("dependencies:\n  - name: ext\n    version: 0.1.0\n    repository: \"file://{}\"\n", s.outside("chart").display());
        s.chart_yaml(&chart);
        no_stdin(s.argocd("init"))
    }),
    case("argocd init: a dependency from file://../../outside", ReadsStayInside, 4, 1, &["dependency \"ext\"", "leaves the repository"], |s| {
        s.chart_yaml("dependencies:\n  - name: ext\n    version: 0.1.0\n    repository: \"file://../../outside/chart\"\n");
        no_stdin(s.argocd("init"))
    }),
    case("argocd init: a dependency from file:// inside the repository that is a symlink out", ReadsStayInside, 4, 1, &["dependency \"ext\"", "resolves outside the repository"], |s| {
        s.link("vendor/ext", &s.outside("chart"));
        s.chart_yaml("dependencies:\n  - name: ext\n    version: 0.1.0\n    repository: \"file://../vendor/ext\"\n");
        no_stdin(s.argocd("init"))
    }),
    case("argocd init: a file:// dependency inside the repository holding a symlink out", ReadsStayInside, 0, 1, &["dependency \"lockstep-hostile\"", "symlink files/note.txt", "resolves outside the repository"], |s| {
        copy_dir(&repo().join("tests/data/hostile/app"), &s.path("vendor/ext"));
        s.link("vendor/ext/files/note.txt", &s.outside("secret.txt"));
        s.chart_yaml("dependencies:\n  - name: lockstep-hostile\n    version: 0.1.0\n    repository: \"file://../vendor/ext\"\n");
        no_stdin(s.argocd("init"))
    }),
    case("Chart.yaml annotation lockstep.dev/profile names a file outside", ReadsStayInside, 4, 1, &["profile file (Chart.yaml annotation lockstep.dev/profile)", "leaves the repository"], |s| {
        s.write("app/lockstep.yaml", "# no profile: the chart names it\n");
        s.chart_yaml("annotations:\n  lockstep.dev/profile: ../../outside/profile.yaml\n");
        generate(s)
    }),
    case("Chart.yaml annotation lockstep.dev/profile names an absolute path", ReadsStayInside, 4, 1, &["lockstep.dev/profile", "is an absolute path"], |s| {
        s.write("app/lockstep.yaml", "# no profile: the chart names it\n");
        s.chart_yaml("annotations:\n  lockstep.dev/profile: /etc/passwd\n");
        generate(s)
    }),
    case("a values file parameter that is a symlink out of the repository", ReadsStayInside, 0, 1, &["values file \"values-prod.yaml\" resolves outside the repository"], |s| {
        s.link("app/values-prod.yaml", &s.outside("secret.txt"));
        values_files(s, &["values-prod.yaml"])
    }),
    case("a values file with a secret and a syntax error: the error quotes no value", NothingEchoed, 0, 1, &["values file", "is not valid YAML"], |s| {
        s.write("app/values-prod.yaml", "password: 'SUPERSECRET98\nother: [x\n");
        values_files(s, &["values-prod.yaml"])
    }),
    // --- Values echoed ----------------------------------------------------------------
    case("a helm parameter helm's --set parser cannot read", NothingEchoed, 5, 0, &["kind: Secret"], |s| generate_with(s, hp("password", "{x} SUPERSECRET99"))),
    case("a lockstep.yaml set: value helm's --set-string parser cannot read", NothingEchoed, 5, 0, &["kind: Secret"], |s| {
        s.write("app/lockstep.yaml", "profile: prefect-server\nset:\n  password: \"{x} SUPERSECRET98\"\n");
        generate(s)
    }),
    case("a chart that fails with a value the user set as its message", NothingEchoed, 0, 1, &["helm template failed", "(a value you set, not shown)"], |s| generate_with(s, hp("failWith", "FAILSECRET-77 is wrong"))),
    case("a chart that fails with a value from a values file as its message", NothingEchoed, 0, 1, &["helm template failed", "(a value you set, not shown)"], |s| {
        s.write("app/values-prod.yaml", "failWith: \"the db password FAILSECRET-77\\nis wrong\"\n");
        values_files(s, &["values-prod.yaml"])
    }),
    case("a chart that fails with a value from its own values.yaml as its message", NothingEchoed, 0, 1, &["helm template failed", "(a value you set, not shown)"], |s| {
        let v = std::fs::read_to_string(s.path("app/values.yaml")).unwrap();
        s.write("app/values.yaml", &v.replace("failWith: \"\"", "failWith: FAILSECRET-77"));
        render(s, &[])
    }),
    case("a helm parameter with a list index", NothingEchoed, 0, 1, &["uses a list index", "Put the list into a values file"], |s| generate_with(s, hp("list[0]", "SUPERSECRET99"))),
    case("a helm parameter key built to look like a flag is a values key, never a flag", CheckedOnEntry, 0, 0, &["kind: Deployment"], |s| generate_with(s, hp("--post-renderer", "/bin/sh"))),
    case("a helm parameter value that carries YAML meant to add an object", NoSilentDifference, 0, 0, &["kind: Secret\\nmetadata: {name: stolen}"], |s| generate_with(s, hp("echo", "x\"\nkind: Secret\nmetadata: {name: stolen}"))),
    case("a helm parameter value that looks like a helm flag stays a value", CheckedOnEntry, 0, 0, &["echo: \"--post-renderer=/bin/sh\""], |s| generate_with(s, hp("echo", "--post-renderer=/bin/sh"))),
    case("ARGOCD_APP_PARAMETERS that is not JSON, with a secret in it", NothingEchoed, 0, 1, &["ARGOCD_APP_PARAMETERS is not JSON"], |s| {
        let mut c = s.argocd("generate");
        c.env("ARGOCD_APP_PARAMETERS", "[{\"name\": \"helm-parameters\", \"map\": {\"password\": \"SUPERSECRET99\"");
        no_stdin(c)
    }),
    case("values files from the Application's plugin env leaving the repository", ReadsStayInside, 0, 1, &["values file \"../../outside/secret.txt\" leaves the repository"], |s| {
        let mut c = s.argocd("generate");
        c.env("ARGOCD_ENV_LOCKSTEP_VALUES_FILES", "values.yaml,../../outside/secret.txt");
        no_stdin(c)
    }),
    case("a profile parameter naming a file outside", ReadsStayInside, 0, 1, &["profile file \"../../outside/profile.yaml\" leaves the repository"], |s| generate_with(s, json!([{"name": "profile", "string": "../../outside/profile.yaml"}]))),
    case("Chart.yaml is a symlink to an outside chart's", ReadsStayInside, 0, 1, &["symlink Chart.yaml", "resolves outside the repository"], |s| {
        s.link("app/Chart.yaml", &s.outside("chart/Chart.yaml"));
        generate(s)
    }),
    case("a release parameter with a line break", CheckedOnEntry, 0, 1, &["release name", "is not valid"], |s| generate_with(s, json!([{"name": "release", "string": "app\nkind: Secret"}]))),
    case("LOCKSTEP_FROM with a carriage return", CheckedOnEntry, 0, 1, &["is not a version"], |s| {
        let mut c = s.cli(&["render", ".", "--profile", "prefect-server"]);
        c.env("LOCKSTEP_FROM", "3.7.8\r");
        no_stdin(c)
    }),
    case("--namespace with a slash", CheckedOnEntry, 0, 1, &["namespace \"a/b\"", "lower-case DNS label"], |s| render(s, &["-n", "a/b"])),
    case("--gate-image with a digest that is no digest", CheckedOnEntry, 0, 1, &["the gate image", "is not an image reference"], |s| render(s, &["--gate-image", "busybox@sha256:zz"])),
    // --- Collisions -------------------------------------------------------------------
    case("the chart renders lockstep's record ConfigMap <release>-lockstep", NoCollisions, 6, 1, &["ConfigMap hostile-lockstep", "a document lockstep adds (ConfigMap hostile-lockstep)", "Rename the chart's object"], |s| generate_with(s, hp("collide", "configmap"))),
    case("the chart renders lockstep's gate Job <release>-lockstep-gate", NoCollisions, 6, 1, &["Job hostile-lockstep-gate", "a document lockstep adds (Job hostile-lockstep-gate)"], |s| generate_with(s, hp("collide", "job"))),
    case("the same name in another namespace is no collision", NoCollisions, 0, 0, &["namespace: elsewhere", "name: hostile-lockstep-gate"], |s| generate_with(s, hp("collide", "configmap-elsewhere"))),
    case("a stream holding lockstep's Job name (inject)", NoCollisions, 6, 1, &["Job prefect-server-migrate-database", "a document lockstep adds"], |s| {
        let mut text = base();
        text.push_str("---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: prefect-server-migrate-database\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: x, image: \"busybox:1.36\"}]\n");
        inject(s, text)
    }),
    // --- Silent differences -----------------------------------------------------------
    case("a merge key whose value is a scalar", NoSilentDifference, 7, 1, &["merge key (`<<`) whose value is not a mapping"], |s| {
        let text = base()
            .replacen("containers:\n", "containers:\n        - <<: 5\n          name: bogus\n", 1);
        inject(s, text)
    }),
    case("a quoted \"<<\" key beside a merge key", NoSilentDifference, 0, 1, &["quoted \"<<\" key beside merge keys"], |s| {
        let text = base()
            .replacen("containers:\n", "containers:\n        - &b {name: side, image: \"busybox:1.36\"}\n        - <<: *b\n          name: side2\n", 1)
            .replacen("  labels:\n", "  annotations:\n    \"<<\": \"1\"\n  labels:\n", 1);
        inject(s, text)
    }),
    // --- Checked where they enter -----------------------------------------------------
    case("version with a trailing newline in lockstep.yaml", CheckedOnEntry, 8, 1, &["version \"1.2.0\\n\" is not a version"], |s| {
        s.write("app/lockstep.yaml", "profile: prefect-server\nversion: \"1.2.0\\n\"\n");
        generate(s)
    }),
    case("--from with shell text after the version", CheckedOnEntry, 8, 1, &["is not a version", "and nothing else"], |s| no_stdin(s.cli(&["render", ".", "--from", "1.1.0\"; id; echo \""]))),
    case("the from parameter with text after the version", CheckedOnEntry, 0, 1, &["the deployed release", "is not a version"], |s| generate_with(s, json!([{"name": "from", "string": "3.7.8 --debug"}]))),
    case("a namespace that smuggles a key into the manifests", CheckedOnEntry, 8, 1, &["namespace \"evil\\nkind: X\"", "is not valid", "lower-case DNS label"], |s| {
        s.write("app/lockstep.yaml", "profile: prefect-server\nnamespace: \"evil\\nkind: X\"\n");
        generate(s)
    }),
    case("a namespace from the Application's plugin env", CheckedOnEntry, 0, 1, &["namespace \"Prod_Env\"", "lower-case DNS label"], |s| {
        let mut c = s.argocd("generate");
        c.env("ARGOCD_ENV_LOCKSTEP_NAMESPACE", "Prod_Env");
        no_stdin(c)
    }),
    case("a gate image with a line break", CheckedOnEntry, 8, 1, &["gateImage", "is not an image reference"], |s| {
        s.write("app/lockstep.yaml", "profile: prefect-server\ngateImage: \"busybox:1.36\\n  command: [id]\"\n");
        generate(s)
    }),
    case("a lock whose image is not an image reference", CheckedOnEntry, 0, 1, &["lockstep.lock is corrupt", "deployed.image", "is not an image reference"], |s| {
        s.write("app/lockstep.lock", "deployed:\n  version: 3.7.8\n  image: \"prefect\\nkind: Secret\"\n");
        generate(s)
    }),
    case("a profile with an annotation key that is no qualified name", CheckedOnEntry, 8, 1, &["job.podAnnotations key", "is not a valid annotation key"], |s| {
        let p = lockstep::profile::built_in("prefect-server")
            .unwrap()
            .to_yaml()
            .replace("job:\n", "job:\n  podAnnotations:\n    \"bad key\\nx\": \"1\"\n");
        s.write("app/profile.yaml", &p);
        s.write("app/lockstep.yaml", "profile: profile.yaml\n");
        generate(s)
    }),
    case("a profile one-time step name longer than a Job name allows (was a panic)", Sound, 13, 1, &["one-time step name", "at most 30 characters"], |s| {
        s.write("app/profile.yaml", &one_time_profile(&"x".repeat(60)));
        s.write("app/lockstep.yaml", "profile: profile.yaml\n");
        generate_with(s, json!([{"name": "from", "string": "3.7.8"}]))
    }),
    case("a profile one-time step name that is no container name", CheckedOnEntry, 13, 1, &["one-time step name \"Fix_Things\"", "lower-case DNS label"], |s| {
        s.write("app/profile.yaml", &one_time_profile("Fix_Things"));
        s.write("app/lockstep.yaml", "profile: profile.yaml\n");
        generate_with(s, json!([{"name": "from", "string": "3.7.8"}]))
    }),
    // --- Time -------------------------------------------------------------------------
    case("a document of 1,000,000 nested [ (2 MB)", Bounded, 9, 1, &["nesting deeper than 128 levels"], |s| inject(s, "[".repeat(1_000_000))).within(20),
    case("deep flow nesting hidden behind closing brackets in strings", Bounded, 0, 1, &["nesting deeper than 128 levels"], |s| {
        let mut t = base();
        t.push_str("---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata: ");
        t.push_str(&"[ \"]\", ".repeat(300_000));
        inject(s, t)
    }).within(20),
    case("deep flow nesting after a plain scalar's continuation line that looks like `[ \"`", Bounded, 9, 1, &["nesting deeper than 128 levels"], |s| {
        let mut t = base();
        t.push_str("---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: e}\n");
        t.push_str("data:\n  a: x\n    [ \"\n  b: ");
        t.push_str(&"[".repeat(1_000_000));
        inject(s, t)
    }).within(20),
    case("deep flow nesting after a block scalar line that looks like `[ \"`", Bounded, 0, 1, &["nesting deeper than 128 levels"], |s| {
        let mut t = base();
        t.push_str("---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: e}\n");
        t.push_str("data:\n  a: |\n    [ \"\n  b: ");
        t.push_str(&"{x: ".repeat(300_000));
        inject(s, t)
    }).within(20),
    case("helm never exits", HelmTimeLimit, 11, 1, &["did not finish within 2 s", "was stopped", "LOCKSTEP_HELM_TIMEOUT"], |s| {
        let helm = s.script("helm-hang", "#!/bin/sh\nsleep 300\n");
        let mut c = s.argocd("generate");
        c.env("HELM_BIN", helm).env("LOCKSTEP_HELM_TIMEOUT", "2");
        no_stdin(c)
    }).within(20),
    case("helm exits while a process it started keeps its output open", HelmTimeLimit, 11, 1, &["kept its output open", "was stopped"], |s| {
        let helm = s.script("helm-linger", "#!/bin/sh\nsleep 300 &\necho 'apiVersion: v1'\nexit 0\n");
        let mut c = s.argocd("generate");
        c.env("HELM_BIN", helm);
        no_stdin(c)
    }).within(20),
    case("helm never exits under argocd init (dependency build)", HelmTimeLimit, 11, 1, &["helm dependency build did not finish within 2 s"], |s| {
        s.chart_yaml("dependencies:\n  - name: ext\n    version: 0.1.0\n    repository: \"https://charts.example.invalid\"\n");
        let helm = s.script("helm-hang", "#!/bin/sh\nsleep 300\n");
        let mut c = s.argocd("init");
        c.env("HELM_BIN", helm).env("ARGOCD_ENV_LOCKSTEP_HELM_TIMEOUT", "2s");
        no_stdin(c)
    }).within(20),
    case("a time limit of zero", HelmTimeLimit, 0, 2, &["\"0\" is not a time limit"], |s| render(s, &["--helm-timeout", "0"])),
    case("a time limit that is not one", HelmTimeLimit, 0, 1, &["LOCKSTEP_HELM_TIMEOUT", "\"soon\" is not a time limit"], |s| {
        let mut c = s.argocd("generate");
        c.env("LOCKSTEP_HELM_TIMEOUT", "soon");
        no_stdin(c)
    }),
];

/// The prefect-server profile with a one-time step named `name` on the 3.8 line.
fn one_time_profile(name: &str) -> String {
    let mut p = lockstep::profile::built_in("prefect-server").unwrap();
    let line = p
        .releases
        .lines
        .iter_mut()
        .find(|l| l.line == "3.8")
        .expect("prefect-server's catalog has 3.8");
    line.one_time.push(lockstep::profile::OneTime {
        name: name.to_owned(),
        command: vec!["true".into()],
        why: "a test".into(),
    });
    serde_yaml::to_string(&p).unwrap()
}

#[test]
fn hostile_cases_fail_cleanly_and_echo_nothing() {
    let own = CASES.iter().filter(|c| c.issue == 0).count();
    assert!(own >= 25, "only {own} cases of our own design");
    let mut failures = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let s = Scratch::new(&format!("case-{i}"));
        let (cmd, stdin) = (c.setup)(&s);
        let r = run(cmd, &stdin, Duration::from_secs(c.within));
        let mut problems = Vec::new();
        if r.code != Some(c.code) {
            problems.push(format!("exit {:?}, expected {}", r.code, c.code));
        }
        if r.took > Duration::from_secs(c.within) {
            problems.push(format!("took {:?}", r.took));
        }
        if c.code != 0 && !r.stdout.is_empty() {
            problems.push(format!("{} bytes on stdout", r.stdout.len()));
        }
        if r.stderr.contains("panicked") {
            problems.push("panicked".into());
        }
        let shown = if c.code == 0 { &r.stdout } else { &r.stderr };
        for e in c.expect {
            if !shown.contains(e) {
                problems.push(format!("lacks {e:?}"));
            }
        }
        for secret in SECRETS {
            if r.stderr.contains(secret) {
                problems.push(format!("stderr carries the secret {secret:?}"));
            }
            // A success may carry what the user set (the chart's Secret), never an outside file.
            if (c.code != 0 || *secret == OUTSIDE_SECRET) && r.stdout.contains(secret) {
                problems.push(format!("stdout carries the secret {secret:?}"));
            }
        }
        if c.code == 0 && !r.stderr.is_empty() && c.name.contains("helm parameter") {
            problems.push("stderr not empty on success".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{:?}{}] {}: {}\n--- stderr:\n{}",
                c.rule,
                if c.issue > 0 {
                    format!(", issue case {}", c.issue)
                } else {
                    String::new()
                },
                c.name,
                problems.join("; "),
                r.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} hostile case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every rule is held by at least one case or test; every case of issue 14 has one.
#[test]
fn every_rule_and_issue_case_is_covered() {
    use Rule::*;
    for r in [
        ReadsStayInside,
        NothingEchoed,
        NoCollisions,
        NoSilentDifference,
        CheckedOnEntry,
        Bounded,
        HelmTimeLimit,
        Sound,
    ] {
        assert!(CASES.iter().any(|c| c.rule == r), "no case holds {r:?}");
    }
    // 10 (memory), 12 (JSON) and 13's reader are tests of their own below.
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13] {
        assert!(
            CASES.iter().any(|c| c.issue == n),
            "no case reproduces issue case {n}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tests of their own
// ---------------------------------------------------------------------------------------

/// The control: the fixture renders, and a chart file inside the repository (also through
/// a symlink that stays inside) reaches the manifests as helm reads it.
#[test]
fn symlinks_inside_the_repository_are_followed() {
    let s = Scratch::new("inside-links");
    s.write("common/note.txt", "shared note\n");
    s.link("app/files/note.txt", Path::new("../../common/note.txt"));
    s.write("other/lockstep.yaml", "profile: prefect-server\n");
    s.link("app/lockstep.yaml", &s.path("other/lockstep.yaml"));
    let r = run(s.argocd("generate"), b"", Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("shared note"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// Issue case 5: the values a user sets reach helm in a file lockstep writes (mode 0600,
/// in a private directory, removed afterwards), never as arguments: a helm that echoes
/// its arguments and fails shows no value.
#[test]
fn set_values_reach_helm_as_a_private_file_never_as_arguments() {
    let s = Scratch::new("recording-helm");
    let log = s.dir.join("bin/log");
    let helm = s.script(
        "helm-record",
        &format!(
            "#!/bin/sh\nlog={log}\nfor a in \"$@\"; do\n  echo \"arg: $a\" >> \"$log\"\n  case \"$a\" in --values=*) f=\"${{a#--values=}}\"; echo \"mode: $(stat -c %a \"$f\") dir: $(stat -c %a \"$(dirname \"$f\")\")\" >> \"$log\"; cat \"$f\" >> \"$log\";; esac\ndone\necho \"helm was given: $*\" >&2\nexit 1\n",
            log = log.display()
        ),
    );
    let mut c = s.argocd_with(
        "generate",
        json!([{"name": "helm-parameters", "map": {"password": "SUPERSECRET99", "a.b": "x,y"}}]),
    );
    c.env("HELM_BIN", &helm);
    let r = run(c, b"", Duration::from_secs(60));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("helm was given"), "{}", r.stderr);
    assert!(!r.stderr.contains("SUPERSECRET99"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("arg: --set"), "no --set argument:\n{log}");
    assert!(log.contains("mode: 600 dir: 700"), "{log}");
    assert!(
        log.contains("password: SUPERSECRET99"),
        "the value reached helm:\n{log}"
    );
    assert!(
        log.contains("a:\n  b: \"x,y\""),
        "a dotted key nests:\n{log}"
    );
    let file = log
        .lines()
        .find_map(|l| l.strip_prefix("arg: --values="))
        .filter(|f| f.contains("lockstep-values-"))
        .expect("the generated values file");
    assert!(!Path::new(file).exists(), "{file} was removed");
    assert!(
        !Path::new(file).parent().unwrap().exists(),
        "its directory too"
    );
}

/// Through the generated values file, helm reads each value as its own `--set` would
/// (types included): compared with real helm given `--set` by hand.
#[test]
fn set_values_are_typed_as_helm_types_them() {
    let s = Scratch::new("typing");
    let values = [
        "on",
        "yes",
        "no",
        "007",
        "0",
        "12",
        "-3",
        "+4",
        "1e3",
        "0x1F",
        "TRUE",
        "False",
        "Null",
        "3.8.3",
        "a:b",
        "#x",
        "- y",
        "9223372036854775808",
        "",
    ];
    for v in values {
        let helm = Command::new(tool("helm4"))
            .args(["template", "r", "."])
            .arg(format!("--set=typed={v}"))
            .current_dir(s.path("app"))
            .output()
            .unwrap();
        assert!(
            helm.status.success(),
            "{}",
            String::from_utf8_lossy(&helm.stderr)
        );
        let want = typed_of(&String::from_utf8(helm.stdout).unwrap());
        let r = run(
            s.cli(&[
                "render",
                ".",
                "--release",
                "r",
                "--profile",
                "prefect-server",
                "--set",
                &format!("typed={v}"),
            ]),
            b"",
            Duration::from_secs(60),
        );
        assert_eq!(r.code, Some(0), "{v:?}: {}", r.stderr);
        assert_eq!(typed_of(&r.stdout), want, "the value {v:?}");
        // --set-string keeps every one a string.
        let r = run(
            s.cli(&[
                "render",
                ".",
                "--release",
                "r",
                "--profile",
                "prefect-server",
                "--set-string",
                &format!("typed={v}"),
            ]),
            b"",
            Duration::from_secs(60),
        );
        assert_eq!(
            typed_of(&r.stdout),
            serde_json::to_string(v).unwrap(),
            "{v:?} as a string"
        );
    }
}

/// `data.typed` of the ConfigMap `r-files`: the value as helm's toJson wrote it.
fn typed_of(stream: &str) -> String {
    let all = docs(stream);
    find(&all, "ConfigMap", "r-files").expect("the files ConfigMap")["data"]["typed"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Issue case 7: an API container written with a YAML merge key gets its Job with the
/// merged fields (env, imagePullPolicy), as Kubernetes reads the pod; entries after the
/// merge override it (go-yaml v2 applies a mapping's entries in order).
#[test]
fn merge_keys_resolve_as_kubernetes_reads_them() {
    let base = base();
    let container = "      containers:
        - name: prefect-server
          image: prefecthq/prefect:3.8.3-python3.11
          env:
            - name: PREFECT_SERVER_DATABASE_CONNECTION_URL
              value: postgresql+asyncpg://prefect:secret@db.prefect.svc/prefect
            - name: PREFECT_SERVER_DATABASE_MIGRATE_ON_START
              value: \"false\"
";
    assert!(base.contains(container), "tests/bad/base.yaml changed");
    let merged = "      initContainers:
        - &base
          name: wait
          image: busybox:1.36
          imagePullPolicy: Always
          env:
            - name: PREFECT_SERVER_DATABASE_CONNECTION_URL
              value: postgresql+asyncpg://prefect:secret@db.prefect.svc/prefect
            - name: PREFECT_SERVER_DATABASE_MIGRATE_ON_START
              value: \"false\"
      containers:
        - <<: *base
          name: prefect-server
          image: prefecthq/prefect:3.8.3-python3.11
";
    let text = base.replacen(container, merged, 1);
    let out = run_with_stdin(
        {
            let mut c = lockstep();
            c.args(["inject", "--profile", "prefect-server"]);
            c
        },
        text.as_bytes(),
    );
    let out = ok(&out);
    let all = docs(&out);
    let want = &docs(&base)
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
        .clone();
    let job = find(&all, "Job", "prefect-server-migrate-database").expect("the Job");
    let jc = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        &serde_yaml::Value::Sequence(app_env(jc)),
        want,
        "the Job's env is the merged env (plus the LOCKSTEP_* of its wrapper)"
    );
    assert_eq!(jc["imagePullPolicy"], "Always", "a merged field");
    assert_eq!(
        jc["image"], "prefecthq/prefect:3.8.3-python3.11",
        "the later entry wins"
    );
}

/// Issue case 12: a 4.4 MB JSON stream is split in one pass: four times the objects
/// take about four times as long (quadratic, sixteen; 4.4 MB took 4.4 s in a release
/// build).
#[test]
fn a_json_stream_splits_in_linear_time() {
    let obj = |i: usize| {
        format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"c{i}\"}},\"data\":{{\"k\":\"{}\"}}}}\n",
            "v".repeat(40)
        )
    };
    // The best of three runs: other tests run beside this one.
    let time = |n: usize| {
        let text: String = (0..n).map(obj).collect();
        let took = (0..3)
            .map(|_| {
                let t = Instant::now();
                let s = lockstep::stream::split(&text).unwrap();
                let took = t.elapsed();
                assert_eq!(s.docs.len(), n);
                assert_eq!(s.docs[n - 1].line, n, "line numbers still right");
                took
            })
            .min()
            .unwrap();
        (text.len(), took)
    };
    let (_, small) = time(11_000);
    let (len, large) = time(44_000);
    assert!(len > 4_400_000);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    assert!(
        ratio < 10.0,
        "4x the objects took {ratio:.1}x as long ({small:?} → {large:?}); linear is 4x, quadratic 16x"
    );
}

/// Issue case 10: peak memory for 500,000 tiny documents is a small constant per
/// document (flow-style documents were each kept parsed: 872 MB for 28 MB).
#[test]
fn many_tiny_documents_take_a_small_constant_each() {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("SKIP many_tiny_documents_take_a_small_constant_each: needs GNU time at /usr/bin/time (apt-get install time)");
        return;
    }
    let base = base();
    let tiny = "---\n{apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n";
    let n = 100_000;
    let text = format!("{base}{}", tiny.repeat(n));
    let out = run_with_stdin(
        {
            let mut c = Command::new(time);
            c.args(["-f", "maxrss=%M"])
                .arg(env!("CARGO_BIN_EXE_lockstep"))
                .args(["inject", "--profile", "prefect-server"])
                .env("HELM_BIN", "/nonexistent");
            c
        },
        text.as_bytes(),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let kb: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss="))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's maxrss");
    let per_doc = (kb * 1024).saturating_sub(text.len() as u64 * 2 + (32 << 20)) / n as u64;
    // The bound the README states: 2 × input + 32 MB + 600 bytes per document.
    assert!(
        kb * 1024 <= text.len() as u64 * 2 + (32 << 20) + 600 * n as u64,
        "peak {kb} KB for {} bytes in {n} documents ({per_doc} bytes a document over 2 × input + 32 MB)",
        text.len()
    );
}

/// Issue case 13: a `Read` that claims more bytes than it was given is refused, not
/// trusted (it would make the text cover memory past its buffer).
#[test]
fn a_reader_that_over_reports_is_refused() {
    struct Liar(bool);
    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Ok(0);
            }
            buf.iter_mut().for_each(|b| *b = b'a');
            Ok(buf.len() + 4096)
        }
    }
    match lockstep::source::Text::read(Liar(false), None) {
        Err(lockstep::source::ReadError::Io(e)) => {
            assert!(e.to_string().contains("reported"), "{e}")
        }
        Err(e) => panic!("{e:?}"),
        Ok(t) => panic!("an over-reported read was taken: {} bytes", t.len()),
    }
}

/// Issue case 11: a helm killed at its time limit takes what it started along.
#[test]
fn a_stopped_helm_takes_its_children_along() {
    let s = Scratch::new("helm-children");
    let pidfile = s.dir.join("bin/child.pid");
    let helm = s.script(
        "helm-spawns",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pidfile.display()
        ),
    );
    let mut c = s.argocd("generate");
    c.env("HELM_BIN", helm).env("LOCKSTEP_HELM_TIMEOUT", "1");
    let r = run(c, b"", Duration::from_secs(20));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("did not finish within 1 s"),
        "{}",
        r.stderr
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    let t = Instant::now();
    while proc.exists() && t.elapsed() < Duration::from_secs(5) {
        // Reparented to init, it may linger a moment as a zombie before being reaped.
        let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    assert!(
        !proc.exists() || stat.contains(") Z "),
        "helm's child {pid} still runs"
    );
}
