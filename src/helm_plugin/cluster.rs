//! The deployed release, read from the cluster with the real helm: `helm history`, `helm
//! get metadata` of the newest deployed revision, and for image-tag profiles (or a
//! downgrade's image) `helm get manifest`, read by [`stream`]/[`locate`] as the pipeline
//! reads a render. It decides nothing: the settings layer weighs what it found.

use super::args::Invocation;
use crate::locate::{self, WorkloadRef};
use crate::profile::{Profile, VersionSource};
use crate::settings::{self, ClusterRelease};
use crate::{gate, helm, source, stream};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::ffi::OsString;
use std::path::Path;

/// Where the release lives: the namespace and kube context helm was given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    pub namespace: Option<String>,
    pub kube_context: Option<String>,
}

impl Connection {
    /// The namespace as the settings resolve it; the kube context (no setting of the
    /// render) from `--kube-context`, else helm's HELM_KUBECONTEXT.
    pub(crate) fn new(namespace: Option<String>, inv: &Invocation) -> Connection {
        Connection {
            namespace,
            kube_context: inv
                .kube_context
                .clone()
                .or_else(|| super::env("HELM_KUBECONTEXT")),
        }
    }

    pub(crate) fn args(&self) -> Vec<OsString> {
        let mut a = Vec::new();
        if let Some(ns) = &self.namespace {
            a.push(format!("--namespace={ns}").into());
        }
        if let Some(ctx) = &self.kube_context {
            a.push(format!("--kube-context={ctx}").into());
        }
        a
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "namespace {}",
            self.namespace.as_deref().unwrap_or("(helm's default)")
        );
        if let Some(ctx) = &self.kube_context {
            s += &format!(", kube context {ctx}");
        }
        s
    }
}

/// One entry of `helm history -o json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Revision {
    pub revision: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub chart: String,
}

/// `helm get metadata -o json`, read leniently (Helm 4 adds keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    #[serde(default)]
    pub chart: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub app_version: Option<String>,
}

/// What the history says about the deployed release.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// The newest revision whose status is `deployed`.
    Deployed(u64),
    /// No revision ever reached the cluster (only failed or pending installs): a first install.
    NeverDeployed(String),
    /// Revisions that were deployed once, none deployed now (an uninstall with --keep-history).
    Unclear(String),
}

pub(crate) fn pick(history: &[Revision]) -> Pick {
    if let Some(r) = history
        .iter()
        .filter(|r| r.status == "deployed")
        .max_by_key(|r| r.revision)
    {
        return Pick::Deployed(r.revision);
    }
    let list = history
        .iter()
        .map(|r| format!("{} {} ({})", r.revision, r.status, r.chart))
        .collect::<Vec<_>>()
        .join(", ");
    if history.iter().any(|r| {
        matches!(
            r.status.as_str(),
            "superseded" | "uninstalled" | "uninstalling"
        )
    }) {
        Pick::Unclear(list)
    } else {
        Pick::NeverDeployed(list)
    }
}

/// The newest deployed revision of `release` (`helm history`); None: a first install.
fn deployed_revision(
    helm: &Path,
    conn: &Connection,
    release: &str,
    notes: &mut Vec<String>,
) -> Result<Option<u64>> {
    let mut args: Vec<OsString> = vec!["history".into(), release.into(), "--output=json".into()];
    args.extend(conn.args());
    let out = helm::output(helm, &args, "helm history")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("release: not found") {
            notes.push(format!(
                "no release {release} in {}: a first install",
                conn.describe()
            ));
            return Ok(None);
        }
        bail!(
            "cannot read the deployed release: `helm history {release}` failed ({}): {}\n  fix: check the cluster connection (kubeconfig, --kube-context, -n); lockstep does not guess the deployed release. Without a cluster, `helm lockstep template|plan ... --from VERSION` names the deployed release and renders offline",
            out.status,
            stderr.trim()
        );
    }
    let history: Vec<Revision> = serde_json::from_slice(&out.stdout).with_context(|| {
        format!("`helm history {release} -o json` printed something that is not a JSON list of revisions: {}", String::from_utf8_lossy(&out.stdout).trim())
    })?;
    match pick(&history) {
        Pick::Deployed(n) => Ok(Some(n)),
        Pick::NeverDeployed(list) if history.is_empty() => {
            notes.push(format!("release {release} has no revisions in {}: a first install ({list})", conn.describe()));
            Ok(None)
        }
        Pick::NeverDeployed(list) => {
            notes.push(format!("release {release} was never deployed (revisions: {list}): treated as a first install"));
            Ok(None)
        }
        Pick::Unclear(list) => bail!(
            "release {release} has no deployed revision, but was deployed before (revisions: {list}): its database may still hold that release's schema.\n  fix: name the release the database is at with --from VERSION"
        ),
    }
}

/// `helm get KIND RELEASE --revision=N` (metadata as JSON): its stdout; `what` names the
/// thing read in the error.
fn helm_get(
    helm: &Path,
    conn: &Connection,
    kind: &str,
    release: &str,
    revision: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let mut args: Vec<OsString> = vec![
        "get".into(),
        kind.into(),
        release.into(),
        format!("--revision={revision}").into(),
    ];
    if kind == "metadata" {
        args.push("--output=json".into());
    }
    args.extend(conn.args());
    let out = helm::output(helm, &args, &format!("helm get {kind}"))?;
    if !out.status.success() {
        bail!(
            "cannot read {what}: `helm get {kind}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Reads the deployed release from the cluster. None: nothing was ever deployed (first install).
pub(crate) fn lookup(
    helm: &Path,
    conn: &Connection,
    release: &str,
    chart: &source::ChartMeta,
    profile: &Profile,
    api_workload: Option<&WorkloadRef>,
    notes: &mut Vec<String>,
) -> Result<Option<ClusterRelease>> {
    let Some(revision) = deployed_revision(helm, conn, release, notes)? else {
        return Ok(None);
    };
    let what = format!("revision {revision} of release {release}");
    let out = helm_get(helm, conn, "metadata", release, revision, &what)?;
    let meta: Metadata = serde_json::from_slice(&out).with_context(|| {
        format!("`helm get metadata {release} --revision {revision} -o json` printed something that is not release metadata")
    })?;
    if meta.chart != chart.name {
        bail!(
            "release {release} (revision {revision}) runs the chart {:?}, not {:?}: lockstep cannot compare releases of different charts.\n  fix: check the release name and namespace; for template and plan, --from VERSION names the deployed release without asking the cluster",
            meta.chart,
            chart.name
        );
    }
    let image = match profile.releases.version_from {
        VersionSource::ImageTag => Some(deployed_image(
            helm,
            conn,
            release,
            revision,
            profile,
            api_workload,
        )?),
        _ => None,
    };
    let tag = image
        .as_deref()
        .map(locate::ImageRef::parse)
        .and_then(|i| i.tag);
    let fields = settings::ReleaseFields {
        chart_version: &meta.version,
        app_version: meta.app_version.as_deref(),
        image_tag: tag.as_deref(),
    };
    let (what, text) = settings::release_field(profile, fields);
    let version = gate::parse_version(&text).ok_or_else(|| {
        anyhow!(
            "cannot tell which release is deployed: the {what} {text:?} of release {release} revision {revision} is not a version (profile {} reads releases.versionFrom: {what})",
            profile.name
        )
    })?;
    notes.push(format!(
        "deployed: release {release} revision {revision}, {} {} ({what} {text}) in {}",
        meta.chart,
        meta.version,
        conn.describe()
    ));
    Ok(Some(ClusterRelease {
        release: release.to_owned(),
        revision,
        chart: meta.chart,
        version,
        image,
    }))
}

/// The API image of a deployed revision, from its manifest, found as the pipeline finds it.
pub(crate) fn deployed_image(
    helm: &Path,
    conn: &Connection,
    release: &str,
    revision: u64,
    profile: &Profile,
    api_workload: Option<&WorkloadRef>,
) -> Result<String> {
    let what = format!("the manifest of release {release} revision {revision}");
    let out = helm_get(helm, conn, "manifest", release, revision, &what)?;
    let text =
        String::from_utf8(out).context("`helm get manifest` printed output that is not UTF-8")?;
    let s = stream::split(&text)
        .with_context(|| format!("the manifest of release {release} revision {revision}"))?;
    let names = locate::Names {
        release: Some(release),
        charts: &profile.charts,
    };
    let api = locate::find(&s, profile, api_workload, names).with_context(|| {
        format!(
            "cannot find the API image in the manifest of release {release} revision {revision}"
        )
    })?;
    Ok(api.image.full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(revision: u64, status: &str) -> Revision {
        Revision {
            revision,
            status: status.to_owned(),
            chart: "c-1.0.0".to_owned(),
        }
    }

    #[test]
    fn newest_deployed_revision() {
        let h = vec![rev(1, "superseded"), rev(2, "deployed"), rev(3, "failed")];
        assert_eq!(pick(&h), Pick::Deployed(2));
        assert!(matches!(
            pick(&[rev(1, "failed"), rev(2, "pending-install")]),
            Pick::NeverDeployed(_)
        ));
        assert!(matches!(
            pick(&[rev(1, "superseded"), rev(2, "uninstalled")]),
            Pick::Unclear(_)
        ));
        assert!(matches!(pick(&[]), Pick::NeverDeployed(_)));
        let json = r#"[{"revision":1,"updated":"x","status":"deployed","chart":"c-1.0.0","app_version":"1","description":"Install complete"}]"#;
        let h: Vec<Revision> = serde_json::from_str(json).unwrap();
        assert_eq!(pick(&h), Pick::Deployed(1));
        let m: Metadata = serde_json::from_str(
            r#"{"name":"p","chart":"prefect-cloud","version":"0.8.2","appVersion":"3.1.0","namespace":"p","revision":2,"status":"deployed","deployedAt":"x","labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                m.chart.as_str(),
                m.version.as_str(),
                m.app_version.as_deref()
            ),
            ("prefect-cloud", "0.8.2", Some("3.1.0"))
        );
    }
}
