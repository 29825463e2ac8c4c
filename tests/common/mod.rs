//! Shared plumbing for the end-to-end tests: the built binary, the real tools
//! installed by `scripts/install-tools.sh`, and the schema validator. A missing
//! tool fails the test with the command that installs it: a test that silently
//! skips could never fail.
#![allow(dead_code)]

pub mod argocd_model;
pub mod builder;

#[allow(unused_imports)]
pub use builder::{Ran, Test};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crate's version (Cargo.toml), as releases and plugin.yaml carry it.
pub fn crate_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The real prefect-server renders the tests read (`tests/fixtures/prefect-server/`,
/// provenance in its README). The repository carries every file its tests read.
pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/prefect-server")
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// A tool from `.tools/bin` (helm, helm3, helm4, kubectl, kubernetes-validate).
pub fn tool(name: &str) -> PathBuf {
    let p = repo().join(".tools/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/install-tools.sh` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The lockstep binary with a clean, deterministic environment: helm 4 as HELM_BIN.
pub fn lockstep() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lockstep"));
    c.env_remove("LOCKSTEP_FROM")
        .env("HELM_BIN", tool("helm4"))
        .env("HELM_CACHE_HOME", scratch("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch("helm-config"))
        .env("HELM_DATA_HOME", scratch("helm-data"));
    c
}

/// A per-process scratch directory under target/.
pub fn scratch(name: &str) -> PathBuf {
    let p = repo()
        .join("target/test-scratch")
        .join(format!("{}-{name}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Runs `cmd` with `stdin` bytes; returns its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut sin = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstderr:\n{}",
        o.status,
        stderr(o)
    );
    stdout(o)
}

/// Asserts the failure contract: the exit code, empty stdout, a message on stderr.
pub fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stderr:\n{}",
        stderr(o)
    );
    assert!(
        o.stdout.is_empty(),
        "stdout must be empty on failure, got:\n{}",
        stdout(o)
    );
    let e = stderr(o);
    assert!(e.contains("error"), "stderr names the error: {e}");
    e
}

/// Validates manifests in strict mode against the Kubernetes 1.33 schemas.
pub fn validate(files: &[&Path]) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/k8s-validate.sh"))
        .args(files)
        .output()
        .expect("run k8s-validate.sh");
    assert!(
        out.status.success(),
        "schema validation failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The documents of a YAML stream, parsed.
pub fn docs(stream: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(stream)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn find<'a>(
    docs: &'a [serde_yaml::Value],
    kind: &str,
    name: &str,
) -> Option<&'a serde_yaml::Value> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

/// The argv of a lockstep step Job (migration, one-time step, downgrade): its command
/// and args hold the wrapper `/bin/sh -c SCRIPT lockstep-step run N [FIRST_INSTALL...]
/// ARGV...` (after the image's entrypoint, when the step keeps it); returns ARGV, the
/// step's own command on an upgrade.
pub fn step_argv(job: &serde_yaml::Value) -> Vec<String> {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let all: Vec<String> = ["command", "args"]
        .iter()
        .flat_map(|k| c[*k].as_sequence().cloned().unwrap_or_default())
        .map(|v| v.as_str().expect("strings").to_owned())
        .collect();
    let at = all
        .iter()
        .position(|a| a == "lockstep-step")
        .unwrap_or_else(|| panic!("a step Job runs through lockstep's wrapper: {all:?}"));
    assert!(
        at >= 3 && all[at - 3..at - 1] == ["/bin/sh", "-c"] && all[at + 1] == "run",
        "{all:?}"
    );
    let n: usize = all[at + 2].parse().expect("a count");
    all[at + 3 + n..].to_vec()
}

/// The image entrypoint a step Job keeps before its wrapper (its `command` when the
/// wrapper is in `args`), or None when the wrapper is the command.
pub fn step_entrypoint(job: &serde_yaml::Value) -> Option<serde_yaml::Value> {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    c["args"].is_sequence().then(|| c["command"].clone())
}

/// A container's env without the LOCKSTEP_* variables lockstep adds to its Jobs.
pub fn app_env(container: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    container["env"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e["name"].as_str().unwrap_or("").starts_with("LOCKSTEP_"))
        .collect()
}

/// Standard base64 (RFC 4648, with padding): what HTTP Basic auth and a Secret's `data`
/// hold.
pub fn base64(data: &[u8]) -> String {
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

/// Writes an executable (mode 755) script.
pub fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Copies a directory tree (a chart or an app to edit in a scratch directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `../` as often as `dir` is deep below the repository root.
pub fn up_to_repo(dir: &Path) -> String {
    let depth = dir
        .canonicalize()
        .unwrap()
        .strip_prefix(repo().canonicalize().unwrap())
        .expect("inside the repository")
        .components()
        .count();
    "../".repeat(depth)
}
