//! The in-cluster protocol (issue 17): gate first, a record that cannot lie, steps that run
//! once. The Argo CD and Helm claims are checked against a small model of their sync order
//! (tests/common/argocd_model.rs: a model, not Argo CD or Helm; each rule cites its source).
//! Renders come from the built lockstep with the real helm 4; the step Jobs' shell script
//! runs for real under `sh` (see [`Pods`]).

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
use std::sync::Mutex;

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

fn plan_keys(docs: &[Value], live: &[Value], op: &Operation) -> Vec<model::Key> {
    model::plan(docs, live, op)
        .iter()
        .map(|t| t.key())
        .collect()
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

/// A Deployment and a PreSync hook.
fn api_and_hook() -> Vec<Value> {
    vec![
        obj("Deployment", "api", &[]),
        obj("Job", "migrate", &[("argocd.argoproj.io/hook", "PreSync")]),
    ]
}

#[test]
fn model_an_apply_strategy_sync_skips_hooks() {
    let keys = plan_keys(&api_and_hook(), &[], &Operation::Apply);
    assert_eq!(keys, [k("Deployment", "api")]);
}

#[test]
fn model_a_selective_sync_skips_hooks() {
    let op = Operation::Resources(vec![k("Deployment", "api")]);
    assert_eq!(
        plan_keys(&api_and_hook(), &[], &op),
        [k("Deployment", "api")]
    );
}

#[test]
fn model_prunes_a_live_resource_but_never_a_live_hook() {
    let live = vec![
        obj("ConfigMap", "old", &[]),
        obj(
            "ConfigMap",
            "old-hook",
            &[("argocd.argoproj.io/hook", "PreSync")],
        ),
    ];
    let prunes: Vec<_> = model::plan(&api_and_hook(), &live, &Operation::Full)
        .into_iter()
        .filter(|t| t.prune)
        .map(|t| t.key())
        .collect();
    assert_eq!(prunes, [k("ConfigMap", "old")]);
}

/// Fails the hooks named in `fail`.
struct FailHooks(Vec<&'static str>);
impl World for FailHooks {
    fn run_hook(&mut self, _: &Cluster, hook: &Value) -> bool {
        !self.0.contains(&model::key(hook).1.as_str())
    }
}

/// Resources and hooks with each delete policy and sync option the protocol relies on.
fn policies() -> Vec<Value> {
    let hook = ("argocd.argoproj.io/hook", "PreSync");
    vec![
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
                hook,
                ("argocd.argoproj.io/hook-delete-policy", "HookSucceeded"),
            ],
        ),
        obj(
            "Job",
            "stays",
            &[hook, ("helm.sh/hook-delete-policy", "hook-failed")],
        ),
        obj(
            "ConfigMap",
            "record",
            &[
                ("argocd.argoproj.io/hook", "Sync"),
                ("argocd.argoproj.io/sync-options", "Delete=false"),
            ],
        ),
    ]
}

/// A cluster after one successful full sync of [`policies`].
fn synced_policies() -> Cluster {
    let mut c = Cluster::default();
    let out = c.sync(&policies(), &Operation::Full, true, &mut model::AllGood);
    assert_eq!(out, Outcome::Succeeded);
    c
}

#[test]
fn model_hook_succeeded_deletes_a_hook_that_passed() {
    assert!(synced_policies().get("Job", "gone-on-success").is_none());
}

#[test]
fn model_hook_failed_keeps_a_hook_that_passed() {
    assert!(synced_policies().get("Job", "stays").is_some());
}

/// The record's default policy (BeforeHookCreation) deletes and creates it again on the next
/// sync; a hook with another policy is applied over (the HookSucceeded one is deleted once it
/// passed, as on the first sync).
#[test]
fn model_before_hook_creation_recreates_a_hook_on_the_next_sync() {
    let mut c = synced_policies();
    c.events.clear();
    let out = c.sync(&policies(), &Operation::Full, true, &mut model::AllGood);
    assert_eq!(out, Outcome::Succeeded);
    let deleted: Vec<_> = c
        .events
        .iter()
        .filter_map(|e| match e {
            model::Event::Delete(k) => Some(k.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deleted,
        [k("ConfigMap", "record"), k("Job", "gone-on-success")]
    );
}

#[test]
fn model_prune_false_keeps_a_resource_the_target_dropped() {
    let mut c = synced_policies();
    c.sync(
        &policies()[2..],
        &Operation::Full,
        true,
        &mut model::AllGood,
    );
    assert!(c.get("ConfigMap", "cm").is_none(), "pruned");
    assert!(c.get("ConfigMap", "kept").is_some(), "Prune=false");
}

#[test]
fn model_a_failed_hook_ends_the_sync_and_hook_failed_deletes_it() {
    let mut c = Cluster::default();
    let out = c.sync(
        &policies(),
        &Operation::Full,
        true,
        &mut FailHooks(vec!["stays"]),
    );
    assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
    assert!(c.get("Job", "stays").is_none(), "HookFailed deletes it");
    assert!(
        c.get("ConfigMap", "cm").is_none(),
        "nothing of the Sync phase"
    );
}

#[test]
fn model_a_cascade_delete_keeps_delete_false() {
    let mut c = synced_policies();
    c.delete_app();
    let left: Vec<_> = c.objects.keys().cloned().collect();
    assert_eq!(left, [k("ConfigMap", "kept"), k("ConfigMap", "record")]);
}

// ---------------------------------------------------------------------------------------
// lockstep's renders through the model.

/// `lockstep render ARGS`, parsed; each distinct render runs once per test process.
fn render(args: &[&str]) -> Vec<Value> {
    static RENDERS: Mutex<BTreeMap<Vec<String>, String>> = Mutex::new(BTreeMap::new());
    let key: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let known = RENDERS.lock().unwrap().get(&key).cloned();
    let text = known.unwrap_or_else(|| {
        let text = Test::new().arg("render").args(args).run().stdout;
        RENDERS.lock().unwrap().insert(key, text.clone());
        text
    });
    docs(&text)
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
const RECORD: &str = "prefect-server-lockstep";
const BACKUP: &str = "prefect-server-lockstep-backup";
const GATE: &str = "prefect-server-lockstep-gate";
const MIGRATE: &str = "prefect-server-migrate-database";

/// A record as a sync that migrated `release` would have left it.
fn seed_record(c: &mut Cluster, name: &str, release: &str, image: &str) {
    let v: Value = serde_yaml::from_str(&format!(
        "{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}}}, data: {{release: '{release}', image: '{image}', one-time: ''}}}}"
    ))
    .unwrap();
    c.objects.insert(model::key(&v), v);
}

/// A cluster whose record says `release` (image `old`).
fn recorded(name: &str, release: &str) -> Cluster {
    let mut c = Cluster::default();
    seed_record(&mut c, name, release, "old");
    c
}

fn record_of(c: &Cluster, name: &str) -> Option<String> {
    c.get("ConfigMap", name)
        .and_then(|r| r["data"]["release"].as_str())
        .map(str::to_owned)
}

fn sync(c: &mut Cluster, d: &[Value], pods: &mut Pods) -> Outcome {
    c.sync(d, &Operation::Full, true, pods)
}

fn first_hook(d: &[Value], action: HelmAction) -> Option<model::Key> {
    model::helm_steps(d, action)
        .into_iter()
        .find_map(|s| match s {
            HelmStep::Hook(k) => Some(k),
            HelmStep::Resources => None,
        })
}

// ---------------------------------------------------------------------------------------
// Defect 1: nothing of the release is applied before the gate passes.

/// Argo CD: the gate (run for real by sh, reading the live record `live`) refuses, and it
/// was the only thing applied; no migration ran, the record is as it was.
fn argocd_applies_only_the_gate(phase: &str, from: Option<&str>, live: &str) {
    let mut args = vec![SERVER, "--phase", phase];
    args.extend(from.iter().flat_map(|f| ["--from", f]));
    let d = render(&args);
    let mut c = recorded(RECORD, live);
    let mut pods = Pods::new("gate-first");
    let out = sync(&mut c, &d, &mut pods);
    assert!(
        matches!(out, Outcome::Failed(ref w) if w.contains(GATE)),
        "{out:?}"
    );
    assert_eq!(c.applied(), [k("Job", GATE)]);
    assert_eq!(pods.take_log(), "", "no migration ran");
    assert_eq!(record_of(&c, RECORD).as_deref(), Some(live));
}

/// Helm: the gate is the first hook install and upgrade run.
fn helm_runs_the_gate_first(phase: &str, from: Option<&str>) {
    let mut args = vec![SERVER, "--phase", phase];
    args.extend(from.iter().flat_map(|f| ["--from", f]));
    let d = render(&args);
    let first = [HelmAction::Install, HelmAction::Upgrade].map(|a| first_hook(&d, a));
    assert_eq!(first, [Some(k("Job", GATE)), Some(k("Job", GATE))]);
}

/// One module per case: `argocd` and `helm` tests.
macro_rules! gate_first {
    ($($(#[$m:meta])* $name:ident: $phase:literal, $from:expr, $live:literal;)*) => {$(
        $(#[$m])*
        mod $name {
            #[test]
            fn argocd_applies_only_the_gate() {
                super::argocd_applies_only_the_gate($phase, $from, $live);
            }
            #[test]
            fn helm_runs_the_gate_first() {
                super::helm_runs_the_gate_first($phase, $from);
            }
        }
    )*};
}

gate_first! {
    /// A skipped release.
    gate_first_presync_skip: "presync", Some("3.7.8"), "3.6.0";
    gate_first_sync_skip: "sync", Some("3.7.8"), "3.6.0";
    /// A first install as far as the render knows, over a database a newer release
    /// migrated (its record survived an uninstall): the gate reads the record before this
    /// release writes it.
    gate_first_presync_downgrade: "presync", None, "3.9.0";
    gate_first_sync_downgrade: "sync", None, "3.9.0";
}

/// A chart hook that runs in PreSync at a lower wave still comes after the gate.
#[test]
fn a_chart_hook_at_a_lower_weight_still_follows_the_gate() {
    let input = std::fs::read_to_string(repo().join("tests/odd/env-injection.yaml")).unwrap();
    let early = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: early-hook\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"-50\"\ndata: {}\n";
    let out = Test::new()
        .args(["inject", "--profile", "prefect-server"])
        .stdin(format!("{input}\n---\n{early}"))
        .run();
    let d = docs(&out.stdout);
    let argo = model::plan(&d, &[], &Operation::Full)[0].key();
    let helm = model::helm_hooks(&d, "pre-install")[0].clone();
    assert_eq!([argo, helm], [k("Job", GATE), k("Job", GATE)]);
}

// ---------------------------------------------------------------------------------------
// Defect 2: the record names the newest release whose migrations completed, and nothing
// else changes it.

/// The 3.7.8 → 3.8.3 upgrade of prefect-server, sync phase.
fn server_upgrade() -> Vec<Value> {
    render(&[SERVER, "--phase", "sync", "--from", "3.7.8"])
}

/// The upgrade synced over a 3.7.8 record: the record says 3.8.3.
fn migrated() -> (Vec<Value>, Cluster, Pods) {
    let d = server_upgrade();
    let mut c = recorded(RECORD, "3.7.8");
    let mut pods = Pods::new("record");
    assert_eq!(sync(&mut c, &d, &mut pods), Outcome::Succeeded);
    (d, c, pods)
}

#[test]
fn a_failed_migration_leaves_the_record_as_it_was() {
    let d = server_upgrade();
    let mut c = recorded(RECORD, "3.7.8");
    let mut pods = Pods::new("record-fails");
    pods.fail_first = 5;
    let out = sync(&mut c, &d, &mut pods);
    assert!(
        matches!(out, Outcome::Failed(ref w) if w.contains(MIGRATE)),
        "{out:?}"
    );
    assert_eq!(record_of(&c, RECORD).as_deref(), Some("3.7.8"));
    assert!(c.get("ConfigMap", BACKUP).is_none(), "no backup");
    assert!(
        c.get("Deployment", "prefect-server").is_none(),
        "the API never rolled"
    );
}

#[test]
fn a_successful_migration_writes_the_record_and_its_backup() {
    let (_, c, _) = migrated();
    let records = [record_of(&c, RECORD), record_of(&c, BACKUP)];
    assert_eq!(records, [Some("3.8.3".into()), Some("3.8.3".into())]);
}

/// The same render with the record's documents saying 3.7.8: an older revision.
fn older(d: &[Value]) -> Vec<Value> {
    let mut older = d.to_vec();
    for x in older.iter_mut().filter(|x| {
        x["kind"] == "ConfigMap" && x["metadata"]["name"].as_str().unwrap().starts_with(RECORD)
    }) {
        x["data"]["release"] = "3.7.8".into();
    }
    older
}

/// An Argo CD Rollback to an older revision uses the apply strategy: no hooks run.
#[test]
fn an_argocd_rollback_keeps_the_record() {
    let (d, mut c, mut pods) = migrated();
    c.sync(&older(&d), &Operation::Apply, true, &mut pods);
    assert_eq!(record_of(&c, RECORD).as_deref(), Some("3.8.3"));
}

/// A selective sync (and self-heal, which syncs a resource list) runs no hooks.
#[test]
fn a_selective_sync_keeps_the_record() {
    let (d, mut c, mut pods) = migrated();
    let op = Operation::Resources(vec![
        k("ConfigMap", RECORD),
        k("Deployment", "prefect-server"),
    ]);
    c.sync(&older(&d), &op, true, &mut pods);
    assert_eq!(record_of(&c, RECORD).as_deref(), Some("3.8.3"));
}

/// A target without lockstep's documents does not delete the record: hooks are never prune
/// tasks.
#[test]
fn a_prune_keeps_the_record() {
    let (d, mut c, mut pods) = migrated();
    let bare: Vec<Value> = d
        .into_iter()
        .filter(|x| x["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "lockstep")
        .collect();
    sync(&mut c, &bare, &mut pods);
    assert_eq!(record_of(&c, RECORD).as_deref(), Some("3.8.3"));
}

#[test]
fn deleting_the_app_keeps_the_record_and_its_backup() {
    let (_, mut c, _) = migrated();
    c.delete_app();
    let records = [record_of(&c, RECORD), record_of(&c, BACKUP)];
    assert_eq!(records, [Some("3.8.3".into()), Some("3.8.3".into())]);
}

/// The record is not part of the Helm release, so `helm uninstall` (deletes the manifest)
/// never touches it.
#[test]
fn the_record_is_not_a_helm_release_resource() {
    let resources = model::helm_release_resources(&server_upgrade());
    let records: Vec<_> = resources
        .iter()
        .filter(|k| k.1.starts_with(RECORD))
        .collect();
    assert_eq!(records, Vec::<&model::Key>::new(), "{resources:?}");
}

/// `helm rollback` re-applies the old manifest and runs only rollback hooks; `helm
/// uninstall` deletes the manifest: neither runs lockstep's hooks.
#[test]
fn helm_rollback_and_uninstall_run_no_lockstep_hook() {
    let d = server_upgrade();
    let steps = [HelmAction::Rollback, HelmAction::Uninstall].map(|a| model::helm_steps(&d, a));
    assert_eq!(
        steps,
        [vec![HelmStep::Resources], vec![HelmStep::Resources]]
    );
}

/// Helm writes the record, then its backup, after every step, on install and upgrade.
#[test]
fn helm_writes_the_record_after_every_step() {
    let d = server_upgrade();
    let last_two = |a: HelmAction| -> Vec<HelmStep> {
        let mut hooks: Vec<HelmStep> = model::helm_steps(&d, a)
            .into_iter()
            .filter(|s| *s != HelmStep::Resources)
            .collect();
        hooks.split_off(hooks.len() - 2)
    };
    let want = vec![
        HelmStep::Hook(k("ConfigMap", RECORD)),
        HelmStep::Hook(k("ConfigMap", BACKUP)),
    ];
    assert_eq!(last_two(HelmAction::Install), want, "install");
    assert_eq!(last_two(HelmAction::Upgrade), want, "upgrade");
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
const CLOUD_RECORD: &str = "customer-managed-lockstep";
const CLOUD_MIGRATIONS: &str = "prefect-cloud nebula database upgrade
prefect-cloud orion database upgrade
prefect-cloud events database upgrade
";

fn cloud(extra: &[&str]) -> Vec<Value> {
    render(&[&CLOUD[..], extra].concat())
}

/// The cloud upgrade synced over a 0.8.2 record, and the app commands it ran.
fn cloud_upgraded() -> (Cluster, Pods, String) {
    let mut c = recorded(CLOUD_RECORD, "0.8.2");
    let mut pods = Pods::new("once");
    assert_eq!(sync(&mut c, &cloud(&[]), &mut pods), Outcome::Succeeded);
    let log = pods.take_log();
    (c, pods, log)
}

#[test]
fn a_cloud_upgrade_runs_each_migration_then_the_one_time_step() {
    let (_, _, log) = cloud_upgraded();
    assert_eq!(
        log,
        format!("{CLOUD_MIGRATIONS}prefect-cloud self-managed update-orion\n")
    );
}

#[test]
fn the_record_lists_the_one_time_step_done() {
    let (c, _, _) = cloud_upgraded();
    let rec = c.get("ConfigMap", CLOUD_RECORD).unwrap();
    assert_eq!(rec["data"]["one-time"], "update-orion");
}

/// The lock still says 0.8.x (until the next bump): the same release syncs again after a
/// values change, a manual sync, a retry. Nothing runs.
#[test]
fn syncing_the_recorded_release_again_runs_nothing() {
    let (mut c, mut pods, _) = cloud_upgraded();
    let d = cloud(&["--set", "orion.replicas=3"]);
    for attempt in ["values change", "retry"] {
        assert_eq!(sync(&mut c, &d, &mut pods), Outcome::Succeeded);
        assert_eq!(
            pods.take_log(),
            "",
            "{attempt}: no migration, no one-time step"
        );
    }
}

#[test]
fn force_migrations_reruns_the_migrations_but_not_the_one_time_step() {
    let (mut c, mut pods, _) = cloud_upgraded();
    let forced = cloud(&["--force-migrations"]);
    assert_eq!(sync(&mut c, &forced, &mut pods), Outcome::Succeeded);
    assert_eq!(pods.take_log(), CLOUD_MIGRATIONS);
}

/// A record of the same release with another image (a rebuilt tag, a digest pin) migrates.
#[test]
fn a_record_with_another_image_migrates_again() {
    let (mut c, mut pods, _) = cloud_upgraded();
    c.objects.get_mut(&k("ConfigMap", CLOUD_RECORD)).unwrap()["data"]["image"] =
        "registry.example/other:1.2.0".into();
    assert_eq!(sync(&mut c, &cloud(&[]), &mut pods), Outcome::Succeeded);
    assert_eq!(pods.take_log(), CLOUD_MIGRATIONS);
}

// ---------------------------------------------------------------------------------------
// Defect 6: a first install with a bundled database, with and without --wait.

fn server_install() -> Vec<Value> {
    render(&[SERVER, "--phase", "sync"])
}

/// Helm without --wait (Helm 4's default hookOnly waits for nothing but hooks): the
/// post-install migration runs right after the objects are created, while the database
/// starts.
#[test]
fn helm_install_runs_the_migration_after_creating_the_database() {
    let steps = model::helm_steps(&server_install(), HelmAction::Install);
    let at = |s: &HelmStep| steps.iter().position(|x| x == s).unwrap();
    let (res, mig) = (
        at(&HelmStep::Resources),
        at(&HelmStep::Hook(k("Job", MIGRATE))),
    );
    assert!(res < mig, "{steps:?}");
}

/// The migration of a first install, run with `first_fails` refusals of the database;
/// returns the outcome and the app commands run.
fn first_install(first_fails: u32) -> (Outcome, usize) {
    let mut c = Cluster::default();
    let mut pods = Pods::new("first-install");
    pods.fail_first = first_fails;
    let out = sync(&mut c, &server_install(), &mut pods);
    (out, pods.take_log().lines().count())
}

#[test]
fn a_first_install_migration_retries_while_the_database_starts() {
    assert_eq!(
        first_install(4),
        (Outcome::Succeeded, 5),
        "four refusals, then the migration"
    );
}

/// Bounded: a database that never answers fails the Job (then its deadline applies).
#[test]
fn a_first_install_migration_gives_up_after_its_attempts() {
    let d = server_install();
    let env = job_env_map(find(&d, "Job", MIGRATE).unwrap());
    let attempts: u32 = env["LOCKSTEP_FIRST_INSTALL_ATTEMPTS"].parse().unwrap();
    assert!((2..=100).contains(&attempts), "{attempts}");
    let (out, runs) = first_install(attempts);
    assert!(
        matches!(out, Outcome::Failed(ref w) if w.contains(MIGRATE)),
        "{out:?}"
    );
    assert_eq!(runs, attempts as usize);
}

/// On an upgrade (a record exists) a failing migration is not retried.
#[test]
fn an_upgrade_migration_is_not_retried() {
    let mut c = recorded(RECORD, "3.7.8");
    let mut pods = Pods::new("upgrade-fails");
    pods.fail_first = 1;
    let out = sync(&mut c, &server_install(), &mut pods);
    assert!(
        matches!(out, Outcome::Failed(ref w) if w.contains(MIGRATE)),
        "{out:?}"
    );
    assert_eq!(pods.take_log().lines().count(), 1);
}

/// Argo CD (and Helm --wait) wait for the database before the migration's wave: a database
/// that never gets ready holds the sync (StatefulSet health is never Degraded,
/// gitops-engine health/health_statefulset.go), before any migration.
#[test]
fn argocd_waits_for_the_database_before_the_migration() {
    let mut c = Cluster::default();
    let mut pods = Pods::new("argo-db");
    let db = k("StatefulSet", "prefect-server-postgresql");
    pods.health.insert(db, Health::Progressing);
    let out = sync(&mut c, &server_install(), &mut pods);
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

/// `path` of every lockstep Job of the cloud upgrade, by Job name.
fn lockstep_jobs(path: &[&str]) -> Vec<(String, String)> {
    cloud(&[])
        .iter()
        .filter(|x| {
            x["kind"] == "Job"
                && x["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lockstep"
        })
        .map(|j| {
            let v = path.iter().fold(j, |v, p| &v[*p]);
            (
                j["metadata"]["name"].as_str().unwrap().to_owned(),
                format!("{v:?}"),
            )
        })
        .collect()
}

/// The five Jobs of the cloud upgrade with `value` at the same path.
fn each_cloud_job(value: &str) -> Vec<(String, String)> {
    [
        "lockstep-gate",
        "migrate-nebula",
        "migrate-orion",
        "migrate-events",
        "update-orion",
    ]
    .map(|j| {
        (
            format!("customer-managed-{j}"),
            format!("{:?}", Value::from(value)),
        )
    })
    .to_vec()
}

#[test]
fn every_lockstep_job_skips_the_istio_sidecar() {
    let ann = [
        "spec",
        "template",
        "metadata",
        "annotations",
        "sidecar.istio.io/inject",
    ];
    assert_eq!(lockstep_jobs(&ann), each_cloud_job("false"));
}

#[test]
fn every_lockstep_job_prints_its_logs_when_it_fails() {
    let ann = ["metadata", "annotations", "helm.sh/hook-output-log-policy"];
    assert_eq!(lockstep_jobs(&ann), each_cloud_job("hook-failed"));
}

/// The deployed release is known (--from) and the Jobs use a ServiceAccount of the render:
/// presync says they read the live one.
#[test]
fn presync_says_the_jobs_read_the_live_service_account() {
    Test::new()
        .arg("render")
        .args(CLOUD)
        .stderr_contains("\nlockstep: presync phase: the migration Jobs read the live ServiceAccount/customer-managed-prefect-cloud of the deployed release, not this render's (PreSync and pre-upgrade hooks run before any of the release's objects is applied); a change to them in this render reaches the migrations on the next sync\n")
        .run();
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
        std::fs::write(&p, Test::new().arg("render").args(args).run().stdout).unwrap();
        files.push(p);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    validate(&refs);
}
