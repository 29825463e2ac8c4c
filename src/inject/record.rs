//! The release record (a pair of hook ConfigMaps written after the last step) and the
//! gate Job that reads it: their volumes, environment and hook annotations.
//!
//! It must not decide whether an upgrade is allowed (`gate` does; the gate Job only
//! carries its admission into the cluster) or build the step Jobs (`jobs` does).

use super::hooks::{
    hook_annotations, job_name, labels, phase_hooks, pod_annotations, pod_settings,
};
use super::*;
use k8s_openapi::api::core::v1::{Volume, VolumeMount};

/// The release record, twice, after the last migration and one-time step: only a sync
/// whose every step succeeded writes it (Argo CD runs a wave only after the previous
/// one's hooks completed, gitops-engine sync_context.go:557-650; Helm runs hooks one by
/// one and stops at the first failure, pkg/action/hooks.go:76-148).
pub(super) fn record_documents(
    scope: &Scope,
    templates: &Templates,
    last_wave: i32,
    one_time_names: &[String],
    out: &mut Injection,
) -> Result<()> {
    let record_name = &scope.record_name;
    for (i, name) in [record_name.clone(), format!("{record_name}-backup")]
        .into_iter()
        .enumerate()
    {
        out.added.push(templates.document::<ConfigMap>(
            "record",
            &json!({
                "name": name,
                "namespace": scope.namespace,
                "labels": labels(scope.opts, &scope.target, "release-record", None),
                "annotations": record_annotations(scope.opts.phase, last_wave + 1 + i as i32),
                "release": scope.target,
                "line": line_of(&scope.admission.target),
                "image": scope.api.image.full,
                "chart": scope.opts.chart_name,
                "profile": scope.profile.name,
                "oneTime": one_time_names.join(" "),
            }),
            "lockstep/record-configmap.yaml.hbs",
        )?);
    }
    Ok(())
}

/// Where the gate and the steps mount the release record and its backup.
pub(super) const STATE_DIR: &str = "/lockstep/state";

pub(super) const BACKUP_DIR: &str = "/lockstep/state-backup";

/// The pause between a first install's migration attempts.
pub(super) const RETRY_SECONDS: i64 = 10;

/// The record and its backup, mounted optionally and read-only (no API access, no RBAC):
/// a first install has neither.
pub(super) fn record_volumes(record: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
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
pub(super) fn record_annotations(phase: Phase, wave: i32) -> BTreeMap<String, String> {
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

/// The gate step's environment: what `templates/gate.sh` decides with.
pub(crate) fn gate_env(admission: &Admission, record: &str) -> [(&'static str, String); 8] {
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
pub(crate) const GATE_DEADLINE_SECONDS: i64 = 300;

pub(super) fn gate_job(scope: &Scope, wave: i32) -> serde_json::Value {
    let (api, opts, record) = (scope.api, scope.opts, scope.record_name.as_str());
    let target = &scope.target;
    let env = gate_env(scope.admission, record).map(|(n, v)| json!({"name": n, "value": v}));
    let mut pod = pod_settings(&api.pod, false);
    pod["automountServiceAccountToken"] = json!(false);
    let (volumes, mounts) = record_volumes(record);
    json!({
        "name": job_name(&opts.release, "lockstep-gate"),
        "namespace": scope.namespace,
        "labels": labels(opts, target, "upgrade-gate", None),
        // In both phases: before anything of the release is applied.
        "annotations": hook_annotations(Phase::Presync, wave, BTreeMap::new()),
        "activeDeadlineSeconds": GATE_DEADLINE_SECONDS,
        "backoffLimit": 0,
        "podLabels": labels(opts, target, "upgrade-gate", None),
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
