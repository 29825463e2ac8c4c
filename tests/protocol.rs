//! The in-cluster protocol (issue 17): gate first, a record that cannot lie, steps that run
//! once. The Argo CD and Helm claims are checked against a small model of their sync order
//! (tests/common/argocd_model.rs: a model, not Argo CD or Helm; each rule cites its source).

mod common;

use common::argocd_model::{
    self as model, Cluster, Health, HelmAction, HelmStep, Operation, Outcome, Phase, World,
};
use common::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn k(kind: &str, name: &str) -> model::Key {
    (kind.to_owned(), name.to_owned())
}

fn obj(kind: &str, name: &str, annotations: &[(&str, &str)]) -> Value {
    let ann: serde_yaml::Mapping = annotations
        .iter()
        .map(|(a, b)| (Value::from(*a), Value::from(*b)))
        .collect();
    let mut v: Value = serde_yaml::from_str(&format!(
        "{{apiVersion: v1, kind: {kind}, metadata: {{name: {name}}}}}"
    ))
    .unwrap();
    if !ann.is_empty() {
        v["metadata"]
            .as_mapping_mut()
            .unwrap()
            .insert("annotations".into(), Value::Mapping(ann));
    }
    v
}

// ---------------------------------------------------------------------------------------
// The model's own rules, on small inputs.

#[test]
fn model_orders_by_phase_then_wave_then_kind_then_name() {
    let docs = vec![
        obj("Deployment", "api", &[]),
        obj("Service", "api", &[]),
        obj("Secret", "b", &[]),
        obj("Secret", "a", &[]),
        obj(
            "ConfigMap",
            "early",
            &[("argocd.argoproj.io/sync-wave", "-5")],
        ),
        obj(
            "Job",
            "post",
            &[
                ("helm.sh/hook", "post-install"),
                ("helm.sh/hook-weight", "-100"),
            ],
        ),
        obj(
            "Job",
            "pre",
            &[
                ("argocd.argoproj.io/hook", "PreSync"),
                ("argocd.argoproj.io/sync-wave", "9"),
            ],
        ),
        obj(
            "Job",
            "twice",
            &[("helm.sh/hook", "post-install,pre-upgrade")],
        ),
        obj("Job", "never", &[("helm.sh/hook", "pre-rollback")]),
        obj("Job", "skipped", &[("argocd.argoproj.io/hook", "Skip")]),
    ];
    let order: Vec<(Phase, i32, model::Key)> = model::plan(&docs, &[], &Operation::Full)
        .into_iter()
        .map(|t| (t.phase, t.wave, t.key()))
        .collect();
    assert_eq!(
        order,
        vec![
            (Phase::PreSync, 0, k("Job", "twice")),
            (Phase::PreSync, 9, k("Job", "pre")),
            (Phase::Sync, -5, k("ConfigMap", "early")),
            (Phase::Sync, 0, k("Secret", "a")),
            (Phase::Sync, 0, k("Secret", "b")),
            (Phase::Sync, 0, k("Service", "api")),
            (Phase::Sync, 0, k("Deployment", "api")),
            (Phase::PostSync, -100, k("Job", "post")),
            (Phase::PostSync, 0, k("Job", "twice")),
        ]
    );
}

#[test]
fn model_skips_hooks_in_rollbacks_and_selective_syncs_and_never_prunes_hooks() {
    let docs = vec![
        obj("Deployment", "api", &[]),
        obj("Job", "migrate", &[("argocd.argoproj.io/hook", "PreSync")]),
    ];
    for op in [
        Operation::Apply,
        Operation::Resources(vec![k("Deployment", "api")]),
    ] {
        let keys: Vec<_> = model::plan(&docs, &[], &op)
            .iter()
            .map(|t| t.key())
            .collect();
        assert_eq!(keys, vec![k("Deployment", "api")], "{op:?}");
    }
    // A live hook the target lacks is not a prune task; a live resource is.
    let live = vec![
        obj("ConfigMap", "old", &[]),
        obj(
            "ConfigMap",
            "old-hook",
            &[("argocd.argoproj.io/hook", "PreSync")],
        ),
    ];
    let prunes: Vec<_> = model::plan(&docs, &live, &Operation::Full)
        .into_iter()
        .filter(|t| t.prune)
        .map(|t| t.key())
        .collect();
    assert_eq!(prunes, vec![k("ConfigMap", "old")]);
}

/// Fails the hooks named in `fail`.
struct FailHooks(Vec<&'static str>);
impl World for FailHooks {
    fn run_hook(&mut self, _: &Cluster, hook: &Value) -> bool {
        !self.0.contains(&model::key(hook).1.as_str())
    }
}

#[test]
fn model_honours_delete_policies_prune_options_and_cascade_delete() {
    let docs = vec![
        obj("ConfigMap", "cm", &[]),
        obj(
            "ConfigMap",
            "kept",
            &[(
                "argocd.argoproj.io/sync-options",
                "Prune=false,Delete=false",
            )],
        ),
        obj(
            "Job",
            "gone-on-success",
            &[
                ("argocd.argoproj.io/hook", "PreSync"),
                ("argocd.argoproj.io/hook-delete-policy", "HookSucceeded"),
            ],
        ),
        obj(
            "Job",
            "stays",
            &[
                ("argocd.argoproj.io/hook", "PreSync"),
                ("helm.sh/hook-delete-policy", "hook-failed"),
            ],
        ),
        obj(
            "ConfigMap",
            "record",
            &[
                ("argocd.argoproj.io/hook", "Sync"),
                ("argocd.argoproj.io/sync-options", "Delete=false"),
            ],
        ),
    ];
    let mut c = Cluster::default();
    assert_eq!(
        c.sync(&docs, &Operation::Full, true, &mut model::AllGood),
        Outcome::Succeeded
    );
    assert!(c.get("Job", "gone-on-success").is_none());
    assert!(c.get("Job", "stays").is_some());
    // A second sync: the record (default policy BeforeHookCreation) is deleted and
    // created again; the others are applied over.
    c.events.clear();
    assert_eq!(
        c.sync(&docs, &Operation::Full, true, &mut model::AllGood),
        Outcome::Succeeded
    );
    assert!(c
        .events
        .contains(&model::Event::Delete(k("ConfigMap", "record"))));
    assert!(!c.events.contains(&model::Event::Delete(k("Job", "stays"))));
    // Prune: the target drops both ConfigMaps; only the one without Prune=false goes.
    let fewer: Vec<Value> = docs[2..].to_vec();
    c.sync(&fewer, &Operation::Full, true, &mut model::AllGood);
    assert!(c.get("ConfigMap", "cm").is_none());
    assert!(c.get("ConfigMap", "kept").is_some());
    // A failed hook fails the sync before later waves, and HookFailed deletes it.
    let mut c = Cluster::default();
    let out = c.sync(&docs, &Operation::Full, true, &mut FailHooks(vec!["stays"]));
    assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
    assert!(c.get("Job", "stays").is_none());
    assert!(
        c.get("ConfigMap", "cm").is_none(),
        "nothing of the Sync phase"
    );
    // Cascade delete keeps Delete=false.
    let mut c = Cluster::default();
    c.sync(&docs, &Operation::Full, true, &mut model::AllGood);
    c.delete_app();
    let left: Vec<_> = c.objects.keys().cloned().collect();
    assert_eq!(left, vec![k("ConfigMap", "kept"), k("ConfigMap", "record")]);
}

// ---------------------------------------------------------------------------------------
// lockstep's renders through the model.

fn render(args: &[&str]) -> String {
    let mut c = lockstep();
    c.arg("render").args(args);
    ok(&c.output().expect("run lockstep"))
}

/// A stand-in for the kubelet, for lockstep's Jobs only: runs a Job's container argv
/// with `sh` (the image's entrypoint, when the Job keeps it, taken as `exec "$@"`), its
/// literal env, its configMap volumes materialised from the model cluster's live
/// ConfigMaps (optional ones honoured: a missing ConfigMap is an empty directory), and
/// stub app commands (`prefect`, `prefect-cloud`) that log their argv and fail the first
/// `fail_first` calls. Other hooks (the record ConfigMaps) succeed when applied.
struct Pods {
    dir: PathBuf,
    fail_first: u32,
    health: BTreeMap<model::Key, Health>,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Pods {
    fn new(tag: &str) -> Pods {
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let dir = scratch("protocol").join(format!("{tag}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["prefect", "prefect-cloud"] {
            let p = bin.join(tool);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{log}'\nn=$(cat '{fails}' 2>/dev/null || echo 0)\nif [ \"$n\" -gt 0 ]; then echo $((n - 1)) > '{fails}'; exit 1; fi\n",
                    log = dir.join("log").display(),
                    fails = dir.join("fails").display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Pods {
            dir,
            fail_first: 0,
            health: BTreeMap::new(),
        }
    }

    /// The app commands run so far, one per line, and forget them.
    fn take_log(&self) -> String {
        let p = self.dir.join("log");
        let t = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        t
    }

    fn run_job(&self, cluster: &Cluster, job: &Value) -> Option<i32> {
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let pod_dir = self.dir.join(format!("pod-{n}"));
        let spec = &job["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let mut paths: BTreeMap<String, PathBuf> = BTreeMap::new();
        for v in spec["volumes"].as_sequence().into_iter().flatten() {
            let Some(cm) = v["configMap"]["name"].as_str() else {
                continue;
            };
            let d = pod_dir.join(v["name"].as_str().unwrap());
            std::fs::create_dir_all(&d).unwrap();
            match cluster.get("ConfigMap", cm) {
                Some(live) => {
                    for (k, val) in live["data"].as_mapping().into_iter().flatten() {
                        std::fs::write(d.join(k.as_str().unwrap()), val.as_str().unwrap()).unwrap();
                    }
                }
                None => assert_eq!(
                    v["configMap"]["optional"], true,
                    "a missing ConfigMap {cm} would keep the pod from starting"
                ),
            }
            for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                if m["name"] == v["name"] {
                    paths.insert(m["mountPath"].as_str().unwrap().to_owned(), d.clone());
                }
            }
        }
        let mut argv: Vec<String> = ["command", "args"]
            .iter()
            .flat_map(|k| c[*k].as_sequence().cloned().unwrap_or_default())
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        // The image's entrypoint (tini, entrypoint.sh) ends in `exec "$@"`.
        let sh = argv.iter().position(|a| a == "/bin/sh").expect("a sh step");
        argv.drain(..sh);
        let mut cmd = Command::new("sh");
        cmd.args(&argv[1..])
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.dir.join("bin").display()),
            )
            .stdin(Stdio::null());
        for e in c["env"].as_sequence().into_iter().flatten() {
            if let Some(v) = e["value"].as_str() {
                let v = paths
                    .get(v)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| v.to_owned());
                cmd.env(e["name"].as_str().unwrap(), v);
            }
        }
        cmd.env("LOCKSTEP_TERMINATION_LOG", pod_dir.join("termination-log"))
            .env("LOCKSTEP_RETRY_SECONDS", "0");
        let o = cmd.output().expect("run sh");
        std::fs::write(pod_dir.join("stdout"), &o.stdout).unwrap();
        std::fs::write(pod_dir.join("stderr"), &o.stderr).unwrap();
        o.status.code()
    }
}

impl World for Pods {
    fn run_hook(&mut self, cluster: &Cluster, hook: &Value) -> bool {
        if hook["kind"] != "Job" {
            return true;
        }
        if self.fail_first > 0 {
            std::fs::write(self.dir.join("fails"), self.fail_first.to_string()).unwrap();
            self.fail_first = 0;
        }
        self.run_job(cluster, hook) == Some(0)
    }
    fn health(&mut self, _: &Cluster, obj: &Value) -> Health {
        *self
            .health
            .get(&model::key(obj))
            .unwrap_or(&Health::Healthy)
    }
}

const SERVER: &str = "examples/charts/prefect-server";

/// A record as a sync that migrated `release` would have left it.
fn seed_record(c: &mut Cluster, name: &str, release: &str, image: &str) {
    let v: Value = serde_yaml::from_str(&format!(
        "{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}}}, data: {{release: '{release}', image: '{image}', one-time: ''}}}}"
    ))
    .unwrap();
    c.objects.insert(model::key(&v), v);
}

fn record_of(c: &Cluster, name: &str) -> Option<String> {
    c.get("ConfigMap", name)
        .and_then(|r| r["data"]["release"].as_str())
        .map(str::to_owned)
}

fn is_gate(k: &model::Key) -> bool {
    k.1.ends_with("-lockstep-gate")
}

// ---------------------------------------------------------------------------------------
// Defect 1: nothing of the release is applied before the gate passes.

#[test]
fn nothing_of_the_release_is_applied_before_the_gate_in_either_phase() {
    for phase in ["presync", "sync"] {
        for (from, live, why) in [
            (Some("3.7.8"), "3.6.0", "a skipped release"),
            // A first install as far as the render knows, over a database a newer release
            // migrated (its record survived an uninstall): the gate reads the record
            // before this release writes it.
            (None, "3.9.0", "a downgrade"),
        ] {
            let mut args = vec![SERVER, "--phase", phase];
            if let Some(f) = from {
                args.extend(["--from", f]);
            }
            let d = docs(&render(&args));
            let ctx = format!("{phase}, {why}");
            // Argo CD: the gate (run for real by sh, reading the live record) refuses,
            // and it was the only thing applied.
            let mut c = Cluster::default();
            seed_record(&mut c, "prefect-server-lockstep", live, "img");
            let mut pods = Pods::new("gate-first");
            let out = c.sync(&d, &Operation::Full, true, &mut pods);
            assert!(
                matches!(out, Outcome::Failed(ref w) if w.contains("lockstep-gate")),
                "{ctx}: {out:?}"
            );
            let applied = c.applied();
            assert!(
                applied.len() == 1 && is_gate(&applied[0]),
                "{ctx}: applied {applied:?}"
            );
            assert_eq!(pods.take_log(), "", "{ctx}: no migration ran");
            assert_eq!(
                record_of(&c, "prefect-server-lockstep").as_deref(),
                Some(live)
            );
            // Helm: the gate is the first thing install and upgrade do.
            for action in [HelmAction::Install, HelmAction::Upgrade] {
                let steps = model::helm_steps(&d, action);
                assert!(
                    matches!(&steps[0], HelmStep::Hook(k) if is_gate(k)),
                    "{ctx}: helm {action:?}: {steps:?}"
                );
            }
        }
    }
    // A chart hook that runs in PreSync at a lower wave still comes after the gate.
    let input = std::fs::read_to_string(repo().join("tests/odd/env-injection.yaml")).unwrap();
    let early = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: early-hook\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"-50\"\ndata: {}\n";
    let mut c = lockstep();
    c.args(["inject", "--profile", "prefect-server"]);
    let d = docs(&ok(&run_with_stdin(
        c,
        format!("{input}\n---\n{early}").as_bytes(),
    )));
    let order = model::plan(&d, &[], &Operation::Full);
    assert!(is_gate(&order[0].key()), "{:?}", order[0].key());
    assert!(is_gate(&model::helm_hooks(&d, "pre-install")[0]));
}

// ---------------------------------------------------------------------------------------
// Defect 2: the record names the newest release whose migrations completed, and nothing
// else changes it.

#[test]
fn the_record_is_written_only_by_a_successful_migration_and_survives_everything_else() {
    let d = docs(&render(&[SERVER, "--phase", "sync", "--from", "3.7.8"]));
    let rec = "prefect-server-lockstep";
    let backup = "prefect-server-lockstep-backup";
    // A failed migration leaves the record as it was.
    let mut c = Cluster::default();
    seed_record(&mut c, rec, "3.7.8", "old");
    let mut pods = Pods::new("record");
    pods.fail_first = 5;
    let out = c.sync(&d, &Operation::Full, true, &mut pods);
    assert!(
        matches!(out, Outcome::Failed(ref w) if w.contains("migrate")),
        "{out:?}"
    );
    assert_eq!(record_of(&c, rec).as_deref(), Some("3.7.8"));
    assert!(c.get("ConfigMap", backup).is_none());
    assert!(
        c.get("Deployment", "prefect-server").is_none(),
        "the API never rolled"
    );
    std::fs::remove_file(pods.dir.join("fails")).unwrap();
    // A successful one writes it, and its backup.
    let out = c.sync(&d, &Operation::Full, true, &mut pods);
    assert_eq!(out, Outcome::Succeeded);
    assert_eq!(record_of(&c, rec).as_deref(), Some("3.8.3"));
    assert_eq!(record_of(&c, backup).as_deref(), Some("3.8.3"));
    // Argo CD Rollback (apply strategy) to an older revision, a selective sync and
    // self-heal (a resource list) skip hooks: the record stays.
    let older: Vec<Value> = d
        .iter()
        .map(|x| {
            let mut x = x.clone();
            if x["kind"] == "ConfigMap" && x["metadata"]["name"].as_str().unwrap().starts_with(rec)
            {
                x["data"]["release"] = "3.7.8".into();
            }
            x
        })
        .collect();
    for op in [
        Operation::Apply,
        Operation::Resources(vec![
            ("ConfigMap".into(), rec.into()),
            ("Deployment".into(), "prefect-server".into()),
        ]),
    ] {
        c.sync(&older, &op, true, &mut pods);
        assert_eq!(record_of(&c, rec).as_deref(), Some("3.8.3"), "{op:?}");
    }
    // Prune: a target without lockstep's documents does not delete the record (hooks are
    // never prune tasks), nor does a cascade delete of the app.
    let bare: Vec<Value> = d
        .iter()
        .filter(|x| x["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "lockstep")
        .cloned()
        .collect();
    c.sync(&bare, &Operation::Full, true, &mut pods);
    assert_eq!(record_of(&c, rec).as_deref(), Some("3.8.3"), "prune");
    c.delete_app();
    assert_eq!(record_of(&c, rec).as_deref(), Some("3.8.3"), "app deleted");
    assert_eq!(
        record_of(&c, backup).as_deref(),
        Some("3.8.3"),
        "app deleted"
    );
    // Helm: the record is not part of the release, so `helm uninstall` (deletes the
    // manifest) and `helm rollback` (re-applies the old manifest, runs only rollback
    // hooks) never touch it.
    let resources = model::helm_release_resources(&d);
    assert!(
        !resources.iter().any(|k| k.1.starts_with(rec)),
        "{resources:?}"
    );
    for action in [HelmAction::Rollback, HelmAction::Uninstall] {
        assert_eq!(
            model::helm_steps(&d, action),
            vec![HelmStep::Resources],
            "{action:?}"
        );
    }
    // Both are written after every step, in the steps' phase and Helm event.
    for action in [HelmAction::Install, HelmAction::Upgrade] {
        let steps = model::helm_steps(&d, action);
        let tail: Vec<&HelmStep> = steps
            .iter()
            .rev()
            .filter(|s| **s != HelmStep::Resources)
            .take(2)
            .collect();
        assert_eq!(
            tail,
            [
                &HelmStep::Hook(("ConfigMap".into(), backup.into())),
                &HelmStep::Hook(("ConfigMap".into(), rec.into()))
            ],
            "{action:?}: {steps:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Defects 3 and 4: a one-time step runs once per database; a migration of the recorded
// release and image finishes at once unless forced.

/// The 0.8.2 → 1.2.0 render of the Customer-Managed example.
const CLOUD: [&str; 7] = [
    "examples/charts/prefect-cloud-1.2.0",
    "-f",
    "examples/values/prefect-cloud/values-1.2.0.yaml",
    "--release",
    "customer-managed",
    "--from",
    "0.8.2",
];

fn cloud(extra: &[&str]) -> Vec<Value> {
    let mut args = CLOUD.to_vec();
    args.extend(extra);
    docs(&render(&args))
}

#[test]
fn one_time_steps_run_once_per_database_and_a_no_op_sync_migrates_nothing() {
    let d = cloud(&[]);
    let mut c = Cluster::default();
    seed_record(&mut c, "customer-managed-lockstep", "0.8.2", "old");
    let mut pods = Pods::new("once");
    assert_eq!(
        c.sync(&d, &Operation::Full, true, &mut pods),
        Outcome::Succeeded
    );
    let log = pods.take_log();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "prefect-cloud nebula database upgrade",
            "prefect-cloud orion database upgrade",
            "prefect-cloud events database upgrade",
            "prefect-cloud self-managed update-orion",
        ],
        "{log}"
    );
    let rec = c.get("ConfigMap", "customer-managed-lockstep").unwrap();
    assert_eq!(rec["data"]["one-time"], "update-orion");
    // The lock still says 0.8.x (until the next bump): the same render syncs again after
    // a values change, a manual sync, a retry. Nothing runs.
    let d2 = cloud(&["--set", "orion.replicas=3"]);
    for _ in 0..2 {
        assert_eq!(
            c.sync(&d2, &Operation::Full, true, &mut pods),
            Outcome::Succeeded
        );
        assert_eq!(pods.take_log(), "", "no migration, no one-time step");
    }
    // --force-migrations runs the migrations again; the one-time step still not.
    let forced = cloud(&["--force-migrations"]);
    assert_eq!(
        c.sync(&forced, &Operation::Full, true, &mut pods),
        Outcome::Succeeded
    );
    let log = pods.take_log();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(!log.contains("update-orion"), "{log}");
    // A record of the same release with another image (a rebuilt tag, a digest pin)
    // migrates.
    c.objects
        .get_mut(&(
            "ConfigMap".to_owned(),
            "customer-managed-lockstep".to_owned(),
        ))
        .unwrap()["data"]["image"] = "registry.example/other:1.2.0".into();
    c.sync(&d, &Operation::Full, true, &mut pods);
    assert_eq!(pods.take_log().lines().count(), 3);
}

// ---------------------------------------------------------------------------------------
// Defect 6: a first install with a bundled database, with and without --wait.

#[test]
fn a_first_install_migration_waits_for_a_database_that_starts_slowly() {
    let d = docs(&render(&[SERVER, "--phase", "sync"]));
    // Helm without --wait (Helm 4's default hookOnly waits for nothing but hooks): the
    // post-install migration runs right after the objects are created, while the
    // database starts. It retries (bounded) until the database answers.
    let steps = model::helm_steps(&d, HelmAction::Install);
    let res = steps
        .iter()
        .position(|s| *s == HelmStep::Resources)
        .unwrap();
    let mig = steps
        .iter()
        .position(|s| matches!(s, HelmStep::Hook(k) if k.1 == "prefect-server-migrate-database"))
        .unwrap();
    assert!(res < mig, "{steps:?}");
    let mut c = Cluster::default();
    let mut pods = Pods::new("slow-db");
    pods.fail_first = 4;
    assert_eq!(
        c.sync(&d, &Operation::Full, true, &mut pods),
        Outcome::Succeeded
    );
    assert_eq!(
        pods.take_log().lines().count(),
        5,
        "four refusals, then the migration"
    );
    // Bounded: a database that never answers fails the Job (then its deadline applies).
    let mig_job = d
        .iter()
        .find(|x| x["metadata"]["name"] == "prefect-server-migrate-database")
        .unwrap();
    let env = job_env_map(mig_job);
    let attempts: u32 = env["LOCKSTEP_FIRST_INSTALL_ATTEMPTS"].parse().unwrap();
    assert!((2..=100).contains(&attempts), "{attempts}");
    let mut c = Cluster::default();
    let mut pods = Pods::new("dead-db");
    pods.fail_first = attempts;
    assert!(matches!(
        c.sync(&d, &Operation::Full, true, &mut pods),
        Outcome::Failed(_)
    ));
    assert_eq!(pods.take_log().lines().count() as u32, attempts);
    // On an upgrade (a record exists) a failing migration is not retried.
    let mut c = Cluster::default();
    seed_record(&mut c, "prefect-server-lockstep", "3.7.8", "old");
    let mut pods = Pods::new("upgrade-fails");
    pods.fail_first = 1;
    assert!(matches!(
        c.sync(&d, &Operation::Full, true, &mut pods),
        Outcome::Failed(_)
    ));
    assert_eq!(pods.take_log().lines().count(), 1);
    // Argo CD (and Helm --wait) wait for the database before the migration's wave: a
    // database that never gets ready holds the sync (StatefulSet health is never
    // Degraded, gitops-engine health/health_statefulset.go), before any migration.
    let mut c = Cluster::default();
    let mut pods = Pods::new("argo-db");
    pods.health.insert(
        ("StatefulSet".into(), "prefect-server-postgresql".into()),
        Health::Progressing,
    );
    let out = c.sync(&d, &Operation::Full, true, &mut pods);
    assert!(
        matches!(out, Outcome::Hung(ref w) if w.contains("postgresql")),
        "{out:?}"
    );
    assert_eq!(pods.take_log(), "");
}

fn job_env_map(job: &Value) -> BTreeMap<String, String> {
    job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Defect 8.

#[test]
fn every_job_skips_istio_prints_its_logs_on_failure_and_presync_warns_about_live_objects() {
    let d = cloud(&[]);
    let jobs: Vec<&Value> = d
        .iter()
        .filter(|x| {
            x["kind"] == "Job"
                && x["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lockstep"
        })
        .collect();
    assert_eq!(jobs.len(), 5);
    for j in jobs {
        assert_eq!(
            j["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"], "false",
            "{:?}",
            j["metadata"]["name"]
        );
        assert_eq!(
            j["metadata"]["annotations"]["helm.sh/hook-output-log-policy"], "hook-failed",
            "{:?}",
            j["metadata"]["name"]
        );
    }
    // The deployed release is known (--from) and the Jobs use a ServiceAccount of the
    // render: presync says they read the live one.
    let mut c = lockstep();
    c.arg("render").args(CLOUD);
    let o = c.output().unwrap();
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("presync phase: the migration Jobs read the live ServiceAccount/customer-managed-prefect-cloud"),
        "{err}"
    );
}

#[test]
fn emitted_streams_validate_strictly() {
    let mut files = Vec::new();
    for (name, args) in [
        ("sync.yaml", vec![SERVER, "--phase", "sync"]),
        (
            "presync.yaml",
            vec![SERVER, "--from", "3.7.8", "--force-migrations"],
        ),
    ] {
        let p = scratch("protocol-validate").join(name);
        std::fs::write(&p, render(&args)).unwrap();
        files.push(p);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    validate(&refs);
}
