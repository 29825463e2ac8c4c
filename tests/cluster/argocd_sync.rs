//! An Argo CD sync of `lockstep argocd generate` output against the real API server, in the
//! order of the gitops-engine model (`tests/common/argocd_model.rs`, which cites the source
//! of each rule): the model's [`plan`] gives the tasks (phase, wave, kind, name; hooks left
//! out of apply-strategy and selective syncs), and this driver runs them as
//! `Cluster::sync` there does, but for real: per wave, BeforeHookCreation hooks are deleted,
//! resources applied with `kubectl apply` and hooks created, then the wave's hook Jobs are
//! waited for (Complete / Failed, as health_job.go; other hooks are done once created), and a failure ends the sync, deleting
//! HookFailed hooks; on success HookSucceeded hooks are deleted.
//!
//! This is a model of Argo CD driving a real API server, not Argo CD. Resource health: a
//! StatefulSet is waited for by health_statefulset.go's rules (its status is set by whoever
//! plays its controller and kubelet: [`play_bundled_postgresql`] for the chart's bundled
//! database; nothing else, so a StatefulSet nobody plays hangs the sync as it would hang Argo
//! CD, reported as a failure after [`HEALTH_SECS`]). The pod runner plays the kubelet for Job
//! pods only, so Deployments never get ready pods: every other applied resource is counted
//! healthy (said in each run's log).

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
    sync_until(s, target, op, Duration::from_secs(600))
}

/// [`sync`], where a hook Job still running after `limit` hangs the sync (Argo CD's
/// controller has no sync timeout by default): the user then terminates it, which deletes
/// the running hooks (gitops-engine sync_context.go:743-766, terminateHooksPreemptively
/// :811-856) and fails the operation.
pub fn sync_until(s: &Scenario, target: &[Value], op: &Operation, limit: Duration) -> Sync {
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
        // sync_context.go:557-615: the next wave starts once this one's resources are healthy.
        for t in group.iter().filter(|t| !t.hook && t.kind == "StatefulSet") {
            if statefulset_healthy(s, &t.name) {
                out.log.push(format!("healthy {}", name(&t.key())));
            } else {
                failed.get_or_insert(format!(
                    "hung: {} not healthy after {HEALTH_SECS} s (Argo CD would wait for ever)",
                    name(&t.key())
                ));
            }
        }
        for t in group.iter().filter(|t| t.hook) {
            ran_hooks.push(t.obj.clone());
            // health_job.go for Jobs; any other hook (a ConfigMap) is done once created.
            let ok = if t.kind != "Job" {
                true
            } else if let Some(ok) = wait_job(s, &t.name, limit) {
                ok
            } else {
                let status = s.env.kubectl_ok(&[
                    "-n",
                    &s.ns,
                    "get",
                    "job",
                    &t.name,
                    "-o",
                    "jsonpath={.status}",
                ]);
                out.log.push(format!(
                    "hung {}: running after {limit:?}, status {status}",
                    name(&t.key())
                ));
                delete(s, &t.key());
                out.log
                    .push(format!("terminate: delete {}", name(&t.key())));
                out.failed = Some(format!(
                    "hung: {} still running after {limit:?}; terminated",
                    name(&t.key())
                ));
                s.note(format!("argocd model sync: {:#?}", out.log));
                return out;
            };
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

/// Waits for Job `name` to be Complete (true) or Failed (false): health_job.go's rule; None
/// when it is still running after `limit`.
fn wait_job(s: &Scenario, name: &str, limit: Duration) -> Option<bool> {
    let end = Instant::now() + limit;
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
            return Some(true);
        }
        if o.split_whitespace().any(|c| c == "Failed") {
            return Some(false);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long a StatefulSet may take to become healthy before the sync is reported hung.
pub const HEALTH_SECS: u64 = 300;

/// gitops-engine/pkg/health/health_statefulset.go:28-73: Progressing until the controller
/// observed the generation, every replica is ready and, with the (default) RollingUpdate
/// strategy, the partition's replicas are updated; never Degraded. True once Healthy.
fn statefulset_healthy(s: &Scenario, name: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(HEALTH_SECS);
    loop {
        let o = s.env.kubectl_ok(&[
            "-n",
            &s.ns,
            "get",
            "statefulset",
            name,
            "-o",
            "jsonpath={.metadata.generation} {.status.observedGeneration} {.spec.replicas} {.status.readyReplicas} {.status.updatedReplicas} {.spec.updateStrategy.rollingUpdate.partition}",
        ]);
        let n: Vec<i64> = o
            .split(' ')
            .map(|v| v.trim().parse().unwrap_or(0))
            .collect();
        let (generation, observed, replicas, ready, updated, partition) =
            (n[0], n[1], n[2], n[3], n[4], n[5]);
        if observed != 0
            && generation <= observed
            && ready >= replicas
            && updated >= replicas - partition
        {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Plays the StatefulSet controller and the kubelet for the chart's bundled PostgreSQL
/// `name`, as a database that starts slowly: once the StatefulSet exists, waits `start` and,
/// with `after`, until a container of the namespace has printed that text (read live from
/// the pod runner's container logs: e.g. a migration's failed first attempt, whatever the
/// machine's speed), then creates its user (POSTGRES_USER, the password from POSTGRES_PASSWORD's Secret) and
/// database (POSTGRES_DB) in the shared real PostgreSQL, which the pod runner's `--service`
/// rewrite makes `NAME.NAMESPACE:5432`, and sets the StatefulSet's status ready. Gives up
/// after [`HEALTH_SECS`] without a StatefulSet. Returns what it did, for the test to check.
pub fn play_bundled_postgresql(
    s: &Scenario,
    name: &str,
    start: Duration,
    after: Option<&str>,
) -> Vec<String> {
    let mut log = vec![];
    let end = Instant::now() + Duration::from_secs(HEALTH_SECS);
    let sts = loop {
        let o = s
            .env
            .kubectl(&["-n", &s.ns, "get", "statefulset", name, "-o", "json"]);
        if o.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
        }
        if Instant::now() > end {
            log.push(format!("no StatefulSet/{name} in {HEALTH_SECS} s"));
            return log;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    log.push(format!(
        "StatefulSet/{name} applied; starting for {start:?}"
    ));
    std::thread::sleep(start);
    if let Some(text) = after {
        while !live_output(s).contains(text) {
            if Instant::now() > end {
                log.push(format!(
                    "no {text:?} in the pod runner's log in {HEALTH_SECS} s"
                ));
                return log;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        log.push(format!("a container printed {text:?}"));
    }
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("{n} in the bundled PostgreSQL's env"))
            .clone()
    };
    let user = var("POSTGRES_USER")["value"].as_str().unwrap().to_owned();
    let db = var("POSTGRES_DB")["value"].as_str().unwrap().to_owned();
    let r = &var("POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"];
    let password = s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "get",
        "secret",
        r["name"].as_str().unwrap(),
        "-o",
        &format!(
            "go-template={{{{index .data \"{}\" | base64decode}}}}",
            r["key"].as_str().unwrap()
        ),
    ]);
    for v in [&user, &db, &password] {
        assert!(
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "a plain identifier: {v}"
        );
    }
    s.env.psql_ok(
        "postgres",
        &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"),
    );
    s.env.psql_ok(
        "postgres",
        &format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""),
    );
    let generation = sts["metadata"]["generation"].as_i64().unwrap();
    s.env.kubectl_ok(&[
        "-n",
        &s.ns,
        "patch",
        "statefulset",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"observedGeneration":{generation},"replicas":1,"readyReplicas":1,"currentReplicas":1,"updatedReplicas":1,"availableReplicas":1,"currentRevision":"r1","updateRevision":"r1"}}}}"#
        ),
    ]);
    log.push(format!(
        "database {db} (user {user}) created; StatefulSet/{name} status ready"
    ));
    log
}

/// What the namespace's containers printed so far: the pod runner writes each container's
/// output to `pods/NAMESPACE/POD/containers/NAME/log` while it runs.
fn live_output(s: &Scenario) -> String {
    let mut text = String::new();
    let pods = s.env.dir.join("pods").join(&s.ns);
    for pod in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        let containers = pod.path().join("containers");
        for c in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            text.push_str(&std::fs::read_to_string(c.path().join("log")).unwrap_or_default());
        }
    }
    text
}
