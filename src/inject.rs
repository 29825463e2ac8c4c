//! Inject: the objects lockstep adds and the edits it makes to the chart's own.
//!
//! From the located API workload, the profile and the gate's admission, this
//! module builds the migration Jobs (exact API image, env, volumes and pod
//! settings), the in-cluster gate Job and its release record, and decides the
//! edits to existing documents: drop the chart's own migration hooks, turn
//! migrate-on-start off where the database is shared, and (in the `sync` phase)
//! move first-install dependencies to an earlier wave.
//!
//! It owns hook annotations, waves, names and labels. It must not write output
//! (`emit` does) or decide whether an upgrade is allowed (`gate` does).

use crate::gate::{line_of, Admission};
use crate::locate::{self, ApiWorkload};
use crate::profile::{Profile, ResourceMatch};
use crate::stream::Stream;
use crate::template::{self, Templates};
use anyhow::{bail, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, PodSpec, Volume, VolumeMount};
use serde_json::json;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// When the migration Jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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
    check_required_env(stream, profile, api, admission, notes)?;
    let mut out = Injection::default();
    drop_chart_hooks(stream, profile, &mut out, notes)?;
    migrate_on_start_off(stream, profile, &mut out, notes)?;

    let (volumes, mounts) = portable_volumes(&api.pod, &api.container.volume_mounts, notes);
    let deps = dependencies(stream, &api.pod, &api.container, &volumes, opts);
    let base = profile.job.wave;
    let namespace = opts.namespace.clone().or_else(|| api.namespace.clone());
    let target = admission.target.to_string();

    // The release record (a normal resource) and the gate step.
    let record_name = format!("{}-lockstep", opts.release);
    out.added.push(templates.document::<ConfigMap>(
        "record",
        &json!({
            "name": record_name,
            "namespace": namespace,
            "labels": labels(opts, &target, "release-record", None),
            "release": target,
            "line": line_of(&admission.target),
            "image": api.image.full,
            "chart": opts.chart_name,
            "profile": profile.name,
        }),
        "lockstep/record-configmap.yaml.hbs",
    )?);

    let mut jobs: Vec<(String, serde_json::Value)> = Vec::new();
    let gate_ctx = gate_job(api, admission, opts, &namespace, &record_name, base - 1);
    jobs.push(("gate".into(), gate_ctx));

    // Migrations (or downgrades), then one-time steps of the steps crossed.
    let image = if admission.downgrade {
        let Some(img) = &opts.deployed_image else {
            bail!("a downgrade Job must run the deployed, newer image (only it knows the newer revisions): record it in lockstep.lock (deployed.image) or pass --from-image IMAGE");
        };
        notes.push(format!(
            "WARNING: downgrading {} from {} to {}: take backups of every database before this sync; downgrades can lose data",
            opts.release,
            admission.from.as_ref().map(ToString::to_string).unwrap_or_default(),
            target
        ));
        img.clone()
    } else {
        api.image.full.clone()
    };
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
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
            commands.push((format!("downgrade-{}", m.name), cmd));
        }
    } else {
        for m in &profile.migrations {
            commands.push((format!("migrate-{}", m.name), m.command.clone()));
        }
        for step in &admission.steps {
            for one in step.info.iter().flat_map(|i| &i.one_time) {
                notes.push(format!(
                    "{} → {}: one-time step {} runs after the migrations: {}",
                    step.from_line, step.to_line, one.name, one.why
                ));
                commands.push((one.name.clone(), one.command.clone()));
            }
        }
    }
    // Only a render with no known deployed release may be a first install.
    let dep_note = (!deps.is_empty() && admission.from.is_none()).then(|| {
        format!(
            "{} from this same render; in the presync phase a first install waits for objects not yet applied (for first installs use the sync phase: --phase sync, or `phase: sync` in lockstep.yaml or the Argo CD parameter)",
            deps.iter().map(|(k, n)| format!("{k}/{n}")).collect::<Vec<_>>().join(", ")
        )
    });
    for (i, (suffix, command)) in commands.into_iter().enumerate() {
        let mut annotations = BTreeMap::new();
        if let (Phase::Presync, Some(n)) = (opts.phase, &dep_note) {
            annotations.insert(
                "lockstep.dev/first-install".to_owned(),
                format!("needs {n}"),
            );
        }
        let ctx = json!({
            "name": job_name(&opts.release, &suffix),
            "namespace": namespace,
            "labels": labels(opts, &target, "database-migration", Some(&suffix)),
            "annotations": hook_annotations(opts.phase, base + i as i32, annotations),
            "activeDeadlineSeconds": profile.job.active_deadline_seconds,
            "backoffLimit": profile.job.backoff_limit,
            "podLabels": labels(opts, &target, "database-migration", Some(&suffix)),
            "podAnnotations": (!profile.job.pod_annotations.is_empty()).then_some(&profile.job.pod_annotations),
            "pod": pod_settings(&api.pod, true),
            "volumes": volumes,
            "containerName": suffix,
            "image": image,
            "imagePullPolicy": api.container.image_pull_policy,
            "command": command,
            "env": api.container.env,
            "envFrom": api.container.env_from,
            "volumeMounts": mounts,
            "workingDir": api.container.working_dir,
            "resources": api.container.resources,
            "securityContext": api.container.security_context,
        });
        jobs.push((suffix, ctx));
    }
    match opts.phase {
        Phase::Presync => {
            if let Some(n) = &dep_note {
                notes.push(format!("first install: the migration Jobs need {n}"));
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
    Ok(out)
}

fn gate_job(
    api: &ApiWorkload,
    admission: &Admission,
    opts: &Options,
    namespace: &Option<String>,
    record: &str,
    wave: i32,
) -> serde_json::Value {
    let target = admission.target.to_string();
    let env = [
        ("LOCKSTEP_TARGET", target.clone()),
        ("LOCKSTEP_FROM_LINES", admission.from_lines.join(" ")),
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
        ("LOCKSTEP_STATE_DIR", "/lockstep/state".to_owned()),
    ]
    .map(|(n, v)| json!({"name": n, "value": v}));
    let mut pod = pod_settings(&api.pod, false);
    pod["automountServiceAccountToken"] = json!(false);
    json!({
        "name": job_name(&opts.release, "lockstep-gate"),
        "namespace": namespace,
        "labels": labels(opts, &target, "upgrade-gate", None),
        "annotations": hook_annotations(opts.phase, wave, BTreeMap::new()),
        "activeDeadlineSeconds": 300,
        "backoffLimit": 0,
        "podLabels": labels(opts, &target, "upgrade-gate", None),
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "pod": pod,
        "volumes": [{"name": "lockstep-state", "configMap": {"name": record, "optional": true}}],
        "containerName": "gate",
        "image": opts.gate_image.clone().unwrap_or_else(|| api.image.full.clone()),
        "imagePullPolicy": api.container.image_pull_policy,
        "command": ["/bin/sh", "-c", template::GATE_SCRIPT],
        "env": env,
        "envFrom": null,
        "volumeMounts": [{"name": "lockstep-state", "mountPath": "/lockstep/state", "readOnly": true}],
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
    mut extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let (argo, helm) = match phase {
        Phase::Presync => ("PreSync", "pre-install,pre-upgrade"),
        Phase::Sync => ("Sync", "post-install,pre-upgrade"),
    };
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
    let keep = 63 - suffix.len() - hash.len() - 2;
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
        let labels = locate::labels(doc.value()?);
        if rules
            .iter()
            .any(|m| matches_resource(m, &h.kind, &h.name, &labels))
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

fn matches_resource(
    m: &ResourceMatch,
    kind: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    m.kind == kind
        && m.name_suffix
            .as_ref()
            .is_none_or(|s| name.ends_with(s.as_str()))
        && locate::labels_match(labels, &m.match_labels)
}

fn drop_chart_hooks(
    stream: &Stream,
    profile: &Profile,
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
            .any(|m| matches_resource(m, &h.kind, &h.name, &locate::labels(v)))
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
