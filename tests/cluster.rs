//! End to end on a real control plane (issue 13): `helm lockstep install|upgrade` with the
//! real helm 3.19 and 4.3 against a real kube-apiserver and Job controller
//! (`scripts/e2e-cluster.sh`), real Prefect migrating a real PostgreSQL, with Redis
//! (`scripts/e2e-db.sh`, `scripts/install-e2e.sh`). The kubelet is the one stand-in:
//! `tests/cluster/pod_runner.py` runs Job pods' commands on this machine (its header says
//! exactly what it fakes). Without LOCKSTEP_KUBE_BIN or LOCKSTEP_E2E_KUBECONFIG every test
//! prints one line and passes without running (`.ci/run` sets LOCKSTEP_KUBE_BIN).
//!
//! Each scenario runs once per helm major (`_helm3`, `_helm4`) in its own namespace and
//! database; see tests/cluster/harness.rs for the environment they share.

#[path = "cluster/argocd_sync.rs"]
mod argocd_sync;
mod common;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/scenario.rs"]
mod scenario;

use common::argocd_model::Operation;

use scenario::{Scenario, HEAD_3_7_8, HEAD_3_8_3};

/// Asserts that the pod runner ran exactly `want` (container:exit, in order) since `from`
/// runs were seen, and returns those runs.
fn ran(s: &Scenario, from: usize, want: &[&str], what: &str) -> Vec<scenario::Run> {
    let runs = s.runs();
    let got: Vec<String> = s.run_summary().into_iter().skip(from).collect();
    assert_eq!(got, want, "{what}: the Job containers that ran, in order");
    runs.into_iter().skip(from).collect()
}

fn output_of(run: &scenario::Run) -> String {
    run.output.join("\n")
}

/// First install at 3.7.8 (gate, then the real 3.7.8 migration of an empty database), then
/// `helm lockstep upgrade` to 3.8.3 (gate sees 3.7.8, the real 3.8.3 migration keeps the
/// data), the record following each completed migration.
fn install_then_upgrade(major: u8) {
    let Some(s) = Scenario::new("upgrade", major) else {
        return;
    };
    assert_eq!(s.head(), None, "a fresh database");

    let out = s.prefect_server("install", "3.7.8", &[]);
    s.ok(&out, "helm lockstep install at 3.7.8");
    assert_eq!(s.status(), "deployed");
    let runs = ran(&s, 0, &["gate:0", "migrate-database:0"], "first install");
    let gate = output_of(&runs[0]);
    assert!(
        gate.contains("lockstep gate:") && (gate.contains("passing") || gate.contains("allowed")),
        "the gate passed a first install:\n{gate}"
    );
    assert!(
        output_of(&runs[1]).contains("Migrations succeeded"),
        "real Prefect 3.7.8 migrated:\n{}",
        output_of(&runs[1])
    );
    assert_eq!(
        s.head().as_deref(),
        Some(HEAD_3_7_8),
        "the database is at the 3.7.8 head"
    );
    assert_eq!(
        s.record().as_deref(),
        Some("3.7.8"),
        "the record after the install"
    );
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.7.8-python3.11"
    );
    s.write_data("before-upgrade");

    let out = s.prefect_server("upgrade", "3.8.3", &[]);
    s.ok(&out, "helm lockstep upgrade to 3.8.3");
    assert_eq!(s.status(), "deployed");
    let runs = ran(&s, 2, &["gate:0", "migrate-database:0"], "upgrade");
    let gate = output_of(&runs[0]);
    assert!(
        gate.contains("live release 3.7.8, target 3.8.3: allowed"),
        "the gate read the 3.7.8 record:\n{gate}"
    );
    assert!(output_of(&runs[1]).contains("Migrations succeeded"));
    assert_eq!(
        s.head().as_deref(),
        Some(HEAD_3_8_3),
        "the database is at the 3.8.3 head"
    );
    assert_eq!(
        s.data(),
        "e2e-before-upgrade=\"kept\"",
        "the data written at 3.7.8 is still there"
    );
    assert_eq!(
        s.record().as_deref(),
        Some("3.8.3"),
        "the record moved to 3.8.3"
    );
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.8.3-python3.11"
    );
}

#[test]
fn install_then_upgrade_helm3() {
    install_then_upgrade(3);
}

#[test]
fn install_then_upgrade_helm4() {
    install_then_upgrade(4);
}

/// Objects of the namespace a release could change, with their resourceVersions (helm's own
/// release Secrets, Jobs and Pods left out).
fn snapshot(s: &Scenario) -> Vec<String> {
    let out = s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "get",
        "deployments,services,serviceaccounts,configmaps,secrets",
        "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {.type}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.ends_with("helm.sh/release.v1"))
        .filter(|l| !l.starts_with("ConfigMap/kube-root-ca.crt"))
        .map(|l| l.trim().to_owned())
        .collect();
    v.sort();
    v
}

/// The record says 3.6.0 (an operator's hand, an old restore), helm's history says 3.7.8:
/// the render-time check passes 3.7 → 3.8, the in-cluster gate refuses before anything of
/// the 3.8.3 release is applied, and no migration runs.
fn refuses_a_skip_in_the_cluster(major: u8) {
    let Some(s) = Scenario::new("skip", major) else {
        return;
    };
    s.ok(&s.prefect_server("install", "3.7.8", &[]), "install 3.7.8");
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));
    s.set_record("3.6.0");
    let before = snapshot(&s);
    let schema = s.schema_fingerprint();
    let seen = s.runs().len();

    let out = s.prefect_server("upgrade", "3.8.3", &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the upgrade must fail:\n{text}");
    let runs = ran(&s, seen, &["gate:1"], "refused upgrade");
    let gate = output_of(&runs[0]);
    assert!(
        gate.contains("the live release is 3.6.0") && gate.contains("3.8.3"),
        "the gate names the live release and the target:\n{gate}"
    );
    let hist = s.history();
    assert_eq!(
        hist.iter().map(|(_, st)| st.as_str()).collect::<Vec<_>>(),
        ["deployed", "failed"],
        "helm keeps revision 1 deployed and records the refused one failed"
    );
    assert_eq!(
        snapshot(&s),
        before,
        "nothing of the new release was applied (Deployments, Services, ConfigMaps, Secrets)"
    );
    assert_eq!(
        s.record().as_deref(),
        Some("3.6.0"),
        "the record is untouched"
    );
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.7.8-python3.11"
    );
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8), "no migration ran");
    assert_eq!(s.schema_fingerprint(), schema, "the schema is unchanged");
}

#[test]
fn refuses_a_skip_in_the_cluster_helm3() {
    refuses_a_skip_in_the_cluster(3);
}

#[test]
fn refuses_a_skip_in_the_cluster_helm4() {
    refuses_a_skip_in_the_cluster(4);
}

/// The 3.8.3 migration fails (the database role may not log in, as after a credentials
/// rotation): helm fails the upgrade, the record and the Deployment stay at 3.7.8, and the
/// same upgrade succeeds once the role is fixed.
fn failed_migration_then_retry(major: u8) {
    let Some(s) = Scenario::new("retry", major) else {
        return;
    };
    s.ok(&s.prefect_server("install", "3.7.8", &[]), "install 3.7.8");
    s.env
        .psql_ok("postgres", &format!("ALTER ROLE {} NOLOGIN", s.role));
    let seen = s.runs().len();
    let out = s.prefect_server("upgrade", "3.8.3", &[]);
    assert!(
        !out.status.success(),
        "the upgrade fails with its migration"
    );
    // backoffLimit 1: the migration is tried twice.
    let runs = ran(
        &s,
        seen,
        &["gate:0", "migrate-database:1", "migrate-database:1"],
        "failed upgrade",
    );
    assert!(
        output_of(&runs[1]).contains("not permitted to log in"),
        "the real error reached the pod log:\n{}",
        output_of(&runs[1])
    );
    assert_eq!(s.status(), "failed");
    assert_eq!(s.record().as_deref(), Some("3.7.8"), "the record stays");
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.7.8-python3.11",
        "the Deployment was not rolled"
    );

    s.env
        .psql_ok("postgres", &format!("ALTER ROLE {} LOGIN", s.role));
    let seen = s.runs().len();
    s.ok(
        &s.prefect_server("upgrade", "3.8.3", &[]),
        "the retried upgrade",
    );
    ran(
        &s,
        seen,
        &["gate:0", "migrate-database:0"],
        "retried upgrade",
    );
    assert_eq!(s.status(), "deployed");
    assert_eq!(s.record().as_deref(), Some("3.8.3"));
    assert_eq!(s.head().as_deref(), Some(HEAD_3_8_3));
}

#[test]
fn failed_migration_then_retry_helm3() {
    failed_migration_then_retry(3);
}

#[test]
fn failed_migration_then_retry_helm4() {
    failed_migration_then_retry(4);
}

/// Output lines of the migration commands that ran since `from` (Prefect prints "Running
/// upgrade migrations" when it migrates).
fn migrated_since(s: &Scenario, from: usize) -> Vec<String> {
    s.runs()
        .into_iter()
        .skip(from)
        .flat_map(|r| r.output)
        .filter(|l| l.contains("Running upgrade migrations") || l.contains("database upgrade"))
        .collect()
}

/// An upgrade that changes only the replica count: the recorded release and image equal the
/// target, so no migration runs (issue 17, defect 4), and the release is deployed.
fn noop_upgrade_runs_no_migration(major: u8) {
    let Some(s) = Scenario::new("noop", major) else {
        return;
    };
    s.ok(&s.prefect_server("install", "3.8.3", &[]), "install 3.8.3");
    assert_eq!(s.head().as_deref(), Some(HEAD_3_8_3));
    let seen = s.runs().len();
    s.ok(
        &s.prefect_server("upgrade", "3.8.3", &["--set", "server.replicaCount=2"]),
        "upgrade with 2 replicas",
    );
    assert_eq!(s.status(), "deployed");
    assert_eq!(
        migrated_since(&s, seen),
        Vec::<String>::new(),
        "no migration ran on a no-op upgrade; runs: {:?}",
        s.run_summary()
    );
    assert_eq!(s.record().as_deref(), Some("3.8.3"));
    let replicas = s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "get",
        "deployment",
        "prefect-server",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2", "the values change was applied");
}

#[test]
fn noop_upgrade_runs_no_migration_helm3() {
    noop_upgrade_runs_no_migration(3);
}

#[test]
fn noop_upgrade_runs_no_migration_helm4() {
    noop_upgrade_runs_no_migration(4);
}

/// `helm rollback` to 3.7.8 after the 3.8.3 migration: the schema is 3.8.3's, so the record
/// must still say 3.8.3 (rollback runs no lockstep hook), and `helm lockstep upgrade` to the
/// rolled-back 3.7.8 is refused by the in-cluster gate as a downgrade.
fn rollback_then_upgrade_is_refused(major: u8) {
    let Some(s) = Scenario::new("rollback", major) else {
        return;
    };
    s.ok(&s.prefect_server("install", "3.7.8", &[]), "install 3.7.8");
    s.ok(
        &s.prefect_server("upgrade", "3.8.3", &[]),
        "upgrade to 3.8.3",
    );
    assert_eq!(s.head().as_deref(), Some(HEAD_3_8_3));
    s.ok(
        &s.helm(&["rollback", &s.release, "1", "-n", &s.ns]),
        "helm rollback to revision 1",
    );
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.7.8-python3.11",
        "helm rolled the Deployment back"
    );
    assert_eq!(
        s.record().as_deref(),
        Some("3.8.3"),
        "the record names the newest release migrated into this database"
    );
    let seen = s.runs().len();
    let out = s.prefect_server("upgrade", "3.7.8", &[]);
    assert!(
        !out.status.success(),
        "upgrading to the rolled-back 3.7.8 must be refused"
    );
    let runs = ran(&s, seen, &["gate:1"], "refused downgrade");
    assert!(
        output_of(&runs[0]).contains("downgrades are refused"),
        "{}",
        output_of(&runs[0])
    );
    assert_eq!(
        s.head().as_deref(),
        Some(HEAD_3_8_3),
        "the schema is untouched"
    );
}

#[test]
fn rollback_then_upgrade_is_refused_helm3() {
    rollback_then_upgrade_is_refused(3);
}

#[test]
fn rollback_then_upgrade_is_refused_helm4() {
    rollback_then_upgrade_is_refused(4);
}

/// `helm uninstall` keeps the record (the database keeps its schema); a later
/// `helm lockstep install` of an older release is refused by it.
fn uninstall_then_older_install_is_refused(major: u8) {
    let Some(s) = Scenario::new("uninstall", major) else {
        return;
    };
    s.ok(&s.prefect_server("install", "3.8.3", &[]), "install 3.8.3");
    s.ok(
        &s.helm(&["uninstall", &s.release, "-n", &s.ns]),
        "helm uninstall",
    );
    assert_eq!(
        s.record().as_deref(),
        Some("3.8.3"),
        "the record survives helm uninstall"
    );
    let seen = s.runs().len();
    let out = s.prefect_server("install", "3.7.8", &[]);
    assert!(
        !out.status.success(),
        "installing 3.7.8 over a 3.8.3 database must be refused"
    );
    let runs = ran(&s, seen, &["gate:1"], "refused install");
    assert!(
        output_of(&runs[0]).contains("live release is 3.8.3"),
        "{}",
        output_of(&runs[0])
    );
    assert_eq!(s.head().as_deref(), Some(HEAD_3_8_3));
}

#[test]
fn uninstall_then_older_install_is_refused_helm3() {
    uninstall_then_older_install_is_refused(3);
}

#[test]
fn uninstall_then_older_install_is_refused_helm4() {
    uninstall_then_older_install_is_refused(4);
}

const CLOUD_MIGRATIONS: [&str; 3] = [
    "nebula database upgrade",
    "orion database upgrade",
    "events database upgrade",
];

/// The Job containers of a 0.8.2 -> 1.2.0 upgrade of the Customer-Managed chart, in order:
/// the gate, the three migrations, then the one-time update-orion.
const UPGRADE_TO_1_2_0: &[&str] = &[
    "gate:0",
    "migrate-nebula:0",
    "migrate-orion:0",
    "migrate-events:0",
    "update-orion:0",
];

/// Customer-Managed 0.8.2 installed, then 1.2.0: the gate, then nebula, orion and events
/// migrations in that order, then the one-time `self-managed update-orion`, each recorded by
/// the prefect-cloud stand-in in the database; the record follows.
fn customer_managed_ladder(s: &Scenario) {
    s.cloud_secrets();
    s.ok(&s.prefect_cloud("install", "0.8.2", &[]), "install 0.8.2");
    ran(
        s,
        0,
        &[
            "gate:0",
            "migrate-nebula:0",
            "migrate-orion:0",
            "migrate-events:0",
        ],
        "install 0.8.2",
    );
    assert_eq!(s.steps(), CLOUD_MIGRATIONS, "0.8.2's migrations, in order");
    assert_eq!(s.record().as_deref(), Some("0.8.2"));

    let seen = s.runs().len();
    s.ok(
        &s.prefect_cloud("upgrade", "1.2.0", &[]),
        "upgrade to 1.2.0",
    );
    assert_eq!(s.status(), "deployed");
    let runs = ran(s, seen, UPGRADE_TO_1_2_0, "upgrade to 1.2.0");
    assert!(output_of(&runs[0]).contains("live release 0.8.2, target 1.2.0: allowed"));
    let mut want: Vec<&str> = CLOUD_MIGRATIONS.to_vec();
    want.extend(CLOUD_MIGRATIONS);
    want.push("self-managed update-orion");
    assert_eq!(
        s.steps(),
        want,
        "1.2.0's migrations, in order, then update-orion"
    );
    assert_eq!(s.record().as_deref(), Some("1.2.0"));
}

fn ladder(major: u8) {
    let Some(s) = Scenario::new("ladder", major) else {
        return;
    };
    customer_managed_ladder(&s);
}

#[test]
fn customer_managed_ladder_helm3() {
    ladder(3);
}

#[test]
fn customer_managed_ladder_helm4() {
    ladder(4);
}

/// After the ladder, an upgrade that changes only a value does not run update-orion again
/// (a one-time step runs once per database, issue 17 defect 3), nor any migration. Under
/// `helm lockstep` the render already leaves them out (helm's history says 1.2.0, and a
/// `--from` that disagrees is refused), so this checks the end result, not the in-cluster
/// one-time check itself (`argocd_stale_lock_runs_no_step_again` reaches that one).
fn one_time_step_runs_once(major: u8) {
    let Some(s) = Scenario::new("onetime", major) else {
        return;
    };
    customer_managed_ladder(&s);
    let steps = s.steps();
    s.ok(
        &s.prefect_cloud(
            "upgrade",
            "1.2.0",
            &["--set", "orion.cloud2.replicaCount=2"],
        ),
        "upgrade 1.2.0 with a values change",
    );
    assert_eq!(s.status(), "deployed");
    assert_eq!(
        s.steps(),
        steps,
        "no step ran again; runs: {:?}",
        s.run_summary()
    );
}

#[test]
fn one_time_step_runs_once_helm3() {
    one_time_step_runs_once(3);
}

#[test]
fn one_time_step_runs_once_helm4() {
    one_time_step_runs_once(4);
}

/// Argo CD after the ladder, before anyone ran `lockstep bump`: lockstep.lock still says
/// 0.8.2, so every render of 1.2.0 holds the one-time `update-orion` and the migrations
/// again (issue 17 defect 3). The sync runs them as hooks and each finishes at once in the
/// cluster: the record lists update-orion as done and says 1.2.0 is migrated. This is the
/// path where the in-cluster one-time check is the only thing that stops a second
/// update-orion (under `helm lockstep` the render already leaves it out).
#[test]
fn argocd_stale_lock_runs_no_step_again() {
    let Some(s) = Scenario::new("argo-stale", 4) else {
        return;
    };
    customer_managed_ladder(&s);
    let steps = s.steps();
    let docs = s.argocd_generate_cloud("1.2.0", "0.8.2", "presync");
    let seen = s.runs().len();
    let sync = argocd_sync::sync(&s, &docs, &Operation::Full);
    assert_eq!(sync.failed, None, "{:#?}", sync.log);
    let runs = ran(
        &s,
        seen,
        UPGRADE_TO_1_2_0,
        "the Argo CD sync with the stale lock",
    );
    assert!(
        output_of(&runs[4])
            .contains("one-time step update-orion completed against this database before"),
        "update-orion: {}",
        output_of(&runs[4])
    );
    for run in &runs[1..4] {
        assert!(
            output_of(run).contains("is migrated already: finishing without running it"),
            "{}: {}",
            run.container,
            output_of(run)
        );
    }
    assert_eq!(s.steps(), steps, "no step ran again: {:?}", s.run_summary());
    assert_eq!(s.record().as_deref(), Some("1.2.0"));
}

/// A migration that takes longer than Helm's default 300 s hook timeout (the orion
/// migration of the prefect-cloud stand-in sleeps 310 s) succeeds without a user
/// `--timeout`: `helm lockstep` gives helm one as long as the Jobs' deadlines (issue 17,
/// defect 5). Takes over five minutes.
fn long_migration_without_timeout(major: u8) {
    let Some(s) = Scenario::new("slow", major) else {
        return;
    };
    s.cloud_secrets();
    let out = s.prefect_cloud(
        "install",
        "1.2.0",
        &["-f", "tests/cluster/data/slow-orion.yaml"],
    );
    s.ok(&out, "install 1.2.0 with a 310 s orion migration");
    assert_eq!(s.status(), "deployed");
    assert_eq!(
        s.steps(),
        CLOUD_MIGRATIONS,
        "every migration completed, in order"
    );
    assert_eq!(s.record().as_deref(), Some("1.2.0"));
}

// Named to sort first: libtest starts tests in name order, and these two take over five
// minutes each, so started first they run beside the others instead of after them.
#[test]
fn a_long_migration_without_timeout_helm3() {
    long_migration_without_timeout(3);
}

#[test]
fn a_long_migration_without_timeout_helm4() {
    long_migration_without_timeout(4);
}

/// Argo CD (the gitops-engine model driving the real API server), `--phase presync`: after
/// a first sync at 3.7.8 (in the sync phase: a PreSync Job of a first install waits for its
/// ServiceAccount, argo-cd #9891), a 3.8.3 sync refused by the gate (record at 3.6.0) before
/// anything else is applied, then the same sync allowed once the record says 3.7.8: the gate
/// Job is the first object applied, the migration the second, then the Sync phase.
#[test]
fn argocd_presync_gate_first() {
    let Some(s) = Scenario::new("argo-presync", 4) else {
        return;
    };
    let first = argocd_sync::sync(&s, &s.argocd_generate("3.7.8", "sync"), &Operation::Full);
    assert_eq!(first.failed, None, "{:#?}", first.log);
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));
    assert_eq!(s.record().as_deref(), Some("3.7.8"));
    s.write_data("argo");

    s.set_record("3.6.0");
    let before = snapshot(&s);
    let refused = argocd_sync::sync(&s, &s.argocd_generate("3.8.3", "presync"), &Operation::Full);
    assert!(refused.failed.is_some(), "{:#?}", refused.log);
    assert_eq!(
        refused.applied(),
        ["Job/prefect-lockstep-gate"],
        "nothing but the gate was applied"
    );
    assert_eq!(snapshot(&s), before, "nothing of 3.8.3 reached the cluster");
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));

    s.set_record("3.7.8");
    let upgrade = argocd_sync::sync(&s, &s.argocd_generate("3.8.3", "presync"), &Operation::Full);
    assert_eq!(upgrade.failed, None, "{:#?}", upgrade.log);
    assert_eq!(
        upgrade.applied()[..2],
        ["Job/prefect-lockstep-gate", "Job/prefect-migrate-database"]
    );
    assert_eq!(s.head().as_deref(), Some(HEAD_3_8_3));
    assert_eq!(s.data(), "e2e-argo=\"kept\"");
    assert_eq!(s.record().as_deref(), Some("3.8.3"));
    assert_eq!(
        s.deployment("prefect-server").0,
        "prefecthq/prefect:3.8.3-python3.11"
    );
}

/// Argo CD model, `--phase sync`: a refused upgrade applies nothing before the gate (issue 17
/// defect 1: the objects moved to base-2 are applied before the gate at base-1).
#[test]
fn argocd_sync_phase_nothing_before_the_gate() {
    let Some(s) = Scenario::new("argo-syncphase", 4) else {
        return;
    };
    let first = argocd_sync::sync(&s, &s.argocd_generate("3.7.8", "sync"), &Operation::Full);
    assert_eq!(first.failed, None, "{:#?}", first.log);
    assert_eq!(
        first.applied().first().map(String::as_str),
        Some("Job/prefect-lockstep-gate"),
        "the gate is the first object of a first sync: {:#?}",
        first.applied()
    );
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));
    s.set_record("3.6.0");
    let before = snapshot(&s);
    let refused = argocd_sync::sync(&s, &s.argocd_generate("3.8.3", "sync"), &Operation::Full);
    assert!(refused.failed.is_some(), "{:#?}", refused.log);
    assert_eq!(
        refused.applied(),
        ["Job/prefect-lockstep-gate"],
        "nothing but the gate was applied"
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.head().as_deref(), Some(HEAD_3_7_8));
}

/// What the step wrapper prints when a first install's migration failed and is retried.
const RETRYING: &str = "attempt 1 of 31 on a first install (the database may still be starting)";

/// `helm lockstep install` at 3.7.8 of prefect-server with the chart's bundled PostgreSQL
/// (its user and database named after the scenario), which starts only once the migration's
/// first attempt has failed (played by `argocd_sync::play_bundled_postgresql`): a Helm first
/// install takes the sync phase (the migration is post-install, after the objects), and with
/// no record the migration is retried every 10 s while the database starts (issue 17
/// defect 6), without `--wait`: deployed, the bundled database at 3.7.8's head.
fn first_install_with_a_slow_bundled_database(major: u8) {
    let Some(s) = Scenario::new("bundled", major) else {
        return;
    };
    let name = format!("{}_pg", s.db);
    let mut args: Vec<String> = vec![];
    for pair in s.prefect_server_values("3.7.8").chunks(2) {
        if !pair[1].starts_with("postgresql.") && !pair[1].starts_with("externalDatabase.") {
            args.extend_from_slice(pair);
        }
    }
    for v in ["username", "database"] {
        args.extend(["--set".to_owned(), format!("postgresql.auth.{v}={name}")]);
    }
    let (out, database) = std::thread::scope(|t| {
        let db = t.spawn(|| {
            argocd_sync::play_bundled_postgresql(
                &s,
                "prefect-postgresql",
                std::time::Duration::from_secs(5),
                Some(RETRYING),
            )
        });
        let out = s.lockstep("install", scenario::PREFECT_SERVER, &args);
        (out, db.join().unwrap())
    });
    s.ok(&out, "helm lockstep install with the bundled database");
    assert_eq!(s.status(), "deployed");
    let runs = ran(&s, 0, &["gate:0", "migrate-database:0"], "first install");
    let migrate = output_of(&runs[1]);
    assert!(
        migrate.contains(RETRYING) && migrate.contains("Migrations succeeded"),
        "the migration retried while the database started, then migrated:\n{migrate}\n{database:#?}"
    );
    let head = s
        .env
        .psql_ok(&name, "SELECT version_num FROM alembic_version");
    assert_eq!(head, HEAD_3_7_8, "the bundled database is at 3.7.8's head");
    assert_eq!(s.record().as_deref(), Some("3.7.8"));
}

#[test]
fn first_install_with_a_slow_bundled_database_helm3() {
    first_install_with_a_slow_bundled_database(3);
}

#[test]
fn first_install_with_a_slow_bundled_database_helm4() {
    first_install_with_a_slow_bundled_database(4);
}

/// The chart's bundled PostgreSQL instead of the external one (values YAML).
const BUNDLED_DB: &str = "postgresql: {enabled: true}\n";

/// Argo CD model, a first install whose render holds the database too (issue 13 item 4: the
/// chart's bundled PostgreSQL, played by `argocd_sync::play_bundled_postgresql` as a database
/// that takes 8 s to start, and the API).
///
/// * `presync` cannot work, and what happens is worse than a failure: the gate passes (no
///   record), then the PreSync migration Job is created before anything of the Sync phase.
///   Its ServiceAccount does not exist, so the Job controller cannot create its Pod
///   (FailedCreate) and never sets `status.startTime`: the Job's `activeDeadlineSeconds`
///   never starts, the Job stays Running, and the sync hangs (Argo CD has no sync timeout by
///   default) until the user terminates it, with nothing else applied. lockstep says so in
///   the Job's `lockstep.dev/first-install` annotation and on stderr.
/// * What a user must do (README, First installs): the first sync with `phase: sync`. Then
///   the gate runs first, the database and the Secrets are applied a wave earlier, Argo CD
///   waits for the StatefulSet to be healthy, and the real 3.7.8 migration runs against it.
/// * Later syncs may use `presync`: the 3.8.3 upgrade migrates the now-live database.
#[test]
fn argocd_first_install_with_the_bundled_database() {
    let Some(s) = Scenario::new("argo-bundled", 4) else {
        return;
    };
    let db = "server";
    let head = |s: &Scenario| {
        let t = s.env.psql_ok(
            db,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'",
        );
        (t == "1").then(|| s.env.psql_ok(db, "SELECT version_num FROM alembic_version"))
    };
    let pg = "prefect-postgresql";
    let migrate = "prefect-migrate-database";

    let presync = s.argocd_generate_with("3.7.8", "presync", BUNDLED_DB);
    let job = presync
        .iter()
        .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == migrate)
        .expect("the migration Job");
    let note = job["metadata"]["annotations"]["lockstep.dev/first-install"]
        .as_str()
        .unwrap_or_default();
    assert!(
        note.contains("Secret/prefect-server-postgresql-connection")
            && note.contains("--phase sync"),
        "lockstep tells the user what a presync first install needs: {note:?}"
    );
    let hung = argocd_sync::sync_until(
        &s,
        &presync,
        &Operation::Full,
        std::time::Duration::from_secs(40),
    );
    assert_eq!(
        hung.applied(),
        ["Job/prefect-lockstep-gate", &format!("Job/{migrate}")],
        "a presync first install applies the gate and the migration, nothing of the Sync phase: {:#?}",
        hung.log
    );
    assert!(
        hung.failed
            .as_deref()
            .unwrap_or_default()
            .starts_with("hung"),
        "the sync hangs on the migration: {:#?}",
        hung.log
    );
    assert!(
        hung.log.contains(&format!(
            "hung Job/{migrate}: running after 40s, status {{}}"
        )),
        "no Pod, no startTime: the Job's deadline never starts: {:#?}",
        hung.log
    );
    let events = s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={migrate},reason=FailedCreate"),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("serviceaccount \"prefect-server\" not found"),
        "the Job controller could not create the Pod: {events}"
    );
    assert_eq!(
        s.run_summary(),
        ["gate:0"],
        "the gate passed, the migration never started"
    );
    assert!(s
        .env
        .kubectl(&["-n", &s.ns, "get", "statefulset", pg])
        .stderr
        .starts_with(b"Error from server (NotFound)"));
    assert_eq!(s.record(), None);

    let sync_phase = s.argocd_generate_with("3.7.8", "sync", BUNDLED_DB);
    let (first, database) = std::thread::scope(|t| {
        let db = t.spawn(|| {
            argocd_sync::play_bundled_postgresql(&s, pg, std::time::Duration::from_secs(8), None)
        });
        let first = argocd_sync::sync(&s, &sync_phase, &Operation::Full);
        (first, db.join().unwrap())
    });
    assert_eq!(first.failed, None, "{:#?}\n{database:#?}", first.log);
    let at = |what: &str| {
        first
            .log
            .iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("{what} in {:#?}", first.log))
    };
    assert_eq!(
        first.applied()[0],
        "Job/prefect-lockstep-gate",
        "the gate first"
    );
    assert!(at("hook Job/prefect-lockstep-gate ok") < at(&format!("apply StatefulSet/{pg}")));
    assert!(
        at(&format!("healthy StatefulSet/{pg}")) < at(&format!("create Job/{migrate}")),
        "the migration's wave starts once the database is healthy: {:#?}",
        first.log
    );
    assert_eq!(
        s.run_summary()[1..],
        ["gate:0", "migrate-database:0"],
        "{database:#?}"
    );
    assert_eq!(
        head(&s).as_deref(),
        Some(HEAD_3_7_8),
        "real 3.7.8 migrated the bundled database"
    );
    assert_eq!(s.record().as_deref(), Some("3.7.8"));

    let upgrade = argocd_sync::sync(
        &s,
        &s.argocd_generate_with("3.8.3", "presync", BUNDLED_DB),
        &Operation::Full,
    );
    assert_eq!(upgrade.failed, None, "{:#?}", upgrade.log);
    assert_eq!(
        upgrade.applied()[..2],
        ["Job/prefect-lockstep-gate", "Job/prefect-migrate-database"]
    );
    assert_eq!(head(&s).as_deref(), Some(HEAD_3_8_3));
    assert_eq!(s.record().as_deref(), Some("3.8.3"));
}
