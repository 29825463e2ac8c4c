//! The upgrade gate, end to end through the built binary and the real helm.
//!
//! * the Customer-Managed ladder (`examples/charts/prefect-cloud-<release>` with
//!   `examples/values/prefect-cloud/values-<release>.yaml`): legal steps pass;
//!   skips, downgrades and unknown lines exit 3 with nothing on stdout; where the
//!   deployed release comes from (`--from`, `LOCKSTEP_FROM`, lockstep.lock);
//! * the values rules of each step, before helm's own `fail`;
//! * `values migrate` for each step, and renders of its output;
//! * `plan` and `bump`;
//! * prefect-server (semver rule, the image tag decides);
//! * the in-cluster gate script of a real render, executed by `/bin/sh`, dash and
//!   (when installed) busybox against records of real renders and garbage;
//! * the release record ConfigMap.
//!
//! Inputs of our own are under `tests/gate/`.

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Helpers

const RELEASE: &str = "customer-managed";
const LADDER: &[&str] = &["0.4.2", "0.5.2", "0.6.1", "0.7.0", "0.8.2", "1.2.0"];

fn chart(release: &str) -> PathBuf {
    repo()
        .join("examples/charts")
        .join(format!("prefect-cloud-{release}"))
}

fn values(release: &str) -> PathBuf {
    repo()
        .join("examples/values/prefect-cloud")
        .join(format!("values-{release}.yaml"))
}

fn data(name: &str) -> PathBuf {
    repo().join("tests/gate").join(name)
}

/// A fresh, empty scratch directory (unique within this test binary).
fn fresh(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = scratch(&format!("gate-{tag}-{}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::remove_dir_all(&p).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// lockstep, run from an empty directory so no stray lockstep.yaml/lockstep.lock counts.
fn cmd(args: &[&str]) -> Command {
    let mut c = lockstep();
    c.current_dir(fresh("cwd")).args(args).stdin(Stdio::null());
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("run lockstep")
}

/// `lockstep render prefect-cloud-<to> -f VALUES --release customer-managed -n customer-managed [--from F] [extra]`.
fn render_with(to: &str, values_file: &Path, from: Option<&str>, extra: &[&str]) -> Output {
    let (c, v) = (chart(to), values_file.to_path_buf());
    let mut args = vec![
        "render",
        c.to_str().unwrap(),
        "-f",
        v.to_str().unwrap(),
        "--release",
        RELEASE,
        "-n",
        RELEASE,
    ];
    if let Some(f) = from {
        args.extend(["--from", f]);
    }
    args.extend(extra);
    run(cmd(&args))
}

fn render(from: Option<&str>, to: &str) -> Output {
    render_with(to, &values(to), from, &[])
}

fn record(stream: &str, release: &str) -> Value {
    let d = docs(stream);
    find(&d, "ConfigMap", &format!("{release}-lockstep"))
        .expect("the release record ConfigMap")
        .clone()
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "expected {n:?} in:\n{haystack}");
    }
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
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

/// A temporary app directory: lockstep.yaml pinned to `version`, the
/// values-override.yaml of that release, and a lockstep.lock when `deployed` says.
fn app_dir(tag: &str, version: &str, lock: Option<&str>) -> PathBuf {
    let dir = fresh(tag);
    let depth = dir
        .strip_prefix(repo())
        .expect("scratch is inside the repository")
        .components()
        .count();
    let charts = format!("{}examples/charts", "../".repeat(depth));
    let cfg = std::fs::read_to_string(data("lockstep.yaml.in"))
        .unwrap()
        .replace("@CHARTS@", &charts)
        .replace("@VERSION@", version);
    std::fs::write(dir.join("lockstep.yaml"), cfg).unwrap();
    std::fs::copy(values(version), dir.join("values-override.yaml")).unwrap();
    if let Some(text) = lock {
        std::fs::write(dir.join("lockstep.lock"), text).unwrap();
    }
    dir
}

fn lock_text(version: &str) -> String {
    format!("deployed:\n  version: {version}\n")
}

// ---------------------------------------------------------------------------
// The ladder

#[test]
fn every_legal_step_of_the_ladder_passes() {
    let mut steps: Vec<(&str, &str)> = LADDER.windows(2).map(|w| (w[0], w[1])).collect();
    // Same line: a patch, and the same release again.
    steps.extend([("0.8.0", "0.8.2"), ("0.8.2", "0.8.2"), ("1.2.0", "1.2.0")]);
    for (from, to) in steps {
        let o = render(Some(from), to);
        let out = ok(&o);
        let err = stderr(&o);
        assert!(
            !err.contains("only the in-cluster gate"),
            "{from} → {to}: the deployed release was given:\n{err}"
        );
        let rec = record(&out, RELEASE);
        assert_eq!(
            rec["data"]["release"].as_str(),
            Some(to),
            "{from} → {to}: the record holds the target"
        );
        let d = docs(&out);
        let gate = find(&d, "Job", &format!("{RELEASE}-lockstep-gate"))
            .unwrap_or_else(|| panic!("{from} → {to}: no gate Job"));
        let env = job_env(gate);
        assert_eq!(env["LOCKSTEP_TARGET"], to);
        let to_line = &to[..to.rfind('.').unwrap()];
        assert!(
            env["LOCKSTEP_ALLOWED"].contains(to_line) && !env["LOCKSTEP_FROM_RANGES"].is_empty(),
            "{env:?}"
        );
        // The one-time step of 0.8 → 1.2 runs only when that step is crossed.
        let update_orion = d.iter().any(|x| {
            x["kind"] == "Job"
                && serde_yaml::to_string(&x["spec"])
                    .unwrap()
                    .contains("update-orion")
        });
        assert_eq!(
            update_orion,
            (from, to) == ("0.8.2", "1.2.0"),
            "{from} → {to}: update-orion Job"
        );
    }
}

#[test]
fn skipped_lines_are_refused_with_the_path_and_the_next_command() {
    let cases = [
        (
            "0.6.1",
            "1.2.0",
            "0.6.1 → 0.7.x → 0.8.x → 1.2.x",
            "lockstep bump --to 0.7.0",
            "skips 2 release lines",
        ),
        (
            "0.4.2",
            "0.6.1",
            "0.4.2 → 0.5.x → 0.6.x",
            "lockstep bump --to 0.5.2",
            "skips 1 release line",
        ),
        (
            "0.4.2",
            "1.2.0",
            "0.4.2 → 0.5.x → 0.6.x → 0.7.x → 0.8.x → 1.2.x",
            "lockstep bump --to 0.5.2",
            "skips 4",
        ),
        (
            "0.7.0",
            "1.2.0",
            "0.7.0 → 0.8.x → 1.2.x",
            "lockstep bump --to 0.8.2",
            "skips 1 release line",
        ),
    ];
    for (from, to, path, now, skips) in cases {
        let e = fails(&render(Some(from), to), 3);
        assert_contains(
            &e,
            &[
                &format!("from {from} to {to}"),
                path,
                now,
                skips,
                "one release line at a time",
            ],
        );
        assert!(!e.contains("helm template failed"), "{e}");
    }
}

#[test]
fn downgrades_are_refused() {
    for (from, to) in [
        ("1.2.0", "0.8.2"),
        ("0.8.2", "0.7.0"),
        ("0.5.2", "0.4.2"),
        ("0.8.5", "0.8.2"),
        ("1.2.0", "0.4.2"),
    ] {
        let e = fails(&render(Some(from), to), 3);
        assert_contains(
            &e,
            &[
                &format!("refusing to downgrade prefect-cloud from {from} to {to}"),
                "--allow-downgrade",
                "backups",
            ],
        );
    }
}

#[test]
fn unknown_release_lines_are_refused() {
    // A chart of a line the catalog does not know (1.3), as a copy of 1.2.0.
    let dir = fresh("chart-1.3");
    let c = dir.join("prefect-cloud-1.3.0");
    copy_dir(&chart("1.2.0"), &c);
    let meta = std::fs::read_to_string(c.join("Chart.yaml")).unwrap();
    assert!(meta.contains("\nversion: 1.2.0"), "{meta}");
    std::fs::write(
        c.join("Chart.yaml"),
        meta.replace("\nversion: 1.2.0", "\nversion: 1.3.0"),
    )
    .unwrap();
    let v = values("1.2.0");
    for from in [Some("1.2.0"), None] {
        let mut args = vec![
            "render",
            c.to_str().unwrap(),
            "-f",
            v.to_str().unwrap(),
            "--release",
            RELEASE,
        ];
        if let Some(f) = from {
            args.extend(["--from", f]);
        }
        let e = fails(&run(cmd(&args)), 3);
        assert_contains(
            &e,
            &[
                "1.3.0",
                "line 1.3",
                "not in the prefect-customer-managed catalog",
                "--profile",
            ],
        );
    }
    // A deployed release on an unknown line.
    let e = fails(&render(Some("0.9.1"), "1.2.0"), 3);
    assert_contains(&e, &["0.9.1", "line 0.9", "does not know"]);
}

#[test]
fn without_a_deployed_release_only_the_in_cluster_gate_protects() {
    // Even the values of an old release: nothing is known to check them against.
    for (values_of, to) in [("1.2.0", "1.2.0"), ("0.6.1", "0.7.0")] {
        let o = render_with(to, &values(values_of), None, &[]);
        let out = ok(&o);
        assert_contains(
            &stderr(&o),
            &[
                "no deployed release is known",
                "only the in-cluster gate protects this sync of prefect-cloud",
            ],
        );
        let env = job_env(find(&docs(&out), "Job", &format!("{RELEASE}-lockstep-gate")).unwrap());
        assert_eq!(env["LOCKSTEP_TARGET"], to);
    }
}

#[test]
fn lockstep_from_in_the_environment_is_honored() {
    let (c, v) = (chart("1.2.0"), values("1.2.0"));
    let args = [
        "render",
        c.to_str().unwrap(),
        "-f",
        v.to_str().unwrap(),
        "--release",
        RELEASE,
    ];
    let mut skip = cmd(&args);
    skip.env("LOCKSTEP_FROM", "0.6.1");
    assert_contains(
        &fails(&run(skip), 3),
        &["from 0.6.1 to 1.2.0", "0.6.1 → 0.7.x → 0.8.x → 1.2.x"],
    );
    let mut legal = cmd(&args);
    legal.env("LOCKSTEP_FROM", "0.8.2");
    let o = run(legal);
    ok(&o);
    assert!(
        !stderr(&o).contains("no deployed release"),
        "{}",
        stderr(&o)
    );
    // --from wins over the environment.
    let mut both = cmd(&[&args[..], &["--from", "0.8.2"]].concat());
    both.env("LOCKSTEP_FROM", "0.6.1");
    ok(&run(both));
}

#[test]
fn the_lock_file_is_honored_and_a_corrupt_one_is_an_error() {
    let render_app = |dir: &Path| {
        let cfg = dir.join("lockstep.yaml");
        run(cmd(&["render", "--config", cfg.to_str().unwrap()]))
    };
    // Pinned to 1.2.0, deployed 0.8.2: the step is legal.
    let dir = app_dir("lock-ok", "1.2.0", Some(&lock_text("0.8.2")));
    let o = render_app(&dir);
    let out = ok(&o);
    assert!(
        !stderr(&o).contains("no deployed release"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        record(&out, RELEASE)["data"]["release"].as_str(),
        Some("1.2.0")
    );
    // Deployed 0.6.1: a skip.
    let dir = app_dir("lock-skip", "1.2.0", Some(&lock_text("0.6.1")));
    assert_contains(
        &fails(&render_app(&dir), 3),
        &["from 0.6.1 to 1.2.0", "lockstep bump --to 0.7.0"],
    );
    // --from wins over the lock.
    let cfg = dir.join("lockstep.yaml");
    ok(&run(cmd(&[
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--from",
        "0.8.2",
    ])));
    // Corrupt locks: exit 1, naming the file and the fix.
    for (tag, text) in [
        ("lock-yaml", "deployed: [0.8.2\n"),
        ("lock-version", "deployed:\n  version: banana\n"),
        ("lock-field", "deployed:\n  version: 0.8.2\n  extra: 1\n"),
        ("lock-empty", ""),
    ] {
        let dir = app_dir(tag, "1.2.0", Some(text));
        let e = fails(&render_app(&dir), 1);
        let lock = dir.join("lockstep.lock");
        assert_contains(
            &e,
            &[
                &lock.display().to_string(),
                "corrupt",
                "Restore it from git",
                "--from VERSION",
            ],
        );
    }
}

// ---------------------------------------------------------------------------
// Values rules

#[test]
fn values_rules_fire_before_helm_and_name_the_fix() {
    // The charts `fail` on these old keys themselves: the user must see the
    // gate's message, not helm's.
    let helm = run({
        let mut c = Command::new(tool("helm4"));
        c.args(["template", RELEASE])
            .arg(chart("0.5.2"))
            .arg("-f")
            .arg(values("0.4.2"))
            .env("HELM_CACHE_HOME", scratch("helm-cache"))
            .env("HELM_CONFIG_HOME", scratch("helm-config"))
            .env("HELM_DATA_HOME", scratch("helm-data"));
        c
    });
    assert!(
        !helm.status.success(),
        "the 0.5.2 chart itself refuses ingress.frontend.url"
    );

    let cases: &[(&str, &str, &[&str])] = &[
        (
            "0.4.2",
            "0.5.2",
            &[
                "the values break 2 rules of the upgrade from 0.4.2",
                "[0.4 → 0.5] `ingress.frontend.url` is set, but this release reads `frontendUrl`",
                "`ingress.backend.url` is set, but this release reads `backendUrl`",
                "lockstep values migrate",
            ],
        ),
        (
            "0.6.1",
            "0.7.0",
            &[
                "the values break 1 rule of the upgrade from 0.6.1",
                "[0.6 → 0.7] orion.cloud2.readinessProbe runs `ps`",
                "fix: remove or replace orion.cloud2.readinessProbe",
            ],
        ),
        (
            "0.8.2",
            "1.2.0",
            &[
                "the values break 4 rules of the upgrade from 0.8.2",
                "`frontendUrl` is set, but this release reads `global.frontendUrl`",
                "`backendUrl` is set, but this release reads `global.backendUrl`",
                "`global.authProvider.type` is no longer supported",
                "`ingress.name` is not set while `ingress.enabled` is true",
                "fix: set `ingress.name: self-managed-prefect-cloud`",
            ],
        ),
    ];
    for (from, to, needles) in cases {
        let e = fails(&render_with(to, &values(from), Some(from), &[]), 3);
        assert_contains(&e, needles);
        assert!(
            !e.contains("helm template failed"),
            "the gate speaks before helm:\n{e}"
        );
    }
    // An old key left empty still trips the chart's `hasKey` check: the gate names it.
    let e = fails(
        &render_with(
            "1.2.0",
            &values("1.2.0"),
            Some("0.8.2"),
            &["--set", "frontendUrl=null"],
        ),
        3,
    );
    assert_contains(
        &e,
        &[
            "the values break 1 rule",
            "`frontendUrl` is set, but this release reads `global.frontendUrl`",
        ],
    );
}

#[test]
fn values_rules_stay_quiet_on_migrated_values_and_read_the_users_keys() {
    // values-<to>.yaml of each step passes (also in the ladder test); here the
    // `required` rule: the chart's own default ingress.name does not count, and
    // the condition is what the chart renders.
    let e = fails(
        &render_with(
            "1.2.0",
            &values("1.2.0"),
            Some("0.8.2"),
            &["--set", "ingress.name=null"],
        ),
        3,
    );
    assert_contains(
        &e,
        &[
            "the values break 1 rule",
            "`ingress.name` is not set while `ingress.enabled` is true",
        ],
    );
    ok(&render_with(
        "1.2.0",
        &values("1.2.0"),
        Some("0.8.2"),
        &[
            "--set",
            "ingress.name=null",
            "--set",
            "ingress.enabled=false",
        ],
    ));
    // The condition is read with the chart's defaults: prefect-cloud 1.2.0 enables
    // the ingress by default, so a file that does not say is still an existing Ingress.
    let text = std::fs::read_to_string(values("1.2.0")).unwrap();
    let quiet = text
        .replacen("ingress:\n  enabled: true\n", "ingress:\n", 1)
        .replacen("  name: self-managed-prefect-cloud\n", "", 1);
    assert_ne!(quiet, text);
    let file = fresh("no-enabled").join("values.yaml");
    std::fs::write(&file, &quiet).unwrap();
    let v: Value = serde_yaml::from_str(&quiet).unwrap();
    assert!(v["ingress"].get("enabled").is_none() && v["ingress"].get("name").is_none());
    let e = fails(&render_with("1.2.0", &file, Some("0.8.2"), &[]), 3);
    assert_contains(
        &e,
        &[
            "the values break 1 rule",
            "`ingress.name` is not set while `ingress.enabled` is true",
        ],
    );
    // The rules of a step are checked only when that step is crossed.
    ok(&render_with(
        "1.2.0",
        &values("1.2.0"),
        Some("1.2.0"),
        &["--set", "ingress.name=null"],
    ));
    // A forbidden word set with --set is caught too.
    let e = fails(
        &render_with(
            "0.7.0",
            &values("0.7.0"),
            Some("0.6.1"),
            &[
                "--set-string",
                "events.cloud2.readinessProbe.exec.command=ps aux",
            ],
        ),
        3,
    );
    assert_contains(&e, &["events.cloud2.readinessProbe runs `ps`"]);
}

// ---------------------------------------------------------------------------
// values migrate

fn migrate(args: &[&str]) -> Output {
    run(cmd(&[&["values", "migrate"], args].concat()))
}

/// The non-blank lines of `a` that also occur in `b`, in order.
fn common_lines(a: &str, b: &str) -> Vec<String> {
    let other: std::collections::BTreeSet<&str> = b.lines().collect();
    a.lines()
        .filter(|l| !l.trim().is_empty() && other.contains(l))
        .map(str::to_owned)
        .collect()
}

fn remove(v: &mut Value, path: &str) -> Option<Value> {
    let keys: Vec<&str> = path.split('.').collect();
    let (last, parents) = keys.split_last().unwrap();
    let mut cur = v;
    for k in parents {
        cur = cur.get_mut(*k)?;
    }
    cur.as_mapping_mut()?.remove(*last)
}

#[test]
fn values_migrate_for_each_step_passes_the_gate_and_renders() {
    for w in LADDER.windows(2) {
        let (from, to) = (w[0], w[1]);
        let input_path = values(from);
        let input = std::fs::read_to_string(&input_path).unwrap();
        let o = migrate(&["--from", from, "--to", to, input_path.to_str().unwrap()]);
        let output = ok(&o);
        let err = stderr(&o);
        assert_contains(
            &err,
            &[&format!(
                "values migrate {from} → {to} (prefect-customer-managed)"
            )],
        );

        // Comments and untouched lines are kept, in order.
        for c in input.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(
                output.contains(c.trim()),
                "{from} → {to}: comment {c:?} lost"
            );
        }
        assert_eq!(
            common_lines(&input, &output),
            common_lines(&output, &input),
            "{from} → {to}: order of untouched lines"
        );

        // The values are the same but for the moved keys.
        let mut before: Value = serde_yaml::from_str(&input).unwrap();
        let mut after: Value = serde_yaml::from_str(&output).unwrap();
        match (from, to) {
            ("0.4.2", "0.5.2") => {
                for part in ["frontend", "backend"] {
                    let old = remove(&mut before, &format!("ingress.{part}.url")).unwrap();
                    assert_eq!(
                        remove(&mut after, &format!("{part}Url")),
                        Some(old),
                        "{part}Url"
                    );
                }
                assert_contains(
                    &err,
                    &[
                        "moved `ingress.frontend.url` (line 42) to `frontendUrl`",
                        "moved `ingress.backend.url` (line 45) to `backendUrl`",
                    ],
                );
            }
            ("0.6.1", "0.7.0") => {
                assert_eq!(output, input, "nothing the editor may decide");
                assert_contains(&err, &["could not decide, edit by hand: [0.6 → 0.7] orion.cloud2.readinessProbe runs `ps`"]);
            }
            ("0.8.2", "1.2.0") => {
                for key in ["frontendUrl", "backendUrl"] {
                    let old = remove(&mut before, key).unwrap();
                    assert_eq!(
                        remove(&mut after, &format!("global.{key}")),
                        Some(old),
                        "{key}"
                    );
                }
                assert_eq!(
                    remove(&mut before, "global.authProvider.type"),
                    Some(Value::from("okta"))
                );
                assert_eq!(
                    remove(&mut after, "ingress.name"),
                    Some(Value::from("self-managed-prefect-cloud"))
                );
                assert_contains(
                    &err,
                    &[
                        "moved `frontendUrl` (line 34) to `global.frontendUrl`",
                        "removed `global.authProvider.type` (line 28)",
                        "set `ingress.name: self-managed-prefect-cloud`",
                        "check by hand, the release requires: Redis",
                    ],
                );
            }
            _ => {
                assert_eq!(output, input, "{from} → {to}: no breaking rules");
                assert_contains(&err, &["nothing to change"]);
            }
        }
        assert_eq!(
            after, before,
            "{from} → {to}: values other than the moved keys"
        );

        // The result renders with the new chart, except for what the editor could not decide.
        let file = fresh("migrated").join("values.yaml");
        std::fs::write(&file, &output).unwrap();
        let r = render_with(to, &file, Some(from), &[]);
        if (from, to) == ("0.6.1", "0.7.0") {
            assert_contains(&fails(&r, 3), &["orion.cloud2.readinessProbe runs `ps`"]);
        } else {
            ok(&r);
        }
    }
}

#[test]
fn values_migrate_across_several_steps_chains_the_moves() {
    let input_path = values("0.4.2");
    let output = ok(&migrate(&[
        "--from",
        "0.4.2",
        "--to",
        "1.2.0",
        input_path.to_str().unwrap(),
    ]));
    let v: Value = serde_yaml::from_str(&output).unwrap();
    assert_eq!(
        v["global"]["frontendUrl"].as_str(),
        Some("https://prefect.acme-corp.internal")
    );
    assert_eq!(
        v["global"]["backendUrl"].as_str(),
        Some("https://prefect-api.acme-corp.internal")
    );
    assert!(
        v.get("frontendUrl").is_none() && v["ingress"]["frontend"].get("url").is_none(),
        "{output}"
    );
    assert!(
        v["global"]["authProvider"].get("type").is_none(),
        "{output}"
    );
    assert_eq!(
        v["ingress"]["name"].as_str(),
        Some("self-managed-prefect-cloud")
    );
    // It renders on 1.2.0 once deployed from 0.8.x.
    let file = fresh("chained").join("values.yaml");
    std::fs::write(&file, &output).unwrap();
    ok(&render_with("1.2.0", &file, Some("0.8.2"), &[]));
}

#[test]
fn values_migrate_in_place_reads_the_lock_and_refuses_what_it_cannot_edit() {
    // --in-place, --from from the lockstep.lock beside the file.
    let dir = app_dir("migrate-in-place", "0.8.2", Some(&lock_text("0.8.2")));
    let file = dir.join("values-override.yaml");
    let expected = ok(&migrate(&[
        "--from",
        "0.8.2",
        "--to",
        "1.2.0",
        values("0.8.2").to_str().unwrap(),
    ]));
    let o = migrate(&["--to", "1.2.0", "--in-place", file.to_str().unwrap()]);
    assert!(ok(&o).is_empty(), "--in-place prints nothing on stdout");
    assert_contains(&stderr(&o), &["values migrate 0.8.2 → 1.2.0", "rewrote"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    // Again: nothing left to do.
    let o = migrate(&["--to", "1.2.0", "--in-place", file.to_str().unwrap()]);
    ok(&o);
    assert_contains(&stderr(&o), &["nothing to change", "left as it was"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);

    // No --from and no lock: a usage error naming --from.
    let lone = fresh("migrate-lone").join("values.yaml");
    std::fs::copy(values("0.8.2"), &lone).unwrap();
    assert_contains(
        &fails(&migrate(&["--to", "1.2.0", lone.to_str().unwrap()]), 1),
        &["--from VERSION", "lockstep.lock"],
    );
    // A downgrade has no steps to migrate.
    assert_contains(
        &fails(
            &migrate(&["--from", "1.2.0", "--to", "0.8.2", lone.to_str().unwrap()]),
            1,
        ),
        &["older than 1.2.0"],
    );

    // Flow style and anchors: refused, the file untouched, the changes named.
    for name in ["flow-0.8.2.yaml", "anchors-0.8.2.yaml"] {
        let copy = fresh("migrate-refuse").join(name);
        std::fs::copy(data(name), &copy).unwrap();
        let before = std::fs::read(&copy).unwrap();
        for in_place in [false, true] {
            let mut args = vec!["--from", "0.8.2", "--to", "1.2.0", copy.to_str().unwrap()];
            if in_place {
                args.push("--in-place");
            }
            let e = fails(&migrate(&args), 1);
            assert_contains(&e, &["by hand", &copy.display().to_string()]);
            assert_eq!(std::fs::read(&copy).unwrap(), before, "{name}: untouched");
        }
    }
}

// ---------------------------------------------------------------------------
// plan and bump

#[test]
fn plan_lists_every_stop_in_text_and_json() {
    let text = ok(&run(cmd(&[
        "plan",
        "--from",
        "0.4.2",
        "--to",
        "1.2.0",
        "--profile",
        "prefect-customer-managed",
    ])));
    assert_contains(
        &text,
        &[
            "Upgrade plan for prefect-customer-managed from 0.4.2 to 1.2.0 (5 stops):",
            "1. 0.4.2 → 0.5.2",
            "2. 0.5.2 → 0.6.1",
            "3. 0.6.1 → 0.7.0",
            "4. 0.7.0 → 0.8.2",
            "5. 0.8.2 → 1.2.0",
            "`ingress.frontend.url` moved to `frontendUrl`",
            "`frontendUrl` moved to `global.frontendUrl`",
            "`global.authProvider.type` removed",
            "set `ingress.name`",
            "update-orion: prefect-cloud self-managed update-orion",
            "Redis reachable from the orion migrations",
            "The migrations drop the unused `lenses` table",
        ],
    );
    // The 1.2 changes are in the 5th stop, not before it.
    let fifth = &text[text.find("5. 0.8.2 → 1.2.0").unwrap()..];
    assert_contains(
        fifth,
        &[
            "update-orion",
            "`backendUrl` moved to `global.backendUrl`",
            "notes:",
        ],
    );
    assert!(
        !text[..text.find("5. 0.8.2").unwrap()].contains("update-orion"),
        "{text}"
    );

    // The same from the app's lockstep.yaml, as JSON.
    let dir = app_dir("plan", "0.4.2", None);
    let mut c = lockstep();
    c.current_dir(&dir).args([
        "plan", "--from", "0.4.2", "--to", "1.2.0", "--output", "json",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(c))).expect("plan --output json is JSON");
    let stops = json["stops"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> = stops
        .iter()
        .map(|s| (s["from"].as_str().unwrap(), s["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("0.4.2", "0.5.2"),
            ("0.5.2", "0.6.1"),
            ("0.6.1", "0.7.0"),
            ("0.7.0", "0.8.2"),
            ("0.8.2", "1.2.0")
        ]
    );
    for (i, s) in stops.iter().enumerate() {
        assert!(text.contains(&format!(
            "{}. {} → {}",
            i + 1,
            s["from"].as_str().unwrap(),
            s["to"].as_str().unwrap()
        )));
        assert_eq!(s["migrations"].as_array().unwrap().len(), 3);
    }
    assert_eq!(stops[4]["one_time"].as_array().unwrap().len(), 1);
    assert!(stops[4]["one_time"][0]
        .as_str()
        .unwrap()
        .starts_with("update-orion"));
    assert_eq!(stops[4]["breaking"].as_array().unwrap().len(), 4);
    assert!(stops[4]["notes"].as_array().unwrap().len() >= 4);
    assert_eq!(stops[0]["breaking"].as_array().unwrap().len(), 2);
    assert!(stops[1]["breaking"].as_array().unwrap().is_empty());
    assert!(stops[..4]
        .iter()
        .all(|s| s["one_time"].as_array().unwrap().is_empty()));

    // A plan backwards is refused.
    fails(
        &run(cmd(&[
            "plan",
            "--from",
            "1.2.0",
            "--to",
            "0.8.2",
            "--profile",
            "prefect-customer-managed",
        ])),
        3,
    );
}

#[test]
fn bump_moves_one_legal_step_and_records_the_release_it_leaves() {
    let dir = app_dir("bump", "0.8.2", None);
    let cfg = dir.join("lockstep.yaml");
    let before = std::fs::read_to_string(&cfg).unwrap();
    let o = run(cmd(&[
        "bump",
        "--to",
        "1.2.0",
        "--config",
        cfg.to_str().unwrap(),
    ]));
    ok(&o);
    let after = std::fs::read_to_string(&cfg).unwrap();
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(b.len(), a.len(), "{after}");
    let changed: Vec<(&str, &str)> = b
        .iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (*x, *y))
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "only the version line changes: {changed:?}"
    );
    assert_eq!(changed[0].0, "version: 0.8.2");
    let v: Value = serde_yaml::from_str(changed[0].1).unwrap();
    assert_eq!(v["version"].as_str(), Some("1.2.0"));
    let lock: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("lockstep.lock")).unwrap()).unwrap();
    assert_eq!(lock["deployed"]["version"].as_str(), Some("0.8.2"));
    // The app now renders 1.2.0 over 0.8.2 (with the migrated values).
    let values_file = dir.join("values-override.yaml");
    ok(&migrate(&[
        "--to",
        "1.2.0",
        "--in-place",
        values_file.to_str().unwrap(),
    ]));
    let out = ok(&run(cmd(&["render", "--config", cfg.to_str().unwrap()])));
    assert_eq!(
        record(&out, RELEASE)["data"]["release"].as_str(),
        Some("1.2.0")
    );
    // A second bump to the same release is an error.
    fails(
        &run(cmd(&[
            "bump",
            "--to",
            "1.2.0",
            "--config",
            cfg.to_str().unwrap(),
        ])),
        1,
    );

    // From 0.6.1 the same bump skips two lines: refused, nothing written.
    let dir = app_dir("bump-skip", "0.6.1", None);
    let cfg = dir.join("lockstep.yaml");
    let before = std::fs::read(&cfg).unwrap();
    let e = fails(
        &run(cmd(&[
            "bump",
            "--to",
            "1.2.0",
            "--config",
            cfg.to_str().unwrap(),
        ])),
        3,
    );
    assert_contains(
        &e,
        &["0.6.1 → 0.7.x → 0.8.x → 1.2.x", "lockstep bump --to 0.7.0"],
    );
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
    assert!(!dir.join("lockstep.lock").exists());
}

// ---------------------------------------------------------------------------
// prefect-server: the semver rule, the image tag decides

#[test]
fn prefect_server_follows_the_image_tag() {
    let c = repo().join("examples/charts/prefect-server");
    let server = |extra: &[&str]| run(cmd(&[&["render", c.to_str().unwrap()], extra].concat()));
    let out = ok(&server(&["--from", "3.7.8"]));
    assert_eq!(
        record(&out, "prefect-server")["data"]["release"].as_str(),
        Some("3.8.3")
    );
    assert_contains(
        &fails(&server(&["--from", "3.6.1"]), 3),
        &[
            "from 3.6.1 to 3.8.3",
            "3.6.1 → 3.7.x → 3.8.x",
            "lockstep bump --to 3.7.8",
        ],
    );
    // A pinned tag decides over the chart's appVersion (3.8.3).
    let pin = ["--set", "global.prefect.image.prefectTag=3.7.8-python3.11"];
    let out = ok(&server(&[&pin[..], &["--from", "3.6.1"]].concat()));
    let rec = record(&out, "prefect-server");
    assert_eq!(rec["data"]["release"].as_str(), Some("3.7.8"));
    assert!(
        rec["data"]["image"]
            .as_str()
            .unwrap()
            .ends_with(":3.7.8-python3.11"),
        "{rec:?}"
    );
    assert_contains(
        &fails(&server(&[&pin[..], &["--from", "3.8.3"]].concat()), 3),
        &["refusing to downgrade prefect-server from 3.8.3 to 3.7.8"],
    );
}

// ---------------------------------------------------------------------------
// The in-cluster gate script

fn job_env(job: &Value) -> BTreeMap<String, String> {
    job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The gate Job's script and environment, as a render emits them.
struct Gate {
    script: String,
    env: BTreeMap<String, String>,
}

fn gate_of(stream: &str, release: &str) -> Gate {
    let d = docs(stream);
    let job = find(&d, "Job", &format!("{release}-lockstep-gate")).expect("gate Job");
    let command: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command.len(), 3, "{command:?}");
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    Gate {
        script: command[2].clone(),
        env: job_env(job),
    }
}

/// The files a record ConfigMap projects into the gate's volume.
fn record_files(stream: &str, release: &str) -> Vec<(String, Vec<u8>)> {
    let rec = record(stream, release);
    rec["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().as_bytes().to_vec(),
            )
        })
        .collect()
}

fn release_file(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![("release".to_owned(), text.to_vec())]
}

struct GateRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    term: String,
    dir: PathBuf,
}

fn shells() -> Vec<Vec<&'static str>> {
    let works = |sh: &[&str]| {
        Command::new(sh[0])
            .args(&sh[1..])
            .args(["-c", "exit 0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut out = vec![vec!["/bin/sh"]];
    assert!(works(&out[0]), "/bin/sh must run");
    for sh in [vec!["dash"], vec!["busybox", "sh"]] {
        if works(&sh) {
            out.push(sh);
        } else {
            eprintln!(
                "note: `{}` is not installed; the gate script is not run with it",
                sh.join(" ")
            );
        }
    }
    out
}

/// Runs the gate script with `sh`, the record files in a fresh state directory
/// (None: the optional ConfigMap is missing, the volume empty).
fn run_gate(
    sh: &[&str],
    gate: &Gate,
    state: Option<&[(String, Vec<u8>)]>,
    extra: &dyn Fn(&Path) -> Vec<u8>,
) -> GateRun {
    let dir = fresh("run-gate");
    let state_dir = dir.join("state");
    let work = dir.join("work");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let sentinel = dir.join("sentinel");
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), "x").unwrap();
    for (name, bytes) in state.unwrap_or_default() {
        std::fs::write(state_dir.join(name), bytes).unwrap();
    }
    let garbage = extra(&dir);
    if !garbage.is_empty() {
        std::fs::write(state_dir.join("release"), garbage).unwrap();
    }
    let term = dir.join("termination-log");
    let mut c = Command::new(sh[0]);
    c.args(&sh[1..])
        .arg("-c")
        .arg(&gate.script)
        .current_dir(&work)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(&gate.env)
        .env("LOCKSTEP_STATE_DIR", &state_dir)
        .env("LOCKSTEP_TERMINATION_LOG", &term)
        .stdin(Stdio::null());
    let o = c.output().expect("run the gate script");
    assert!(
        sentinel.join("keep").exists(),
        "the state must never be executed"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "the gate creates nothing"
    );
    GateRun {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        term: std::fs::read_to_string(&term).unwrap_or_default(),
        dir,
    }
}

fn no_extra(_: &Path) -> Vec<u8> {
    vec![]
}

fn passes(r: &GateRun, what: &str) {
    assert_eq!(
        r.code,
        Some(0),
        "{what}: the gate passes\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.term.is_empty(),
        "{what}: no termination message: {}",
        r.term
    );
    assert!(
        r.stdout.starts_with("lockstep gate: "),
        "{what}: {}",
        r.stdout
    );
}

fn refuses(r: &GateRun, what: &str, needles: &[&str]) {
    assert_eq!(
        r.code,
        Some(1),
        "{what}: the gate fails\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.term.starts_with("lockstep gate: "),
        "{what}: the reason goes to the termination log: {:?}",
        r.term
    );
    assert_contains(&r.term, needles);
    // Cleanly: only the gate's own message, no shell errors.
    assert!(
        r.stderr.lines().all(|l| l.starts_with("lockstep gate: ")),
        "{what}: stderr {:?}",
        r.stderr
    );
}

#[test]
fn the_gate_script_of_a_real_render_decides_against_the_record() {
    let up = ok(&render(Some("0.8.2"), "1.2.0"));
    let gate = gate_of(&up, RELEASE);
    assert_eq!(gate.env["LOCKSTEP_TARGET"], "1.2.0");
    assert_eq!(gate.env["LOCKSTEP_ALLOWED"], "0.8.x, 1.2.0");
    assert_eq!(gate.env["LOCKSTEP_DOWNGRADE_FROM"], "");
    // Records written by real renders of earlier releases.
    let rec_082 = record_files(&ok(&render(Some("0.7.0"), "0.8.2")), RELEASE);
    let rec_061 = record_files(&ok(&render(Some("0.5.2"), "0.6.1")), RELEASE);
    let rec_120 = record_files(&up, RELEASE);
    // The 0.8.2 gate: from 0.7 or 0.8.
    let gate_082 = gate_of(&ok(&render(Some("0.7.0"), "0.8.2")), RELEASE);

    for sh in shells() {
        let s = sh.join(" ");
        let r = run_gate(&sh, &gate, None, &no_extra);
        passes(&r, &format!("{s}: no record"));
        assert_contains(&r.stdout, &["first install"]);
        passes(
            &run_gate(&sh, &gate, Some(&rec_082), &no_extra),
            &format!("{s}: the 0.8.2 record"),
        );
        passes(
            &run_gate(&sh, &gate, Some(&rec_120), &no_extra),
            &format!("{s}: the same release again"),
        );
        for ok_state in ["0.8.0", "0.8.2", "1.2.0"] {
            passes(
                &run_gate(
                    &sh,
                    &gate,
                    Some(&release_file(ok_state.as_bytes())),
                    &no_extra,
                ),
                &format!("{s}: {ok_state}"),
            );
        }
        refuses(
            &run_gate(&sh, &gate, Some(&rec_061), &no_extra),
            &format!("{s}: the 0.6.1 record"),
            &[
                "the live release is 0.6.1 (line 0.6)",
                "deploys 1.2.0",
                "can only follow: 0.8.x, 1.2.0",
                "lockstep plan --from 0.6.1 --to 1.2.0",
            ],
        );
        refuses(
            &run_gate(&sh, &gate, Some(&release_file(b"0.7.0\n")), &no_extra),
            &format!("{s}: 0.7.0"),
            &["the live release is 0.7.0", "deploys 1.2.0"],
        );
        for newer in ["1.2.1", "1.3.0", "2.0.0"] {
            refuses(
                &run_gate(&sh, &gate, Some(&release_file(newer.as_bytes())), &no_extra),
                &format!("{s}: {newer}"),
                &[
                    &format!("the live release is {newer} and this sync deploys the older 1.2.0"),
                    "downgrades are refused",
                ],
            );
        }

        // Same line, lower patch; the previous line; a skip and downgrades, for 0.8.2.
        for ok_state in ["0.8.1", "0.8.2", "0.7.0", "0.7.9"] {
            passes(
                &run_gate(
                    &sh,
                    &gate_082,
                    Some(&release_file(ok_state.as_bytes())),
                    &no_extra,
                ),
                &format!("{s}: 0.8.2 over {ok_state}"),
            );
        }
        refuses(
            &run_gate(&sh, &gate_082, Some(&release_file(b"0.6.1")), &no_extra),
            &format!("{s}: 0.8.2 over 0.6.1"),
            &["0.6.1", "0.8.2"],
        );
        for newer in ["0.8.3", "1.2.0"] {
            refuses(
                &run_gate(
                    &sh,
                    &gate_082,
                    Some(&release_file(newer.as_bytes())),
                    &no_extra,
                ),
                &format!("{s}: 0.8.2 over {newer}"),
                &[&format!(
                    "the live release is {newer} and this sync deploys the older 0.8.2"
                )],
            );
        }
    }
}

#[test]
fn the_gate_script_refuses_garbage_without_running_it() {
    let gate = gate_of(&ok(&render(Some("0.8.2"), "1.2.0")), RELEASE);
    type Garbage = Box<dyn Fn(&Path) -> Vec<u8>>;
    let cases: Vec<(&str, Garbage)> = vec![
        (
            "command after a version",
            Box::new(|d: &Path| {
                format!("1.2.0; rm -rf {}", d.join("sentinel").display()).into_bytes()
            }),
        ),
        (
            "command substitution",
            Box::new(|d: &Path| format!("$(rm -rf {})", d.join("sentinel").display()).into_bytes()),
        ),
        (
            "backticks",
            Box::new(|_: &Path| b"0.8.2`touch pwned`".to_vec()),
        ),
        (
            "a newline first",
            Box::new(|_: &Path| b"\n0.8.2\n".to_vec()),
        ),
        (
            "binary junk",
            Box::new(|_: &Path| vec![0x00, 0xff, 0xfe, 0x1b, b'[', b'2', b'J', 0x80]),
        ),
        ("v1", Box::new(|_: &Path| b"v1".to_vec())),
        ("a word", Box::new(|_: &Path| b"latest".to_vec())),
        (
            "carriage return",
            Box::new(|_: &Path| b"0.8.2\r\n".to_vec()),
        ),
        ("four numbers", Box::new(|_: &Path| b"0.8.2.1".to_vec())),
        (
            "a suffix that is no pre-release",
            Box::new(|_: &Path| b"0.8.2x".to_vec()),
        ),
        (
            "very long",
            Box::new(|_: &Path| {
                "0.8.2-"
                    .bytes()
                    .chain(std::iter::repeat_n(b'a', 100_000))
                    .collect()
            }),
        ),
        (
            "very long number",
            Box::new(|_: &Path| "9".repeat(10_000).into_bytes()),
        ),
        // Numbers the shell cannot compare: 1.2.<huge> is newer than 1.2.0, a downgrade.
        (
            "huge patch",
            Box::new(|_: &Path| b"1.2.99999999999999999999".to_vec()),
        ),
        (
            "huge major",
            Box::new(|_: &Path| b"99999999999999999999.0.0".to_vec()),
        ),
    ];
    for sh in shells() {
        let s = sh.join(" ");
        // An empty record file (the ConfigMap exists, the key is empty).
        let r = run_gate(&sh, &gate, Some(&release_file(b"")), &no_extra);
        refuses(
            &r,
            &format!("{s}: empty"),
            &[
                "does not hold a release version",
                "refusing to migrate",
                "customer-managed-lockstep",
            ],
        );
        for (what, garbage) in &cases {
            let r = run_gate(&sh, &gate, None, garbage.as_ref());
            refuses(
                &r,
                &format!("{s}: {what}"),
                &["refusing to migrate", "customer-managed-lockstep"],
            );
            assert!(!r.dir.join("work/pwned").exists());
            assert!(
                r.term.len() < 600,
                "{s}: {what}: the reason does not echo the junk: {} bytes",
                r.term.len()
            );
        }
    }
}

#[test]
fn an_allowed_downgrade_passes_the_gate_for_exactly_the_recorded_release() {
    let revisions = [
        "--downgrade-revision",
        "nebula=aaa111",
        "--downgrade-revision",
        "orion=bbb222",
        "--downgrade-revision",
        "events=ccc333",
    ];
    let image = "registry.acme-corp.internal/mirror/prefect/customer-managed/server:1.2.0";
    let args = [
        &["--allow-downgrade", "--from-image", image][..],
        &revisions[..],
    ]
    .concat();
    let down = ok(&render_with(
        "0.8.2",
        &values("0.8.2"),
        Some("1.2.0"),
        &args,
    ));
    let gate = gate_of(&down, RELEASE);
    assert_eq!(gate.env["LOCKSTEP_DOWNGRADE_FROM"], "1.2.0");
    assert_eq!(gate.env["LOCKSTEP_TARGET"], "0.8.2");
    let rec_120 = record_files(&ok(&render(Some("0.8.2"), "1.2.0")), RELEASE);
    for sh in shells() {
        let s = sh.join(" ");
        let r = run_gate(&sh, &gate, Some(&rec_120), &no_extra);
        passes(&r, &format!("{s}: downgrade from the recorded 1.2.0"));
        assert_contains(&r.stdout, &["downgrade to 0.8.2 was requested"]);
        // The downgrade is done and recorded: a re-sync passes.
        passes(
            &run_gate(&sh, &gate, Some(&release_file(b"0.8.2")), &no_extra),
            &format!("{s}: re-sync"),
        );
        for other in ["1.2.1", "1.3.0"] {
            refuses(
                &run_gate(&sh, &gate, Some(&release_file(other.as_bytes())), &no_extra),
                &format!("{s}: downgrade from {other}, not the recorded 1.2.0"),
                &[&format!(
                    "the live release is {other} and this sync deploys the older 0.8.2"
                )],
            );
        }
    }
    // Without --allow-downgrade the render itself refuses.
    fails(
        &render_with("0.8.2", &values("0.8.2"), Some("1.2.0"), &revisions),
        3,
    );
}

// ---------------------------------------------------------------------------
// The release record

#[test]
fn the_record_is_a_hook_written_after_the_steps_and_kept() {
    let out = ok(&render(Some("0.8.2"), "1.2.0"));
    let d = docs(&out);
    let rec = record(&out, RELEASE);
    assert_eq!(rec["apiVersion"], "v1");
    assert_eq!(rec["metadata"]["namespace"], RELEASE);
    let ann = |v: &Value, k: &str| v["metadata"]["annotations"][k].as_str().map(str::to_owned);
    // A hook (not re-applied by rollbacks or selective syncs, not part of a Helm release),
    // never pruned or deleted with the app or the release.
    for (k, v) in [
        ("argocd.argoproj.io/hook", "PreSync"),
        (
            "argocd.argoproj.io/hook-delete-policy",
            "BeforeHookCreation",
        ),
        (
            "argocd.argoproj.io/sync-options",
            "Prune=false,Delete=false",
        ),
        ("helm.sh/hook", "pre-install,pre-upgrade"),
        ("helm.sh/hook-delete-policy", "before-hook-creation"),
        ("helm.sh/resource-policy", "keep"),
    ] {
        assert_eq!(ann(&rec, k).as_deref(), Some(v), "{k}");
    }
    let backup = find(&d, "ConfigMap", &format!("{RELEASE}-lockstep-backup")).expect("backup");
    assert_eq!(
        backup["data"], rec["data"],
        "the backup holds the same record"
    );
    assert_eq!(rec["data"]["release"], "1.2.0");
    assert_eq!(rec["data"]["line"], "1.2");
    assert_eq!(rec["data"]["chart"], "prefect-cloud");
    assert_eq!(rec["data"]["profile"], "prefect-customer-managed");
    // 0.8 → 1.2 crosses the one-time step update-orion: the record lists it as done.
    assert_eq!(rec["data"]["one-time"], "update-orion");
    let orion = find(&d, "Deployment", &format!("{RELEASE}-orion")).expect("orion");
    let api_image = orion["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orion")
        .unwrap()["image"]
        .clone();
    assert_eq!(rec["data"]["image"], api_image);
    // The values' mirror, with the chart's appVersion as the tag.
    let meta: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart("1.2.0").join("Chart.yaml")).unwrap())
            .unwrap();
    let app_version = meta["appVersion"].as_str().unwrap();
    assert_eq!(
        api_image.as_str().unwrap(),
        format!("registry.acme-corp.internal/mirror/prefect/customer-managed/server:{app_version}")
    );

    // The gate mounts it (optional: a first install has none) where its script reads it.
    let job = find(&d, "Job", &format!("{RELEASE}-lockstep-gate")).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "lockstep-state")
        .expect("state volume");
    assert_eq!(vol["configMap"]["name"], rec["metadata"]["name"]);
    assert_eq!(vol["configMap"]["optional"], true);
    let bvol = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "lockstep-state-backup")
        .expect("backup volume");
    assert_eq!(bvol["configMap"]["name"], backup["metadata"]["name"]);
    assert_eq!(bvol["configMap"]["optional"], true);
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "lockstep-state")
        .expect("state mount")
        .clone();
    let env = job_env(job);
    assert_eq!(
        mount["mountPath"].as_str(),
        Some(env["LOCKSTEP_STATE_DIR"].as_str())
    );
    assert_eq!(
        env["LOCKSTEP_RECORD"],
        rec["metadata"]["name"].as_str().unwrap()
    );
    // The gate runs before every migration Job.
    let wave = |j: &Value| {
        j["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    let gate_wave = wave(job);
    let steps: Vec<&Value> = d
        .iter()
        .filter(|x| {
            x["kind"] == "Job"
                && x["metadata"]["labels"]["app.kubernetes.io/component"] == "database-migration"
        })
        .collect();
    assert_eq!(steps.len(), 4, "three migrations and update-orion");
    assert!(steps.iter().all(|m| wave(m) > gate_wave));
    // ... and the record after every migration and one-time step, the backup after it.
    let last_step = steps.iter().map(|m| wave(m)).max().unwrap();
    assert_eq!(wave(&rec), last_step + 1);
    assert_eq!(wave(backup), last_step + 2);
}
