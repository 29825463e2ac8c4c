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
//! One test per case: tables of cases are macros that make one `#[test]` each. A render
//! that several tests read is made once per test process (`rendered`). Inputs of our own
//! are in `tests/gate/` (see its README).

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

// ---------------------------------------------------------------------------
// Helpers

const RELEASE: &str = "customer-managed";
const LADDER: &[&str] = &["0.4.2", "0.5.2", "0.6.1", "0.7.0", "0.8.2", "1.2.0"];
/// What every prefect-cloud render says first on stderr.
const PROFILE_LINE: &str =
    "lockstep: profile prefect-customer-managed (chosen by chart name \"prefect-cloud\")\n";

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

/// lockstep ARGS, run from an empty directory so no stray lockstep.yaml/lockstep.lock counts.
fn lockstep_in_empty_dir<I, S>(args: I) -> Test
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Test::new().current_dir(fresh("cwd")).args(args)
}

/// `lockstep render prefect-cloud-<to> -f VALUES --release customer-managed -n customer-managed`.
fn render_of(to: &str, values_file: &Path) -> Test {
    lockstep_in_empty_dir(["render"])
        .arg(chart(to))
        .arg("-f")
        .arg(values_file)
        .args(["--release", RELEASE, "-n", RELEASE])
}

/// The step `from` → `to` with the values of `to`.
fn step(from: &str, to: &str) -> Test {
    render_of(to, &values(to)).args(["--from", from])
}

/// The output of `step(from, to)`, which must pass; made once per test process.
fn rendered(from: &'static str, to: &'static str) -> &'static Ran {
    type Cells = BTreeMap<(&'static str, &'static str), &'static OnceLock<Ran>>;
    static CELLS: Mutex<Cells> = Mutex::new(BTreeMap::new());
    let cell = *CELLS
        .lock()
        .unwrap()
        .entry((from, to))
        .or_insert_with(|| Box::leak(Box::new(OnceLock::new())));
    cell.get_or_init(|| step(from, to).run())
}

fn record(stream: &str, release: &str) -> Value {
    let d = docs(stream);
    find(&d, "ConfigMap", &format!("{release}-lockstep"))
        .expect("the release record ConfigMap")
        .clone()
}

fn released(stream: &str) -> Option<String> {
    record(stream, RELEASE)["data"]["release"]
        .as_str()
        .map(str::to_owned)
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "expected {n:?} in:\n{haystack}");
    }
}

/// A temporary app directory: lockstep.yaml pinned to `version`, the
/// values-override.yaml of that release, and a lockstep.lock holding `lock` if given.
fn app_dir(tag: &str, version: &str, lock: Option<&str>) -> PathBuf {
    let dir = fresh(tag);
    let charts = format!("{}examples/charts", up_to_repo(&dir));
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

/// `lockstep render --config DIR/lockstep.yaml`.
fn render_app(dir: &Path) -> Test {
    lockstep_in_empty_dir(["render", "--config"]).arg(dir.join("lockstep.yaml"))
}

fn job_env(job: &Value) -> BTreeMap<String, String> {
    job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            let value = e["value"].as_str().unwrap_or("").to_owned();
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn gate_job(d: &[Value]) -> &Value {
    find(d, "Job", &format!("{RELEASE}-lockstep-gate")).expect("the gate Job")
}

// ---------------------------------------------------------------------------
// The ladder: each legal step passes

/// A legal step: no warning about an unknown deployed release, the record holds the
/// target, the gate Job targets it and allows its line, and the one-time step of
/// 0.8 → 1.2 (update-orion) runs only when that step is crossed.
fn legal_step(from: &'static str, to: &'static str) {
    let ran = rendered(from, to);
    let err = &ran.stderr;
    assert!(
        !err.contains("only the in-cluster gate"),
        "the deployed release was given:\n{err}"
    );
    assert_eq!(
        released(&ran.stdout).as_deref(),
        Some(to),
        "the record holds the target"
    );
    let d = docs(&ran.stdout);
    let env = job_env(gate_job(&d));
    assert_eq!(env["LOCKSTEP_TARGET"], to);
    let to_line = &to[..to.rfind('.').unwrap()];
    assert!(env["LOCKSTEP_ALLOWED"].contains(to_line), "{env:?}");
    assert!(!env["LOCKSTEP_FROM_RANGES"].is_empty(), "{env:?}");
    let update_orion = d.iter().any(|x| {
        x["kind"] == "Job"
            && serde_yaml::to_string(&x["spec"])
                .unwrap()
                .contains("update-orion")
    });
    assert_eq!(
        update_orion,
        (from, to) == ("0.8.2", "1.2.0"),
        "update-orion Job"
    );
}

macro_rules! legal_steps {
    ($($name:ident: $from:literal -> $to:literal,)*) => {
        $(#[test] fn $name() { legal_step($from, $to); })*
    };
}

legal_steps! {
    step_0_4_2_to_0_5_2: "0.4.2" -> "0.5.2",
    step_0_5_2_to_0_6_1: "0.5.2" -> "0.6.1",
    step_0_6_1_to_0_7_0: "0.6.1" -> "0.7.0",
    step_0_7_0_to_0_8_2: "0.7.0" -> "0.8.2",
    step_0_8_2_to_1_2_0: "0.8.2" -> "1.2.0",
    // Same line: a patch, and the same release again.
    patch_0_8_0_to_0_8_2: "0.8.0" -> "0.8.2",
    same_release_0_8_2: "0.8.2" -> "0.8.2",
    same_release_1_2_0: "1.2.0" -> "1.2.0",
}

// ---------------------------------------------------------------------------
// Skips and downgrades: refused, with the path and the next command

/// The exact refusal of a skip: the rule, the path, and the one command to run now.
fn skip_refused(from: &str, to: &str, skips: &str, path: &str, next: &str) {
    let next_line = &next[..next.rfind('.').unwrap()];
    let message = format!(
        "{PROFILE_LINE}lockstep: error: refusing to upgrade prefect-cloud from {from} to {to}: that skips {skips}.
  rule: prefect-customer-managed upgrades one release line at a time, in catalog order (0.4 → 0.5 → 0.6 → 0.7 → 0.8 → 1.2)
  path: {path}
  now:  upgrade to {next_line} first: `lockstep bump --to {next}` (or pin the chart to {next}), sync, then continue
"
    );
    step(from, to).status(3).stderr(message).run();
}

#[test]
fn skip_0_6_1_to_1_2_0() {
    skip_refused(
        "0.6.1",
        "1.2.0",
        "2 release lines",
        "0.6.1 → 0.7.x → 0.8.x → 1.2.x",
        "0.7.0",
    );
}

#[test]
fn skip_0_4_2_to_0_6_1() {
    skip_refused(
        "0.4.2",
        "0.6.1",
        "1 release line",
        "0.4.2 → 0.5.x → 0.6.x",
        "0.5.2",
    );
}

#[test]
fn skip_0_4_2_to_1_2_0() {
    let path = "0.4.2 → 0.5.x → 0.6.x → 0.7.x → 0.8.x → 1.2.x";
    skip_refused("0.4.2", "1.2.0", "4 release lines", path, "0.5.2");
}

#[test]
fn skip_0_7_0_to_1_2_0() {
    skip_refused(
        "0.7.0",
        "1.2.0",
        "1 release line",
        "0.7.0 → 0.8.x → 1.2.x",
        "0.8.2",
    );
}

/// The exact refusal of a downgrade: the rule and the way to roll back.
fn downgrade_message(from: &str, to: &str) -> String {
    format!(
        "{PROFILE_LINE}lockstep: error: refusing to downgrade prefect-cloud from {from} to {to}.
  rule: downgrades are refused by default; the database schema of {from} may not work with {to}
  fix:  a rollback needs each database downgraded first, with the newer image: take backups, then render with --allow-downgrade and --downgrade-revision DB=REVISION for each of: nebula, orion, events
"
    )
}

macro_rules! downgrades {
    ($($name:ident: $from:literal -> $to:literal,)*) => {
        $(#[test] fn $name() {
            step($from, $to).status(3).stderr(downgrade_message($from, $to)).run();
        })*
    };
}

downgrades! {
    downgrade_1_2_0_to_0_8_2: "1.2.0" -> "0.8.2",
    downgrade_0_8_2_to_0_7_0: "0.8.2" -> "0.7.0",
    downgrade_0_5_2_to_0_4_2: "0.5.2" -> "0.4.2",
    downgrade_patch_0_8_5_to_0_8_2: "0.8.5" -> "0.8.2",
    downgrade_1_2_0_to_0_4_2: "1.2.0" -> "0.4.2",
}

// ---------------------------------------------------------------------------
// Unknown release lines

/// A chart of a line the catalog does not know (1.3), as a copy of 1.2.0.
fn chart_1_3() -> &'static Path {
    static CHART: OnceLock<PathBuf> = OnceLock::new();
    CHART.get_or_init(|| {
        let c = fresh("chart-1.3").join("prefect-cloud-1.3.0");
        copy_dir(&chart("1.2.0"), &c);
        let meta = std::fs::read_to_string(c.join("Chart.yaml")).unwrap();
        assert!(meta.contains("\nversion: 1.2.0"), "{meta}");
        let meta = meta.replace("\nversion: 1.2.0", "\nversion: 1.3.0");
        std::fs::write(c.join("Chart.yaml"), meta).unwrap();
        c
    })
}

fn render_1_3() -> Test {
    lockstep_in_empty_dir(["render"])
        .arg(chart_1_3())
        .arg("-f")
        .arg(values("1.2.0"))
        .args(["--release", RELEASE])
}

const UNKNOWN_LINE: [&str; 4] = [
    "1.3.0",
    "line 1.3",
    "not in the prefect-customer-managed catalog",
    "--profile",
];

#[test]
fn a_chart_on_an_unknown_line_is_refused() {
    let t = render_1_3().args(["--from", "1.2.0"]).status(3);
    UNKNOWN_LINE
        .iter()
        .fold(t, |t, n| t.stderr_contains(*n))
        .run();
}

#[test]
fn a_chart_on_an_unknown_line_is_refused_without_a_deployed_release() {
    let t = render_1_3().status(3);
    UNKNOWN_LINE
        .iter()
        .fold(t, |t, n| t.stderr_contains(*n))
        .run();
}

#[test]
fn a_deployed_release_on_an_unknown_line_is_refused() {
    step("0.9.1", "1.2.0")
        .status(3)
        .stderr_contains("0.9.1")
        .stderr_contains("line 0.9")
        .stderr_contains("does not know")
        .run();
}

// ---------------------------------------------------------------------------
// Where the deployed release comes from

/// Without a deployed release only the in-cluster gate protects, even with the values
/// of an old release: nothing is known to check them against.
fn unknown_deployed(values_of: &str, to: &str) {
    let ran = render_of(to, &values(values_of))
        .stderr_contains("no deployed release is known")
        .stderr_contains("only the in-cluster gate protects this sync of prefect-cloud")
        .run();
    assert_eq!(job_env(gate_job(&docs(&ran.stdout)))["LOCKSTEP_TARGET"], to);
}

#[test]
fn without_a_deployed_release_only_the_in_cluster_gate_protects() {
    unknown_deployed("1.2.0", "1.2.0");
}

#[test]
fn without_a_deployed_release_old_values_are_not_checked() {
    unknown_deployed("0.6.1", "0.7.0");
}

fn render_1_2_0_from_env(from: &str) -> Test {
    render_of("1.2.0", &values("1.2.0")).env("LOCKSTEP_FROM", from)
}

#[test]
fn lockstep_from_in_the_environment_refuses_a_skip() {
    render_1_2_0_from_env("0.6.1")
        .status(3)
        .stderr_contains("from 0.6.1 to 1.2.0")
        .stderr_contains("0.6.1 → 0.7.x → 0.8.x → 1.2.x")
        .run();
}

#[test]
fn lockstep_from_in_the_environment_passes_a_legal_step() {
    render_1_2_0_from_env("0.8.2")
        .stderr_lacks("no deployed release")
        .run();
}

#[test]
fn the_from_flag_wins_over_the_environment() {
    render_1_2_0_from_env("0.6.1")
        .args(["--from", "0.8.2"])
        .stderr_lacks("no deployed release")
        .run();
}

/// Pinned to 1.2.0, deployed 0.8.2: the step is legal.
#[test]
fn the_lock_file_gives_the_deployed_release() {
    let dir = app_dir("lock-ok", "1.2.0", Some(&lock_text("0.8.2")));
    let ran = render_app(&dir).stderr_lacks("no deployed release").run();
    assert_eq!(released(&ran.stdout).as_deref(), Some("1.2.0"));
}

#[test]
fn a_skip_from_the_lock_file_is_refused() {
    let dir = app_dir("lock-skip", "1.2.0", Some(&lock_text("0.6.1")));
    render_app(&dir)
        .status(3)
        .stderr_contains("from 0.6.1 to 1.2.0")
        .stderr_contains("lockstep bump --to 0.7.0")
        .run();
}

#[test]
fn the_from_flag_wins_over_the_lock_file() {
    let dir = app_dir("lock-from", "1.2.0", Some(&lock_text("0.6.1")));
    let ran = render_app(&dir).args(["--from", "0.8.2"]).run();
    assert_eq!(released(&ran.stdout).as_deref(), Some("1.2.0"));
}

/// A corrupt lock: exit 1, naming the file and the fix.
fn corrupt_lock(tag: &str, text: &str) {
    let dir = app_dir(tag, "1.2.0", Some(text));
    render_app(&dir)
        .status(1)
        .stderr_contains(dir.join("lockstep.lock").display().to_string())
        .stderr_contains("corrupt")
        .stderr_contains("Restore it from git")
        .stderr_contains("--from VERSION")
        .run();
}

macro_rules! corrupt_locks {
    ($($name:ident: $text:literal,)*) => {
        $(#[test] fn $name() { corrupt_lock(stringify!($name), $text); })*
    };
}

corrupt_locks! {
    corrupt_lock_yaml: "deployed: [0.8.2\n",
    corrupt_lock_version: "deployed:\n  version: banana\n",
    corrupt_lock_unknown_field: "deployed:\n  version: 0.8.2\n  extra: 1\n",
    corrupt_lock_empty: "",
}

// ---------------------------------------------------------------------------
// Values rules: checked before helm, naming the fix

/// The charts `fail` on these old keys themselves: the user must see the gate's
/// message, not helm's (the tests below check that it is the gate's).
#[test]
fn the_0_5_2_chart_itself_refuses_the_old_ingress_urls() {
    let o = Command::new(tool("helm4"))
        .args(["template", RELEASE])
        .arg(chart("0.5.2"))
        .arg("-f")
        .arg(values("0.4.2"))
        .env("HELM_CACHE_HOME", scratch("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch("helm-config"))
        .env("HELM_DATA_HOME", scratch("helm-data"))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the 0.5.2 chart itself refuses ingress.frontend.url"
    );
}

/// The step `from` → `to` with the values of `from` (and `extra` arguments): refused by
/// the gate with these words, before helm runs.
fn values_refused(from: &str, to: &str, values_of: &str, extra: &[&str], needles: &[&str]) {
    let t = render_of(to, &values(values_of))
        .args(["--from", from])
        .args(extra)
        .status(3)
        .stderr_lacks("helm template failed");
    needles.iter().fold(t, |t, n| t.stderr_contains(*n)).run();
}

#[test]
fn old_values_0_4_2_on_0_5_2_break_two_rules() {
    values_refused(
        "0.4.2",
        "0.5.2",
        "0.4.2",
        &[],
        &[
            "the values break 2 rules of the upgrade from 0.4.2",
            "[0.4 → 0.5] `ingress.frontend.url` is set, but this release reads `frontendUrl`",
            "`ingress.backend.url` is set, but this release reads `backendUrl`",
            "lockstep values migrate",
        ],
    );
}

#[test]
fn old_values_0_6_1_on_0_7_0_break_the_probe_rule() {
    values_refused(
        "0.6.1",
        "0.7.0",
        "0.6.1",
        &[],
        &[
            "the values break 1 rule of the upgrade from 0.6.1",
            "[0.6 → 0.7] orion.cloud2.readinessProbe runs `ps`",
            "fix: remove or replace orion.cloud2.readinessProbe",
        ],
    );
}

#[test]
fn old_values_0_8_2_on_1_2_0_break_four_rules() {
    values_refused(
        "0.8.2",
        "1.2.0",
        "0.8.2",
        &[],
        &[
            "the values break 4 rules of the upgrade from 0.8.2",
            "`frontendUrl` is set, but this release reads `global.frontendUrl`",
            "`backendUrl` is set, but this release reads `global.backendUrl`",
            "`global.authProvider.type` is no longer supported",
            "`ingress.name` is not set while `ingress.enabled` is true",
            "fix: set `ingress.name: self-managed-prefect-cloud`",
        ],
    );
}

/// An old key left empty still trips the chart's `hasKey` check: the gate names it.
#[test]
fn an_old_key_set_to_null_is_named() {
    values_refused(
        "0.8.2",
        "1.2.0",
        "1.2.0",
        &["--set", "frontendUrl=null"],
        &[
            "the values break 1 rule",
            "`frontendUrl` is set, but this release reads `global.frontendUrl`",
        ],
    );
}

const NO_INGRESS_NAME: [&str; 2] = [
    "the values break 1 rule",
    "`ingress.name` is not set while `ingress.enabled` is true",
];

/// The `required` rule: the chart's own default ingress.name does not count.
#[test]
fn a_required_key_must_be_set_by_the_user() {
    values_refused(
        "0.8.2",
        "1.2.0",
        "1.2.0",
        &["--set", "ingress.name=null"],
        &NO_INGRESS_NAME,
    );
}

/// The condition is what the chart renders: no ingress, no name needed.
#[test]
fn a_required_key_is_not_needed_when_its_condition_is_off() {
    step("0.8.2", "1.2.0")
        .args([
            "--set",
            "ingress.name=null",
            "--set",
            "ingress.enabled=false",
        ])
        .run();
}

/// The condition is read with the chart's defaults: prefect-cloud 1.2.0 enables the
/// ingress by default, so a file that does not say is still an existing Ingress.
#[test]
fn a_required_keys_condition_is_read_with_the_charts_defaults() {
    let text = std::fs::read_to_string(values("1.2.0")).unwrap();
    let quiet = text
        .replacen("ingress:\n  enabled: true\n", "ingress:\n", 1)
        .replacen("  name: self-managed-prefect-cloud\n", "", 1);
    let v: Value = serde_yaml::from_str(&quiet).unwrap();
    assert!(v["ingress"].get("enabled").is_none() && v["ingress"].get("name").is_none());
    let file = fresh("no-enabled").join("values.yaml");
    std::fs::write(&file, &quiet).unwrap();
    let t = render_of("1.2.0", &file)
        .args(["--from", "0.8.2"])
        .status(3);
    NO_INGRESS_NAME
        .iter()
        .fold(t, |t, n| t.stderr_contains(*n))
        .run();
}

/// The rules of a step are checked only when that step is crossed.
#[test]
fn rules_apply_only_to_the_step_they_belong_to() {
    step("1.2.0", "1.2.0")
        .args(["--set", "ingress.name=null"])
        .run();
}

#[test]
fn a_forbidden_word_set_with_set_string_is_caught() {
    let set = "events.cloud2.readinessProbe.exec.command=ps aux";
    values_refused(
        "0.6.1",
        "0.7.0",
        "0.7.0",
        &["--set-string", set],
        &["events.cloud2.readinessProbe runs `ps`"],
    );
}

// ---------------------------------------------------------------------------
// values migrate

fn migrate<I, S>(args: I) -> Test
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    lockstep_in_empty_dir(["values", "migrate"]).args(args)
}

/// `values migrate --from FROM --to TO values-<from>.yaml`: its input, output and
/// stderr, the values before and after, parsed.
struct Migrated {
    input: String,
    output: String,
    stderr: String,
    before: Value,
    after: Value,
}

fn migrated(from: &str, to: &str) -> Migrated {
    let path = values(from);
    let ran = migrate(["--from", from, "--to", to])
        .arg(&path)
        .stderr_contains(format!(
            "values migrate {from} → {to} (prefect-customer-managed)"
        ))
        .run();
    let input = std::fs::read_to_string(&path).unwrap();
    Migrated {
        before: serde_yaml::from_str(&input).unwrap(),
        after: serde_yaml::from_str(&ran.stdout).unwrap(),
        input,
        output: ran.stdout,
        stderr: ran.stderr,
    }
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

impl Migrated {
    /// `old` (before) is now at `new` (after): both removed, so that what is left can be
    /// compared.
    fn moved(&mut self, old: &str, new: &str) {
        let value = remove(&mut self.before, old).unwrap_or_else(|| panic!("{old} before"));
        assert_eq!(remove(&mut self.after, new), Some(value), "{old} → {new}");
    }

    /// Everything but the keys taken out by `moved`/`remove` is the same.
    fn rest_is_unchanged(&self) {
        assert_eq!(self.after, self.before, "values other than the moved keys");
    }
}

/// Comments and untouched lines are kept, in order.
fn migrate_keeps_comments_and_order(from: &str, to: &str) {
    let m = migrated(from, to);
    for c in m.input.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(m.output.contains(c.trim()), "comment {c:?} lost");
    }
    assert_eq!(
        common_lines(&m.input, &m.output),
        common_lines(&m.output, &m.input)
    );
}

/// The result renders with the new chart (0.6 → 0.7: except for what the editor could
/// not decide, which the gate still names).
fn migrated_values_render(from: &str, to: &str) {
    let m = migrated(from, to);
    let file = fresh("migrated").join("values.yaml");
    std::fs::write(&file, &m.output).unwrap();
    let t = render_of(to, &file).args(["--from", from]);
    if (from, to) == ("0.6.1", "0.7.0") {
        t.status(3)
            .stderr_contains("orion.cloud2.readinessProbe runs `ps`")
            .run();
    } else {
        t.run();
    }
}

macro_rules! migrate_steps {
    ($($name:ident: $from:literal -> $to:literal,)*) => {
        $(mod $name {
            use super::*;
            #[test] fn keeps_comments_and_order() { migrate_keeps_comments_and_order($from, $to); }
            #[test] fn output_renders() { migrated_values_render($from, $to); }
        })*
    };
}

migrate_steps! {
    migrate_0_4_2_to_0_5_2: "0.4.2" -> "0.5.2",
    migrate_0_5_2_to_0_6_1: "0.5.2" -> "0.6.1",
    migrate_0_6_1_to_0_7_0: "0.6.1" -> "0.7.0",
    migrate_0_7_0_to_0_8_2: "0.7.0" -> "0.8.2",
    migrate_0_8_2_to_1_2_0: "0.8.2" -> "1.2.0",
}

#[test]
fn migrate_0_4_2_to_0_5_2_moves_the_ingress_urls() {
    let mut m = migrated("0.4.2", "0.5.2");
    m.moved("ingress.frontend.url", "frontendUrl");
    m.moved("ingress.backend.url", "backendUrl");
    m.rest_is_unchanged();
    assert_contains(
        &m.stderr,
        &[
            "moved `ingress.frontend.url` (line 42) to `frontendUrl`",
            "moved `ingress.backend.url` (line 45) to `backendUrl`",
        ],
    );
}

/// A step without breaking rules changes nothing.
fn migrate_changes_nothing(from: &str, to: &str) {
    let m = migrated(from, to);
    assert_eq!(m.output, m.input);
    assert_contains(&m.stderr, &["nothing to change"]);
}

#[test]
fn migrate_0_5_2_to_0_6_1_changes_nothing() {
    migrate_changes_nothing("0.5.2", "0.6.1");
}

#[test]
fn migrate_0_7_0_to_0_8_2_changes_nothing() {
    migrate_changes_nothing("0.7.0", "0.8.2");
}

#[test]
fn migrate_0_6_1_to_0_7_0_leaves_the_probe_to_the_user() {
    let m = migrated("0.6.1", "0.7.0");
    assert_eq!(m.output, m.input, "nothing the editor may decide");
    assert_contains(
        &m.stderr,
        &["could not decide, edit by hand: [0.6 → 0.7] orion.cloud2.readinessProbe runs `ps`"],
    );
}

#[test]
fn migrate_0_8_2_to_1_2_0_moves_removes_and_sets() {
    let mut m = migrated("0.8.2", "1.2.0");
    m.moved("frontendUrl", "global.frontendUrl");
    m.moved("backendUrl", "global.backendUrl");
    assert_eq!(
        remove(&mut m.before, "global.authProvider.type"),
        Some(Value::from("okta"))
    );
    let name = remove(&mut m.after, "ingress.name");
    assert_eq!(name, Some(Value::from("self-managed-prefect-cloud")));
    m.rest_is_unchanged();
    assert_contains(
        &m.stderr,
        &[
            "moved `frontendUrl` (line 34) to `global.frontendUrl`",
            "removed `global.authProvider.type` (line 28)",
            "set `ingress.name: self-managed-prefect-cloud`",
            "check by hand, the release requires: Redis",
        ],
    );
}

/// Across several steps the moves chain, and the result renders on 1.2.0 once deployed
/// from 0.8.x.
#[test]
fn migrate_across_several_steps_chains_the_moves() {
    let output = migrate(["--from", "0.4.2", "--to", "1.2.0"])
        .arg(values("0.4.2"))
        .run()
        .stdout;
    let v: Value = serde_yaml::from_str(&output).unwrap();
    let g = &v["global"];
    assert_eq!(
        g["frontendUrl"].as_str(),
        Some("https://prefect.acme-corp.internal")
    );
    assert_eq!(
        g["backendUrl"].as_str(),
        Some("https://prefect-api.acme-corp.internal")
    );
    assert!(v.get("frontendUrl").is_none(), "{output}");
    assert!(v["ingress"]["frontend"].get("url").is_none(), "{output}");
    assert!(g["authProvider"].get("type").is_none(), "{output}");
    assert_eq!(
        v["ingress"]["name"].as_str(),
        Some("self-managed-prefect-cloud")
    );
    let file = fresh("chained").join("values.yaml");
    std::fs::write(&file, &output).unwrap();
    render_of("1.2.0", &file).args(["--from", "0.8.2"]).run();
}

/// An app pinned to 0.8.2 with its lock; returns its values file.
fn app_values_0_8_2(tag: &str) -> PathBuf {
    app_dir(tag, "0.8.2", Some(&lock_text("0.8.2"))).join("values-override.yaml")
}

fn migrate_in_place(file: &Path) -> Test {
    migrate(["--to", "1.2.0", "--in-place"])
        .arg(file)
        .stdout("")
}

/// What `values migrate` prints for values-0.8.2.yaml to 1.2.0.
fn migrated_0_8_2() -> String {
    migrated("0.8.2", "1.2.0").output
}

/// --in-place, --from from the lockstep.lock beside the file: the file is rewritten.
#[test]
fn migrate_in_place_reads_the_lock_and_rewrites_the_file() {
    let file = app_values_0_8_2("in-place");
    migrate_in_place(&file)
        .stderr_contains("values migrate 0.8.2 → 1.2.0")
        .stderr_contains("rewrote")
        .run();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), migrated_0_8_2());
}

/// Again: nothing left to do, the file as it was.
#[test]
fn migrate_in_place_twice_leaves_the_file() {
    let file = app_values_0_8_2("in-place-twice");
    migrate_in_place(&file).run();
    migrate_in_place(&file)
        .stderr_contains("nothing to change")
        .stderr_contains("left as it was")
        .run();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), migrated_0_8_2());
}

fn lone_values_0_8_2() -> PathBuf {
    let lone = fresh("migrate-lone").join("values.yaml");
    std::fs::copy(values("0.8.2"), &lone).unwrap();
    lone
}

/// No --from and no lock: an error naming --from.
#[test]
fn migrate_without_from_or_lock_names_from() {
    migrate(["--to", "1.2.0"])
        .arg(lone_values_0_8_2())
        .status(1)
        .stderr_contains("--from VERSION")
        .stderr_contains("lockstep.lock")
        .run();
}

/// A downgrade has no steps to migrate.
#[test]
fn migrate_refuses_a_downgrade() {
    migrate(["--from", "1.2.0", "--to", "0.8.2"])
        .arg(lone_values_0_8_2())
        .status(1)
        .stderr_contains("older than 1.2.0")
        .run();
}

/// Flow style and anchors: refused, the file untouched, the file named.
fn migrate_refuses_to_edit(name: &str, in_place: bool) {
    let copy = fresh("migrate-refuse").join(name);
    std::fs::copy(data(name), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let t = migrate(["--from", "0.8.2", "--to", "1.2.0"]).arg(&copy);
    let t = if in_place { t.arg("--in-place") } else { t };
    t.status(1)
        .stderr_contains("by hand")
        .stderr_contains(copy.display().to_string())
        .run();
    assert_eq!(std::fs::read(&copy).unwrap(), before, "{name}: untouched");
}

#[test]
fn migrate_refuses_flow_style() {
    migrate_refuses_to_edit("flow-0.8.2.yaml", false);
}

#[test]
fn migrate_in_place_refuses_flow_style() {
    migrate_refuses_to_edit("flow-0.8.2.yaml", true);
}

#[test]
fn migrate_refuses_a_moved_anchor() {
    migrate_refuses_to_edit("anchors-0.8.2.yaml", false);
}

#[test]
fn migrate_in_place_refuses_a_moved_anchor() {
    migrate_refuses_to_edit("anchors-0.8.2.yaml", true);
}

// ---------------------------------------------------------------------------
// plan and bump

const PLAN_ARGS: [&str; 7] = [
    "plan",
    "--from",
    "0.4.2",
    "--to",
    "1.2.0",
    "--profile",
    "prefect-customer-managed",
];

fn plan_text() -> String {
    lockstep_in_empty_dir(PLAN_ARGS).run().stdout
}

/// The whole plan, byte for byte (tests/gate/plan-0.4.2-to-1.2.0.txt; the tests below
/// say what in it matters).
#[test]
fn plan_text_is_exact() {
    let want = std::fs::read_to_string(data("plan-0.4.2-to-1.2.0.txt")).unwrap();
    lockstep_in_empty_dir(PLAN_ARGS).stdout(want).run();
}

#[test]
fn plan_lists_every_stop_with_its_changes() {
    assert_contains(
        &plan_text(),
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
}

/// The 1.2 changes are in the 5th stop, not before it.
#[test]
fn plan_puts_each_change_in_its_stop() {
    let text = plan_text();
    let at = text.find("5. 0.8.2 → 1.2.0").unwrap();
    let fifth = &text[at..];
    assert_contains(
        fifth,
        &[
            "update-orion",
            "`backendUrl` moved to `global.backendUrl`",
            "notes:",
        ],
    );
    assert!(!text[..at].contains("update-orion"), "{text}");
}

/// The plan from the app's lockstep.yaml, as JSON.
fn plan_json() -> serde_json::Value {
    let dir = app_dir("plan", "0.4.2", None);
    let args = [
        "plan", "--from", "0.4.2", "--to", "1.2.0", "--output", "json",
    ];
    let out = Test::new().current_dir(&dir).args(args).run().stdout;
    serde_json::from_str(&out).expect("plan --output json is JSON")
}

fn stops(json: &serde_json::Value) -> Vec<serde_json::Value> {
    json["stops"].as_array().unwrap().clone()
}

fn len(v: &serde_json::Value) -> usize {
    v.as_array().unwrap().len()
}

#[test]
fn plan_json_lists_the_stops_of_the_text() {
    let text = plan_text();
    let pairs: Vec<(String, String)> = stops(&plan_json())
        .iter()
        .map(|s| {
            (
                s["from"].as_str().unwrap().into(),
                s["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = LADDER
        .windows(2)
        .map(|w| (w[0].into(), w[1].into()))
        .collect();
    assert_eq!(pairs, want);
    for (i, (from, to)) in pairs.iter().enumerate() {
        assert!(
            text.contains(&format!("{}. {from} → {to}", i + 1)),
            "{text}"
        );
    }
}

#[test]
fn plan_json_has_the_migrations_breaking_changes_and_one_time_steps() {
    let stops = stops(&plan_json());
    assert!(
        stops.iter().all(|s| len(&s["migrations"]) == 3),
        "{stops:?}"
    );
    let breaking: Vec<usize> = stops.iter().map(|s| len(&s["breaking"])).collect();
    assert_eq!(breaking[0], 2);
    assert_eq!(breaking[1], 0);
    assert_eq!(breaking[4], 4);
    assert!(stops[..4].iter().all(|s| len(&s["one_time"]) == 0));
    assert_eq!(len(&stops[4]["one_time"]), 1);
    assert!(stops[4]["one_time"][0]
        .as_str()
        .unwrap()
        .starts_with("update-orion"));
    assert!(len(&stops[4]["notes"]) >= 4);
}

#[test]
fn plan_backwards_is_refused() {
    let mut args = PLAN_ARGS;
    (args[2], args[4]) = ("1.2.0", "0.8.2");
    lockstep_in_empty_dir(args).status(3).run();
}

fn bump(cfg: &Path, to: &str) -> Test {
    lockstep_in_empty_dir(["bump", "--to", to, "--config"]).arg(cfg)
}

/// An app at 0.8.2 bumped to 1.2.0: its directory, lockstep.yaml before.
fn bumped_app(tag: &str) -> (PathBuf, String) {
    let dir = app_dir(tag, "0.8.2", None);
    let cfg = dir.join("lockstep.yaml");
    let before = std::fs::read_to_string(&cfg).unwrap();
    bump(&cfg, "1.2.0").run();
    (dir, before)
}

#[test]
fn bump_changes_only_the_version_line() {
    let (dir, before) = bumped_app("bump-line");
    let after = std::fs::read_to_string(dir.join("lockstep.yaml")).unwrap();
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
}

#[test]
fn bump_records_the_release_it_leaves_in_the_lock() {
    let (dir, _) = bumped_app("bump-lock");
    let lock = std::fs::read_to_string(dir.join("lockstep.lock")).unwrap();
    let lock: Value = serde_yaml::from_str(&lock).unwrap();
    assert_eq!(lock["deployed"]["version"].as_str(), Some("0.8.2"));
}

/// The app now renders 1.2.0 over 0.8.2 (with the migrated values).
#[test]
fn a_bumped_app_renders_the_new_release() {
    let (dir, _) = bumped_app("bump-render");
    migrate_in_place(&dir.join("values-override.yaml")).run();
    let ran = render_app(&dir).run();
    assert_eq!(released(&ran.stdout).as_deref(), Some("1.2.0"));
}

#[test]
fn a_second_bump_to_the_same_release_is_an_error() {
    let (dir, _) = bumped_app("bump-again");
    bump(&dir.join("lockstep.yaml"), "1.2.0").status(1).run();
}

/// From 0.6.1 the same bump skips two lines: refused, nothing written.
#[test]
fn a_bump_that_skips_lines_is_refused_and_writes_nothing() {
    let dir = app_dir("bump-skip", "0.6.1", None);
    let cfg = dir.join("lockstep.yaml");
    let before = std::fs::read(&cfg).unwrap();
    bump(&cfg, "1.2.0")
        .status(3)
        .stderr_contains("0.6.1 → 0.7.x → 0.8.x → 1.2.x")
        .stderr_contains("lockstep bump --to 0.7.0")
        .run();
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
    assert!(!dir.join("lockstep.lock").exists());
}

// ---------------------------------------------------------------------------
// prefect-server: the semver rule, the image tag decides

fn server(args: &[&str]) -> Test {
    lockstep_in_empty_dir(["render"])
        .arg(repo().join("examples/charts/prefect-server"))
        .args(args)
}

const PIN_3_7_8: [&str; 2] = ["--set", "global.prefect.image.prefectTag=3.7.8-python3.11"];

#[test]
fn prefect_server_passes_from_the_previous_line() {
    let ran = server(&["--from", "3.7.8"]).run();
    let rec = record(&ran.stdout, "prefect-server");
    assert_eq!(rec["data"]["release"].as_str(), Some("3.8.3"));
}

#[test]
fn prefect_server_refuses_a_skip() {
    server(&["--from", "3.6.1"])
        .status(3)
        .stderr_contains("from 3.6.1 to 3.8.3")
        .stderr_contains("3.6.1 → 3.7.x → 3.8.x")
        .stderr_contains("lockstep bump --to 3.7.8")
        .run();
}

/// A pinned tag decides over the chart's appVersion (3.8.3).
#[test]
fn prefect_server_release_is_the_pinned_image_tag() {
    let ran = server(&[&PIN_3_7_8[..], &["--from", "3.6.1"]].concat()).run();
    let rec = record(&ran.stdout, "prefect-server");
    assert_eq!(rec["data"]["release"].as_str(), Some("3.7.8"));
    let image = rec["data"]["image"].as_str().unwrap();
    assert!(image.ends_with(":3.7.8-python3.11"), "{rec:?}");
}

#[test]
fn prefect_server_refuses_a_pinned_downgrade() {
    server(&[&PIN_3_7_8[..], &["--from", "3.8.3"]].concat())
        .status(3)
        .stderr_contains("refusing to downgrade prefect-server from 3.8.3 to 3.7.8")
        .run();
}

// ---------------------------------------------------------------------------
// The in-cluster gate script

/// The gate Job's script and environment, as a render emits them.
struct Gate {
    script: String,
    env: BTreeMap<String, String>,
}

fn gate_of(stream: &str) -> Gate {
    let d = docs(stream);
    let job = gate_job(&d);
    let command = job["spec"]["template"]["spec"]["containers"][0]["command"].clone();
    let command: Vec<String> = serde_yaml::from_value(command).expect("a list of strings");
    assert_eq!(command.len(), 3, "{command:?}");
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    Gate {
        script: command[2].clone(),
        env: job_env(job),
    }
}

/// The gate of 0.8.2 → 1.2.0.
fn gate_1_2_0() -> Gate {
    gate_of(&rendered("0.8.2", "1.2.0").stdout)
}

/// The gate of 0.7.0 → 0.8.2: from 0.7 or 0.8.
fn gate_0_8_2() -> Gate {
    gate_of(&rendered("0.7.0", "0.8.2").stdout)
}

/// What the gate's volume holds: the record ConfigMap's files, or None (the optional
/// ConfigMap is missing, the volume empty).
type State = Option<Vec<(String, Vec<u8>)>>;

/// The record a real render of `from` → `to` writes.
fn record_of(from: &'static str, to: &'static str) -> State {
    let rec = record(&rendered(from, to).stdout, RELEASE);
    let files = rec["data"].as_mapping().unwrap().iter().map(|(k, v)| {
        let bytes = v.as_str().unwrap().as_bytes().to_vec();
        (k.as_str().unwrap().to_owned(), bytes)
    });
    Some(files.collect())
}

/// A record holding only this release file.
fn release_file(text: &str) -> State {
    Some(vec![("release".to_owned(), text.as_bytes().to_vec())])
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

/// Runs the gate script with `sh`, the state's files in a fresh state directory, and
/// `garbage` (made from the run's directory) as the release file if not empty.
fn run_gate(
    sh: &[&str],
    gate: &Gate,
    state: &State,
    garbage: &dyn Fn(&Path) -> Vec<u8>,
) -> GateRun {
    let dir = fresh("run-gate");
    let (state_dir, work, sentinel) = (dir.join("state"), dir.join("work"), dir.join("sentinel"));
    for d in [&state_dir, &work, &sentinel] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(sentinel.join("keep"), "x").unwrap();
    for (name, bytes) in state.as_deref().unwrap_or_default() {
        std::fs::write(state_dir.join(name), bytes).unwrap();
    }
    let garbage = garbage(&dir);
    if !garbage.is_empty() {
        std::fs::write(state_dir.join("release"), garbage).unwrap();
    }
    let term = dir.join("termination-log");
    let o = Command::new(sh[0])
        .args(&sh[1..])
        .arg("-c")
        .arg(&gate.script)
        .current_dir(&work)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(&gate.env)
        .env("LOCKSTEP_STATE_DIR", &state_dir)
        .env("LOCKSTEP_TERMINATION_LOG", &term)
        .stdin(Stdio::null())
        .output()
        .expect("run the gate script");
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

fn no_garbage(_: &Path) -> Vec<u8> {
    vec![]
}

/// What the gate must do: pass (with these words on stdout), or refuse (with these
/// words in the termination log).
enum Want {
    Pass(&'static [&'static str]),
    Refuse(&'static [&'static str]),
}

fn check_run(r: &GateRun, what: &str, want: &Want) {
    let shown = format!(
        "{what}\nstdout: {}\nstderr: {}\ntermination log: {}",
        r.stdout, r.stderr, r.term
    );
    match want {
        Want::Pass(words) => {
            assert_eq!(r.code, Some(0), "the gate passes: {shown}");
            assert!(r.term.is_empty(), "no termination message: {shown}");
            assert!(r.stdout.starts_with("lockstep gate: "), "{shown}");
            assert_contains(&r.stdout, words);
        }
        Want::Refuse(words) => {
            assert_eq!(r.code, Some(1), "the gate fails: {shown}");
            assert!(
                r.term.starts_with("lockstep gate: "),
                "the reason goes to the termination log: {shown}"
            );
            assert_contains(&r.term, words);
            // Cleanly: only the gate's own message, no shell errors.
            assert!(
                r.stderr.lines().all(|l| l.starts_with("lockstep gate: ")),
                "stderr: {shown}"
            );
        }
    }
}

/// The gate over this state, with every shell there is.
fn gate_over(gate: &Gate, state: State, want: Want) {
    for sh in shells() {
        let r = run_gate(&sh, gate, &state, &no_garbage);
        check_run(&r, &sh.join(" "), &want);
    }
}

macro_rules! gate_cases {
    ($($(#[$m:meta])* $name:ident: $gate:ident over $state:expr => $want:expr,)*) => {
        $($(#[$m])* #[test] fn $name() { gate_over(&$gate(), $state, $want); })*
    };
}

use Want::{Pass, Refuse};

const REFUSE_0_6_1: &[&str] = &[
    "the live release is 0.6.1 (line 0.6)",
    "deploys 1.2.0",
    "can only follow: 0.8.x, 1.2.0",
    "lockstep plan --from 0.6.1 --to 1.2.0",
];

gate_cases! {
    gate_1_2_0_passes_a_first_install: gate_1_2_0 over None => Pass(&["first install"]),
    gate_1_2_0_passes_over_the_0_8_2_record: gate_1_2_0 over record_of("0.7.0", "0.8.2") => Pass(&[]),
    gate_1_2_0_passes_over_its_own_record: gate_1_2_0 over record_of("0.8.2", "1.2.0") => Pass(&[]),
    gate_1_2_0_passes_over_0_8_0: gate_1_2_0 over release_file("0.8.0") => Pass(&[]),
    gate_1_2_0_passes_over_0_8_2: gate_1_2_0 over release_file("0.8.2") => Pass(&[]),
    gate_1_2_0_passes_over_1_2_0: gate_1_2_0 over release_file("1.2.0") => Pass(&[]),
    gate_1_2_0_refuses_the_0_6_1_record: gate_1_2_0 over record_of("0.5.2", "0.6.1") => Refuse(REFUSE_0_6_1),
    gate_1_2_0_refuses_0_7_0: gate_1_2_0 over release_file("0.7.0\n") => Refuse(&["the live release is 0.7.0", "deploys 1.2.0"]),
    gate_1_2_0_refuses_1_2_1: gate_1_2_0 over release_file("1.2.1") => Refuse(&["the live release is 1.2.1 and this sync deploys the older 1.2.0", "downgrades are refused"]),
    gate_1_2_0_refuses_1_3_0: gate_1_2_0 over release_file("1.3.0") => Refuse(&["the live release is 1.3.0 and this sync deploys the older 1.2.0", "downgrades are refused"]),
    gate_1_2_0_refuses_2_0_0: gate_1_2_0 over release_file("2.0.0") => Refuse(&["the live release is 2.0.0 and this sync deploys the older 1.2.0", "downgrades are refused"]),
    // Same line, lower patch; the previous line; a skip and downgrades, for 0.8.2.
    gate_0_8_2_passes_over_0_8_1: gate_0_8_2 over release_file("0.8.1") => Pass(&[]),
    gate_0_8_2_passes_over_0_8_2: gate_0_8_2 over release_file("0.8.2") => Pass(&[]),
    gate_0_8_2_passes_over_0_7_0: gate_0_8_2 over release_file("0.7.0") => Pass(&[]),
    gate_0_8_2_passes_over_0_7_9: gate_0_8_2 over release_file("0.7.9") => Pass(&[]),
    gate_0_8_2_refuses_0_6_1: gate_0_8_2 over release_file("0.6.1") => Refuse(&["0.6.1", "0.8.2"]),
    gate_0_8_2_refuses_0_8_3: gate_0_8_2 over release_file("0.8.3") => Refuse(&["the live release is 0.8.3 and this sync deploys the older 0.8.2"]),
    gate_0_8_2_refuses_1_2_0: gate_0_8_2 over release_file("1.2.0") => Refuse(&["the live release is 1.2.0 and this sync deploys the older 0.8.2"]),
}

#[test]
fn the_gate_of_1_2_0_follows_0_8_x() {
    let gate = gate_1_2_0();
    assert_eq!(gate.env["LOCKSTEP_TARGET"], "1.2.0");
    assert_eq!(gate.env["LOCKSTEP_ALLOWED"], "0.8.x, 1.2.0");
    assert_eq!(gate.env["LOCKSTEP_DOWNGRADE_FROM"], "");
}

/// An empty record file (the ConfigMap exists, the key is empty).
#[test]
fn the_gate_refuses_an_empty_record() {
    let words = &[
        "does not hold a release version",
        "refusing to migrate",
        "customer-managed-lockstep",
    ];
    gate_over(&gate_1_2_0(), release_file(""), Refuse(words));
}

/// Garbage as the release file: refused without running it (the sentinel stays, nothing
/// is created) and without echoing it.
fn gate_refuses_garbage(garbage: &dyn Fn(&Path) -> Vec<u8>) {
    let gate = gate_1_2_0();
    for sh in shells() {
        let s = sh.join(" ");
        let r = run_gate(&sh, &gate, &None, garbage);
        check_run(
            &r,
            &s,
            &Refuse(&["refusing to migrate", "customer-managed-lockstep"]),
        );
        assert!(!r.dir.join("work/pwned").exists());
        assert!(
            r.term.len() < 600,
            "{s}: the reason does not echo the junk: {} bytes",
            r.term.len()
        );
    }
}

macro_rules! garbage_cases {
    ($($(#[$m:meta])* $name:ident: $garbage:expr,)*) => {
        $($(#[$m])* #[test] fn $name() { gate_refuses_garbage(&$garbage); })*
    };
}

garbage_cases! {
    garbage_command_after_a_version: |d: &Path| format!("1.2.0; rm -rf {}", d.join("sentinel").display()).into_bytes(),
    garbage_command_substitution: |d: &Path| format!("$(rm -rf {})", d.join("sentinel").display()).into_bytes(),
    garbage_backticks: |_: &Path| b"0.8.2`touch pwned`".to_vec(),
    garbage_a_newline_first: |_: &Path| b"\n0.8.2\n".to_vec(),
    garbage_binary_junk: |_: &Path| vec![0x00, 0xff, 0xfe, 0x1b, b'[', b'2', b'J', 0x80],
    garbage_v1: |_: &Path| b"v1".to_vec(),
    garbage_a_word: |_: &Path| b"latest".to_vec(),
    garbage_carriage_return: |_: &Path| b"0.8.2\r\n".to_vec(),
    garbage_four_numbers: |_: &Path| b"0.8.2.1".to_vec(),
    garbage_a_suffix_that_is_no_pre_release: |_: &Path| b"0.8.2x".to_vec(),
    garbage_very_long: |_: &Path| "0.8.2-".bytes().chain(std::iter::repeat_n(b'a', 100_000)).collect(),
    garbage_very_long_number: |_: &Path| "9".repeat(10_000).into_bytes(),
    /// Numbers the shell cannot compare: 1.2.<huge> is newer than 1.2.0, a downgrade.
    garbage_huge_patch: |_: &Path| b"1.2.99999999999999999999".to_vec(),
    garbage_huge_major: |_: &Path| b"99999999999999999999.0.0".to_vec(),
}

// ---------------------------------------------------------------------------
// An allowed downgrade: the gate passes for exactly the recorded release

const DOWNGRADE_REVISIONS: [&str; 6] = [
    "--downgrade-revision",
    "nebula=aaa111",
    "--downgrade-revision",
    "orion=bbb222",
    "--downgrade-revision",
    "events=ccc333",
];

/// The gate of 1.2.0 → 0.8.2 with --allow-downgrade and the newer image.
fn downgrade_gate() -> Gate {
    static OUT: OnceLock<String> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let image = "registry.acme-corp.internal/mirror/prefect/customer-managed/server:1.2.0";
        step("1.2.0", "0.8.2")
            .args(["--allow-downgrade", "--from-image", image])
            .args(DOWNGRADE_REVISIONS)
            .run()
            .stdout
    });
    gate_of(out)
}

#[test]
fn the_downgrade_gate_names_the_release_it_leaves() {
    let gate = downgrade_gate();
    assert_eq!(gate.env["LOCKSTEP_DOWNGRADE_FROM"], "1.2.0");
    assert_eq!(gate.env["LOCKSTEP_TARGET"], "0.8.2");
}

/// Without --allow-downgrade the render itself refuses.
#[test]
fn a_downgrade_needs_allow_downgrade() {
    step("1.2.0", "0.8.2")
        .args(DOWNGRADE_REVISIONS)
        .status(3)
        .run();
}

gate_cases! {
    downgrade_gate_passes_over_the_recorded_1_2_0: downgrade_gate over record_of("0.8.2", "1.2.0") => Pass(&["downgrade to 0.8.2 was requested"]),
    /// The downgrade is done and recorded: a re-sync passes.
    downgrade_gate_passes_a_resync: downgrade_gate over release_file("0.8.2") => Pass(&[]),
    downgrade_gate_refuses_1_2_1: downgrade_gate over release_file("1.2.1") => Refuse(&["the live release is 1.2.1 and this sync deploys the older 0.8.2"]),
    downgrade_gate_refuses_1_3_0: downgrade_gate over release_file("1.3.0") => Refuse(&["the live release is 1.3.0 and this sync deploys the older 0.8.2"]),
}

// ---------------------------------------------------------------------------
// The release record

/// The documents of the 0.8.2 → 1.2.0 render.
fn up_docs() -> Vec<Value> {
    docs(&rendered("0.8.2", "1.2.0").stdout)
}

fn up_record() -> Value {
    record(&rendered("0.8.2", "1.2.0").stdout, RELEASE)
}

/// A hook (not re-applied by rollbacks or selective syncs, not part of a Helm release),
/// never pruned or deleted with the app or the release.
#[test]
fn the_record_is_a_hook_that_is_kept() {
    let rec = up_record();
    assert_eq!(rec["apiVersion"], "v1");
    assert_eq!(rec["metadata"]["namespace"], RELEASE);
    let ann = &rec["metadata"]["annotations"];
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
        assert_eq!(ann[k].as_str(), Some(v), "{k}");
    }
}

/// The release, its line, chart and profile, the one-time steps done (0.8 → 1.2 crosses
/// update-orion), and the API's image: the values' mirror, with the chart's appVersion.
#[test]
fn the_record_holds_the_release_and_the_apis_image() {
    let meta = std::fs::read_to_string(chart("1.2.0").join("Chart.yaml")).unwrap();
    let meta: Value = serde_yaml::from_str(&meta).unwrap();
    let app_version = meta["appVersion"].as_str().unwrap();
    let image =
        format!("registry.acme-corp.internal/mirror/prefect/customer-managed/server:{app_version}");
    let want = format!(
        "chart: prefect-cloud\nimage: {image}\nline: '1.2'\none-time: update-orion\nprofile: prefect-customer-managed\nrelease: 1.2.0\n"
    );
    let want: Value = serde_yaml::from_str(&want).unwrap();
    assert_eq!(up_record()["data"], want);
    let d = up_docs();
    let orion = find(&d, "Deployment", &format!("{RELEASE}-orion")).expect("orion");
    let containers = orion["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    let api = containers.iter().find(|c| c["name"] == "orion").unwrap();
    assert_eq!(api["image"].as_str(), Some(image.as_str()));
}

#[test]
fn the_backup_holds_the_same_record() {
    let d = up_docs();
    let backup = find(&d, "ConfigMap", &format!("{RELEASE}-lockstep-backup")).expect("backup");
    assert_eq!(backup["data"], up_record()["data"]);
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let vols = pod["volumes"].as_sequence().unwrap();
    vols.iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("volume {name}"))
}

/// The gate mounts the record and its backup (optional: a first install has none)
/// where its script reads them.
#[test]
fn the_gate_mounts_the_record_and_its_backup() {
    let d = up_docs();
    let job = gate_job(&d);
    let pod = &job["spec"]["template"]["spec"];
    let rec_name = format!("{RELEASE}-lockstep");
    for (vol, cm) in [
        ("lockstep-state", rec_name.clone()),
        ("lockstep-state-backup", format!("{rec_name}-backup")),
    ] {
        assert_eq!(
            volume(pod, vol)["configMap"]["name"].as_str(),
            Some(cm.as_str()),
            "{vol}"
        );
        assert_eq!(volume(pod, vol)["configMap"]["optional"], true, "{vol}");
    }
    let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["name"] == "lockstep-state")
        .expect("state mount");
    let env = job_env(job);
    assert_eq!(
        mount["mountPath"].as_str(),
        Some(env["LOCKSTEP_STATE_DIR"].as_str())
    );
    assert_eq!(env["LOCKSTEP_RECORD"], rec_name);
}

fn wave(j: &Value) -> i32 {
    let w = &j["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"];
    w.as_str().unwrap().parse().unwrap()
}

/// The gate runs before every migration Job and one-time step; the record is written
/// after all of them, the backup after it.
#[test]
fn the_gate_runs_first_and_the_record_last() {
    let d = up_docs();
    let component = |x: &Value| x["metadata"]["labels"]["app.kubernetes.io/component"].clone();
    let steps: Vec<&Value> = d
        .iter()
        .filter(|x| component(x) == "database-migration")
        .collect();
    assert_eq!(steps.len(), 4, "three migrations and update-orion");
    let gate = wave(gate_job(&d));
    assert!(steps.iter().all(|m| wave(m) > gate));
    let last_step = steps.iter().map(|m| wave(m)).max().unwrap();
    assert_eq!(wave(&up_record()), last_step + 1);
    let backup = find(&d, "ConfigMap", &format!("{RELEASE}-lockstep-backup")).unwrap();
    assert_eq!(wave(backup), last_step + 2);
}
