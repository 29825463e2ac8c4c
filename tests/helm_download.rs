//! The Helm plugin's download path, with the real helm 3.19 and 4.3: scripts/release.sh
//! packages the binary under test as a release (archive + .sha256), a small HTTP server on
//! 127.0.0.1 (ephemeral port) serves it, and `helm plugin install` runs the install hook
//! with LOCKSTEP_DOWNLOAD_BASE pointing there and no cargo on PATH, so the hook must
//! download, check the sha256 and the build id, and install. Then the plugin runs.
//! A tampered archive is refused by the checksum and nothing stays installed; after the
//! sources change (same version), `helm plugin update` replaces the binary (build id).

mod common;

use common::{crate_version, repo, scratch, stderr, stdout, tool};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Serves the files under `root` (GET only) and records the paths asked for.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, reqs, halt) = (root.to_owned(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    serve(c, &root, &reqs);
                }
            }
        });
        Server {
            port,
            requests,
            stop,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut c: TcpStream, root: &Path, reqs: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    reqs.lock().unwrap().push(path.clone());
    let file = root.join(path.trim_start_matches('/'));
    let ok = !path.contains("..") && file.is_file();
    let body = if ok {
        std::fs::read(&file).unwrap()
    } else {
        b"not found\n".to_vec()
    };
    let status = if ok { "200 OK" } else { "404 Not Found" };
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(&body);
}

/// `bash scripts/release.sh VERSION --binary BIN --no-image --out DIR`.
fn release(out: &Path, binary: &Path) {
    let o = Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .args([&crate_version(), "--binary"])
        .arg(binary)
        .args(["--no-image", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "release.sh failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn archive(rel: &Path) -> PathBuf {
    let v = crate_version();
    rel.join(format!("v{v}/lockstep-{v}-linux-amd64.tar.gz"))
}

/// A git repository holding what the project's repository holds for the plugin: the plugin
/// files and the sources (so the hook can compute the source id), no bin/. helm installs it
/// from its file:// URL, as it would clone https://github.com/...; `helm plugin update`
/// then pulls.
fn plugin_checkout(dir: &Path) {
    let files = [
        ".gitignore",
        "plugin.yaml",
        "scripts/helm-plugin-install.sh",
        "helm-postrender/plugin.yaml",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
    ];
    for f in files {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(f), &to).unwrap();
    }
    for d in ["src", "profiles", "templates"] {
        let o = Command::new("cp")
            .arg("-R")
            .arg(repo().join(d))
            .arg(dir.join(d))
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, "v0.1.0");
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=lockstep tests",
            "-c",
            "user.email=tests@lockstep.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
}

fn commit(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
}

/// bin/lockstep of the installed plugin (helm's clone of the repository).
fn installed_binary(helm: &Helm) -> PathBuf {
    let plugins = helm.root.join("data/plugins");
    for e in std::fs::read_dir(&plugins).unwrap() {
        let p = e.unwrap().path();
        let yaml = std::fs::read_to_string(p.join("plugin.yaml")).unwrap_or_default();
        if yaml.lines().any(|l| l == "name: lockstep") {
            return p.join("bin/lockstep");
        }
    }
    panic!("no lockstep plugin in {}", plugins.display());
}

struct Helm {
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl Helm {
    fn new(root: &Path, major: u8, base: &str) -> Helm {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(tool(&format!("helm{major}")), bin.join("helm")).unwrap();
        let s = |p: &str| root.join(p).to_str().unwrap().to_owned();
        let mut env = vec![
            // No cargo on PATH: the hook takes the download path.
            ("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())),
            ("HOME".into(), s("")),
            ("HELM_DATA_HOME".into(), s("data")),
            ("HELM_CONFIG_HOME".into(), s("config")),
            ("HELM_CACHE_HOME".into(), s("cache")),
            ("LOCKSTEP_DOWNLOAD_BASE".into(), base.to_owned()),
            ("KUBECONFIG".into(), s("no-kubeconfig")),
        ];
        if major == 3 {
            env.push(("HELM_PLUGINS".into(), s("data/plugins")));
        }
        Helm {
            root: root.to_owned(),
            env,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(self.root.join("bin/helm"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn plugins(&self) -> Vec<String> {
        let o = self.run(&["plugin", "list"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8(o.stdout).unwrap()[..64].to_owned()
}

fn build_id(bin: &Path) -> String {
    let o = Command::new(bin).arg("build-id").output().unwrap();
    assert!(
        o.status.success(),
        "{} build-id: {}",
        bin.display(),
        stderr(&o)
    );
    stdout(&o).trim().to_owned()
}

fn installs_through_the_download_path(major: u8) {
    let root = scratch(&format!("helm-download-{major}"));
    let _ = std::fs::remove_dir_all(&root);
    let rel = root.join("release");
    let bin = Path::new(env!("CARGO_BIN_EXE_lockstep"));
    release(&rel, bin);
    let server = Server::start(&rel);
    let checkout = root.join("checkout");
    plugin_checkout(&checkout);
    let helm = Helm::new(&root.join("helm"), major, &server.base());
    let v = crate_version();
    let url = format!("file://{}", checkout.display());
    // Helm 4 verifies plugins by default; a git install cannot be verified.
    let install: Vec<&str> = if major == 4 {
        vec!["plugin", "install", &url, "--verify=false"]
    } else {
        vec!["plugin", "install", &url]
    };

    // 1. A tampered archive: refused by the checksum, nothing installed.
    let good = std::fs::read(archive(&rel)).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(archive(&rel), &bad).unwrap();
    let o = helm.run(&install);
    let text = all(&o);
    assert!(
        !o.status.success(),
        "helm{major} installed a tampered archive:\n{text}"
    );
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(text.contains("refusing to install"), "{text}");
    let clones = helm.root.join("cache/plugins");
    let out = Command::new("find")
        .arg(&clones)
        .args(["-name", "lockstep", "-type", "f"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "", "a binary was installed:\n{text}");
    assert!(
        helm.plugins().is_empty(),
        "helm{major} still lists {:?}",
        helm.plugins()
    );
    assert!(
        std::fs::read_dir(helm.root.join("data/plugins"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the plugins directory is not empty"
    );
    let o = helm.run(&["lockstep", "--help"]);
    assert!(
        !o.status.success(),
        "helm lockstep still runs:\n{}",
        all(&o)
    );
    let asked = server.take_requests();
    assert!(
        asked.contains(&format!("/v{v}/lockstep-{v}-linux-amd64.tar.gz")),
        "{asked:?}"
    );

    // 2. The real archive: downloaded, checked, installed; the plugin runs it.
    std::fs::write(archive(&rel), &good).unwrap();
    let o = helm.run(&install);
    let text = all(&o);
    assert!(o.status.success(), "helm{major} plugin install:\n{text}");
    assert!(
        text.contains(&format!("sha256 verified: {}", sha256(&archive(&rel)))),
        "{text}"
    );
    assert!(
        text.contains(&format!("build id verified: {}", build_id(bin))),
        "{text}"
    );
    assert_eq!(
        server.take_requests(),
        vec![
            format!("/v{v}/lockstep-{v}-linux-amd64.tar.gz"),
            format!("/v{v}/lockstep-{v}-linux-amd64.tar.gz.sha256"),
        ]
    );
    let installed = installed_binary(&helm);
    assert!(!installed.is_symlink());
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(bin).unwrap(),
        "bin/lockstep is not the released binary"
    );
    let names = helm.plugins();
    assert!(names.contains(&"lockstep".to_owned()), "{names:?}");
    assert_eq!(
        names.contains(&"lockstep-postrender".to_owned()),
        major == 4,
        "{names:?}"
    );

    let o = helm.run(&[
        "lockstep",
        "template",
        "prefect-server",
        "examples/charts/prefect-server",
        "-n",
        "prefect",
        "--from",
        "3.8.3",
    ]);
    assert!(o.status.success(), "helm lockstep template:\n{}", all(&o));
    let jobs = common::docs(&stdout(&o))
        .into_iter()
        .filter(|d| {
            d["kind"] == "Job"
                && d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lockstep"
        })
        .count();
    assert!(jobs >= 2, "no lockstep Jobs in:\n{}", stdout(&o));
    if major == 4 {
        let o = helm.run(&[
            "template",
            "prefect-server",
            "examples/charts/prefect-server",
            "-n",
            "prefect",
            "--post-renderer",
            "lockstep-postrender",
        ]);
        assert!(o.status.success(), "helm4 --post-renderer:\n{}", all(&o));
        let managed = common::docs(&stdout(&o))
            .into_iter()
            .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lockstep")
            .count();
        assert!(
            managed >= 2,
            "the post-renderer added nothing:\n{}",
            stdout(&o)
        );
    }

    // 3. `helm plugin update` (git pull; helm 3.19 and 4.3 both replace the plugin's copy,
    //    bin/ included, so the hook runs on a directory without a binary): same sources,
    //    same release: downloaded again and verified.
    let o = helm.run(&["plugin", "update", "lockstep"]);
    assert!(
        o.status.success(),
        "helm{major} plugin update:\n{}",
        all(&o)
    );
    assert_eq!(build_id(&installed_binary(&helm)), build_id(bin));

    // 4. The sources change, the version does not (a newer commit). The old release does not
    //    match them and is refused; the release built from them (same version, their build
    //    id) is installed.
    let newer = change_sources(
        &checkout,
        "a newer commit, same version",
        &root.join("newer"),
        bin,
    );
    let new_id = build_id(&newer);
    let o = helm.run(&["plugin", "update", "lockstep"]);
    let text = all(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("was built from other sources"), "{text}");
    release(&rel, &newer);
    let o = helm.run(&["plugin", "update", "lockstep"]);
    let text = all(&o);
    assert!(o.status.success(), "helm{major} plugin update:\n{text}");
    assert!(
        text.contains(&format!("build id verified: {new_id}")),
        "{text}"
    );
    assert_eq!(build_id(&installed_binary(&helm)), new_id);
    let o = helm.run(&["lockstep", "--help"]);
    assert!(o.status.success(), "{}", all(&o));

    // 5. A local checkout keeps its bin/lockstep between installs (helm links the
    //    directory; `helm plugin update` refuses local installs, so users reinstall after a
    //    pull). After the sources change, the old binary still says the same version: the
    //    hook must not keep it.
    let o = helm.run(&["plugin", "uninstall", "lockstep"]);
    assert!(o.status.success(), "{}", all(&o));
    let o = helm.run(&["plugin", "install", checkout.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "helm{major} plugin install DIR:\n{}",
        all(&o)
    );
    let local = checkout.join("bin/lockstep");
    assert_eq!(build_id(&local), new_id);
    let newest = change_sources(
        &checkout,
        "the newest commit, same version",
        &root.join("newest"),
        bin,
    );
    release(&rel, &newest);
    server.take_requests();
    let o = helm.run(&["plugin", "uninstall", "lockstep"]);
    assert!(o.status.success(), "{}", all(&o));
    let o = helm.run(&["plugin", "install", checkout.to_str().unwrap()]);
    let text = all(&o);
    assert!(
        o.status.success(),
        "helm{major} plugin install DIR:\n{text}"
    );
    assert!(
        !text.contains("is already installed"),
        "the stale binary was kept:\n{text}"
    );
    assert_eq!(
        build_id(&local),
        build_id(&newest),
        "bin/lockstep is stale:\n{text}"
    );
    assert_eq!(server.take_requests().len(), 2);

    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}

/// Commits a change to the sources in CHECKOUT (the version stays) and writes to OUT the
/// binary a release of them would hold: BIN with their build id.
fn change_sources(checkout: &Path, msg: &str, out: &Path, bin: &Path) -> PathBuf {
    let main = checkout.join("src/main.rs");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str(&format!("// {msg}\n"));
    std::fs::write(&main, text).unwrap();
    commit(checkout, msg);
    let id = source_id(checkout);
    assert_ne!(id, build_id(bin));
    patch_build_id(bin, out, &id);
    out.to_owned()
}

/// The hook's source id of DIR.
fn source_id(dir: &Path) -> String {
    let o = Command::new("sh")
        .arg(repo().join("scripts/helm-plugin-install.sh"))
        .args(["--source-id"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_owned()
}

/// A copy of the real binary whose embedded build id is ID: what a release built from other
/// sources of the same version looks like, without a second release build.
fn patch_build_id(bin: &Path, out: &Path, id: &str) {
    let mut bytes = Vec::new();
    std::fs::File::open(bin)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let old = format!("lockstep-build-id:{}", build_id(bin));
    let new = format!("lockstep-build-id:{id}");
    let at: Vec<usize> = memchr::memmem::find_iter(&bytes, old.as_bytes()).collect();
    assert_eq!(
        at.len(),
        1,
        "the build id record is not in {} once",
        bin.display()
    );
    bytes[at[0]..at[0] + new.len()].copy_from_slice(new.as_bytes());
    std::fs::write(out, bytes).unwrap();
    let o = Command::new("chmod").arg("755").arg(out).output().unwrap();
    assert!(o.status.success());
    assert_eq!(build_id(out), id);
}

#[test]
fn helm3_installs_through_the_download_path() {
    installs_through_the_download_path(3);
}

#[test]
fn helm4_installs_through_the_download_path() {
    installs_through_the_download_path(4);
}
