//! The Argo CD config-management plugin front-end (`lockstep argocd ...`).
//!
//! argocd-cmp-server runs these commands with exec in the app directory of a
//! temporary copy of the repository. This module turns what Argo CD provides
//! (ARGOCD_APP_* variables, `ARGOCD_ENV_*` from the Application's plugin env,
//! parameters as `ARGOCD_APP_PARAMETERS` JSON, `KUBE_VERSION`,
//! `KUBE_API_VERSIONS`) plus the app's `lockstep.yaml` into the same
//! [`Request`](crate::Request) the CLI builds, and calls the shared pipeline.
//!
//! Precedence: parameters, then env, then lockstep.yaml, then defaults.
//! Every path from any of them must resolve inside the repository. No shell, and
//! no raw helm flags: parameters become `--set` values only.
//!
//! On success nothing is written to stderr: recent argocd-cmp-server versions
//! append a command's stderr to its stdout, which would corrupt the manifests;
//! notes go into the stream as YAML comments instead.

use crate::config::{self, AppConfig, Lock};
use crate::settings::{self, FrontEnd, Inputs, Layer};
use crate::{gate, helm, ChartInput, Input, Request};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the plugin commands read, for `--help` (and kept in step with [`build_request`] by a test
/// that looks for every variable and parameter read there).
pub const INPUTS: &str = "\
Run by argocd-cmp-server in the app directory. What is read (first found wins):

Parameters (ARGOCD_APP_PARAMETERS, JSON set by Argo CD from the Application):
  values-files (array)      values files, relative to the app directory
  helm-parameters (map)     chart values, each passed as one --set KEY=VALUE
  release, profile, phase, from, force-migrations (true|false) (strings)
Application plugin env (spec.source.plugin.env, seen as ARGOCD_ENV_<NAME>):
  ARGOCD_ENV_LOCKSTEP_VALUES_FILES   comma-separated values files
  ARGOCD_ENV_LOCKSTEP_RELEASE, ARGOCD_ENV_LOCKSTEP_NAMESPACE, ARGOCD_ENV_LOCKSTEP_PROFILE,
  ARGOCD_ENV_LOCKSTEP_PHASE, ARGOCD_ENV_LOCKSTEP_FROM, ARGOCD_ENV_LOCKSTEP_FORCE_MIGRATIONS
lockstep.yaml in the app directory (chart, repo, chartVersion, version, release, namespace,
  profile, values, set, phase, apiWorkload, gateImage) and lockstep.lock beside it (the
  deployed release). `repo: URL` with `chart: NAME`, or `chart: oci://...`, is fetched
  with `helm pull` at chartVersion (else version).
Set by Argo CD:
  ARGOCD_APP_NAME           the release name when nothing else names it
  ARGOCD_APP_NAMESPACE      the namespace when nothing else names it
  ARGOCD_APP_SOURCE_PATH    the app's path in the repository: paths must stay inside it
  KUBE_VERSION, KUBE_API_VERSIONS   helm's --kube-version and --api-versions
Set on the sidecar:
  HELM_BIN                  helm to run (default: helm on PATH)
  LOCKSTEP_REPO_USERNAME, LOCKSTEP_REPO_PASSWORD   credentials for a fetched chart
  GOGC, GOMEMLIMIT          given to helm as they are (default: GOGC=off GOMEMLIMIT=128MiB)";

/// One command of the plugin, as argocd-cmp-server runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Build chart dependencies when the chart needs them.
    Init,
    /// Print the manifests.
    Generate,
    /// The dynamic parameters, as Argo CD parameter announcements.
    Parameters,
}

/// The environment Argo CD gives a plugin command (a snapshot, for tests).
pub(crate) type Env = BTreeMap<String, String>;

pub fn main(cmd: Step, out: &mut dyn Write, notes: &mut Vec<String>) -> Result<()> {
    let env: Env = std::env::vars().collect();
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    match cmd {
        Step::Init => init(&cwd, &env, notes),
        Step::Generate => generate(&cwd, &env, out, notes),
        Step::Parameters => parameters(&cwd, &env, out, notes),
    }
}

fn get<'e>(env: &'e Env, key: &str) -> Option<&'e str> {
    env.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

/// A user setting from the Application's plugin env: `ARGOCD_ENV_LOCKSTEP_<NAME>`.
fn user_env<'e>(env: &'e Env, name: &str) -> Option<&'e str> {
    get(env, &format!("ARGOCD_ENV_LOCKSTEP_{name}"))
}

/// The parameters the user set, from `ARGOCD_APP_PARAMETERS`.
#[derive(Debug, Default)]
struct Params {
    strings: BTreeMap<String, String>,
    arrays: BTreeMap<String, Vec<String>>,
    maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl Params {
    /// A string parameter; empty counts as not set.
    fn string(&self, name: &str) -> Option<&str> {
        self.strings
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

fn params(env: &Env) -> Result<Params> {
    let mut p = Params::default();
    let Some(text) = get(env, "ARGOCD_APP_PARAMETERS") else {
        return Ok(p);
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .context("ARGOCD_APP_PARAMETERS is not JSON: this variable is set by Argo CD; check the Application's plugin parameters")?;
    for item in v.as_array().into_iter().flatten() {
        let Some(name) = item.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if let Some(s) = item.get("string").and_then(|s| s.as_str()) {
            p.strings.insert(name.to_owned(), s.to_owned());
        }
        if let Some(a) = item.get("array").and_then(|a| a.as_array()) {
            p.arrays.insert(
                name.to_owned(),
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            );
        }
        if let Some(m) = item.get("map").and_then(|m| m.as_object()) {
            p.maps.insert(
                name.to_owned(),
                m.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_str()?.to_owned())))
                    .collect(),
            );
        }
    }
    Ok(p)
}

/// The repository root: the working directory minus ARGOCD_APP_SOURCE_PATH.
fn checkout_root(cwd: &Path, env: &Env) -> PathBuf {
    if let Some(src) = get(env, "ARGOCD_APP_SOURCE_PATH") {
        let depth = Path::new(src)
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count();
        if let Some(root) = cwd.ancestors().nth(depth) {
            if cwd.ends_with(src.trim_start_matches("./")) || depth == 0 {
                return root.to_path_buf();
            }
        }
    }
    config::enclosing_repository(cwd)
}

/// The release name from `ARGOCD_APP_NAME`, which is `<namespace>_<name>` for
/// Applications outside Argo CD's own namespace.
pub(crate) fn release_from_app_name(app: &str) -> String {
    app.rsplit_once('_').map_or(app, |(_, n)| n).to_owned()
}

/// Builds the request from parameters, env, lockstep.yaml, lockstep.lock and what Argo CD
/// sets ([`settings::resolve`] applies the precedence); with the pulled chart, when
/// lockstep.yaml names one helm fetches (keep it while the request is used).
pub(crate) fn build_request(
    cwd: &Path,
    env: &Env,
) -> Result<(Request, Option<crate::fetch::Pulled>)> {
    let root = checkout_root(cwd, env);
    let cfg_path = cwd.join(config::CONFIG_FILE);
    // A symlink counts as there (and must then stay inside the repository).
    let cfg = if std::fs::symlink_metadata(&cfg_path).is_ok() {
        AppConfig::load_in(&root, &cfg_path)?
    } else {
        AppConfig::default()
    };
    let p = params(env)?;
    // A repository or OCI chart (`repo:`, `chart: oci://...`) is pulled once; the sidecar
    // has network. `pulled` keeps it on disk while the request lives.
    let (chart, pulled) = match cfg.chart_source(&root, cwd)? {
        Some(config::ChartSource::Path(p)) => (p, None),
        Some(config::ChartSource::Fetch { chart, pull }) => crate::fetch::resolve(&chart, &pull)?,
        None => (cwd.to_path_buf(), None),
    };
    let mut inputs = Inputs::new(
        FrontEnd::ArgoCd,
        Input::Chart(chart_input(cwd, env, &root, &cfg, &p, chart)?),
    );
    inputs.repository = Some(root.clone());
    inputs.profile_base = Some((root.clone(), cwd.to_path_buf()));
    let s = |name: &str| p.string(name);
    inputs.params = User {
        release: s("release"),
        namespace: None,
        profile: s("profile"),
        phase: s("phase"),
        from: s("from"),
        force_migrations: s("force-migrations"),
    }
    .layer()?;
    inputs.env = User {
        release: user_env(env, "RELEASE"),
        namespace: user_env(env, "NAMESPACE"),
        profile: user_env(env, "PROFILE"),
        phase: user_env(env, "PHASE"),
        from: user_env(env, "FROM"),
        force_migrations: user_env(env, "FORCE_MIGRATIONS"),
    }
    .layer()?;
    inputs.config = Layer::from_config(&cfg)?;
    inputs.lock = Layer::from_lock(Lock::load_in(&root, &cwd.join(config::LOCK_FILE))?);
    inputs.platform = Layer {
        release: get(env, "ARGOCD_APP_NAME").map(release_from_app_name),
        namespace: get(env, "ARGOCD_APP_NAMESPACE").map(str::to_owned),
        ..Layer::default()
    };
    Ok((settings::resolve(inputs, &mut Vec::new())?, pulled))
}

/// The settings a user gives as parameters or as plugin env (`ARGOCD_ENV_LOCKSTEP_*`),
/// as given.
struct User<'a> {
    release: Option<&'a str>,
    namespace: Option<&'a str>,
    profile: Option<&'a str>,
    phase: Option<&'a str>,
    from: Option<&'a str>,
    force_migrations: Option<&'a str>,
}

impl User<'_> {
    fn layer(&self) -> Result<Layer> {
        let phase = self
            .phase
            .map(|ph| settings::parse_phase(ph).map_err(|e| anyhow!("parameter phase: {e}")))
            .transpose()?;
        let force_migrations = match self.force_migrations {
            None | Some("") => None,
            Some("false") => Some(false),
            Some("true") => Some(true),
            Some(other) => bail!("parameter force-migrations: {other:?} is not `true` or `false`"),
        };
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Layer {
            release: owned(self.release),
            namespace: owned(self.namespace),
            profile: owned(self.profile),
            phase,
            from: owned(self.from),
            force_migrations,
            ..Layer::default()
        })
    }
}

/// The chart and what helm renders it with: values files (parameter, else plugin env, else
/// lockstep.yaml), lockstep.yaml's `set` and the `helm-parameters`, and the cluster's
/// capabilities Argo CD gives.
fn chart_input(
    cwd: &Path,
    env: &Env,
    root: &Path,
    cfg: &AppConfig,
    p: &Params,
    chart: PathBuf,
) -> Result<ChartInput> {
    let values: Vec<String> = match (p.arrays.get("values-files"), user_env(env, "VALUES_FILES")) {
        (Some(a), _) => a.clone(),
        (None, Some(e)) => e
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
        (None, None) => cfg.values.clone(),
    };
    let values = values
        .iter()
        .map(|v| config::inside(root, cwd, v, "values file"))
        .collect::<Result<Vec<_>>>()?;
    let params = p.maps.get("helm-parameters");
    // A helm parameter of the same key wins over lockstep.yaml: helm applies every
    // --set-string after every --set, so the config's entry must not be passed at all.
    let set_string = cfg.set_strings(|k| params.is_some_and(|m| m.contains_key(k)))?;
    let mut set = Vec::new();
    for (k, v) in params.into_iter().flatten() {
        // Checked here, naming only the key: later errors quote the whole `key=value`, and a
        // value may be a secret (stderr is shown in Argo CD's UI).
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./[]".contains(c))
            || k.split('.').any(str::is_empty)
        {
            bail!("helm parameter {k:?} is not a values key (letters, digits, `_-./[]`, no empty `.` segment): parameters set chart values, nothing else");
        }
        // One parameter is one key: a comma in the value must not start another.
        set.push(format!("{k}={}", crate::source::escape_set_value(v)));
    }
    let api_versions = get(env, "KUBE_API_VERSIONS")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(ChartInput {
        path: chart,
        values,
        set,
        set_string,
        kube_version: get(env, "KUBE_VERSION").map(str::to_owned),
        api_versions,
    })
}

fn generate(cwd: &Path, env: &Env, out: &mut dyn Write, notes: &mut Vec<String>) -> Result<()> {
    let (req, _pulled) = build_request(cwd, env)?;
    let mut buf = Vec::new();
    crate::run(&req, &mut buf, notes)?;
    if buf.iter().all(u8::is_ascii_whitespace) {
        bail!("the render produced no manifests: refusing to print an empty stream (Argo CD would prune every resource of the app)");
    }
    // Notes travel in the stream as comments: stderr must stay empty on success.
    for n in notes.drain(..) {
        writeln!(out, "# lockstep: {}", n.replace('\n', " "))?;
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}

fn init(cwd: &Path, env: &Env, notes: &mut Vec<String>) -> Result<()> {
    let (req, _pulled) = build_request(cwd, env)?;
    let Input::Chart(chart) = &req.input else {
        return Ok(());
    };
    if !chart.path.is_dir() {
        return Ok(()); // a packaged chart carries its dependencies
    }
    #[derive(serde::Deserialize)]
    struct Dep {
        name: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        repository: String,
    }
    #[derive(serde::Deserialize)]
    struct ChartDeps {
        #[serde(default)]
        dependencies: Vec<Dep>,
    }
    let root = req
        .repository
        .clone()
        .unwrap_or_else(|| checkout_root(cwd, env));
    // Nothing helm reads may lead out of the repository, before it reads anything.
    crate::guard::chart_tree(&root, &chart.path)?;
    let text = config::read_inside(&root, &chart.path.join("Chart.yaml"), "Chart.yaml")
        .with_context(|| format!("{} has no readable Chart.yaml", chart.path.display()))?;
    let deps: ChartDeps = crate::guard::yaml(&text, "Chart.yaml")?;
    for d in &deps.dependencies {
        crate::guard::file_dependency(&root, &chart.path, &d.name, &d.repository)?;
    }
    let vendored = |d: &Dep| {
        let charts = chart.path.join("charts");
        charts.join(&d.name).join("Chart.yaml").is_file()
            || charts
                .join(format!("{}-{}.tgz", d.name, d.version))
                .is_file()
            || std::fs::read_dir(&charts)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&format!("{}-", d.name)) && n.ends_with(".tgz")
                })
    };
    let missing: Vec<&Dep> = deps.dependencies.iter().filter(|d| !vendored(d)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let helm = helm::helm_bin()?;
    helm::run(
        &helm,
        &[
            "dependency".into(),
            "build".into(),
            chart.path.clone().into_os_string(),
        ],
        "helm dependency build",
    )?;
    notes.push(format!(
        "built chart dependencies: {}",
        missing
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// One parameter announcement, in the shape Argo CD reads.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Announcement {
    name: &'static str,
    title: String,
    tooltip: String,
    collection_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<BTreeMap<String, String>>,
}

fn announce(name: &'static str, title: &str, tooltip: &str, value: String) -> Announcement {
    Announcement {
        name,
        title: title.to_owned(),
        tooltip: tooltip.to_owned(),
        collection_type: "string",
        string: Some(value),
        map: None,
    }
}

fn parameters(cwd: &Path, env: &Env, out: &mut dyn Write, notes: &mut Vec<String>) -> Result<()> {
    let list = match detect(cwd, env, notes) {
        Ok(list) => list,
        // Shown in the UI before a sync, instead of an opaque failure.
        Err(e) => vec![announce(
            "lockstep-error",
            "lockstep cannot render this app",
            "Fix this before syncing: the sync would fail with the same message.",
            format!("{e:#}"),
        )],
    };
    notes.clear();
    serde_json::to_writer(&mut *out, &list)?;
    writeln!(out)?;
    Ok(())
}

fn detect(cwd: &Path, env: &Env, notes: &mut Vec<String>) -> Result<Vec<Announcement>> {
    let (req, _pulled) = build_request(cwd, env)?;
    let rendered = crate::obtain(&req, notes)?;
    let a = crate::analyze(&req, &rendered.text, &rendered.origin, notes)?;
    let mut list = vec![
        announce(
            "detected-chart",
            "Chart (detected)",
            "The chart and the release lockstep read from it (per the profile's releases.versionFrom).",
            format!("{} {} (release {}, profile {})", a.chart.name, a.target, a.release, a.profile.name),
        ),
        announce(
            "detected-api-workload",
            "API workload (detected)",
            "The workload whose exact image and env the migration Jobs run with.",
            format!("{} image {}", a.api.describe(), a.api.image.full),
        ),
    ];
    let summary = match &a.admission.from {
        None => format!("no deployed release known: first install, or set `from` (only the in-cluster gate protects this sync) → {}", a.target),
        Some(from) if a.admission.downgrade => format!("{from} → {}: DOWNGRADE (take backups)", a.target),
        Some(from) => {
            let plan = gate::plan(&a.profile, from, &a.target)?;
            let one_time: usize = plan.stops.iter().map(|s| s.one_time.len()).sum();
            let breaking = plan.breaking_count();
            let mut s = format!(
                "{from} → {}: {} breaking change{}",
                a.target,
                breaking,
                if breaking == 1 { "" } else { "s" }
            );
            if one_time > 0 {
                s += &format!(", {one_time} one-time step{}", if one_time == 1 { "" } else { "s" });
            }
            s
        }
    };
    list.push(announce(
        "upgrade-plan",
        "Upgrade plan",
        "What this sync does to the database: `lockstep plan --from X --to Y` prints the details.",
        summary,
    ));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert_eq!(release_from_app_name("prefect"), "prefect");
        assert_eq!(release_from_app_name("team-a_prefect"), "prefect");
    }

    #[test]
    fn parameters_json() {
        let mut env = Env::new();
        env.insert(
            "ARGOCD_APP_PARAMETERS".into(),
            r#"[{"name":"values-files","array":["a.yaml"]},{"name":"helm-parameters","map":{"image.tag":"v1"}},{"name":"release","string":"x"}]"#.into(),
        );
        let p = params(&env).unwrap();
        assert_eq!(p.arrays["values-files"], vec!["a.yaml"]);
        assert_eq!(p.maps["helm-parameters"]["image.tag"], "v1");
        assert_eq!(p.strings["release"], "x");
        env.insert("ARGOCD_APP_PARAMETERS".into(), "null".into());
        assert!(params(&env).unwrap().strings.is_empty());
    }
}
