//! An Argo CD sync of `lockstep argocd generate` output against the real API server, in the
//! order of the gitops-engine model (`tests/common/argocd_model.rs`, which cites the source
//! of each rule): the model's [`plan`] gives the tasks (phase, wave, kind, name; hooks left
//! out of apply-strategy and selective syncs), and this driver runs them as
//! `Cluster::sync` there does, but for real: per wave, BeforeHookCreation hooks are deleted,
//! resources applied with `kubectl apply` and hooks created, then the wave's hook Jobs are
//! waited for (Complete / Failed, as health_job.go; other hooks are done once created), and a failure ends the sync, deleting
//! HookFailed hooks; on success HookSucceeded hooks are deleted.
//!
//! This is a model of Argo CD driving a real API server, not Argo CD. Left out besides what
//! the model leaves out: resource health. The pod runner plays the kubelet for Job pods only,
//! so Deployments and StatefulSets never get ready pods; this driver counts every applied
//! resource healthy (said in each run's log), and only hooks are waited for.

use crate::common::argocd_model::{delete_policies, key, plan, Key, Operation, Phase};
use crate::scenario::Scenario;
use serde_yaml::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Sync {
    /// What was done, in order: "apply Kind/name", "create Kind/name", "delete Kind/name",
    /// "hook Kind/name ok|failed".
    pub log: Vec<String>,
    /// None: succeeded; Some(reason): failed.
    pub failed: Option<String>,
}

impl Sync {
    /// The objects applied or created, in order.
    pub fn applied(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|l| {
                l.strip_prefix("apply ")
                    .or_else(|| l.strip_prefix("create "))
            })
            .map(str::to_owned)
            .collect()
    }
}

fn name(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

fn yaml(obj: &Value) -> String {
    serde_yaml::to_string(obj).unwrap()
}

/// Runs one sync of `target` (the generated documents) in the scenario's namespace.
pub fn sync(s: &Scenario, target: &[Value], op: &Operation) -> Sync {
    let mut out = Sync::default();
    // Live objects the app tracks: only prunes would need them, and these syncs prune nothing.
    let tasks: Vec<_> = plan(target, &[], op)
        .into_iter()
        .filter(|t| t.phase != Phase::SyncFail)
        .collect();
    let mut steps: Vec<(Phase, i32)> = tasks.iter().map(|t| (t.phase, t.wave)).collect();
    steps.dedup();
    let mut ran_hooks: Vec<Value> = vec![];
    for (phase, wave) in steps {
        let group: Vec<_> = tasks
            .iter()
            .filter(|t| t.phase == phase && t.wave == wave)
            .collect();
        for t in group.iter().filter(|t| t.hook) {
            if delete_policies(&t.obj).contains("BeforeHookCreation") {
                delete(s, &t.key());
                out.log.push(format!("delete {}", name(&t.key())));
            }
        }
        for t in &group {
            if t.hook {
                let o = s
                    .env
                    .kubectl_stdin(&["-n", &s.ns, "create", "-f", "-"], &yaml(&t.obj));
                assert!(
                    o.status.success(),
                    "create {}: {}",
                    name(&t.key()),
                    String::from_utf8_lossy(&o.stderr)
                );
                out.log.push(format!("create {}", name(&t.key())));
            } else {
                s.env.kubectl_apply(&s.ns, &yaml(&t.obj));
                out.log.push(format!("apply {}", name(&t.key())));
            }
        }
        let mut failed = None;
        for t in group.iter().filter(|t| t.hook) {
            ran_hooks.push(t.obj.clone());
            // health_job.go for Jobs; any other hook (a ConfigMap) is done once created.
            let ok = t.kind != "Job" || wait_job(s, &t.name);
            out.log.push(format!(
                "hook {} {}",
                name(&t.key()),
                if ok { "ok" } else { "failed" }
            ));
            if !ok && failed.is_none() {
                failed = Some(format!(
                    "hook {} failed (phase {phase:?}, wave {wave})",
                    name(&t.key())
                ));
            }
        }
        if let Some(why) = failed {
            for h in &ran_hooks {
                if delete_policies(h).contains("HookFailed") {
                    delete(s, &key(h));
                }
            }
            out.failed = Some(why);
            s.note(format!("argocd model sync: {:#?}", out.log));
            return out;
        }
    }
    for h in &ran_hooks {
        if delete_policies(h).contains("HookSucceeded") {
            delete(s, &key(h));
            out.log.push(format!("delete {}", name(&key(h))));
        }
    }
    s.note(format!(
        "argocd model sync (resources counted healthy once applied): {:#?}",
        out.log
    ));
    out
}

fn delete(s: &Scenario, k: &Key) {
    s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "delete",
        &k.0.to_lowercase(),
        &k.1,
        "--ignore-not-found",
        "--wait=true",
        "--cascade=background",
    ]);
}

/// Waits for Job `name` to be Complete (true) or Failed (false): health_job.go's rule.
fn wait_job(s: &Scenario, name: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        let o = s.env.kubectl_ok(&[
            "-n",
            &s.ns,
            "get",
            "job",
            name,
            "-o",
            "jsonpath={range .status.conditions[?(@.status==\"True\")]}{.type} {end}",
        ]);
        if o.split_whitespace().any(|c| c == "Complete") {
            return true;
        }
        if o.split_whitespace().any(|c| c == "Failed") {
            return false;
        }
        assert!(Instant::now() < end, "Job {name} did not finish in 600 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}
