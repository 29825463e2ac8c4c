//! The step Jobs: which Jobs a render gets (migrations, downgrades, one-time and
//! post-rollout steps) and each one's container, taken from the API container (or the
//! one the profile names): exact image, final env, portable volumes, pod settings.
//!
//! It must not choose hook annotations or waves (`hooks` does), build the gate Job or
//! the record (`record` does), or edit the chart's own documents (`edits` does).

use super::hooks::{job_name, labels, pod_annotations, pod_settings};
use super::record::{record_volumes, BACKUP_DIR, RETRY_SECONDS, STATE_DIR};
use super::*;
use crate::profile::Entrypoint;
use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};

/// A step's env as the edited workloads run it: the migrate-on-start switch (and its
/// aliases) off where it is set, and added where the container has a database URL.
pub(super) fn switch_off(profile: &Profile, mut env: Vec<EnvVar>) -> Vec<EnvVar> {
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

/// One Job to emit: a migration, a downgrade, a one-time or a post-rollout step.
pub(super) struct Planned<'p> {
    pub(super) suffix: String,
    /// migration, downgrade, one-time or post-rollout (`LOCKSTEP_STEP` of step.sh).
    pub(super) kind: &'static str,
    /// Where it runs and with what (the profile's step; a one-time step runs as the
    /// first migration does).
    pub(super) step: &'p Migration,
    pub(super) command: Vec<String>,
    pub(super) first_install: Vec<String>,
    pub(super) post: bool,
}

/// The container a step runs in: the API's, or the one `runs.workload` names.
pub(super) struct Source {
    pub(super) pod: PodSpec,
    pub(super) container: Container,
    pub(super) image: String,
}

pub(super) fn source_of(
    stream: &Stream,
    api: &ApiWorkload,
    step: &Migration,
    names: Names,
) -> Result<Source> {
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
        let image = crate::locate::image_of(doc, &container)?;
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
pub(super) fn image_of(
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
pub(super) fn argv(
    profile: &Profile,
    p: &Planned,
    source: &Source,
    notes: &mut Vec<String>,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let step_script = |mode: &str| -> Vec<String> {
        let script = template::script(template::STEP_SCRIPT);
        vec![
            "/bin/sh".into(),
            "-c".into(),
            script,
            "lockstep-step".into(),
            mode.into(),
        ]
    };
    let mut run = if p.post {
        step_script("post")
    } else {
        let mut v = step_script("run");
        v.push(p.first_install.len().to_string());
        v.extend(p.first_install.iter().cloned());
        v
    };
    run.extend(p.command.iter().cloned());
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
pub(super) fn merge_env(mut base: Vec<EnvVar>, extra: &[EnvVar]) -> Vec<EnvVar> {
    for e in extra {
        match base.iter_mut().find(|b| b.name == e.name) {
            Some(b) => *b = e.clone(),
            None => base.push(e.clone()),
        }
    }
    base
}

/// Volumes a Job can take along (secret, configMap, projected, emptyDir) and the
/// API container's mounts of them; PVC and other mounts stay behind, with a note.
pub(super) fn portable_volumes(
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
pub(super) fn dependencies(
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
/// The Jobs to emit, in order: the migrations (or, for a downgrade, the downgrades in
/// reverse), the one-time steps of the steps crossed, the post-rollout steps; and the
/// names of the one-time steps, for the record.
pub(super) fn plan_steps<'p>(
    profile: &'p Profile,
    admission: &Admission,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<(Vec<Planned<'p>>, Vec<String>)> {
    if admission.downgrade && opts.deployed_image.is_none() {
        bail!("a downgrade Job must run the deployed, newer image (only it knows the newer revisions): record it in lockstep.lock (deployed.image) or pass --from-image IMAGE");
    }
    if admission.downgrade {
        notes.push(format!(
            "WARNING: downgrading {} from {} to {}: take backups of every database before this sync; downgrades can lose data",
            opts.release,
            admission.from.as_ref().map(ToString::to_string).unwrap_or_default(),
            admission.target
        ));
        return Ok((downgrade_steps(profile, opts)?, Vec::new()));
    }
    let mut steps: Vec<Planned> = Vec::new();
    let mut one_time_names: Vec<String> = Vec::new();
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
    // One-time steps run where the first migration runs, with its settings but
    // their own command.
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
    Ok((steps, one_time_names))
}

/// A downgrade's Jobs: each database's downgrade to its target revision, last first.
fn downgrade_steps<'p>(profile: &'p Profile, opts: &Options) -> Result<Vec<Planned<'p>>> {
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
    let mut steps = Vec::new();
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
    Ok(steps)
}

/// One step's Job (all but its hook annotations): the source container's image, env,
/// volumes and settings, the step's own additions, and the record it reads. Adds the
/// objects of this render the Job needs to `deps`.
pub(super) fn step_job(
    scope: &Scope,
    p: &Planned,
    deps: &mut BTreeSet<(String, String)>,
    notes: &mut Vec<String>,
) -> Result<serde_json::Value> {
    let (profile, api, opts) = (scope.profile, scope.api, scope.opts);
    let source = source_of(scope.stream, api, p.step, scope.names)?;
    let (mut volumes, mut mounts) =
        portable_volumes(&source.pod, &source.container.volume_mounts, notes);
    deps.extend(dependencies(
        scope.stream,
        &source.pod,
        &source.container,
        &volumes,
        opts,
    ));
    let image = if scope.admission.downgrade {
        opts.deployed_image.clone().expect("checked by plan_steps")
    } else {
        image_of(p.step, &source, api, &scope.admission.target)?
    };
    let (command, args) = argv(profile, p, &source, notes);
    // The source container's final env: migrate-on-start as the edited workloads
    // have it (off wherever the database is shared).
    let env = merge_env(
        switch_off(profile, source.container.env.clone().unwrap_or_default()),
        &p.step.env,
    );
    let env = merge_env(env, &step_env(scope, p));
    let mut env_from = source.container.env_from.clone().unwrap_or_default();
    env_from.extend(p.step.env_from.iter().cloned());
    for v in &p.step.volumes {
        if !volumes.iter().any(|x| x.name == v.name) {
            volumes.push(v.clone());
        }
    }
    mounts.extend(p.step.volume_mounts.iter().cloned());
    let (record_vols, record_mounts) = record_volumes(&scope.record_name);
    volumes.extend(record_vols);
    mounts.extend(record_mounts);
    let component = if p.post {
        "post-rollout"
    } else {
        "database-migration"
    };
    Ok(json!({
        "name": job_name(&opts.release, &p.suffix),
        "namespace": scope.namespace,
        "labels": labels(opts, &scope.target, component, Some(&p.suffix)),
        "activeDeadlineSeconds": profile.job.active_deadline_seconds,
        "backoffLimit": profile.job.backoff_limit,
        "podLabels": labels(opts, &scope.target, component, Some(&p.suffix)),
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
    }))
}

/// What every step reads the record with (templates/step.sh): done already, first
/// install or upgrade, after the rollout.
fn step_env(scope: &Scope, p: &Planned) -> Vec<EnvVar> {
    // With no record (a first install), a migration is retried while a bundled database
    // may still be starting: every RETRY_SECONDS for about a third of the deadline.
    let first_install_attempts =
        1 + scope.profile.job.active_deadline_seconds / (3 * RETRY_SECONDS);
    let mut env = vec![
        ("LOCKSTEP_STEP", p.kind.to_owned()),
        ("LOCKSTEP_STEP_NAME", p.suffix.clone()),
        ("LOCKSTEP_TARGET", scope.target.clone()),
        ("LOCKSTEP_IMAGE", scope.api.image.full.clone()),
        ("LOCKSTEP_RECORD", scope.record_name.clone()),
        ("LOCKSTEP_STATE_DIR", STATE_DIR.to_owned()),
        ("LOCKSTEP_BACKUP_DIR", BACKUP_DIR.to_owned()),
    ];
    if !p.post {
        env.extend([
            ("LOCKSTEP_FORCE", scope.opts.force_migrations.to_string()),
            (
                "LOCKSTEP_FIRST_INSTALL_ATTEMPTS",
                first_install_attempts.to_string(),
            ),
            ("LOCKSTEP_RETRY_SECONDS", RETRY_SECONDS.to_string()),
        ]);
    }
    env.into_iter()
        .map(|(n, v)| EnvVar {
            name: n.into(),
            value: Some(v),
            value_from: None,
        })
        .collect()
}
