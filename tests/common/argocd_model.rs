//! A small MODEL of how Argo CD syncs an application (gitops-engine, which now lives in
//! argoproj/argo-cd under `gitops-engine/`), and of what Helm does with hooks. It is a model
//! for tests, not Argo CD and not Helm: it keeps only the rules lockstep's promises rest
//! on, and each rule cites the source line it models (argoproj/argo-cd at 37ee0097cf85,
//! helm/helm at e9b85e4de16a; paths relative to those repositories).
//!
//! What it models (Argo CD):
//! * which objects become tasks: hooks vs resources, hook phases, Helm hook translation,
//!   `Skip`; hooks are left out of apply-strategy syncs (Rollback) and selective syncs
//!   (self-heal too: it syncs a resource list);
//! * the order: phase, then wave, then kind, then name;
//! * one wave at a time: prunes, then `BeforeHookCreation` deletes, then applies; then a
//!   wait until every hook of the wave completed and (in a multi-step sync) every resource
//!   is healthy; a failure ends the sync and deletes `HookFailed` hooks; success deletes
//!   `HookSucceeded` hooks;
//! * prune (with `Prune=false`) and the cascade delete of an app (with `Delete=false` and
//!   `helm.sh/resource-policy: keep`).
//!
//! What it leaves out: SyncFail hooks, retries, `generateName`, dry runs, namespaces and
//! CRDs ordering (`adjustDeps`), PruneLast, server-side apply, the 2 s pause between waves,
//! health of anything but what the [`World`] says. Health and hook results come from the
//! test's [`World`]; the other helper (issue 13) drives a real API server with the same
//! order through [`plan`].
#![allow(dead_code)]

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// (kind, name): objects are namespaced alike in lockstep's renders.
pub type Key = (String, String);

pub fn key(obj: &Value) -> Key {
    (
        obj["kind"].as_str().unwrap_or_default().to_owned(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

pub fn annotation<'a>(obj: &'a Value, name: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][name].as_str()
}

/// resourceutil.GetAnnotationCSVs: comma-separated, trimmed, empty items dropped.
fn csv(obj: &Value, name: &str) -> Vec<String> {
    annotation(obj, name)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    // gitops-engine/pkg/sync/sync_tasks.go:16-21 (syncPhaseOrder): PreSync -1, Sync 0,
    // PostSync 1, SyncFail 2.
    PreSync,
    Sync,
    PostSync,
    SyncFail,
}

/// gitops-engine/pkg/sync/hook/helm/type.go:19-32: pre-install and pre-upgrade are
/// PreSync, post-install and post-upgrade PostSync; any other Helm hook type is dropped.
fn helm_hook_phase(t: &str) -> Option<Phase> {
    match t {
        "pre-install" | "pre-upgrade" => Some(Phase::PreSync),
        "post-install" | "post-upgrade" => Some(Phase::PostSync),
        _ => None,
    }
}

fn argo_hook_type(t: &str) -> Option<&'static str> {
    // common.NewHookType: the known Argo hook types.
    [
        "PreSync",
        "Sync",
        "PostSync",
        "SyncFail",
        "Skip",
        "PreDelete",
        "PostDelete",
    ]
    .into_iter()
    .find(|x| *x == t)
}

/// gitops-engine/pkg/sync/hook/hook.go:38-53 (Types): Argo's types; Helm's only when the
/// object has no Argo type ("we ignore Helm hooks if we have Argo hook").
fn hook_types(obj: &Value) -> Vec<String> {
    let argo: Vec<String> = csv(obj, "argocd.argoproj.io/hook")
        .into_iter()
        .filter(|t| argo_hook_type(t).is_some())
        .collect();
    if !argo.is_empty() {
        return argo;
    }
    csv(obj, "helm.sh/hook")
        .iter()
        .filter_map(|t| helm_hook_phase(t))
        .map(|p| format!("{p:?}"))
        .collect()
}

/// hook.go:31-36 (Skip): only `Skip` and nothing else.
fn is_skip(obj: &Value) -> bool {
    let t = hook_types(obj);
    t.iter().any(|x| x == "Skip") && t.len() == 1
}

/// hook.go:23-29 (IsHook) and hook/helm/hook.go:5-9: an Argo hook annotation (unless
/// Skip), else any `helm.sh/hook` but `crd-install`.
pub fn is_hook(obj: &Value) -> bool {
    if annotation(obj, "argocd.argoproj.io/hook").is_some() {
        return !is_skip(obj);
    }
    annotation(obj, "helm.sh/hook").is_some_and(|v| v != "crd-install")
}

/// gitops-engine/pkg/sync/sync_phase.go:10-28 (syncPhases): a hook runs in each phase it
/// names (none: never applied, e.g. a `pre-rollback`-only Helm hook); a resource in Sync.
pub fn phases(obj: &Value) -> Vec<Phase> {
    if is_skip(obj) {
        return vec![];
    }
    if !is_hook(obj) {
        return vec![Phase::Sync];
    }
    let mut out: Vec<Phase> = hook_types(obj)
        .iter()
        .filter_map(|t| match t.as_str() {
            "PreSync" => Some(Phase::PreSync),
            "Sync" => Some(Phase::Sync),
            "PostSync" => Some(Phase::PostSync),
            "SyncFail" => Some(Phase::SyncFail),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// gitops-engine/pkg/sync/syncwaves/waves.go:12-21 (Wave): `sync-wave` when it parses,
/// else hook/helm/weight.go:10-19 (`helm.sh/hook-weight`), else 0.
pub fn wave(obj: &Value) -> i32 {
    annotation(obj, "argocd.argoproj.io/sync-wave")
        .and_then(|t| t.parse().ok())
        .or_else(|| annotation(obj, "helm.sh/hook-weight").and_then(|t| t.parse().ok()))
        .unwrap_or(0)
}

/// gitops-engine/pkg/sync/sync_tasks.go:25-69 (kindOrder): Helm's install order; kinds not
/// listed (custom resources) sort last (0).
pub fn kind_order(kind: &str) -> i32 {
    const KINDS: &[&str] = &[
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
    ];
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| i as i32 - KINDS.len() as i32)
}

/// gitops-engine/pkg/sync/hook/delete_policy.go:11-26 (DeletePolicies): Argo's and Helm's
/// policies merged (hook/helm/delete_policy.go:23-27 maps Helm's names); none given means
/// BeforeHookCreation.
pub fn delete_policies(obj: &Value) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for p in csv(obj, "argocd.argoproj.io/hook-delete-policy") {
        match p.as_str() {
            "BeforeHookCreation" => out.insert("BeforeHookCreation"),
            "HookSucceeded" => out.insert("HookSucceeded"),
            "HookFailed" => out.insert("HookFailed"),
            _ => false,
        };
    }
    for p in csv(obj, "helm.sh/hook-delete-policy") {
        match p.as_str() {
            "before-hook-creation" => out.insert("BeforeHookCreation"),
            "hook-succeeded" => out.insert("HookSucceeded"),
            "hook-failed" => out.insert("HookFailed"),
            _ => false,
        };
    }
    if out.is_empty() {
        out.insert("BeforeHookCreation");
    }
    out
}

/// `argocd.argoproj.io/sync-options` holds `NAME=false` (resourceutil.GetAnnotationOptionValue).
fn sync_option_false(obj: &Value, name: &str) -> bool {
    csv(obj, "argocd.argoproj.io/sync-options")
        .iter()
        .any(|o| o == &format!("{name}=false"))
}

/// How a sync was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A full sync (manual or automated): hooks run.
    Full,
    /// An apply-strategy sync. server/application/application.go:2310-2317: Rollback
    /// syncs with `SyncStrategy{Apply: ...}`.
    Apply,
    /// A selective sync of these resources. controller/appcontroller.go:2618-2625:
    /// self-heal syncs the out-of-sync resources this way.
    Resources(Vec<Key>),
}

impl Operation {
    /// controller/sync.go:386: `skipHooks = syncOp.IsApplyStrategy() || len(syncOp.Resources) > 0`.
    pub fn skips_hooks(&self) -> bool {
        !matches!(self, Operation::Full)
    }
}

/// One sync task.
#[derive(Clone, Debug)]
pub struct Task {
    pub phase: Phase,
    pub wave: i32,
    pub kind: String,
    pub name: String,
    pub hook: bool,
    /// A live object the app tracks that the target no longer has.
    pub prune: bool,
    pub obj: Value,
}

impl Task {
    pub fn key(&self) -> Key {
        (self.kind.clone(), self.name.clone())
    }
}

/// gitops-engine/pkg/sync/sync_tasks.go:86-111 (Less): phase, wave, kind, name.
fn less(a: &Task, b: &Task) -> std::cmp::Ordering {
    (a.phase, a.wave, kind_order(&a.kind), &a.name).cmp(&(
        b.phase,
        b.wave,
        kind_order(&b.kind),
        &b.name,
    ))
}

/// One task per phase the object runs in.
fn tasks_of(obj: &Value, hook: bool, prune: bool) -> Vec<Task> {
    let (kind, name) = key(obj);
    phases(obj)
        .into_iter()
        .map(|phase| Task {
            phase,
            wave: wave(obj),
            kind: kind.clone(),
            name: name.clone(),
            hook,
            prune,
            obj: obj.clone(),
        })
        .collect()
}

/// The tasks of a sync, sorted: gitops-engine/pkg/sync/sync_context.go:974-1186
/// (getSyncTasks).
pub fn plan(target: &[Value], tracked_live: &[Value], op: &Operation) -> Vec<Task> {
    let selected = |k: &Key| match op {
        // sync_context.go:969-971 (containsResource): the resources filter of a selective sync.
        Operation::Resources(keys) => keys.contains(k),
        _ => true,
    };
    let mut tasks = Vec::new();
    let target_keys: BTreeSet<Key> = target.iter().map(key).collect();
    // sync_context.go:985-1003: resources (target, or live when the target is gone);
    // hooks are never resource tasks, so they are never pruned.
    for obj in target.iter().chain(
        tracked_live
            .iter()
            .filter(|l| !target_keys.contains(&key(l))),
    ) {
        let k = key(obj);
        if !selected(&k) || is_hook(obj) {
            continue;
        }
        tasks.extend(tasks_of(obj, false, !target_keys.contains(&k)));
    }
    // sync_context.go:1007-1031: hooks only when not skipped, once per phase they name.
    if !op.skips_hooks() {
        for obj in target.iter().filter(|o| is_hook(o)) {
            tasks.extend(tasks_of(obj, true, false));
        }
    }
    // sync_context.go:1124-1152: prune tasks take the mirrored wave (deleted in reverse
    // creation order).
    let mut prune_waves: Vec<i32> = tasks.iter().filter(|t| t.prune).map(|t| t.wave).collect();
    prune_waves.sort();
    prune_waves.dedup();
    let n = prune_waves.len();
    for t in tasks.iter_mut().filter(|t| t.prune) {
        let i = prune_waves.iter().position(|w| *w == t.wave).unwrap();
        t.wave = prune_waves[n - 1 - i];
    }
    tasks.sort_by(less);
    tasks
}

/// What the test's world says about an object after it was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
}

/// Hook results and health: what controllers, the kubelet and the app would do.
pub trait World {
    /// Runs a hook (a Job) against the cluster as it is now; true when it completes.
    /// gitops-engine/pkg/health/health_job.go:30-75: Complete is success, Failed failure.
    fn run_hook(&mut self, cluster: &Cluster, hook: &Value) -> bool;
    /// The health of an applied resource. health_statefulset.go never reports Degraded:
    /// a database that never gets ready stays Progressing.
    fn health(&mut self, _cluster: &Cluster, _obj: &Value) -> Health {
        Health::Healthy
    }
}

/// Everything healthy, every hook succeeds.
pub struct AllGood;
impl World for AllGood {
    fn run_hook(&mut self, _: &Cluster, _: &Value) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Apply(Key),
    Delete(Key),
    Prune(Key),
    /// A hook ran: its key and whether it succeeded.
    Hook(Key, bool),
}

/// The live objects of one namespace and which of them the app tracks (the
/// app.kubernetes.io/instance label or annotation Argo CD sets on every target object,
/// hooks included: controller/state.go:795-797, SetAppInstance).
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub objects: BTreeMap<Key, Value>,
    pub tracked: BTreeSet<Key>,
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    /// Waiting for ever: the controller's sync timeout defaults to none.
    Hung(String),
}

impl Cluster {
    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_owned(), name.to_owned()))
    }

    fn apply(&mut self, obj: &Value) {
        let k = key(obj);
        self.objects.insert(k.clone(), obj.clone());
        self.tracked.insert(k.clone());
        self.events.push(Event::Apply(k));
    }

    fn delete(&mut self, k: &Key) {
        if self.objects.remove(k).is_some() {
            self.events.push(Event::Delete(k.clone()));
        }
        self.tracked.remove(k);
    }

    /// The keys applied, in order (deletes and hook runs left out).
    pub fn applied(&self) -> Vec<Key> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Apply(k) => Some(k.clone()),
                _ => None,
            })
            .collect()
    }

    /// One sync of `target`, as gitops-engine/pkg/sync/sync_context.go:493-741 (Sync)
    /// runs it, one wave per reconciliation.
    pub fn sync(
        &mut self,
        target: &[Value],
        op: &Operation,
        prune: bool,
        world: &mut dyn World,
    ) -> Outcome {
        let live: Vec<Value> = self
            .tracked
            .iter()
            .filter_map(|k| self.objects.get(k).cloned())
            .collect();
        // sync_context.go:639-640: SyncFail tasks run only on failure; not modelled.
        let tasks: Vec<Task> = plan(target, &live, op)
            .into_iter()
            .filter(|t| t.phase != Phase::SyncFail)
            .collect();
        let mut steps: Vec<(Phase, i32)> = tasks.iter().map(|t| (t.phase, t.wave)).collect();
        steps.dedup();
        // sync_tasks.go (multiStep): resources are waited for only when there is more
        // than one phase or wave (sync_context.go:593-594).
        let multi_step = steps.len() > 1;
        let mut ran_hooks: Vec<Value> = Vec::new();
        for (phase, w) in steps {
            // sync_context.go:678-682: the lowest pending phase and wave, alone.
            let group: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.phase == phase && t.wave == w)
                .collect();
            // sync_context.go:1641-1699 (runTasks): prune first, unless `Prune=false`
            // (sync_context.go:1497-1500, isPruningDisabled) or pruning is off.
            for t in group.iter().filter(|t| t.prune) {
                if prune && !sync_option_false(&t.obj, "Prune") {
                    let k = t.key();
                    self.delete(&k);
                    self.events.push(Event::Prune(k));
                }
            }
            // sync_context.go:1702-1730: hooks with BeforeHookCreation are deleted first.
            for t in group.iter().filter(|t| t.hook) {
                if delete_policies(&t.obj).contains("BeforeHookCreation") {
                    self.delete(&t.key());
                }
            }
            // sync_context.go:1733-1745: then everything is applied (kubectl apply; a
            // named hook without BeforeHookCreation that exists is applied over).
            for t in group.iter().filter(|t| !t.prune) {
                self.apply(&t.obj);
            }
            // sync_context.go:557-615: wait for the wave's hooks, and in a multi-step sync
            // for its resources to be healthy; a Degraded resource or failed hook fails it.
            let mut failed = None;
            for t in group.iter().filter(|t| !t.prune) {
                if t.hook {
                    let snapshot = self.clone();
                    let okay = world.run_hook(&snapshot, &t.obj);
                    self.events.push(Event::Hook(t.key(), okay));
                    ran_hooks.push(t.obj.clone());
                    if !okay && failed.is_none() {
                        failed = Some(format!("hook {}/{} failed", t.kind, t.name));
                    }
                } else if multi_step {
                    match world.health(self, &t.obj) {
                        Health::Healthy => {}
                        Health::Degraded => {
                            failed.get_or_insert(format!("{}/{} is Degraded", t.kind, t.name));
                        }
                        Health::Progressing => {
                            return Outcome::Hung(format!(
                                "waiting for {}/{} to become healthy (phase {phase:?}, wave {w})",
                                t.kind, t.name
                            ))
                        }
                    }
                }
            }
            if let Some(why) = failed {
                // sync_context.go:643-650: HookFailed hooks are deleted, the sync fails.
                for h in &ran_hooks {
                    if delete_policies(h).contains("HookFailed") {
                        self.delete(&key(h));
                    }
                }
                return Outcome::Failed(why);
            }
        }
        // sync_context.go:716-721: on success, HookSucceeded hooks are deleted.
        for h in &ran_hooks {
            if delete_policies(h).contains("HookSucceeded") {
                self.delete(&key(h));
            }
        }
        Outcome::Succeeded
    }

    /// A cascade delete of the app: controller/appcontroller.go:1255-1264 (shouldBeDeleted)
    /// keeps objects with `Delete=false` or `helm.sh/resource-policy: keep`.
    pub fn delete_app(&mut self) {
        let doomed: Vec<Key> = self
            .tracked
            .iter()
            .filter(|k| {
                let o = &self.objects[*k];
                !sync_option_false(o, "Delete")
                    && annotation(o, "helm.sh/resource-policy") != Some("keep")
            })
            .cloned()
            .collect();
        for k in doomed {
            self.delete(&k);
        }
        self.tracked.clear();
    }
}

// ---------------------------------------------------------------------------------------
// Helm: which hooks run for an action, and in which order.
// ---------------------------------------------------------------------------------------

/// What `helm install|upgrade|rollback|uninstall` does, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelmAction {
    Install,
    Upgrade,
    Rollback,
    Uninstall,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelmStep {
    /// A hook runs (created, waited for).
    Hook(Key),
    /// The release's own (non-hook) resources are created/updated (or deleted).
    Resources,
}

/// helm/helm pkg/action/hooks.go:65-74 (execHookWithDelayedShutdown): the hooks of one
/// event, sorted by weight then name (hooks.go:172-177, hookByWeight).
pub fn helm_hooks(docs: &[Value], event: &str) -> Vec<Key> {
    let mut hooks: Vec<(i32, Key)> = docs
        .iter()
        .filter(|d| csv(d, "helm.sh/hook").iter().any(|e| e == event))
        .map(|d| {
            let weight = annotation(d, "helm.sh/hook-weight")
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            (weight, key(d))
        })
        .collect();
    hooks.sort_by(|a, b| (a.0, &a.1 .1).cmp(&(b.0, &b.1 .1)));
    hooks.into_iter().map(|(_, k)| k).collect()
}

/// The steps of a Helm action over `docs` (the chart's rendered output):
/// install: pkg/action/install.go:510 pre-install, 519 Create, 556 post-install;
/// upgrade: pkg/action/upgrade.go:460 pre-upgrade, 469 Update, 508 post-upgrade;
/// rollback: pkg/action/rollback.go:233 pre-rollback, then the old manifest, 300
/// post-rollback (no install/upgrade hook runs); uninstall: pkg/action/uninstall.go:203
/// pre-delete, 216 deleteRelease of the release manifest only (hooks are not in it), 230
/// post-delete.
pub fn helm_steps(docs: &[Value], action: HelmAction) -> Vec<HelmStep> {
    let (pre, post) = match action {
        HelmAction::Install => ("pre-install", "post-install"),
        HelmAction::Upgrade => ("pre-upgrade", "post-upgrade"),
        HelmAction::Rollback => ("pre-rollback", "post-rollback"),
        HelmAction::Uninstall => ("pre-delete", "post-delete"),
    };
    let mut out: Vec<HelmStep> = helm_hooks(docs, pre)
        .into_iter()
        .map(HelmStep::Hook)
        .collect();
    out.push(HelmStep::Resources);
    out.extend(helm_hooks(docs, post).into_iter().map(HelmStep::Hook));
    out
}

/// The release's own resources: every document without `helm.sh/hook`
/// (pkg/release/v1/util/manifest_sorter.go:139-200, manifestFile.sort: hooks go to Release.Hooks, the rest to the
/// manifest that install/upgrade apply and uninstall deletes).
pub fn helm_release_resources(docs: &[Value]) -> Vec<Key> {
    docs.iter()
        .filter(|d| annotation(d, "helm.sh/hook").is_none())
        .map(key)
        .collect()
}
