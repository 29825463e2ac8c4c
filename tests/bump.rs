//! `lockstep bump` writes lockstep.lock and lockstep.yaml both or neither, and reports a
//! corrupt lock instead of replacing it (it may hold the only record of the deployed image).
//! The rename failing between the two files is covered by `config::tests::all_or_none`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn app(tag: &str, lock: Option<&str>) -> PathBuf {
    let dir = scratch(&format!("bump-{tag}"));
    std::fs::write(
        dir.join("lockstep.yaml"),
        "profile: prefect-server\nversion: 3.7.8\n",
    )
    .unwrap();
    if let Some(text) = lock {
        std::fs::write(dir.join("lockstep.lock"), text).unwrap();
    }
    dir
}

fn bump(dir: &Path, to: &str) -> std::process::Output {
    lockstep()
        .current_dir(dir)
        .args(["bump", "--to", to])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn files(dir: &Path) -> (String, Option<String>) {
    (
        std::fs::read_to_string(dir.join("lockstep.yaml")).unwrap(),
        std::fs::read_to_string(dir.join("lockstep.lock")).ok(),
    )
}

#[test]
fn a_corrupt_lock_is_reported_and_nothing_is_written() {
    for (tag, lock) in [
        ("not-yaml", "deployed: [\n"),
        ("no-version", "deployed:\n  image: x:1\n"),
        (
            "bad-image",
            "deployed:\n  version: 3.6.2\n  image: \"a b\"\n",
        ),
    ] {
        let dir = app(tag, Some(lock));
        let before = files(&dir);
        let e = fails(&bump(&dir, "3.8.3"), 1);
        assert!(
            e.contains("lockstep.lock") && e.contains("corrupt"),
            "{tag}: {e}"
        );
        assert_eq!(files(&dir), before, "{tag}: both files as they were");
    }
}

#[test]
fn both_files_are_written_and_the_image_is_kept() {
    let dir = app(
        "ok",
        Some("deployed:\n  version: 3.6.2\n  image: prefecthq/prefect:3.6.2\n"),
    );
    ok(&bump(&dir, "3.8.3"));
    let (cfg, lock) = files(&dir);
    assert!(cfg.contains("version: \"3.8.3\""), "{cfg}");
    let lock = lock.unwrap();
    assert!(
        lock.contains("version: 3.7.8") && lock.contains("image: prefecthq/prefect:3.6.2"),
        "{lock}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    // Without a lock, one is created.
    let dir = app("no-lock", None);
    ok(&bump(&dir, "3.8.3"));
    assert!(files(&dir).1.unwrap().contains("version: 3.7.8"));
}
