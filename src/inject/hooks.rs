//! Hook annotations, waves, names and labels of the objects lockstep adds: the phase's
//! hook types for Argo CD and Helm, the wave the migrations take after the chart's own
//! hooks, DNS-safe Job names and label values.
//!
//! It must not build Jobs or edit the chart's documents.

use super::edits::matches;
use super::*;
use k8s_openapi::api::core::v1::PodSpec;

/// The profile's pod annotations, with every lockstep Job kept out of an Istio sidecar
/// (without native sidecars a Job's pod never completes while the sidecar runs, and Argo
/// CD waits for JobComplete: gitops-engine health/health_job.go).
pub(super) fn pod_annotations(profile: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut a = profile.clone();
    a.insert("sidecar.istio.io/inject".to_owned(), "false".to_owned());
    a
}

/// The lowest wave (or Helm weight) of the chart's own hooks that run where the gate
/// does (Argo CD PreSync; Helm pre-install or pre-upgrade), documents dropped left out.
pub(super) fn presync_floor(stream: &Stream, edits: &BTreeMap<usize, Edit>) -> Result<Option<i32>> {
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

pub(super) fn phase_hooks(phase: Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Presync => ("PreSync", "pre-install,pre-upgrade"),
        Phase::Sync => ("Sync", "post-install,pre-upgrade"),
    }
}

/// The wave of the first migration: the profile's, or one after the latest chart
/// hook that stays and that the profile says the migrations follow (`job.after`).
pub(super) fn migrations_wave(
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
pub(super) fn post_annotations(
    wave: i32,
    extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    annotations("PostSync", "post-install,post-upgrade", wave, extra)
}

/// Pod-level settings copied from the API pod. The gate needs no service account.
pub(super) fn pod_settings(pod: &PodSpec, with_service_account: bool) -> serde_json::Value {
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

pub(super) fn hook_annotations(
    phase: Phase,
    wave: i32,
    extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let (argo, helm) = phase_hooks(phase);
    annotations(argo, helm, wave, extra)
}

/// The hook annotations of both tools, with explicit waves and delete policies.
pub(super) fn annotations(
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

pub(super) fn labels(
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
pub(super) fn label_value(s: &str) -> String {
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
pub(crate) fn job_name(release: &str, suffix: &str) -> String {
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

pub(super) fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x01000193)
    })
}
