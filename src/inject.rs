//! Inject: the objects lockstep adds and the edits it makes to the chart's own.
//!
//! From the located API workload, the profile and the gate's admission, this
//! module builds the migration Jobs (exact API image, final env, volumes and pod
//! settings), the in-cluster gate Job and the release record, and decides the
//! edits to existing documents: drop the chart's own migration hooks, turn
//! migrate-on-start off where the database is shared, and (in the `sync` phase)
//! move first-install dependencies to an earlier wave.
//!
//! The protocol (issue 17): the gate is the first hook of the first phase in both
//! phases, so nothing of the release is applied before it passes; every step Job runs
//! through `templates/step.sh`, which reads the record (a migration of the recorded
//! release and image finishes at once, a one-time step the record lists does not run
//! again); the record is a pair of hook ConfigMaps written after the last step, so only
//! a sync whose steps all succeeded writes it, and nothing but such a sync changes it.
//!
//! It owns hook annotations, waves, names and labels. It must not write output
//! (`emit` does) or decide whether an upgrade is allowed (`gate` does).

use crate::gate::{line_of, Admission};
use crate::locate::{self, ApiWorkload, Names};
use crate::profile::{Entrypoint, Migration, Profile, ResourceMatch};
use crate::stream::Stream;
use crate::template::{self, Templates};
use anyhow::{bail, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, Volume, VolumeMount};
use serde_json::json;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// When the migration Jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Argo CD PreSync / Helm pre-install,pre-upgrade: before anything changes.
    #[default]
    Presync,
    /// Argo CD Sync hooks at negative waves / Helm post-install,pre-upgrade, with
    /// the render's Secrets, ConfigMaps and ServiceAccounts moved earlier:
    /// first installs and upgrades both work.
    Sync,
}

/// Settings of one injection that do not come from the profile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub release: String,
    pub namespace: Option<String>,
    pub chart_name: String,
    pub phase: Phase,
    /// Image of the gate step (default: the API image, which must have `sh`).
    pub gate_image: Option<String>,
    /// For downgrades: the image of the deployed (newer) release.
    pub deployed_image: Option<String>,
    /// For downgrades: target revision per migration name.
    pub downgrade_revisions: BTreeMap<String, String>,
    /// Run the migrations (and downgrades) even when the record says they are done.
    pub force_migrations: bool,
}

/// What happens to an existing document.
#[derive(Debug, Clone)]
pub enum Edit {
    Drop,
    Replace(Value),
}

/// The result: edits by document index, and new documents in emission order.
#[derive(Debug, Default)]
pub struct Injection {
    pub edits: BTreeMap<usize, Edit>,
    pub added: Vec<String>,
}

/// Why no Job belongs, when the profile says so (e.g. SQLite).
pub fn skip_reason(profile: &Profile, api: &ApiWorkload) -> Option<String> {
    for env in &profile.database.env {
        if let Some(url) = api.env_literal(env) {
            for rule in &profile.database.skip {
                if url.starts_with(&rule.value_prefix) {
                    return Some(format!(
                        "{} sets {env} to a {} URL: {}",
                        api.describe(),
                        rule.value_prefix,
                        rule.reason
                    ));
                }
            }
        }
    }
    None
}

pub fn inject(
    stream: &Stream,
    profile: &Profile,
    api: &ApiWorkload,
    admission: &Admission,
    templates: &Templates,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Injection> {
    let names = Names {
        release: Some(&opts.release),
        charts: &profile.charts,
    };
    check_required_env(stream, profile, api, admission, notes)?;
    check_database_env(stream, profile, api, notes);
    let mut out = Injection::default();
    drop_chart_hooks(stream, profile, names, &mut out, notes)?;
    warn_staying_migrations(stream, profile, names, &out, notes)?;
    migrate_on_start_off(stream, profile, &mut out, notes)?;

    let base = profile.job.wave;
    let first_wave = migrations_wave(stream, profile, names, notes)?;
    let namespace = opts.namespace.clone().or_else(|| api.namespace.clone());
    let target = admission.target.to_string();

    let record_name = format!("{}-lockstep", opts.release);

    // The gate runs first of all: a PreSync / pre-install,pre-upgrade hook in the lowest
    // wave of that phase, in both phases, so nothing of the release is applied before it
    // passes. Argo CD runs PreSync before any Sync-phase object, lowest wave first
    // (gitops-engine sync_tasks.go:86-111, syncTasks.Less; sync_context.go:678-682);
    // Helm runs pre-install/pre-upgrade hooks by weight before the release's resources
    // (pkg/action/install.go:510-519, upgrade.go:460-469, hooks.go:172-177).
    let gate_wave = presync_floor(stream, &out.edits)?
        .map_or(base.min(first_wave), |f| f.min(base).min(first_wave))
        - 1;
    let mut jobs: Vec<(String, serde_json::Value)> = Vec::new();
    let gate_ctx = gate_job(api, admission, opts, &namespace, &record_name, gate_wave);
    jobs.push(("gate".into(), gate_ctx));

    if admission.downgrade && opts.deployed_image.is_none() {
        bail!("a downgrade Job must run the deployed, newer image (only it knows the newer revisions): record it in lockstep.lock (deployed.image) or pass --from-image IMAGE");
    }
    if admission.downgrade {
        notes.push(format!(
            "WARNING: downgrading {} from {} to {}: take backups of every database before this sync; downgrades can lose data",
            opts.release,
            admission.from.as_ref().map(ToString::to_string).unwrap_or_default(),
            target
        ));
    }
    // Migrations (or downgrades), then one-time steps of the steps crossed.
    let mut steps: Vec<Planned> = Vec::new();
    let mut one_time_names: Vec<String> = Vec::new();
    if admission.downgrade {
        let missing: Vec<&str> = profile
            .migrations
            .iter()
            .filter(|m| !opts.downgrade_revisions.contains_key(&m.name))
            .map(|m| m.name.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "a downgrade needs the target revision of every database: missing {}. Pass --downgrade-revision DB=REVISION for each (find them as the rollback guide says: the newest file under each migrations/versions in the target release's image)",
                missing.join(", ")
            );
        }
        for m in profile.migrations.iter().rev() {
            if m.downgrade.is_empty() {
                bail!("the {} profile has no downgrade command for {}: it cannot be rolled back by lockstep; restore a backup", profile.name, m.name);
            }
            let rev = &opts.downgrade_revisions[&m.name];
            let cmd = m
                .downgrade
                .iter()
                .map(|a| a.replace("{revision}", rev))
                .collect();
            steps.push(Planned {
                suffix: format!("downgrade-{}", m.name),
                kind: "downgrade",
                step: m,
                command: cmd,
                first_install: vec![],
                post: false,
            });
        }
    } else {
        for m in &profile.migrations {
            steps.push(Planned {
                suffix: format!("migrate-{}", m.name),
                kind: "migration",
                step: m,
                command: m.command.clone(),
                first_install: m.first_install.clone(),
                post: false,
            });
        }
        for step in &admission.steps {
            for one in step.info.iter().flat_map(|i| &i.one_time) {
                notes.push(format!(
                    "{} → {}: one-time step {} runs after the migrations, once per database (the release record lists it when done): {}",
                    step.from_line, step.to_line, one.name, one.why
                ));
                one_time_names.push(one.name.clone());
                steps.push(Planned {
                    suffix: one.name.clone(),
                    kind: "one-time",
                    step: profile
                        .migrations
                        .first()
                        .expect("checked: one migration at least"),
                    command: one.command.clone(),
                    first_install: vec![],
                    post: false,
                });
            }
        }
        for m in &profile.post_rollout {
            steps.push(Planned {
                suffix: m.name.clone(),
                kind: "post-rollout",
                step: m,
                command: m.command.clone(),
                first_install: m.first_install.clone(),
                post: true,
            });
        }
    }
    // One-time steps run where the first migration runs, with its settings but
    // their own command.
    let mut deps = BTreeSet::new();
    let mut contexts = Vec::new();
    // With no record (a first install), a migration is retried while a bundled database
    // may still be starting: every RETRY_SECONDS for about a third of the deadline.
    let first_install_attempts = 1 + profile.job.active_deadline_seconds / (3 * RETRY_SECONDS);
    let (mut pre_n, mut post_n) = (0i32, 0i32);
    for p in &steps {
        let source = source_of(stream, api, p.step, names)?;
        let (mut volumes, mut mounts) =
            portable_volumes(&source.pod, &source.container.volume_mounts, notes);
        deps.extend(dependencies(
            stream,
            &source.pod,
            &source.container,
            &volumes,
            opts,
        ));
        let image = if admission.downgrade {
            opts.deployed_image.clone().expect("checked above")
        } else {
            image_of(p.step, &source, api, &admission.target)?
        };
        let (command, args) = argv(profile, p, &source, notes);
        // The source container's final env: migrate-on-start as the edited workloads
        // have it (off wherever the database is shared).
        let mut env = merge_env(
            switch_off(profile, source.container.env.clone().unwrap_or_default()),
            &p.step.env,
        );
        let mut env_from = source.container.env_from.clone().unwrap_or_default();
        env_from.extend(p.step.env_from.iter().cloned());
        for v in &p.step.volumes {
            if !volumes.iter().any(|x| x.name == v.name) {
                volumes.push(v.clone());
            }
        }
        mounts.extend(p.step.volume_mounts.iter().cloned());
        // Every step reads the record: done already, first install or upgrade, after
        // the rollout (templates/step.sh).
        let mut step_env = vec![
            ("LOCKSTEP_STEP", p.kind.to_owned()),
            ("LOCKSTEP_STEP_NAME", p.suffix.clone()),
            ("LOCKSTEP_TARGET", target.clone()),
            ("LOCKSTEP_IMAGE", api.image.full.clone()),
            ("LOCKSTEP_RECORD", record_name.clone()),
            ("LOCKSTEP_STATE_DIR", STATE_DIR.to_owned()),
            ("LOCKSTEP_BACKUP_DIR", BACKUP_DIR.to_owned()),
        ];
        if !p.post {
            step_env.extend([
                ("LOCKSTEP_FORCE", opts.force_migrations.to_string()),
                (
                    "LOCKSTEP_FIRST_INSTALL_ATTEMPTS",
                    first_install_attempts.to_string(),
                ),
                ("LOCKSTEP_RETRY_SECONDS", RETRY_SECONDS.to_string()),
            ]);
        }
        let step_env: Vec<EnvVar> = step_env
            .into_iter()
            .map(|(n, v)| EnvVar {
                name: n.into(),
                value: Some(v),
                value_from: None,
            })
            .collect();
        env = merge_env(env, &step_env);
        let (record_vols, record_mounts) = record_volumes(&record_name);
        volumes.extend(record_vols);
        mounts.extend(record_mounts);
        let wave = if p.post {
            post_n += 1;
            post_n - 1
        } else {
            pre_n += 1;
            first_wave + pre_n - 1
        };
        contexts.push((p, wave, json!({
            "name": job_name(&opts.release, &p.suffix),
            "namespace": namespace,
            "labels": labels(opts, &target, if p.post { "post-rollout" } else { "database-migration" }, Some(&p.suffix)),
            "activeDeadlineSeconds": profile.job.active_deadline_seconds,
            "backoffLimit": profile.job.backoff_limit,
            "podLabels": labels(opts, &target, if p.post { "post-rollout" } else { "database-migration" }, Some(&p.suffix)),
            "podAnnotations": pod_annotations(&profile.job.pod_annotations),
            "pod": pod_settings(&source.pod, true),
            "volumes": (!volumes.is_empty()).then_some(&volumes),
            "containerName": p.suffix,
            "image": image,
            "imagePullPolicy": source.container.image_pull_policy,
            "command": command,
            "args": args,
            "env": (!env.is_empty()).then_some(&env),
            "envFrom": (!env_from.is_empty()).then_some(&env_from),
            "volumeMounts": (!mounts.is_empty()).then_some(&mounts),
            "workingDir": source.container.working_dir,
            "resources": source.container.resources,
            "securityContext": source.container.security_context,
        })));
    }
    // Only a render with no known deployed release may be a first install.
    let dep_list = deps
        .iter()
        .map(|(k, n)| format!("{k}/{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let dep_note = (!deps.is_empty() && admission.from.is_none()).then(|| {
        format!(
            "{dep_list} from this same render; in the presync phase a first install waits for objects not yet applied (for first installs use the sync phase: --phase sync, or `phase: sync` in lockstep.yaml or the Argo CD parameter)"
        )
    });
    let last_wave = contexts
        .iter()
        .filter(|(p, _, _)| !p.post)
        .map(|(_, w, _)| *w)
        .max()
        .unwrap_or(first_wave - 1);
    for (p, wave, mut ctx) in contexts {
        let mut annotations = BTreeMap::new();
        if let (Phase::Presync, Some(n), false) = (opts.phase, &dep_note, p.post) {
            annotations.insert(
                "lockstep.dev/first-install".to_owned(),
                format!("needs {n}"),
            );
        }
        ctx["annotations"] = json!(if p.post {
            post_annotations(wave, annotations)
        } else {
            hook_annotations(opts.phase, wave, annotations)
        });
        jobs.push((p.suffix.clone(), ctx));
    }
    match opts.phase {
        Phase::Presync => {
            if let Some(n) = &dep_note {
                notes.push(format!("first install: the migration Jobs need {n}"));
            } else if !deps.is_empty() {
                // argo-cd #9891; helm pkg/action/upgrade.go:460-469 (pre-upgrade hooks
                // run before the release's resources are updated).
                notes.push(format!(
                    "presync phase: the migration Jobs read the live {dep_list} of the deployed release, not this render's (PreSync and pre-upgrade hooks run before any of the release's objects is applied); a change to them in this render reaches the migrations on the next sync"
                ));
            }
        }
        Phase::Sync => {
            let mut early = deps.clone();
            early.extend(bundled_database(stream, profile)?);
            move_earlier(stream, &early, base - 2, &mut out, notes)?;
        }
    }
    for (suffix, ctx) in jobs {
        out.added.push(templates.document::<Job>(
            "job",
            &ctx,
            &format!("lockstep/job.yaml.hbs ({suffix})"),
        )?);
    }
    // The release record, twice, after the last migration and one-time step: only a sync
    // whose every step succeeded writes it (Argo CD runs a wave only after the previous
    // one's hooks completed, gitops-engine sync_context.go:557-650; Helm runs hooks one by
    // one and stops at the first failure, pkg/action/hooks.go:76-148).
    for (i, name) in [record_name.clone(), format!("{record_name}-backup")]
        .into_iter()
        .enumerate()
    {
        out.added.push(templates.document::<ConfigMap>(
            "record",
            &json!({
                "name": name,
                "namespace": namespace,
                "labels": labels(opts, &target, "release-record", None),
                "annotations": record_annotations(opts.phase, last_wave + 1 + i as i32),
                "release": target,
                "line": line_of(&admission.target),
                "image": api.image.full,
                "chart": opts.chart_name,
                "profile": profile.name,
                "oneTime": one_time_names.join(" "),
            }),
            "lockstep/record-configmap.yaml.hbs",
        )?);
    }
    Ok(out)
}

/// Where the gate and the steps mount the release record and its backup.
const STATE_DIR: &str = "/lockstep/state";
const BACKUP_DIR: &str = "/lockstep/state-backup";
/// The pause between a first install's migration attempts.
const RETRY_SECONDS: i64 = 10;

/// The record and its backup, mounted optionally and read-only (no API access, no RBAC):
/// a first install has neither.
fn record_volumes(record: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (volume, name, path) in [
        ("lockstep-state", record.to_owned(), STATE_DIR),
        (
            "lockstep-state-backup",
            format!("{record}-backup"),
            BACKUP_DIR,
        ),
    ] {
        volumes.push(
            serde_json::from_value(
                json!({"name": volume, "configMap": {"name": name, "optional": true}}),
            )
            .expect("a valid volume"),
        );
        mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: path.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    (volumes, mounts)
}

/// The record's hook annotations: written in the phase of the migrations, after them
/// (`wave`), and deleted only to be created again (BeforeHookCreation: Helm 3 fails to
/// create a hook that exists, pkg/action/hooks.go:77-108; Argo CD's default policy is the
/// same, gitops-engine hook/delete_policy.go:22-24). A hook is never pruned
/// (sync_context.go:993-996 leaves hooks out of the resource tasks), never re-applied by
/// a Rollback or a selective sync (controller/sync.go:386 skips hooks), and is not part of
/// a Helm release (`helm uninstall` deletes the release manifest only,
/// pkg/action/uninstall.go:320-333; `helm rollback` re-applies it and runs only rollback
/// hooks). `Delete=false` and `keep` keep it when the app is deleted
/// (controller/appcontroller.go:1255-1264); `keep` also when an older release listed it
/// as a resource (pkg/kube/client.go:657-683 reads it from the live object).
fn record_annotations(phase: Phase, wave: i32) -> BTreeMap<String, String> {
    let (argo, helm) = phase_hooks(phase);
    [
        ("argocd.argoproj.io/hook", argo),
        (
            "argocd.argoproj.io/hook-delete-policy",
            "BeforeHookCreation",
        ),
        (
            "argocd.argoproj.io/sync-options",
            "Prune=false,Delete=false",
        ),
        ("helm.sh/hook", helm),
        ("helm.sh/hook-delete-policy", "before-hook-creation"),
        ("helm.sh/resource-policy", "keep"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([
        ("argocd.argoproj.io/sync-wave".to_owned(), wave.to_string()),
        ("helm.sh/hook-weight".to_owned(), wave.to_string()),
    ])
    .collect()
}

/// The profile's pod annotations, with every lockstep Job kept out of an Istio sidecar
/// (without native sidecars a Job's pod never completes while the sidecar runs, and Argo
/// CD waits for JobComplete: gitops-engine health/health_job.go).
fn pod_annotations(profile: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = profile.clone();
    a.insert("sidecar.istio.io/inject".to_owned(), "false".to_owned());
    a
}

/// A step's env as the edited workloads run it: the migrate-on-start switch (and its
/// aliases) off where it is set, and added where the container has a database URL.
fn switch_off(profile: &Profile, mut env: Vec<EnvVar>) -> Vec<EnvVar> {
    let Some(mos) = &profile.migrate_on_start else {
        return env;
    };
    let mut found = false;
    for e in env.iter_mut() {
        if e.name == mos.env || mos.aliases.contains(&e.name) {
            found = true;
            e.value = Some(mos.off.clone());
            e.value_from = None;
        }
    }
    if !found && env.iter().any(|e| profile.database.env.contains(&e.name)) {
        env.push(EnvVar {
            name: mos.env.clone(),
            value: Some(mos.off.clone()),
            value_from: None,
        });
    }
    env
}

/// The lowest wave (or Helm weight) of the chart's own hooks that run where the gate
/// does (Argo CD PreSync; Helm pre-install or pre-upgrade), documents dropped left out.
fn presync_floor(stream: &Stream, edits: &BTreeMap<usize, Edit>) -> Result<Option<i32>> {
    let mut floor: Option<i32> = None;
    for (i, doc) in stream.docs.iter().enumerate() {
        if doc.head.is_none()
            || !doc.raw.contains("hook")
            || matches!(edits.get(&i), Some(Edit::Drop))
        {
            continue;
        }
        let v = doc.value()?;
        let ann = |k: &str| {
            v.get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let list = |k: &str| -> Vec<String> {
            ann(k)
                .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
                .unwrap_or_default()
        };
        let helm_pre = list("helm.sh/hook")
            .iter()
            .any(|t| t == "pre-install" || t == "pre-upgrade");
        // gitops-engine hook/hook.go:38-53: Helm's types count only without Argo's.
        let argo = list("argocd.argoproj.io/hook");
        let argo_pre = if argo.iter().any(|t| !t.is_empty()) {
            argo.iter().any(|t| t == "PreSync")
        } else {
            helm_pre
        };
        let weight = ann("helm.sh/hook-weight").and_then(|w| w.trim().parse::<i32>().ok());
        // syncwaves/waves.go:12-21: the sync-wave, else the Helm weight.
        let wave = ann("argocd.argoproj.io/sync-wave")
            .and_then(|w| w.trim().parse::<i32>().ok())
            .or(weight);
        for (runs_first, w) in [(argo_pre, wave), (helm_pre, weight)] {
            if runs_first {
                let w = w.unwrap_or(0);
                floor = Some(floor.map_or(w, |f| f.min(w)));
            }
        }
    }
    Ok(floor)
}

fn phase_hooks(phase: Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Presync => ("PreSync", "pre-install,pre-upgrade"),
        Phase::Sync => ("Sync", "post-install,pre-upgrade"),
    }
}

/// One Job to emit: a migration, a downgrade, a one-time or a post-rollout step.
struct Planned<'p> {
    suffix: String,
    /// migration, downgrade, one-time or post-rollout (`LOCKSTEP_STEP` of step.sh).
    kind: &'static str,
    /// Where it runs and with what (the profile's step; a one-time step runs as the
    /// first migration does).
    step: &'p Migration,
    command: Vec<String>,
    first_install: Vec<String>,
    post: bool,
}

/// The container a step runs in: the API's, or the one `runs.workload` names.
struct Source {
    pod: PodSpec,
    container: Container,
    image: String,
}

fn source_of(stream: &Stream, api: &ApiWorkload, step: &Migration, names: Names) -> Result<Source> {
    let Some(r) = &step.runs.workload else {
        return Ok(Source {
            pod: api.pod.clone(),
            container: api.container.clone(),
            image: api.image.full.clone(),
        });
    };
    let mut seen = Vec::new();
    for doc in &stream.docs {
        let Some(h) = &doc.head else { continue };
        if h.kind != r.kind.as_str() {
            continue;
        }
        seen.push(h.name.to_string());
        if !names.matches(&r.name, &h.name) {
            continue;
        }
        let pod = locate::pod_spec(doc)?;
        let all: Vec<&Container> = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .collect();
        let container = match &r.container {
            Some(c) => all.iter().find(|x| x.name == *c).copied(),
            None if pod.containers.len() == 1 => pod.containers.first(),
            None => None,
        };
        let Some(container) = container.cloned() else {
            bail!(
                "the {} step runs in {} container {:?}, which it does not have (containers: {}). Fix `runs.workload.container` in the profile",
                step.name,
                doc.describe(),
                r.container.as_deref().unwrap_or("(the only one)"),
                all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        };
        let image = container.image.clone().unwrap_or_default();
        if image.is_empty() {
            bail!(
                "{} container {} has no image",
                doc.describe(),
                container.name
            );
        }
        return Ok(Source {
            pod,
            container,
            image,
        });
    }
    bail!(
        "the {} step runs in {} {}, which this render does not have ({} in the render: {}). Enable it in the chart's values, or fix `runs.workload` in the profile",
        step.name,
        r.kind,
        r.name,
        r.kind,
        if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
    )
}

/// The step's image: the source container's, or `runs.image` with the API image's
/// parts and the release put in.
fn image_of(
    step: &Migration,
    source: &Source,
    api: &ApiWorkload,
    target: &semver::Version,
) -> Result<String> {
    let Some(expr) = &step.runs.image else {
        return Ok(source.image.clone());
    };
    let full = &api.image.full;
    let no_digest = full.split('@').next().unwrap_or(full);
    let repository = match &api.image.tag {
        Some(t) => no_digest[..no_digest.len() - t.len() - 1].to_owned(),
        None => no_digest.to_owned(),
    };
    if expr.contains("{api.tag}") && api.image.tag.is_none() {
        bail!(
            "the {} step's image {expr:?} uses the API image's tag, but {full:?} has none: pin a tag in the chart's values",
            step.name
        );
    }
    if expr.contains("{api.digest}") && api.image.digest.is_none() {
        bail!(
            "the {} step's image {expr:?} uses the API image's digest, but {full:?} has none",
            step.name
        );
    }
    Ok(expr
        .replace("{api.repository}", &repository)
        .replace("{api.tag}", api.image.tag.as_deref().unwrap_or(""))
        .replace("{api.digest}", api.image.digest.as_deref().unwrap_or(""))
        .replace("{version}", &target.to_string()))
}

/// `command` and `args` of a step's container. `keep` runs the step through the
/// image's entrypoint when the source container does (no `command`, or the
/// profile's `workload.entrypoint`); a first-install choice or a post-rollout
/// check wraps the argv in `templates/step.sh`.
fn argv(
    profile: &Profile,
    p: &Planned,
    source: &Source,
    notes: &mut Vec<String>,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let mut run = if p.post {
        let mut v: Vec<String> = vec![
            "/bin/sh".into(),
            "-c".into(),
            template::script(template::STEP_SCRIPT),
            "lockstep-step".into(),
            "post".into(),
        ];
        v.extend(p.command.iter().cloned());
        v
    } else {
        let mut v: Vec<String> = vec![
            "/bin/sh".into(),
            "-c".into(),
            template::script(template::STEP_SCRIPT),
            "lockstep-step".into(),
            "run".into(),
            p.first_install.len().to_string(),
        ];
        v.extend(p.first_install.iter().cloned());
        v.extend(p.command.iter().cloned());
        v
    };
    if p.step.entrypoint == Entrypoint::Replace {
        return (Some(run), None);
    }
    match &source.container.command {
        None => (None, Some(run)),
        Some(c) if c.is_empty() => (None, Some(run)),
        Some(c) if *c == profile.workload.entrypoint => (Some(c.clone()), Some(run)),
        Some(c) => {
            notes.push(format!(
                "the {} step keeps the image's entrypoint, but container {} replaces it ({}): the step replaces it too",
                p.suffix,
                source.container.name,
                c.join(" ")
            ));
            (Some(std::mem::take(&mut run)), None)
        }
    }
}

/// `base` with `extra` set: a name in both takes `extra`'s entry, in `base`'s place.
fn merge_env(mut base: Vec<EnvVar>, extra: &[EnvVar]) -> Vec<EnvVar> {
    for e in extra {
        match base.iter_mut().find(|b| b.name == e.name) {
            Some(b) => *b = e.clone(),
            None => base.push(e.clone()),
        }
    }
    base
}

/// The wave of the first migration: the profile's, or one after the latest chart
/// hook that stays and that the profile says the migrations follow (`job.after`).
fn migrations_wave(
    stream: &Stream,
    profile: &Profile,
    names: Names,
    notes: &mut Vec<String>,
) -> Result<i32> {
    let mut wave = profile.job.wave;
    for doc in &stream.docs {
        let Some(h) = &doc.head else { continue };
        if !profile.job.after.iter().any(|m| m.kind == h.kind.as_ref()) {
            continue;
        }
        let v = doc.value()?;
        if !profile
            .job
            .after
            .iter()
            .any(|m| matches(m, &h.name, v, names))
        {
            continue;
        }
        let ann = v.get("metadata").and_then(|m| m.get("annotations"));
        let weight = ["helm.sh/hook-weight", "argocd.argoproj.io/sync-wave"]
            .iter()
            .find_map(|k| ann.and_then(|a| a.get(*k)))
            .and_then(|w| match w {
                Value::String(s) => s.trim().parse::<i32>().ok(),
                Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                _ => None,
            })
            .unwrap_or(0);
        if weight + 1 > wave {
            wave = weight + 1;
            notes.push(format!(
                "the migrations run at wave {wave}, after {} (wave {weight}), which they need",
                doc.describe()
            ));
        }
    }
    Ok(wave)
}

/// Post-rollout hooks: Argo CD PostSync, Helm post-install,post-upgrade.
fn post_annotations(wave: i32, extra: BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations("PostSync", "post-install,post-upgrade", wave, extra)
}

/// The gate step's environment: what `templates/gate.sh` decides with.
pub fn gate_env(admission: &Admission, record: &str) -> [(&'static str, String); 8] {
    [
        ("LOCKSTEP_TARGET", admission.target.to_string()),
        ("LOCKSTEP_FROM_RANGES", admission.script_ranges()),
        ("LOCKSTEP_NEWEST", admission.newest.to_string()),
        ("LOCKSTEP_ALLOWED", admission.describe_ranges()),
        (
            "LOCKSTEP_DOWNGRADE_FROM",
            admission
                .from
                .as_ref()
                .filter(|_| admission.downgrade)
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        ("LOCKSTEP_RECORD", record.to_owned()),
        ("LOCKSTEP_STATE_DIR", STATE_DIR.to_owned()),
        ("LOCKSTEP_BACKUP_DIR", BACKUP_DIR.to_owned()),
    ]
}

/// The gate Job's deadline (it reads two small files).
pub const GATE_DEADLINE_SECONDS: i64 = 300;

fn gate_job(
    api: &ApiWorkload,
    admission: &Admission,
    opts: &Options,
    namespace: &Option<String>,
    record: &str,
    wave: i32,
) -> serde_json::Value {
    let target = admission.target.to_string();
    let env = gate_env(admission, record).map(|(n, v)| json!({"name": n, "value": v}));
    let mut pod = pod_settings(&api.pod, false);
    pod["automountServiceAccountToken"] = json!(false);
    let (volumes, mounts) = record_volumes(record);
    json!({
        "name": job_name(&opts.release, "lockstep-gate"),
        "namespace": namespace,
        "labels": labels(opts, &target, "upgrade-gate", None),
        // In both phases: before anything of the release is applied.
        "annotations": hook_annotations(Phase::Presync, wave, BTreeMap::new()),
        "activeDeadlineSeconds": GATE_DEADLINE_SECONDS,
        "backoffLimit": 0,
        "podLabels": labels(opts, &target, "upgrade-gate", None),
        "podAnnotations": pod_annotations(&BTreeMap::new()),
        "pod": pod,
        "volumes": volumes,
        "containerName": "gate",
        "image": opts.gate_image.clone().unwrap_or_else(|| api.image.full.clone()),
        "imagePullPolicy": api.container.image_pull_policy,
        "command": ["/bin/sh", "-c", template::script(template::GATE_SCRIPT)],
        "args": null,
        "env": env,
        "envFrom": null,
        "volumeMounts": mounts,
        "workingDir": null,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": api.container.security_context,
    })
}

/// Pod-level settings copied from the API pod. The gate needs no service account.
fn pod_settings(pod: &PodSpec, with_service_account: bool) -> serde_json::Value {
    json!({
        "serviceAccountName": if with_service_account { pod.service_account_name.clone() } else { None },
        "automountServiceAccountToken": pod.automount_service_account_token,
        "imagePullSecrets": pod.image_pull_secrets,
        "securityContext": pod.security_context,
        "nodeSelector": pod.node_selector,
        "tolerations": pod.tolerations,
        "affinity": pod.affinity,
    })
}

fn hook_annotations(
    phase: Phase,
    wave: i32,
    extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let (argo, helm) = phase_hooks(phase);
    annotations(argo, helm, wave, extra)
}

/// The hook annotations of both tools, with explicit waves and delete policies.
fn annotations(
    argo: &str,
    helm: &str,
    wave: i32,
    mut extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for (k, v) in [
        ("argocd.argoproj.io/hook", argo),
        (
            "argocd.argoproj.io/hook-delete-policy",
            "BeforeHookCreation,HookSucceeded",
        ),
        ("helm.sh/hook", helm),
        (
            "helm.sh/hook-delete-policy",
            "before-hook-creation,hook-succeeded",
        ),
        // Helm prints a failed hook's logs (the gate's reason) with the error
        // (pkg/action/hooks.go:126-130, outputLogsByPolicy).
        ("helm.sh/hook-output-log-policy", "hook-failed"),
    ] {
        extra.insert(k.to_owned(), v.to_owned());
    }
    extra.insert("argocd.argoproj.io/sync-wave".to_owned(), wave.to_string());
    extra.insert("helm.sh/hook-weight".to_owned(), wave.to_string());
    extra
}

fn labels(
    opts: &Options,
    version: &str,
    component: &str,
    migration: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("app.kubernetes.io/name".into(), opts.chart_name.clone());
    l.insert("app.kubernetes.io/instance".into(), opts.release.clone());
    l.insert("app.kubernetes.io/version".into(), label_value(version));
    l.insert("app.kubernetes.io/component".into(), component.into());
    l.insert("app.kubernetes.io/part-of".into(), opts.chart_name.clone());
    l.insert("app.kubernetes.io/managed-by".into(), "lockstep".into());
    if let Some(m) = migration {
        l.insert("lockstep.dev/migration".into(), m.into());
    }
    l
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `<release>-<suffix>`, a DNS-1123 label of at most 63 characters; a long
/// release is shortened and made unique with a hash of the full name.
pub fn job_name(release: &str, suffix: &str) -> String {
    let full = format!("{release}-{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = format!("{:08x}", fnv1a(&full));
    // Profiles bound suffixes (profile::MAX_STEP_NAME); saturating all the same, so a
    // longer one gives a name Kubernetes refuses, not a panic.
    let keep = 63usize.saturating_sub(suffix.len() + hash.len() + 2);
    let short = release[..keep.min(release.len())].trim_end_matches('-');
    format!("{short}-{hash}-{suffix}")
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    })
}

/// Volumes a Job can take along (secret, configMap, projected, emptyDir) and the
/// API container's mounts of them; PVC and other mounts stay behind, with a note.
fn portable_volumes(
    pod: &PodSpec,
    mounts: &Option<Vec<VolumeMount>>,
    notes: &mut Vec<String>,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let all = pod.volumes.clone().unwrap_or_default();
    let mut vols = Vec::new();
    let mut keep = Vec::new();
    for m in mounts.iter().flatten() {
        match all.iter().find(|v| v.name == m.name) {
            Some(v)
                if v.secret.is_some()
                    || v.config_map.is_some()
                    || v.projected.is_some()
                    || v.empty_dir.is_some() =>
            {
                if !vols.iter().any(|x: &Volume| x.name == v.name) {
                    vols.push(v.clone());
                }
                keep.push(m.clone());
            }
            Some(v) => {
                let what = if v.persistent_volume_claim.is_some() {
                    "a PersistentVolumeClaim"
                } else {
                    "a volume kind a Job should not share"
                };
                notes.push(format!(
                    "the migration Jobs do not mount {} at {} ({what}); a migration must not depend on a pod's own storage",
                    m.name, m.mount_path
                ));
            }
            None => {}
        }
    }
    (vols, keep)
}

/// Secrets, ConfigMaps and ServiceAccounts the Job needs that this same render creates.
fn dependencies(
    stream: &Stream,
    pod: &PodSpec,
    c: &k8s_openapi::api::core::v1::Container,
    volumes: &[Volume],
    opts: &Options,
) -> BTreeSet<(String, String)> {
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut add = |k: &str, n: &Option<String>| {
        if let Some(n) = n {
            wanted.insert((k.to_owned(), n.clone()));
        }
    };
    for e in c.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            add(
                "Secret",
                &from.secret_key_ref.as_ref().map(|r| r.name.clone()),
            );
            add(
                "ConfigMap",
                &from.config_map_key_ref.as_ref().map(|r| r.name.clone()),
            );
        }
    }
    for e in c.env_from.iter().flatten() {
        add("Secret", &e.secret_ref.as_ref().map(|r| r.name.clone()));
        add(
            "ConfigMap",
            &e.config_map_ref.as_ref().map(|r| r.name.clone()),
        );
    }
    for v in volumes {
        add(
            "Secret",
            &v.secret.as_ref().and_then(|s| s.secret_name.clone()),
        );
        add("ConfigMap", &v.config_map.as_ref().map(|s| s.name.clone()));
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            add("Secret", &p.secret.as_ref().map(|s| s.name.clone()));
            add("ConfigMap", &p.config_map.as_ref().map(|s| s.name.clone()));
        }
    }
    add("ServiceAccount", &pod.service_account_name);
    for s in pod.image_pull_secrets.iter().flatten() {
        add("Secret", &Some(s.name.clone()));
    }
    let ns = opts.namespace.as_deref();
    stream
        .docs
        .iter()
        .filter_map(|d| d.head.as_ref())
        .filter(|h| h.namespace.is_none() || h.namespace.as_deref() == ns || ns.is_none())
        .filter(|h| wanted.iter().any(|(k, n)| *k == h.kind && *n == h.name))
        .map(|h| (h.kind.to_string(), h.name.to_string()))
        .collect()
}

/// The resources of a database the chart bundles (profile `database.bundled`).
fn bundled_database(stream: &Stream, profile: &Profile) -> Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for doc in &stream.docs {
        let Some(h) = &doc.head else { continue };
        let rules = &profile.database.bundled;
        if !rules.iter().any(|m| m.kind == h.kind) {
            continue;
        }
        let v = doc.value()?;
        let names = Names {
            release: None,
            charts: &profile.charts,
        };
        if rules
            .iter()
            .any(|m| m.kind == h.kind.as_ref() && matches(m, &h.name, v, names))
        {
            out.insert((h.kind.to_string(), h.name.to_string()));
        }
    }
    Ok(out)
}

/// `sync` phase: the dependencies go to a wave before the Jobs.
fn move_earlier(
    stream: &Stream,
    deps: &BTreeSet<(String, String)>,
    wave: i32,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        let is_dep = deps.iter().any(|(k, n)| *k == h.kind && *n == h.name);
        if !is_dep || out.edits.contains_key(&i) {
            continue;
        }
        let mut v = doc.value()?.clone();
        let meta = v
            .as_mapping_mut()
            .and_then(|m| m.get_mut("metadata"))
            .and_then(Value::as_mapping_mut);
        let Some(meta) = meta else { continue };
        let ann = meta
            .entry("annotations".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        if !ann.is_mapping() {
            *ann = Value::Mapping(Default::default());
        }
        ann.as_mapping_mut().expect("just made a mapping").insert(
            "argocd.argoproj.io/sync-wave".into(),
            wave.to_string().into(),
        );
        notes.push(format!(
            "sync phase: {} moves to wave {wave}, before the migration Jobs",
            doc.describe()
        ));
        out.edits.insert(i, Edit::Replace(v));
    }
    Ok(())
}

/// Whether a document (its name and parsed value; the kind is checked by the
/// caller) matches every criterion `m` gives.
fn matches(m: &ResourceMatch, name: &str, v: &Value, names: Names) -> bool {
    m.name.as_ref().is_none_or(|p| names.matches(p, name))
        && m.name_suffix
            .as_ref()
            .is_none_or(|s| name.ends_with(s.as_str()))
        && locate::labels_match(&locate::labels(v), &m.match_labels)
        && locate::labels_match(&locate::pod_labels(v), &m.pod_labels)
        && (m.command.is_empty() || commands(v).iter().any(|c| contains_run(c, &m.command)))
}

/// Each container's (and init container's) command followed by its args, split
/// into words (a `sh -c` string counts word by word).
fn commands(v: &Value) -> Vec<Vec<String>> {
    let spec = v
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .or_else(|| v.get("spec"));
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in spec
            .and_then(|s| s.get(list))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let mut words = Vec::new();
            for field in ["command", "args"] {
                for w in c
                    .get(field)
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if let Some(w) = w.as_str() {
                        words.extend(w.split_whitespace().map(str::to_owned));
                    }
                }
            }
            out.push(words);
        }
    }
    out
}

/// Whether `words` contains `run` as consecutive words.
fn contains_run(words: &[String], run: &[String]) -> bool {
    !run.is_empty() && words.windows(run.len()).any(|w| w == run)
}

fn drop_chart_hooks(
    stream: &Stream,
    profile: &Profile,
    names: Names,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !profile.chart_hooks.iter().any(|m| m.kind == h.kind) {
            continue;
        }
        let v = doc.value()?;
        if profile
            .chart_hooks
            .iter()
            .any(|m| m.kind == h.kind.as_ref() && matches(m, &h.name, v, names))
        {
            let hook = v
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("helm.sh/hook"))
                .and_then(Value::as_str)
                .map(|s| format!(" (helm.sh/hook: {s})"))
                .unwrap_or_default();
            notes.push(format!(
                "removed the chart's own migration hook {}{hook}: lockstep's Jobs replace it, with the API's exact image and full env, once, before the sync",
                doc.describe()
            ));
            out.edits.insert(i, Edit::Drop);
        }
    }
    Ok(())
}

/// Warns about a Job that stays in the render and looks like a migration: it runs
/// one of the profile's commands, or its name says migrat, schema or db-init.
fn warn_staying_migrations(
    stream: &Stream,
    profile: &Profile,
    names: Names,
    out: &Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !matches!(h.kind.as_ref(), "Job" | "CronJob") || out.edits.contains_key(&i) {
            continue;
        }
        let v = doc.value()?;
        if profile
            .keep_hooks
            .iter()
            .any(|m| m.kind == h.kind.as_ref() && matches(m, &h.name, v, names))
        {
            continue;
        }
        let runs = commands(v);
        let command = profile
            .migrations
            .iter()
            .chain(&profile.post_rollout)
            .flat_map(|m| [&m.command, &m.first_install])
            .find(|c| runs.iter().any(|w| contains_run(w, c)));
        let lower = h.name.to_ascii_lowercase();
        let word = ["migrat", "schema", "db-init"]
            .into_iter()
            .find(|w| lower.contains(w));
        let why = match (command, word) {
            (Some(c), _) => format!("it runs `{}`", c.join(" ")),
            (None, Some(w)) => format!("its name contains {w:?}"),
            (None, None) => continue,
        };
        notes.push(format!(
            "WARNING: {} stays in the render and looks like a migration ({why}): if it migrates the database, add it to the profile's chartHooks so it is removed; else ignore this",
            doc.describe()
        ));
    }
    Ok(())
}

/// Warns when none of `database.env` reaches the API container, by `env` or by an
/// `envFrom` source of the render; a source outside the render cannot be checked.
fn check_database_env(
    stream: &Stream,
    profile: &Profile,
    api: &ApiWorkload,
    notes: &mut Vec<String>,
) {
    if profile.database.env.is_empty() {
        return;
    }
    let mut unknown = false;
    for name in &profile.database.env {
        if api.has_env(name) {
            return;
        }
        match env_from_provides(stream, api, name) {
            Some(true) => return,
            None => unknown = true,
            Some(false) => {}
        }
    }
    let list = profile.database.env.join(", ");
    if unknown {
        notes.push(format!(
            "cannot verify the database settings: none of {list} is set in {}'s env, and it takes env from objects outside this render (envFrom); make sure they set one",
            api.describe()
        ));
    } else {
        notes.push(format!(
            "WARNING: none of the profile's database.env ({list}) reaches {}, by env or envFrom: the migration would not find the database. Set the database in the chart's values, or fix database.env in the profile",
            api.describe()
        ));
    }
}

const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// Sets the migrate-on-start switch off in every workload container that shares
/// the database (has a database URL or the switch itself).
fn migrate_on_start_off(
    stream: &Stream,
    profile: &Profile,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    let Some(mos) = &profile.migrate_on_start else {
        return Ok(());
    };
    let switch: Vec<&str> = std::iter::once(mos.env.as_str())
        .chain(mos.aliases.iter().map(String::as_str))
        .collect();
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(h) = &doc.head else { continue };
        if !WORKLOAD_KINDS.contains(&h.kind.as_ref()) || out.edits.contains_key(&i) {
            continue;
        }
        let mut v = doc.value()?.clone();
        let mut changed = Vec::new();
        let containers = v
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec"))
            .and_then(|s| s.get_mut("containers"))
            .and_then(Value::as_sequence_mut);
        for c in containers.into_iter().flatten() {
            let cname = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let Some(cmap) = c.as_mapping_mut() else {
                continue;
            };
            let env = cmap
                .entry("env".into())
                .or_insert_with(|| Value::Sequence(vec![]));
            let Some(env) = env.as_sequence_mut() else {
                continue;
            };
            let names: Vec<String> = env
                .iter()
                .filter_map(|e| e.get("name")?.as_str().map(str::to_owned))
                .collect();
            let shares = names
                .iter()
                .any(|n| profile.database.env.contains(n) || switch.contains(&n.as_str()));
            if !shares {
                if env.is_empty() {
                    cmap.remove("env");
                }
                continue;
            }
            let mut found = false;
            for e in env.iter_mut() {
                let Some(name) = e.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if !switch.contains(&name) {
                    continue;
                }
                found = true;
                if e.get("value").and_then(Value::as_str) != Some(mos.off.as_str())
                    || e.get("valueFrom").is_some()
                {
                    let name = name.to_owned();
                    let em = e.as_mapping_mut().expect("env entries are maps");
                    em.remove("valueFrom");
                    em.insert("value".into(), mos.off.clone().into());
                    changed.push(format!("{cname}: {name}={}", mos.off));
                }
            }
            if !found {
                let var = EnvVar {
                    name: mos.env.clone(),
                    value: Some(mos.off.clone()),
                    value_from: None,
                };
                env.push(serde_yaml::to_value(var)?);
                changed.push(format!("{cname}: {}={} (added)", mos.env, mos.off));
            }
        }
        if !changed.is_empty() {
            notes.push(format!(
                "migrate-on-start off in {} ({}): the Job migrates once, before pods roll",
                doc.describe(),
                changed.join(", ")
            ));
            out.edits.insert(i, Edit::Replace(v));
        }
    }
    Ok(())
}

/// Required variables of the migrations, from the lines the profile names.
fn check_required_env(
    stream: &Stream,
    profile: &Profile,
    api: &ApiWorkload,
    admission: &Admission,
    notes: &mut Vec<String>,
) -> Result<()> {
    let target_line = line_of(&admission.target);
    for m in &profile.migrations {
        for req in &m.required_env {
            if let Some(since) = &req.since {
                if !line_at_or_after(profile, &target_line, since) {
                    continue;
                }
            }
            for name in &req.names {
                if api.has_env(name) {
                    continue;
                }
                match env_from_provides(stream, api, name) {
                    Some(true) => continue,
                    None => {
                        notes.push(format!(
                            "cannot verify {name} for the {} migration: {} takes env from objects outside this render (envFrom); make sure they set it",
                            m.name,
                            api.describe()
                        ));
                        continue;
                    }
                    Some(false) => {}
                }
                bail!(
                    "the {} migration requires {name}, which {} does not set ({}). Set it in the chart's values and render again",
                    m.name,
                    api.describe(),
                    req.why.trim()
                );
            }
        }
    }
    Ok(())
}

/// Some(true): an envFrom source in the render has the key; Some(false): none
/// could; None: an envFrom source is outside the render.
fn env_from_provides(stream: &Stream, api: &ApiWorkload, name: &str) -> Option<bool> {
    let mut unknown = false;
    for src in api.container.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let Some(key) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let (kind, obj) = match (&src.config_map_ref, &src.secret_ref) {
            (Some(c), _) => ("ConfigMap", c.name.clone()),
            (_, Some(s)) => ("Secret", s.name.clone()),
            _ => continue,
        };
        let doc = stream.docs.iter().find(|d| {
            d.head
                .as_ref()
                .is_some_and(|h| h.kind == kind && h.name == obj)
        });
        match doc.and_then(|d| d.value().ok()) {
            Some(v) => {
                let has = ["data", "stringData"]
                    .iter()
                    .any(|f| v.get(f).and_then(|d| d.get(key)).is_some());
                if has {
                    return Some(true);
                }
            }
            None => unknown = true,
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

fn line_at_or_after(profile: &Profile, line: &str, since: &str) -> bool {
    let lines = &profile.releases.lines;
    match (
        lines.iter().position(|l| l.line == line),
        lines.iter().position(|l| l.line == since),
    ) {
        (Some(a), Some(b)) => a >= b,
        _ => match (
            crate::profile::parse_line(line),
            crate::profile::parse_line(since),
        ) {
            (Ok(a), Ok(b)) => a >= b,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit() {
        assert_eq!(
            job_name("prefect-server", "migrate-database"),
            "prefect-server-migrate-database"
        );
        let long = "a".repeat(53);
        let n = job_name(&long, "migrate-database");
        assert!(n.len() <= 63 && n.ends_with("-migrate-database"), "{n}");
        assert!(crate::profile::is_dns_label(&n));
        assert_ne!(
            n,
            job_name(&format!("{}b", "a".repeat(52)), "migrate-database")
        );
    }
}
