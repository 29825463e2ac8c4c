//! Locate: find the API workload and what a migration needs from it.
//!
//! Given the split stream and a profile (or an explicit `--api-workload`), this
//! module finds exactly one Deployment or StatefulSet and its API container, and
//! reads them into k8s-openapi types: image, env, volumes, pod settings.
//!
//! It owns the rules for "which workload is the API" and "is its image usable".
//! It must not change any document, and it parses only workload documents.

use crate::profile::Profile;
use crate::stream::{Doc, Stream};
use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// `--api-workload KIND/NAME[:CONTAINER]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: String,
    pub name: String,
    pub container: Option<String>,
}

impl std::str::FromStr for WorkloadRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not KIND/NAME[:CONTAINER], e.g. Deployment/prefect-server:prefect-server"
            )
        };
        let (kind, rest) = s.split_once('/').ok_or_else(bad)?;
        let (name, container) = match rest.split_once(':') {
            Some((n, c)) => (n, Some(c.to_owned())),
            None => (rest, None),
        };
        if kind.is_empty() || name.is_empty() || container.as_deref() == Some("") {
            return Err(bad());
        }
        Ok(WorkloadRef {
            kind: kind.to_owned(),
            name: name.to_owned(),
            container,
        })
    }
}

/// The API workload, read into typed pieces.
#[derive(Debug, Clone)]
pub struct ApiWorkload {
    /// Index of its document in the stream.
    pub doc: usize,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub pod: PodSpec,
    pub container: Container,
    pub image: ImageRef,
}

impl ApiWorkload {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}{} container {}",
            self.kind,
            self.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            self.name,
            self.container.name
        )
    }

    /// The literal value of an env variable of the API container, if set as one.
    pub(crate) fn env_literal(&self, name: &str) -> Option<&str> {
        self.container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    pub(crate) fn has_env(&self, name: &str) -> bool {
        self.container.env.iter().flatten().any(|e| e.name == name)
    }
}

/// An image reference split as written: `repo[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub full: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub(crate) fn parse(image: &str) -> ImageRef {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_owned())),
            None => (image, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let tag = name[last_slash..]
            .rfind(':')
            .map(|i| name[last_slash + i + 1..].to_owned());
        ImageRef {
            full: image.to_owned(),
            tag,
            digest,
        }
    }
}

/// What a name pattern's placeholders stand for: the Helm release (unknown for a
/// stream without --release: the placeholder then matches any name) and the
/// chart names of the profile, for `{fullname}`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    pub release: Option<&'a str>,
    pub charts: &'a [String],
}

impl Names<'_> {
    /// Whether `name` matches `pattern`: exact text, `*` (any run of characters),
    /// `{release}`, and `{fullname}` (Helm's usual fullname: the release when it
    /// contains the chart's name, else `<release>-<chart>`).
    pub(crate) fn matches(&self, pattern: &str, name: &str) -> bool {
        let Some(release) = self.release else {
            let p = pattern.replace("{release}", "*").replace("{fullname}", "*");
            return glob(&p, name);
        };
        let p = pattern.replace("{release}", release);
        if !p.contains("{fullname}") {
            return glob(&p, name);
        }
        let mut full: Vec<String> = self
            .charts
            .iter()
            .map(|c| {
                if release.contains(c.as_str()) {
                    release.to_owned()
                } else {
                    format!("{release}-{c}")
                }
            })
            .collect();
        if full.is_empty() {
            full.push(release.to_owned());
        }
        full.iter().any(|f| glob(&p.replace("{fullname}", f), name))
    }
}

/// `*` matches any run of characters; everything else is literal.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Labels of a workload's pod template, string values only.
pub(crate) fn pod_labels(value: &Value) -> BTreeMap<String, String> {
    value
        .get("spec")
        .and_then(|s| s.get("template"))
        .map(labels)
        .unwrap_or_default()
}

/// Finds the API workload among the stream's documents.
pub(crate) fn find(
    stream: &Stream,
    profile: &Profile,
    explicit: Option<&WorkloadRef>,
    names: Names,
) -> Result<ApiWorkload> {
    let mut workloads = Vec::new(); // every workload, for messages
    let mut found = Vec::new();
    for (i, doc) in stream.docs.iter().enumerate() {
        let Some(head) = &doc.head else { continue };
        let kinds: &[String] = &profile.workload.kinds;
        let wanted = match explicit {
            Some(r) => head.kind == r.kind,
            None => kinds.iter().any(|k| *k == head.kind),
        };
        if !wanted {
            continue;
        }
        workloads.push(format!("{}/{}", head.kind, head.name));
        let matches = match explicit {
            Some(r) => head.name == r.name,
            None => {
                let v = doc.value()?;
                profile
                    .workload
                    .name
                    .as_ref()
                    .is_none_or(|n| names.matches(n, &head.name))
                    && labels_match(&labels(v), &profile.workload.match_labels)
                    && labels_match(&pod_labels(v), &profile.workload.pod_labels)
            }
        };
        if matches {
            found.push(i);
        }
    }
    let wanted = match explicit {
        Some(r) => format!("{}/{}", r.kind, r.name),
        None => describe_match(profile),
    };
    let seen = if workloads.is_empty() {
        "none".to_owned()
    } else {
        workloads.join(", ")
    };
    match found.as_slice() {
        [] => bail!(
            "no API workload found: looked for {wanted}; workloads in the stream: {seen}. Name it with --api-workload KIND/NAME[:CONTAINER], or choose the profile that fits this chart (--profile)"
        ),
        [i] => read(*i, &stream.docs[*i], profile, explicit),
        many => bail!(
            "{} workloads match {wanted}: {}. Name the API with --api-workload KIND/NAME[:CONTAINER]",
            many.len(),
            many.iter()
                .map(|i| stream.docs[*i].describe())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe_match(profile: &Profile) -> String {
    let w = &profile.workload;
    let mut parts = vec![w.kinds.join(" or ")];
    if let Some(n) = &w.name {
        parts.push(format!("named {n}"));
    }
    let pairs = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !w.match_labels.is_empty() {
        parts.push(format!("labelled {}", pairs(&w.match_labels)));
    }
    if !w.pod_labels.is_empty() {
        parts.push(format!("with pods labelled {}", pairs(&w.pod_labels)));
    }
    format!("{} (profile {})", parts.join(" "), profile.name)
}

/// `metadata.labels` of a parsed document, string values only.
pub(crate) fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar_text(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn labels_match(
    labels: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod template's spec of a workload document, typed.
pub(crate) fn pod_spec(doc: &Doc) -> Result<PodSpec> {
    let spec = doc
        .value()?
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .ok_or_else(|| anyhow!("{} has no spec.template.spec", doc.describe()))?;
    let mut spec = spec.clone();
    yaml11_modes(&mut spec);
    serde_yaml::from_value(spec).with_context(|| {
        format!(
            "{}: spec.template.spec is not a valid pod spec",
            doc.describe()
        )
    })
}

/// File modes written the YAML 1.1 way (`defaultMode: 0555`, octal, as Kubernetes
/// reads it) arrive as strings from a YAML 1.2 reader: they become the number
/// Kubernetes would see (0555 → 365), so the pod spec can be typed.
fn yaml11_modes(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let is_mode = matches!(k.as_str(), Some("defaultMode" | "mode"));
                let octal = match child {
                    Value::String(s) if is_mode && s.len() > 1 && s.starts_with('0') => {
                        u32::from_str_radix(&s[1..], 8).ok()
                    }
                    _ => None,
                };
                match octal {
                    Some(n) => *child = Value::from(n),
                    None => yaml11_modes(child),
                }
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(yaml11_modes),
        _ => {}
    }
}

/// The image of `container` of the workload `doc`, which must have one.
pub(crate) fn image_of(doc: &Doc, container: &Container) -> Result<String> {
    match container.image.as_deref() {
        Some(image) if !image.is_empty() => Ok(image.to_owned()),
        _ => bail!(
            "{} container {} has no image",
            doc.describe(),
            container.name
        ),
    }
}

fn read(
    i: usize,
    doc: &Doc,
    profile: &Profile,
    explicit: Option<&WorkloadRef>,
) -> Result<ApiWorkload> {
    let head = doc.head.as_ref().expect("workloads have heads");
    let pod = pod_spec(doc)?;
    let wanted = explicit
        .and_then(|r| r.container.as_deref())
        .or(profile.workload.container.as_deref());
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    let container = match wanted {
        Some(name) => pod.containers.iter().find(|c| c.name == name).ok_or_else(|| {
            anyhow!(
                "{} has no container {name:?} (containers: {}). Name the API container with --api-workload {}/{}:CONTAINER",
                doc.describe(), names.join(", "), head.kind, head.name
            )
        })?,
        None => match pod.containers.as_slice() {
            [only] => only,
            _ => bail!(
                "{} has {} containers ({}): say which runs the API with --api-workload {}/{}:CONTAINER",
                doc.describe(), names.len(), names.join(", "), head.kind, head.name
            ),
        },
    }
    .clone();
    let image_text = image_of(doc, &container)?;
    let image = ImageRef::parse(&image_text);
    if image.tag.is_none() && image.digest.is_none() {
        bail!(
            "the API image {image_text:?} ({} container {}) has no tag: the migration would run whatever `latest` is when the pod starts, not the release you render. Pin a tag or a digest in the chart's values",
            doc.describe(), container.name
        );
    }
    if image.tag.as_deref() == Some("latest") && image.digest.is_none() {
        bail!(
            "the API image {image_text:?} ({} container {}) uses `:latest`: a migration must run exactly the release being deployed. Pin a version tag or a digest in the chart's values",
            doc.describe(), container.name
        );
    }
    Ok(ApiWorkload {
        doc: i,
        kind: head.kind.to_string(),
        name: head.name.to_string(),
        namespace: head.namespace.as_ref().map(|n| n.to_string()),
        labels: labels(doc.value()?),
        pod,
        container,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("registry:5000/prefecthq/prefect:3.7.8-python3.11@sha256:ab");
        assert_eq!(r.tag.as_deref(), Some("3.7.8-python3.11"));
        assert_eq!(r.digest.as_deref(), Some("sha256:ab"));
        let r = ImageRef::parse("registry:5000/prefecthq/prefect");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn name_patterns() {
        let charts = vec!["sentry".to_owned()];
        let n = |r| Names {
            release: r,
            charts: &charts,
        };
        assert!(n(Some("errors")).matches("{fullname}-web", "errors-sentry-web"));
        assert!(n(Some("sentry")).matches("{fullname}-web", "sentry-web"));
        assert!(!n(Some("sentry")).matches("{fullname}-web", "sentry-sentry-web"));
        assert!(n(Some("kong")).matches("{release}-kong", "kong-kong"));
        assert!(!n(Some("kong")).matches("{release}-kong", "edge-kong"));
        assert!(n(None).matches("{release}-kong", "edge-kong"));
        assert!(n(Some("x")).matches("*-db-init", "x-snuba-db-init"));
        assert!(n(Some("x")).matches("{release}-db-init", "x-db-init"));
        assert!(!n(Some("x")).matches("{release}-db-init", "x-snuba-db-init"));
        assert!(glob("a*b*c", "a-b-c") && !glob("a*b*c", "a-c"));
    }

    #[test]
    fn workload_refs() {
        let r: WorkloadRef = "Deployment/web:api".parse().unwrap();
        assert_eq!(r.container.as_deref(), Some("api"));
        assert!("Deployment".parse::<WorkloadRef>().is_err());
        assert!("Deployment/web:".parse::<WorkloadRef>().is_err());
    }
}
