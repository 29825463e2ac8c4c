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
use crate::profile::{Migration, Profile, ResourceMatch};
use crate::stream::Stream;
use crate::template::{self, Templates};
use anyhow::{bail, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar};
use serde_json::json;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

mod checks;
mod edits;
mod hooks;
mod jobs;
mod record;

#[cfg(test)]
pub(crate) use record::gate_env;

use checks::{check_database_env, check_required_env};
use edits::{
    bundled_database, drop_chart_hooks, migrate_on_start_off, move_earlier, warn_staying_migrations,
};
use hooks::{hook_annotations, migrations_wave, post_annotations, presync_floor};
use jobs::{plan_steps, step_job};
use record::{gate_job, record_documents};

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
pub(crate) struct Options {
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
pub(crate) enum Edit {
    Drop,
    Replace(Value),
}

/// The result: edits by document index, and new documents in emission order.
#[derive(Debug, Default)]
pub(crate) struct Injection {
    pub edits: BTreeMap<usize, Edit>,
    pub added: Vec<String>,
}

/// Why no Job belongs, when the profile says so (e.g. SQLite).
pub(crate) fn skip_reason(profile: &Profile, api: &ApiWorkload) -> Option<String> {
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

/// Everything one injection's Jobs share: the inputs, and what follows from them.
struct Scope<'a> {
    stream: &'a Stream<'a>,
    profile: &'a Profile,
    api: &'a ApiWorkload,
    admission: &'a Admission,
    opts: &'a Options,
    names: Names<'a>,
    namespace: Option<String>,
    target: String,
    record_name: String,
}

pub(crate) fn inject(
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
    let scope = Scope {
        stream,
        profile,
        api,
        admission,
        opts,
        names,
        namespace: opts.namespace.clone().or_else(|| api.namespace.clone()),
        target: admission.target.to_string(),
        record_name: format!("{}-lockstep", opts.release),
    };

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
    jobs.push(("gate".into(), gate_job(&scope, gate_wave)));

    let (steps, one_time_names) = plan_steps(profile, admission, opts, notes)?;
    let (contexts, deps) = step_jobs(&scope, &steps, first_wave, notes)?;
    let last_wave = contexts
        .iter()
        .filter(|(p, _, _)| !p.post)
        .map(|(_, w, _)| *w)
        .max()
        .unwrap_or(first_wave - 1);
    let dep_note = first_install_note(&deps, admission);
    for (p, wave, ctx) in contexts {
        let ctx = with_hooks(opts.phase, p.post, wave, dep_note.as_deref(), ctx);
        jobs.push((p.suffix.clone(), ctx));
    }
    place_dependencies(
        &scope,
        &deps,
        dep_note.as_deref(),
        base - 2,
        &mut out,
        notes,
    )?;
    for (suffix, ctx) in jobs {
        out.added.push(templates.document::<Job>(
            "job",
            &ctx,
            &format!("lockstep/job.yaml.hbs ({suffix})"),
        )?);
    }
    record_documents(&scope, templates, last_wave, &one_time_names, &mut out)?;
    Ok(out)
}

/// Each step's Job (hook annotations still to come) with its wave: the migration steps
/// from `first_wave` on, the post-rollout steps from 0; and the objects of this render
/// they need.
#[allow(clippy::type_complexity)]
fn step_jobs<'s, 'p>(
    scope: &Scope,
    steps: &'s [jobs::Planned<'p>],
    first_wave: i32,
    notes: &mut Vec<String>,
) -> Result<(
    Vec<(&'s jobs::Planned<'p>, i32, serde_json::Value)>,
    BTreeSet<(String, String)>,
)> {
    let mut deps = BTreeSet::new();
    let mut contexts = Vec::new();
    let (mut pre_n, mut post_n) = (0i32, 0i32);
    for p in steps {
        let ctx = step_job(scope, p, &mut deps, notes)?;
        let wave = if p.post {
            post_n += 1;
            post_n - 1
        } else {
            pre_n += 1;
            first_wave + pre_n - 1
        };
        contexts.push((p, wave, ctx));
    }
    Ok((contexts, deps))
}

/// A step Job's hook annotations: the phase's hooks (post-rollout steps: after the
/// rollout) at `wave`, and in the presync phase what a first install waits for.
fn with_hooks(
    phase: Phase,
    post: bool,
    wave: i32,
    first_install: Option<&str>,
    mut ctx: serde_json::Value,
) -> serde_json::Value {
    let mut annotations = BTreeMap::new();
    if let (Phase::Presync, Some(n), false) = (phase, first_install, post) {
        annotations.insert(
            "lockstep.dev/first-install".to_owned(),
            format!("needs {n}"),
        );
    }
    ctx["annotations"] = json!(if post {
        post_annotations(wave, annotations)
    } else {
        hook_annotations(phase, wave, annotations)
    });
    ctx
}

/// The objects of this render the Jobs need: in the sync phase they (and a bundled
/// database) move to `early_wave`; in the presync phase a note says what a first
/// install waits for, or that the Jobs read the deployed release's.
fn place_dependencies(
    scope: &Scope,
    deps: &BTreeSet<(String, String)>,
    first_install: Option<&str>,
    early_wave: i32,
    out: &mut Injection,
    notes: &mut Vec<String>,
) -> Result<()> {
    match scope.opts.phase {
        Phase::Presync => {
            if let Some(n) = first_install {
                notes.push(format!("first install: the migration Jobs need {n}"));
            } else if !deps.is_empty() {
                // argo-cd #9891; helm pkg/action/upgrade.go:460-469 (pre-upgrade hooks
                // run before the release's resources are updated).
                notes.push(format!(
                    "presync phase: the migration Jobs read the live {} of the deployed release, not this render's (PreSync and pre-upgrade hooks run before any of the release's objects is applied); a change to them in this render reaches the migrations on the next sync",
                    dep_list(deps)
                ));
            }
        }
        Phase::Sync => {
            let mut early = deps.clone();
            early.extend(bundled_database(scope.stream, scope.profile)?);
            move_earlier(scope.stream, &early, early_wave, out, notes)?;
        }
    }
    Ok(())
}

fn dep_list(deps: &BTreeSet<(String, String)>) -> String {
    deps.iter()
        .map(|(k, n)| format!("{k}/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a first install's migration Jobs wait for. Only a render with no known deployed
/// release may be a first install.
fn first_install_note(deps: &BTreeSet<(String, String)>, admission: &Admission) -> Option<String> {
    (!deps.is_empty() && admission.from.is_none()).then(|| {
        format!(
            "{} from this same render; in the presync phase a first install waits for objects not yet applied (for first installs use the sync phase: --phase sync, or `phase: sync` in lockstep.yaml or the Argo CD parameter)",
            dep_list(deps)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::hooks::job_name;

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
