//! What a new user meets first: the commands a refusal prints work, `plan` reads the app
//! directory, flags win over lockstep.yaml, every flag says what it does, and the README
//! says what render does. Then packaged charts read in-process, and charts from a chart
//! repository served on 127.0.0.1.
//!
//! End-to-end through the built binary with the real helm 4 (and helm 3 where helm's own
//! behaviour matters).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty scratch directory inside the repository (paths from lockstep.yaml must
/// stay inside it).
fn fresh(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = scratch(&format!("fresh-{tag}-{}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::remove_dir_all(&p).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn run(dir: &Path, args: &[&str]) -> Output {
    lockstep()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lockstep")
}

/// `../` as often as `dir` is deep below the repository root.
fn up_to_repo(dir: &Path) -> String {
    let depth = dir
        .canonicalize()
        .unwrap()
        .strip_prefix(repo().canonicalize().unwrap())
        .expect("scratch is inside the repository")
        .components()
        .count();
    "../".repeat(depth)
}

fn job_annotation(stream: &str, job: &str, key: &str) -> Option<String> {
    let d = docs(stream);
    find(&d, "Job", job)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Newcomer friction

/// The refusal of a skipped line names a `lockstep bump --to V` that bump accepts, also
/// for a line the catalog has no latest release for (it printed `3.6.x`, which bump
/// rejected as "not a version").
#[test]
fn the_bump_a_refusal_names_is_accepted_by_bump() {
    let dir = fresh("bump-line");
    let cfg = dir.join("lockstep.yaml");
    std::fs::write(&cfg, "profile: prefect-server\nversion: 3.5.2\n").unwrap();
    let e = fails(
        &run(
            &dir,
            &["bump", "--to", "3.8.3", "--config", "lockstep.yaml"],
        ),
        3,
    );
    let suggested = e
        .split("`lockstep bump --to ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("the refusal names a bump: {e}"))
        .to_owned();
    assert_eq!(suggested, "3.6.0", "{e}");
    ok(&run(
        &dir,
        &["bump", "--to", &suggested, "--config", "lockstep.yaml"],
    ));
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(after.contains("version: \"3.6.0\""), "{after}");
    let lock = std::fs::read_to_string(dir.join("lockstep.lock")).unwrap();
    assert!(lock.contains("version: 3.5.2"), "{lock}");
}

/// `lockstep plan` in an app directory takes the profile and `--to` from lockstep.yaml and
/// `--from` from lockstep.lock, as `render` does; flags still win.
#[test]
fn plan_reads_the_app_directory() {
    let dir = fresh("plan-app");
    std::fs::write(
        dir.join("lockstep.yaml"),
        "profile: prefect-customer-managed\nversion: 1.2.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("lockstep.lock"), "deployed:\n  version: 0.8.2\n").unwrap();
    let out = ok(&run(&dir, &["plan"]));
    assert!(
        out.starts_with("Upgrade plan for prefect-customer-managed from 0.8.2 to 1.2.0"),
        "{out}"
    );
    let out = ok(&run(&dir, &["plan", "--from", "0.7.0", "--to", "0.8.2"]));
    assert!(out.contains("from 0.7.0 to 0.8.2"), "{out}");
    // Elsewhere, without flags, it says what it needs.
    let empty = fresh("plan-empty");
    let e = fails(&run(&empty, &["plan", "--profile", "prefect-server"]), 1);
    assert!(e.contains("--from VERSION"), "{e}");
}

/// `--phase presync` given on the command line wins over `phase: sync` in lockstep.yaml
/// (the flag's default could not be told from an explicit value).
#[test]
fn an_explicit_phase_flag_wins_over_lockstep_yaml() {
    let dir = fresh("phase");
    let chart = format!("{}examples/charts/prefect-server", up_to_repo(&dir));
    std::fs::write(
        dir.join("lockstep.yaml"),
        format!("chart: {chart}\nprofile: prefect-server\nphase: sync\n"),
    )
    .unwrap();
    let hook = "argocd.argoproj.io/hook";
    let job = "prefect-server-migrate-database";
    let from_config = ok(&run(&dir, &["render", "--from", "3.7.8"]));
    assert_eq!(
        job_annotation(&from_config, job, hook).as_deref(),
        Some("Sync")
    );
    for phase in ["presync", "sync"] {
        let out = ok(&run(&dir, &["render", "--from", "3.7.8", "--phase", phase]));
        let want = if phase == "presync" {
            "PreSync"
        } else {
            "Sync"
        };
        assert_eq!(
            job_annotation(&out, job, hook).as_deref(),
            Some(want),
            "--phase {phase}"
        );
    }
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

/// Every flag and argument of every command says what it does, in `-h` and `--help`.
#[test]
fn every_flag_is_described_in_help() {
    let dir = fresh("help");
    let commands: &[&[&str]] = &[
        &["render"],
        &["inject"],
        &["plan"],
        &["bump"],
        &["profiles"],
        &["profiles", "show"],
        &["values", "migrate"],
        &["argocd", "init"],
        &["argocd", "generate"],
        &["argocd", "parameters"],
    ];
    let mut missing = Vec::new();
    for cmd in commands {
        for flag in ["-h", "--help"] {
            let help = ok(&run(&dir, &[cmd, &[flag][..]].concat()));
            for m in undescribed(&help) {
                missing.push(format!("lockstep {} {flag}: {m}", cmd.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "undescribed:\n{}", missing.join("\n"));
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
    let help = ok(&run(
        &fresh("argocd-help"),
        &["argocd", "generate", "--help"],
    ));
    let absent: Vec<&String> = read.iter().filter(|n| !help.contains(n.as_str())).collect();
    assert!(
        absent.is_empty(),
        "not in `argocd generate --help`: {absent:?}\n{help}"
    );
}

/// `helm template` runs with `--include-crds`, and the README says so; lockstep's
/// documents follow every document of the chart, as the README says.
#[test]
fn the_readme_says_where_documents_go_and_that_crds_are_included() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("--include-crds"),
        "README names --include-crds"
    );
    assert!(
        readme.contains("writes its own documents after all of the\nchart's"),
        "README says where lockstep's documents go"
    );
    let chart = repo().join("tests/data/helm_plugin/crd-app");
    let out = run(
        &repo(),
        &[
            "render",
            chart.to_str().unwrap(),
            "--release",
            "crd-app",
            "--from",
            "1.0.0",
        ],
    );
    let text = ok(&out);
    let d = docs(&text);
    assert!(
        d.iter()
            .any(|x| x["kind"].as_str() == Some("CustomResourceDefinition")),
        "the chart's crds/ are in the stream:\n{text}"
    );
    let first_own = text
        .find("# Source: lockstep/")
        .expect("lockstep's documents");
    let last_chart = text
        .match_indices("# Source: ")
        .map(|(i, _)| i)
        .filter(|&i| !text[i..].starts_with("# Source: lockstep/"))
        .max()
        .unwrap();
    assert!(last_chart < first_own, "lockstep's documents come last");
}

// ---------------------------------------------------------------------------
// Packaged charts, read in-process

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
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            tool("helm4").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, log)
}

/// A packaged chart renders exactly as its directory, with one helm process: Chart.yaml
/// is read from the archive, not by `helm show chart`.
#[test]
fn a_packaged_chart_renders_as_its_directory_with_one_helm_call() {
    let dir = fresh("package");
    let (helm, log) = recording_helm(&dir);
    for major in [4, 3] {
        let tgz = package(major, "examples/charts/prefect-server", &dir);
        assert!(
            tgz.ends_with("prefect-server-2026.8.18172642.tgz"),
            "{tgz:?}"
        );
        let render = |chart: &Path| {
            let _ = std::fs::remove_file(&log);
            let out = lockstep()
                .env("HELM_BIN", &helm)
                .args(["render", chart.to_str().unwrap(), "-n", "prefect"])
                .args(["--from", "3.7.8", "--set", "redis.enabled=true"])
                .args(["--set", "backgroundServices.runAsSeparateDeployment=true"])
                .output()
                .unwrap();
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            (ok(&out), calls)
        };
        let (from_dir, _) = render(&repo().join("examples/charts/prefect-server"));
        let (from_tgz, calls) = render(&tgz);
        assert!(from_dir.contains("prefect-server-migrate-database"));
        assert_eq!(
            from_dir, from_tgz,
            "helm{major} package: the .tgz renders as the directory"
        );
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(calls.len(), 1, "one helm call: {calls:?}");
        assert!(calls[0].starts_with("template "), "{calls:?}");
    }
}

/// The values checks see a packaged chart's defaults as they see a directory's: a
/// `required` rule whose condition only the chart's defaults make true fires for both.
#[test]
fn a_packaged_charts_default_values_are_merged() {
    let dir = fresh("package-values");
    let tgz = package(4, "examples/charts/prefect-cloud-1.2.0", &dir);
    // The user's values for 1.2.0 without their `ingress` section: the chart's default
    // `ingress.enabled: true` is what makes `ingress.name` required.
    let full =
        std::fs::read_to_string(repo().join("examples/values/prefect-cloud/values-1.2.0.yaml"))
            .unwrap();
    let start = full.find("\ningress:\n").unwrap();
    let end = start + 1 + full[start + 1..].find("\n\n").unwrap();
    let values = dir.join("values.yaml");
    std::fs::write(&values, format!("{}{}", &full[..start], &full[end..])).unwrap();
    assert!(!std::fs::read_to_string(&values)
        .unwrap()
        .contains("\ningress:"));
    for chart in [repo().join("examples/charts/prefect-cloud-1.2.0"), tgz] {
        let out = lockstep()
            .args([
                "render",
                chart.to_str().unwrap(),
                "-f",
                values.to_str().unwrap(),
            ])
            .args(["--release", "customer-managed", "--from", "0.8.2"])
            .output()
            .unwrap();
        let e = fails(&out, 3);
        assert!(
            e.contains("`ingress.name` is not set while `ingress.enabled` is true"),
            "{}: {e}",
            chart.display()
        );
    }
}

/// An archive helm would refuse is refused before helm runs, naming the cause.
#[test]
fn a_hostile_archive_is_refused() {
    let dir = fresh("hostile");
    // A gzip of a tar whose entry climbs out of the chart directory, made with python3's
    // tarfile (the test needs Python 3, as scripts/install-tools.sh does).
    let tgz = dir.join("evil-0.1.0.tgz");
    let script = format!(
        "import io, tarfile\nwith tarfile.open({:?}, 'w:gz') as t:\n    for name, data in [('evil/Chart.yaml', b'name: evil\\nversion: 0.1.0\\n'), ('evil/../../escape.yaml', b'x: 1\\n')]:\n        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n",
        tgz.to_str().unwrap()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));
    let out = lockstep()
        .args(["render", tgz.to_str().unwrap(), "--profile", "generic"])
        .output()
        .unwrap();
    let e = fails(&out, 1);
    assert!(e.contains("a path into a parent directory"), "{e}");
    // Not gzip at all.
    let not = dir.join("values.tgz");
    std::fs::write(&not, "a: 1\n").unwrap();
    let e = fails(
        &lockstep()
            .args(["render", not.to_str().unwrap()])
            .output()
            .unwrap(),
        1,
    );
    assert!(e.contains("is not a packaged chart"), "{e}");
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

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const PS_VERSION: &str = "2026.8.18172642";

/// A repository directory: the packaged prefect-server and `helm repo index`'s index.yaml.
fn repository(tag: &str) -> (PathBuf, PathBuf) {
    let dir = fresh(tag);
    let repo_dir = dir.join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let tgz = package(4, "examples/charts/prefect-server", &repo_dir);
    let out = std::process::Command::new(tool("helm4"))
        .args(["repo", "index"])
        .arg(&repo_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "helm repo index: {}", stderr(&out));
    assert!(std::fs::read_to_string(repo_dir.join("index.yaml"))
        .unwrap()
        .contains(PS_VERSION));
    (dir, tgz)
}

/// lockstep with helm `major` and helm's own settings in `home` (repositories added there
/// and nowhere else).
fn lockstep_with(major: u32, home: &Path) -> std::process::Command {
    let mut c = lockstep();
    c.env("HELM_BIN", tool(&format!("helm{major}")))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env(
            "HELM_REPOSITORY_CONFIG",
            home.join("config/repositories.yaml"),
        )
        .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
        .env("TMPDIR", home.join("tmp"))
        .env_remove("LOCKSTEP_REPO_USERNAME")
        .env_remove("LOCKSTEP_REPO_PASSWORD");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    c
}

const RENDER: &[&str] = &[
    "-n",
    "prefect",
    "--from",
    "3.7.8",
    "--set",
    "redis.enabled=true",
];

/// `render --repo URL prefect-server --version V` and `render NAME/prefect-server` of a
/// repository added with `helm repo add` give exactly the bytes of rendering the .tgz,
/// with helm 3 and helm 4; nothing is left in the temporary directory.
#[test]
fn a_repository_chart_renders_as_the_packaged_chart() {
    let (dir, tgz) = repository("repo");
    let server = RepoServer::start(&dir.join("repo"), None);
    for major in [4, 3] {
        let home = dir.join(format!("helm{major}"));
        let run = |args: &[&str]| {
            let out = lockstep_with(major, &home)
                .arg("render")
                .args(args)
                .args(RENDER)
                .output()
                .unwrap();
            ok(&out)
        };
        let want = run(&[tgz.to_str().unwrap()]);
        assert!(want.contains("prefect-server-migrate-database"));
        let by_url = run(&[
            "--repo",
            &server.url,
            "prefect-server",
            "--version",
            PS_VERSION,
        ]);
        assert_eq!(by_url, want, "helm{major}: --repo URL CHART --version V");
        let latest = run(&["--repo", &server.url, "prefect-server"]);
        assert_eq!(latest, want, "helm{major}: --repo URL CHART (latest)");
        let add = std::process::Command::new(tool(&format!("helm{major}")))
            .args(["repo", "add", "lockstep-test", &server.url])
            .env(
                "HELM_REPOSITORY_CONFIG",
                home.join("config/repositories.yaml"),
            )
            .env("HELM_REPOSITORY_CACHE", home.join("cache/repository"))
            .output()
            .unwrap();
        assert!(add.status.success(), "helm repo add: {}", stderr(&add));
        let by_name = run(&["lockstep-test/prefect-server", "--version", PS_VERSION]);
        assert_eq!(by_name, want, "helm{major}: REPO/CHART of helm repo add");
        // The Helm plugin front-end takes the same charts.
        let plugin = lockstep_with(major, &home)
            .args([
                "helm",
                "template",
                "prefect-server",
                "lockstep-test/prefect-server",
            ])
            .args(["--version", PS_VERSION, "--from", "3.7.8", "-n", "prefect"])
            .args(["--set", "redis.enabled=true"])
            .output()
            .unwrap();
        assert_eq!(
            ok(&plugin),
            want,
            "helm{major}: helm lockstep template REPO/CHART"
        );
        let left: Vec<_> = std::fs::read_dir(home.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "the pulled chart is removed: {left:?}");
        // A version the repository does not have: the cause and the fix, nothing on stdout.
        let out = lockstep_with(major, &home)
            .args([
                "render",
                "--repo",
                &server.url,
                "prefect-server",
                "--version",
                "9.9.9",
            ])
            .output()
            .unwrap();
        let e = fails(&out, 1);
        assert!(
            e.contains("cannot fetch the chart prefect-server version 9.9.9") && e.contains("fix:"),
            "{e}"
        );
        // A repository name that was never added.
        let e = fails(
            &lockstep_with(major, &home)
                .args(["render", "nosuchrepo/prefect-server"])
                .output()
                .unwrap(),
            1,
        );
        assert!(e.contains("helm repo add"), "{e}");
    }
}

/// Credentials reach helm only on its stdin: with LOCKSTEP_REPO_USERNAME/PASSWORD or
/// --password-file the render is the .tgz's; the password is in no helm argument and in no
/// message; `--password` is refused without echoing it.
#[test]
fn repository_credentials_never_reach_a_command_line() {
    let (dir, tgz) = repository("repo-auth");
    let secret = "s3cret-Pa55";
    let server = RepoServer::start(&dir.join("repo"), Some(&format!("ci:{secret}")));
    let home = dir.join("home");
    let (helm, log) = recording_helm(&dir);
    let want = ok(&lockstep_with(4, &home)
        .arg("render")
        .arg(&tgz)
        .args(RENDER)
        .output()
        .unwrap());
    let pw_file = dir.join("password");
    std::fs::write(&pw_file, format!("{secret}\n")).unwrap();
    for by_file in [false, true] {
        let mut c = lockstep_with(4, &home);
        c.env("HELM_BIN", &helm)
            .env("LOCKSTEP_REPO_USERNAME", "ci")
            .args(["render", "--repo", &server.url, "prefect-server"])
            .args(RENDER);
        if by_file {
            c.arg("--password-file").arg(&pw_file);
        } else {
            c.env("LOCKSTEP_REPO_PASSWORD", secret);
        }
        let out = c.output().unwrap();
        assert_eq!(ok(&out), want, "by file: {by_file}");
        assert!(!stderr(&out).contains(secret));
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("repo add lockstep-pull") && calls.contains("--password-stdin"),
        "{calls}"
    );
    assert!(
        !calls.contains(secret),
        "the password is on a helm command line:\n{calls}"
    );
    // Without credentials: refused by the repository, said so.
    let e = fails(
        &lockstep_with(4, &home)
            .args(["render", "--repo", &server.url, "prefect-server"])
            .output()
            .unwrap(),
        1,
    );
    assert!(
        e.contains("401") && e.contains("LOCKSTEP_REPO_PASSWORD"),
        "{e}"
    );
    // A wrong password: no echo of it.
    let e = fails(
        &lockstep_with(4, &home)
            .env("LOCKSTEP_REPO_USERNAME", "ci")
            .env("LOCKSTEP_REPO_PASSWORD", "wrong-Pa55")
            .args(["render", "--repo", &server.url, "prefect-server"])
            .output()
            .unwrap(),
        1,
    );
    assert!(!e.contains("wrong-Pa55"), "{e}");
    // --password on the command line: refused, not echoed.
    let e = fails(
        &lockstep_with(4, &home)
            .args([
                "render",
                "--repo",
                &server.url,
                "prefect-server",
                "--password",
                secret,
            ])
            .output()
            .unwrap(),
        1,
    );
    assert!(
        e.contains("LOCKSTEP_REPO_PASSWORD") && !e.contains(secret),
        "{e}"
    );
    // Credentials inside the URL: refused before helm runs, not echoed.
    let url = server
        .url
        .replace("http://", &format!("http://ci:{secret}@"));
    let e = fails(
        &lockstep_with(4, &home)
            .args(["render", "--repo", &url, "prefect-server"])
            .output()
            .unwrap(),
        1,
    );
    assert!(
        e.contains("holds credentials") && !e.contains(secret),
        "{e}"
    );
}

/// In Argo CD, lockstep.yaml names a repository chart with `repo:`, `chart:` and
/// `chartVersion:`; the sidecar pulls it.
#[test]
fn argocd_renders_a_repository_chart_named_in_lockstep_yaml() {
    let (dir, tgz) = repository("repo-argocd");
    let server = RepoServer::start(&dir.join("repo"), None);
    let home = dir.join("home");
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("lockstep.yaml"),
        format!(
            "repo: {}\nchart: prefect-server\nchartVersion: \"{PS_VERSION}\"\nversion: 3.8.3\nnamespace: prefect\nset:\n  redis.enabled: \"true\"\n",
            server.url
        ),
    )
    .unwrap();
    std::fs::write(app.join("lockstep.lock"), "deployed:\n  version: 3.7.8\n").unwrap();
    let out = lockstep_with(4, &home)
        .current_dir(&app)
        .env("ARGOCD_APP_NAME", "prefect-server")
        .args(["argocd", "generate"])
        .output()
        .unwrap();
    let got: String = ok(&out)
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("# lockstep:"))
        .collect();
    let want = ok(&lockstep_with(4, &home)
        .arg("render")
        .arg(&tgz)
        .args([
            "--release",
            "prefect-server",
            "-n",
            "prefect",
            "--from",
            "3.7.8",
        ])
        .args(["--set-string", "redis.enabled=true"])
        .output()
        .unwrap());
    assert_eq!(got, want);
}

/// `oci://` charts: pushed with `helm push` to a real registry (Debian's docker-registry,
/// the CNCF distribution 2.8) on 127.0.0.1, rendered with --version and --plain-http by
/// helm 3 and 4 as the .tgz. Skipped, with one line, where no registry binary is installed.
#[test]
fn an_oci_chart_renders_as_the_packaged_chart() {
    let Some(registry) = ["/usr/bin/docker-registry", "/usr/local/bin/registry"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        eprintln!("SKIP an_oci_chart_renders_as_the_packaged_chart: needs a registry binary (apt-get install docker-registry)");
        return;
    };
    let (dir, tgz) = repository("oci");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _registry = Kill(
        std::process::Command::new(registry)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let home = dir.join("home");
    let host = format!("127.0.0.1:{port}");
    let mut pushed = false;
    for _ in 0..50 {
        let out = std::process::Command::new(tool("helm4"))
            .arg("push")
            .arg(&tgz)
            .arg(format!("oci://{host}/charts"))
            .arg("--plain-http")
            .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
            .output()
            .unwrap();
        if out.status.success() {
            pushed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(pushed, "helm push to the registry on {host}");
    let reference = format!("oci://{host}/charts/prefect-server");
    for major in [4, 3] {
        let home = dir.join(format!("helm{major}"));
        let run = |args: &[&str]| {
            lockstep_with(major, &home)
                .arg("render")
                .args(args)
                .args(RENDER)
                .output()
                .unwrap()
        };
        let want = ok(&run(&[tgz.to_str().unwrap()]));
        let got = ok(&run(&[&reference, "--version", PS_VERSION, "--plain-http"]));
        assert_eq!(got, want, "helm{major}: oci:// --version --plain-http");
        // A chart the registry does not have: the cause and the fix.
        let e = fails(
            &run(&[&format!("oci://{host}/charts/nothing"), "--plain-http"]),
            1,
        );
        assert!(
            e.contains("cannot fetch the chart oci://") && e.contains("fix:"),
            "{e}"
        );
    }
}
