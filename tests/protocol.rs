//! The in-cluster protocol (issue 17): gate first, a record that cannot lie, steps that run
//! once. The Argo CD and Helm claims are checked against a small model of their sync order
//! (tests/common/argocd_model.rs: a model, not Argo CD or Helm; each rule cites its source).

mod common;

use common::argocd_model::{self as model, Cluster, Operation, Outcome, Phase, World};
use common::*;
use serde_yaml::Value;

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

/// The gate refuses: what did the sync apply before it ran?
struct GateRefuses;
impl World for GateRefuses {
    fn run_hook(&mut self, _: &Cluster, hook: &Value) -> bool {
        !model::key(hook).1.ends_with("-lockstep-gate")
    }
}

#[test]
fn sync_phase_today_applies_release_objects_before_the_gate() {
    // Issue 17, defect 1, shown on today's output: the moved objects (Secrets,
    // ServiceAccount, the bundled PostgreSQL) sit in a wave before the gate, so a refused
    // upgrade has already rolled them.
    let out = render(&[
        "examples/charts/prefect-server",
        "--phase",
        "sync",
        "--from",
        "3.7.8",
    ]);
    let d = docs(&out);
    let mut c = Cluster::default();
    let outcome = c.sync(&d, &Operation::Full, true, &mut GateRefuses);
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let applied = c.applied();
    let gate = applied
        .iter()
        .position(|x| x.1.ends_with("-lockstep-gate"))
        .expect("the gate ran");
    let before: Vec<_> = applied[..gate].to_vec();
    assert!(
        before.contains(&k("StatefulSet", "prefect-server-postgresql")),
        "{before:?}"
    );
}
