//! What a new user meets first: the commands a refusal prints work, `plan` reads the app
//! directory, flags win over lockstep.yaml, every flag says what it does, and the README
//! says what render does. Then packaged charts read in-process, and charts from a chart
//! repository served on 127.0.0.1 and an OCI registry.
//!
//! End-to-end through the built binary with the real helm 4 (and helm 3 where helm's own
//! behaviour matters). Expected outputs: tests/fresh/ (see its README).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A fresh, empty scratch directory inside the repository (paths from lockstep.yaml must
/// stay inside it).
fn fresh(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = scratch(&format!("fresh-{tag}-{}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::remove_dir_all(&p).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A fresh directory holding `files` (name, text).
fn app_dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = fresh(tag);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fresh").join(name)).unwrap()
}

fn job_annotation(stream: &str, job: &str, key: &str) -> Option<String> {
    let d = docs(stream);
    find(&d, "Job", job)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Newcomer friction

/// `lockstep bump --to TO` in an app directory pinned to prefect-server 3.5.2; the directory.
fn bump_from_3_5_2(tag: &str, to: &str) -> (Test, PathBuf) {
    let cfg = "profile: prefect-server\nversion: 3.5.2\n";
    let dir = app_dir(tag, &[("lockstep.yaml", cfg)]);
    let test =
        Test::new()
            .current_dir(&dir)
            .args(["bump", "--to", to, "--config", "lockstep.yaml"]);
    (test, dir)
}

/// The refusal of a skipped line names a `lockstep bump --to V` for the next line, also for
/// a line the catalog has no latest release for (it printed `3.6.x`, which bump rejected
/// as "not a version").
#[test]
fn a_refusal_of_a_skipped_line_names_the_bump_to_the_next_line() {
    let (bump, _) = bump_from_3_5_2("bump-refused", "3.8.3");
    bump.status(3)
        .stderr(
            "lockstep: error: refusing to upgrade prefect-server from 3.5.2 to 3.8.3: that skips 2 release lines.
  rule: prefect-server upgrades one listed release line at a time (3.4 → 3.5 → 3.6 → 3.7 → 3.8)
  path: 3.5.2 → 3.6.x → 3.7.x → 3.8.x
  now:  upgrade to 3.6 first: `lockstep bump --to 3.6.0` (or pin the chart to 3.6.0), sync, then continue
",
        )
        .run();
}

/// The bump the refusal above names is accepted: lockstep.yaml pins it, lockstep.lock keeps
/// the deployed release.
#[test]
fn the_bump_a_refusal_names_is_accepted() {
    let (bump, dir) = bump_from_3_5_2("bump-accepted", "3.6.0");
    bump.stderr("lockstep: pinned 3.5.2 → 3.6.0; ./lockstep.lock records 3.5.2 as deployed. Commit both files; the render now checks the step 3.5.2 → 3.6.0\n")
        .run();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(
        read("lockstep.yaml"),
        "profile: prefect-server\nversion: \"3.6.0\"\n"
    );
    assert_eq!(
        read("lockstep.lock"),
        "# Written by `lockstep bump`: the release this app runs now. The next render must be
# reachable from it. Commit this file with the change to lockstep.yaml.
deployed:
  version: 3.5.2
"
    );
}

/// An app directory of prefect-customer-managed 1.2.0, deployed 0.8.2.
fn cloud_app() -> PathBuf {
    app_dir(
        "plan-app",
        &[
            (
                "lockstep.yaml",
                "profile: prefect-customer-managed\nversion: 1.2.0\n",
            ),
            ("lockstep.lock", "deployed:\n  version: 0.8.2\n"),
        ],
    )
}

/// `lockstep plan` in an app directory takes the profile and `--to` from lockstep.yaml and
/// `--from` from lockstep.lock, as `render` does.
#[test]
fn plan_reads_the_app_directory() {
    Test::new()
        .current_dir(cloud_app())
        .arg("plan")
        .stdout(expected("plan-0.8.2-to-1.2.0.txt"))
        .run();
}

#[test]
fn plan_flags_win_over_the_app_directory() {
    Test::new()
        .current_dir(cloud_app())
        .args(["plan", "--from", "0.7.0", "--to", "0.8.2"])
        .stdout(expected("plan-0.7.0-to-0.8.2.txt"))
        .run();
}

/// Elsewhere, without flags, it says what it needs.
#[test]
fn plan_outside_an_app_directory_asks_for_the_deployed_release() {
    Test::new()
        .current_dir(fresh("plan-empty"))
        .args(["plan", "--profile", "prefect-server"])
        .status(1)
        .stderr("lockstep: error: which release is deployed? pass --from VERSION (or set LOCKSTEP_FROM, or run in an app directory with a lockstep.lock)\n")
        .run();
}

/// The migration Job's Argo CD hook when rendering in an app directory whose lockstep.yaml
/// says `phase: sync`, with `flags`.
fn hook_with_config_phase_sync(flags: &[&str]) -> Option<String> {
    let dir = fresh("phase");
    let chart = format!("{}examples/charts/prefect-server", up_to_repo(&dir));
    let cfg = format!("chart: {chart}\nprofile: prefect-server\nphase: sync\n");
    std::fs::write(dir.join("lockstep.yaml"), cfg).unwrap();
    let out = Test::new()
        .current_dir(&dir)
        .args(["render", "--from", "3.7.8"])
        .args(flags)
        .run();
    job_annotation(
        &out.stdout,
        "prefect-server-migrate-database",
        "argocd.argoproj.io/hook",
    )
}

/// `--phase` on the command line wins over `phase: sync` in lockstep.yaml (the flag's
/// default could not be told from an explicit value).
macro_rules! phase_cases {
    ($($name:ident: $flags:expr => $hook:literal,)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(hook_with_config_phase_sync($flags).as_deref(), Some($hook));
        }
    )*};
}

phase_cases! {
    phase_comes_from_lockstep_yaml: &[] => "Sync",
    an_explicit_presync_flag_wins_over_lockstep_yaml: &["--phase", "presync"] => "PreSync",
    an_explicit_sync_flag_agrees_with_lockstep_yaml: &["--phase", "sync"] => "Sync",
}

/// The clap help of a command: every option and argument line has a description.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut section = "";
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        if !matches!(section, "Options:" | "Arguments:") {
            continue;
        }
        let t = line.trim_start();
        let is_item = (t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
            && line.len() - t.len() <= 6;
        if !is_item {
            continue;
        }
        // Short help: "  --flag <V>  text"; long help: the text on the next line.
        let inline = t
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let next = lines
            .get(i + 1)
            .is_some_and(|n| n.len() - n.trim_start().len() > 6 && !n.trim().is_empty());
        if !inline && !next {
            missing.push(t.to_owned());
        }
    }
    missing
}

/// The undescribed flags of `lockstep ARGS -h` and `--help`.
fn undescribed_in_help(args: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for flag in ["-h", "--help"] {
        let help = Test::new().args(args).arg(flag).run().stdout;
        for m in undescribed(&help) {
            missing.push(format!("lockstep {} {flag}: {m}", args.join(" ")));
        }
    }
    missing
}

/// Every flag and argument of every command says what it does, in `-h` and `--help`.
macro_rules! help_cases {
    ($($name:ident: $args:expr,)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(undescribed_in_help(&$args), Vec::<String>::new());
        }
    )*};
}

help_cases! {
    help_of_render_describes_every_flag: ["render"],
    help_of_inject_describes_every_flag: ["inject"],
    help_of_plan_describes_every_flag: ["plan"],
    help_of_bump_describes_every_flag: ["bump"],
    help_of_profiles_describes_every_flag: ["profiles"],
    help_of_profiles_show_describes_every_flag: ["profiles", "show"],
    help_of_values_migrate_describes_every_flag: ["values", "migrate"],
    help_of_argocd_init_describes_every_flag: ["argocd", "init"],
    help_of_argocd_generate_describes_every_flag: ["argocd", "generate"],
    help_of_argocd_parameters_describes_every_flag: ["argocd", "parameters"],
}

/// The `undescribed` check itself: a flag without text is found, in both help layouts.
#[test]
fn the_help_check_finds_an_undescribed_flag() {
    let help = "Usage: x\n\nOptions:\n      --ok <V>  does a thing\n      --bare <V>\n  -h, --help\n          Print help\n";
    assert_eq!(undescribed(help), ["--bare <V>"]);
}

/// `argocd generate --help` names every environment variable and parameter the plugin
/// reads: they are collected from the source, so a new one cannot be left out.
#[test]
fn argocd_help_lists_what_the_plugin_reads() {
    let src = std::fs::read_to_string(repo().join("src/argocd.rs")).unwrap();
    let mut read = Vec::new();
    for (open, prefix) in [
        ("get(env, \"", ""),
        ("user_env(env, \"", "ARGOCD_ENV_LOCKSTEP_"),
        ("s(\"", ""),
        ("p.arrays.get(\"", ""),
        ("p.maps.get(\"", ""),
    ] {
        for (i, _) in src.match_indices(open) {
            // A call, not the end of another name (`trim_start_matches("./")`).
            if !src[..i].ends_with([' ', '(', '!']) {
                continue;
            }
            let name = src[i + open.len()..].split('"').next().unwrap();
            read.push(format!("{prefix}{name}"));
        }
    }
    assert!(read.len() >= 15, "found only {read:?}");
    let help = Test::new()
        .args(["argocd", "generate", "--help"])
        .run()
        .stdout;
    let absent: Vec<&String> = read.iter().filter(|n| !help.contains(n.as_str())).collect();
    assert_eq!(
        absent,
        Vec::<&String>::new(),
        "not in `argocd generate --help`:\n{help}"
    );
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

#[test]
fn the_readme_says_crds_are_included() {
    assert!(
        readme().contains("--include-crds"),
        "README names --include-crds"
    );
}

#[test]
fn the_readme_says_lockstep_documents_come_last() {
    assert!(readme().contains("writes its own documents after all of the\nchart's"));
}

/// The render of a chart with a `crds/` directory.
fn crd_app() -> String {
    let chart = repo().join("tests/data/helm_plugin/crd-app");
    Test::new()
        .arg("render")
        .arg(chart)
        .args(["--release", "crd-app", "--from", "1.0.0"])
        .run()
        .stdout
}

/// `helm template` runs with `--include-crds`.
#[test]
fn a_charts_crds_are_in_the_stream() {
    let d = docs(&crd_app());
    let crds = d
        .iter()
        .filter(|x| x["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, 1);
}

#[test]
fn lockstep_documents_follow_every_chart_document() {
    let text = crd_app();
    let sources: Vec<bool> = text
        .lines()
        .filter(|l| l.starts_with("# Source: "))
        .map(|l| l.starts_with("# Source: lockstep/"))
        .collect();
    let first_own = sources
        .iter()
        .position(|own| *own)
        .expect("lockstep's documents");
    assert!(first_own > 0, "the chart's documents are there");
    assert!(sources[first_own..].iter().all(|own| *own), "{sources:?}");
}

// ---------------------------------------------------------------------------
// Packaged charts, read in-process

/// One test per helm major: `$name::helm4` and `$name::helm3` run `$check(4)` and `$check(3)`.
macro_rules! per_helm {
    ($($(#[$m:meta])* $name:ident => $check:expr;)*) => {$(
        $(#[$m])*
        mod $name {
            use super::*;
            #[test]
            fn helm4() {
                ($check)(4)
            }
            #[test]
            fn helm3() {
                ($check)(3)
            }
        }
    )*};
}

/// `helm package CHART -d DIR` with the real helm `major`; the .tgz's path.
fn package(major: u32, chart: &str, dir: &Path) -> PathBuf {
    let out = std::process::Command::new(tool(&format!("helm{major}")))
        .args(["package", repo().join(chart).to_str().unwrap(), "-d"])
        .arg(dir)
        .env("HELM_CACHE_HOME", scratch("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch("helm-config"))
        .env("HELM_DATA_HOME", scratch("helm-data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "helm package: {}", stderr(&out));
    let text = stdout(&out);
    let path = text
        .trim()
        .rsplit(": ")
        .next()
        .expect("helm package names the file");
    PathBuf::from(path)
}

/// A helm that records each call's arguments, then runs the real helm 4.
fn recording_helm(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("helm-calls.log");
    let wrapper = dir.join("helm");
    let helm4 = tool("helm4");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        helm4.display()
    );
    write_script(&wrapper, &script);
    (wrapper, log)
}

const SERVER_CHART: &str = "examples/charts/prefect-server";

/// prefect-server rendered from `chart` through a recording helm 4; the stream and the helm
/// calls it made.
fn render_recorded(chart: &Path) -> (String, Vec<String>) {
    let (helm, log) = recording_helm(&fresh("recorded"));
    let out = Test::new()
        .env("HELM_BIN", helm)
        .arg("render")
        .arg(chart)
        .args(RENDER)
        .args(["--set", "backgroundServices.runAsSeparateDeployment=true"])
        .run();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (out.stdout, calls.lines().map(str::to_owned).collect())
}

/// prefect-server packaged by helm `major`.
fn packaged_server(major: u32) -> PathBuf {
    let tgz = package(major, SERVER_CHART, &fresh("package"));
    assert!(
        tgz.ends_with("prefect-server-2026.8.18172642.tgz"),
        "{tgz:?}"
    );
    tgz
}

per_helm! {
    /// A packaged chart renders exactly as its directory.
    a_packaged_chart_renders_as_its_directory => |major| {
        let (from_dir, _) = render_recorded(&repo().join(SERVER_CHART));
        let (from_tgz, _) = render_recorded(&packaged_server(major));
        assert!(from_dir.contains("prefect-server-migrate-database"));
        assert_eq!(from_tgz, from_dir);
    };
    /// With one helm process: Chart.yaml is read from the archive, not by `helm show chart`.
    a_packaged_chart_takes_one_helm_call => |major| {
        let (_, calls) = render_recorded(&packaged_server(major));
        let commands: Vec<&str> = calls.iter().map(|c| c.split(' ').next().unwrap()).collect();
        assert_eq!(commands, ["template"], "{calls:?}");
    };
}

/// The user's values for prefect-cloud 1.2.0 without their `ingress` section: the chart's
/// default `ingress.enabled: true` is what makes `ingress.name` required.
fn cloud_values_without_ingress(dir: &Path) -> PathBuf {
    let full =
        std::fs::read_to_string(repo().join("examples/values/prefect-cloud/values-1.2.0.yaml"))
            .unwrap();
    let start = full.find("\ningress:\n").unwrap();
    let end = start + 1 + full[start + 1..].find("\n\n").unwrap();
    let values = dir.join("values.yaml");
    let text = format!("{}{}", &full[..start], &full[end..]);
    assert!(!text.contains("\ningress:"));
    std::fs::write(&values, text).unwrap();
    values
}

/// The values checks see `chart`'s defaults: a `required` rule whose condition only the
/// chart's defaults make true fires.
fn the_defaults_make_the_ingress_rule_fire(chart: &Path, dir: &Path) {
    Test::new()
        .arg("render")
        .arg(chart)
        .arg("-f")
        .arg(cloud_values_without_ingress(dir))
        .args(["--release", "customer-managed", "--from", "0.8.2"])
        .status(3)
        .stderr_contains("\n  - [0.8 → 1.2] `ingress.name` is not set while `ingress.enabled` is true: the default Ingress name changed from self-managed-prefect-cloud to customer-managed-prefect-cloud; an existing install must keep its Ingress\n    fix: set `ingress.name: self-managed-prefect-cloud`\n")
        .run();
}

#[test]
fn a_chart_directorys_default_values_are_merged() {
    let chart = repo().join("examples/charts/prefect-cloud-1.2.0");
    the_defaults_make_the_ingress_rule_fire(&chart, &fresh("dir-values"));
}

#[test]
fn a_packaged_charts_default_values_are_merged() {
    let dir = fresh("package-values");
    let tgz = package(4, "examples/charts/prefect-cloud-1.2.0", &dir);
    the_defaults_make_the_ingress_rule_fire(&tgz, &dir);
}

/// An archive helm would refuse is refused before helm runs, naming the cause: a gzip of a
/// tar whose entry climbs out of the chart directory, made with python3's tarfile (the
/// test needs Python 3, as scripts/install-tools.sh does).
#[test]
fn an_archive_entry_climbing_out_of_the_chart_is_refused() {
    let tgz = fresh("hostile").join("evil-0.1.0.tgz");
    let script = format!(
        "import io, tarfile\nwith tarfile.open({:?}, 'w:gz') as t:\n    for name, data in [('evil/Chart.yaml', b'name: evil\\nversion: 0.1.0\\n'), ('evil/../../escape.yaml', b'x: 1\\n')]:\n        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n",
        tgz.to_str().unwrap()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));
    Test::new()
        .arg("render")
        .arg(&tgz)
        .args(["--profile", "generic"])
        .status(1)
        .stderr_contains("a path into a parent directory")
        .run();
}

#[test]
fn a_tgz_that_is_not_gzip_is_refused() {
    let not = fresh("not-gzip").join("values.tgz");
    std::fs::write(&not, "a: 1\n").unwrap();
    Test::new()
        .arg("render")
        .arg(&not)
        .status(1)
        .stderr_contains("is not a packaged chart")
        .run();
}

// ---------------------------------------------------------------------------
// Charts from anywhere: a chart repository and an OCI registry on 127.0.0.1

/// A chart repository: `dir` served over plain HTTP on 127.0.0.1 (an ephemeral port) by
/// a small server in this process, optionally behind Basic auth. It stops with the test
/// process.
struct RepoServer {
    url: String,
}

impl RepoServer {
    fn start(dir: &Path, basic_auth: Option<&str>) -> RepoServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let dir = dir.to_path_buf();
        let want = basic_auth.map(|up| format!("Basic {}", base64(up.as_bytes())));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            auth = Some(v.trim().to_owned());
                        }
                    }
                }
                let path = first.split(' ').nth(1).unwrap_or("/").to_owned();
                let file = dir.join(path.trim_start_matches('/'));
                let (status, body) = if want.is_some() && auth != want {
                    ("401 Unauthorized", b"unauthorized\n".to_vec())
                } else if !path.contains("..") && file.is_file() {
                    ("200 OK", std::fs::read(&file).unwrap())
                } else {
                    ("404 Not Found", b"not found\n".to_vec())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nWWW-Authenticate: Basic realm=\"charts\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        RepoServer { url }
    }
}

const PS_VERSION: &str = "2026.8.18172642";

/// A repository directory: the packaged prefect-server and `helm repo index`'s index.yaml;
/// the directory and the .tgz.
fn repository(tag: &str) -> (PathBuf, PathBuf) {
    let dir = fresh(tag);
    let tgz = package(4, SERVER_CHART, &dir);
    let out = std::process::Command::new(tool("helm4"))
        .args(["repo", "index"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm repo index: {}", stderr(&out));
    let index = std::fs::read_to_string(dir.join("index.yaml")).unwrap();
    assert!(index.contains(PS_VERSION), "{index}");
    (dir, tgz)
}

/// The repository every test of this process shares (without auth): its URL and .tgz.
fn shared_repository() -> &'static (String, PathBuf) {
    static REPO: OnceLock<(String, PathBuf)> = OnceLock::new();
    REPO.get_or_init(|| {
        let (dir, tgz) = repository("repo");
        (RepoServer::start(&dir, None).url, tgz)
    })
}

/// lockstep with helm `major` and helm's own settings in a fresh home (repositories added
/// there and nowhere else); the home's tmp/ is lockstep's TMPDIR.
fn with_helm(major: u32, home: &Path) -> Test {
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    Test::new()
        .env("HELM_BIN", tool(&format!("helm{major}")))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env(
            "HELM_REPOSITORY_CONFIG",
            home.join("config/repositories.yaml"),
        )
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .env("TMPDIR", home.join("tmp"))
}

const RENDER: &[&str] = &[
    "-n",
    "prefect",
    "--from",
    "3.7.8",
    "--set",
    "redis.enabled=true",
];

/// `lockstep render CHART RENDER` with helm `major` in a fresh home.
fn render_with(major: u32, chart: &[&str]) -> String {
    let home = fresh("home");
    with_helm(major, &home)
        .arg("render")
        .args(chart)
        .args(RENDER)
        .run()
        .stdout
}

/// The shared repository's .tgz rendered with helm `major`: what every chart reference
/// must give.
fn packaged_render(major: u32) -> &'static str {
    static RENDERS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    RENDERS[(major == 3) as usize].get_or_init(|| {
        let want = render_with(major, &[shared_repository().1.to_str().unwrap()]);
        assert!(want.contains("prefect-server-migrate-database"));
        want
    })
}

/// `helm repo add lockstep-test URL` with helm `major` in `home`.
fn helm_repo_add(major: u32, home: &Path, url: &str) {
    let add = std::process::Command::new(tool(&format!("helm{major}")))
        .args(["repo", "add", "lockstep-test", url])
        .env(
            "HELM_REPOSITORY_CONFIG",
            home.join("config/repositories.yaml"),
        )
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .output()
        .unwrap();
    assert!(add.status.success(), "helm repo add: {}", stderr(&add));
}

fn url() -> &'static str {
    &shared_repository().0
}

per_helm! {
    /// `render --repo URL CHART --version V` gives exactly the bytes of rendering the .tgz.
    a_repository_chart_by_url_and_version_renders_as_the_tgz => |major| {
        let got = render_with(major, &["--repo", url(), "prefect-server", "--version", PS_VERSION]);
        assert_eq!(got, packaged_render(major));
    };
    /// Without --version: the latest, the only one there.
    a_repository_chart_by_url_renders_its_latest_version => |major| {
        let got = render_with(major, &["--repo", url(), "prefect-server"]);
        assert_eq!(got, packaged_render(major));
    };
    /// `render NAME/CHART` of a repository added with `helm repo add`.
    a_chart_of_an_added_repository_renders_as_the_tgz => |major| {
        let home = fresh("home");
        helm_repo_add(major, &home, url());
        let chart = ["lockstep-test/prefect-server", "--version", PS_VERSION];
        let got = with_helm(major, &home).arg("render").args(chart).args(RENDER).run();
        assert_eq!(got.stdout, packaged_render(major));
    };
    /// The Helm plugin front-end takes the same charts.
    the_helm_plugin_renders_a_chart_of_an_added_repository => |major| {
        let home = fresh("home");
        helm_repo_add(major, &home, url());
        with_helm(major, &home)
            .args(["helm", "template", "prefect-server", "lockstep-test/prefect-server"])
            .args(["--version", PS_VERSION, "--from", "3.7.8", "-n", "prefect"])
            .args(["--set", "redis.enabled=true"])
            .stdout(packaged_render(major))
            .run();
    };
    /// Nothing is left in the temporary directory.
    the_pulled_chart_is_removed => |major| {
        let home = fresh("home");
        with_helm(major, &home).args(["render", "--repo", url(), "prefect-server"]).run();
        let left: Vec<_> = std::fs::read_dir(home.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    };
    /// A version the repository does not have: the cause and the fix, nothing on stdout.
    a_version_the_repository_lacks_is_refused => |major| {
        with_helm(major, &fresh("home"))
            .args(["render", "--repo", url(), "prefect-server", "--version", "9.9.9"])
            .status(1)
            .stderr_contains("cannot fetch the chart prefect-server version 9.9.9")
            .stderr_contains("fix:")
            .run();
    };
    /// A repository name that was never added.
    a_repository_never_added_is_refused => |major| {
        with_helm(major, &fresh("home"))
            .args(["render", "nosuchrepo/prefect-server"])
            .status(1)
            .stderr_contains("helm repo add")
            .run();
    };
}

// Credentials reach helm only on its stdin: with LOCKSTEP_REPO_USERNAME/PASSWORD or
// --password-file the render is the .tgz's; the password is in no helm argument and in no
// message; `--password` is refused without echoing it.

const SECRET: &str = "s3cret-Pa55";

/// A repository behind Basic auth (user `ci`, password [`SECRET`]); its URL.
fn auth_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (dir, _) = repository("repo-auth");
        RepoServer::start(&dir, Some(&format!("ci:{SECRET}"))).url
    })
}

/// `render --repo AUTH_URL prefect-server` as user `ci` through a recording helm 4, with
/// `how` adding the password; the helm calls it made.
fn render_with_credentials(how: impl FnOnce(Test, &Path) -> Test) -> String {
    let dir = fresh("auth");
    let (helm, log) = recording_helm(&dir);
    let test = with_helm(4, &dir.join("home"))
        .env("HELM_BIN", helm)
        .env("LOCKSTEP_REPO_USERNAME", "ci")
        .args(["render", "--repo", auth_url(), "prefect-server"])
        .args(RENDER)
        .stdout(packaged_render(4))
        .stderr_lacks(SECRET);
    how(test, &dir).run();
    std::fs::read_to_string(&log).unwrap()
}

/// The helm calls of a render with credentials: the password went on helm's stdin.
fn assert_password_on_stdin(calls: &str) {
    assert!(calls.contains("repo add lockstep-pull"), "{calls}");
    assert!(calls.contains("--password-stdin"), "{calls}");
    assert!(
        !calls.contains(SECRET),
        "the password is on a helm command line:\n{calls}"
    );
}

#[test]
fn a_repository_password_from_the_environment_reaches_helm_on_stdin() {
    let calls = render_with_credentials(|t, _| t.env("LOCKSTEP_REPO_PASSWORD", SECRET));
    assert_password_on_stdin(&calls);
}

#[test]
fn a_repository_password_file_reaches_helm_on_stdin() {
    let calls = render_with_credentials(|t, dir| {
        let file = dir.join("password");
        std::fs::write(&file, format!("{SECRET}\n")).unwrap();
        t.arg("--password-file").arg(file)
    });
    assert_password_on_stdin(&calls);
}

/// `render --repo URL prefect-server` of the auth repository, refused with exit 1.
fn refused_by_the_auth_repository(url: &str) -> Test {
    with_helm(4, &fresh("home"))
        .args(["render", "--repo", url, "prefect-server"])
        .status(1)
        .stderr_lacks(SECRET)
}

/// Without credentials: refused by the repository, said so.
#[test]
fn a_repository_refusing_anonymous_access_is_explained() {
    refused_by_the_auth_repository(auth_url())
        .stderr_contains("401")
        .stderr_contains("LOCKSTEP_REPO_PASSWORD")
        .run();
}

#[test]
fn a_wrong_repository_password_is_not_echoed() {
    refused_by_the_auth_repository(auth_url())
        .env("LOCKSTEP_REPO_USERNAME", "ci")
        .env("LOCKSTEP_REPO_PASSWORD", "wrong-Pa55")
        .stderr_lacks("wrong-Pa55")
        .run();
}

#[test]
fn a_password_flag_is_refused_without_echoing_it() {
    refused_by_the_auth_repository(auth_url())
        .args(["--password", SECRET])
        .stderr_contains("LOCKSTEP_REPO_PASSWORD")
        .run();
}

/// Credentials inside the URL: refused before helm runs, not echoed.
#[test]
fn credentials_in_a_repository_url_are_refused_without_echoing_them() {
    let url = auth_url().replace("http://", &format!("http://ci:{SECRET}@"));
    refused_by_the_auth_repository(&url)
        .stderr_contains("holds credentials")
        .run();
}

/// In Argo CD, lockstep.yaml names a repository chart with `repo:`, `chart:` and
/// `chartVersion:`; the sidecar pulls it. The stream is the .tgz's render, after the
/// plugin's `# lockstep:` notes.
#[test]
fn argocd_renders_a_repository_chart_named_in_lockstep_yaml() {
    let cfg = format!(
        "repo: {}\nchart: prefect-server\nchartVersion: \"{PS_VERSION}\"\nversion: 3.8.3\nnamespace: prefect\nset:\n  redis.enabled: \"true\"\n",
        url()
    );
    let app = app_dir(
        "argocd-app",
        &[
            ("lockstep.yaml", &cfg),
            ("lockstep.lock", "deployed:\n  version: 3.7.8\n"),
        ],
    );
    let out = with_helm(4, &app.join("home"))
        .current_dir(&app)
        .env("ARGOCD_APP_NAME", "prefect-server")
        .args(["argocd", "generate"])
        .run();
    let got: String = out
        .stdout
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("# lockstep:"))
        .collect();
    let want = with_helm(4, &fresh("home"))
        .arg("render")
        .arg(&shared_repository().1)
        .args("--release prefect-server -n prefect --from 3.7.8".split(' '))
        .args(["--set-string", "redis.enabled=true"])
        .run();
    assert_eq!(got, want.stdout);
}

/// A registry on 127.0.0.1 (Debian's docker-registry, the CNCF distribution 2.8), stopped
/// when dropped; None, with one line saying what is missing, where none is installed.
struct Registry {
    host: String,
    child: std::process::Child,
}

impl Registry {
    fn start(dir: &Path, test: &str) -> Option<Registry> {
        let Some(bin) = ["/usr/bin/docker-registry", "/usr/local/bin/registry"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            eprintln!("SKIP {test}: needs a registry binary (apt-get install docker-registry)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        let root = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Some(Registry {
            host: format!("127.0.0.1:{port}"),
            child,
        })
    }

    /// `helm push TGZ oci://HOST/charts`, retried while the registry starts.
    fn push(&self, tgz: &Path, home: &Path) {
        for _ in 0..50 {
            let out = std::process::Command::new(tool("helm4"))
                .arg("push")
                .arg(tgz)
                .arg(format!("oci://{}/charts", self.host))
                .arg("--plain-http")
                .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("helm push to the registry on {}", self.host);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `oci://` charts: pushed with `helm push` to a real registry on 127.0.0.1, rendered with
/// --version and --plain-http by helm 3 and 4 as the .tgz; a chart the registry does not
/// have is refused with the cause and the fix. One registry serves all four checks.
#[test]
fn an_oci_chart_renders_as_the_packaged_chart() {
    let dir = fresh("oci");
    let Some(registry) = Registry::start(&dir, "an_oci_chart_renders_as_the_packaged_chart") else {
        return;
    };
    registry.push(&shared_repository().1, &dir);
    let chart = format!("oci://{}/charts/prefect-server", registry.host);
    let missing = format!("oci://{}/charts/nothing", registry.host);
    for major in [4, 3] {
        let got = render_with(major, &[&chart, "--version", PS_VERSION, "--plain-http"]);
        assert_eq!(
            got,
            packaged_render(major),
            "helm{major}: oci:// --version --plain-http"
        );
        with_helm(major, &fresh("home"))
            .args(["render", &missing, "--plain-http"])
            .args(RENDER)
            .status(1)
            .stderr_contains("cannot fetch the chart oci://")
            .stderr_contains("fix:")
            .run();
    }
}
