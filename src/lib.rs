//! lockstep: database migrations locked to the API image, injected as hooks.
//!
//! One pipeline, one direction:
//!
//! ```text
//! source → render → stream → locate → gate → inject → emit
//! ```
//!
//! * [`source`]: chart metadata and the user's merged values;
//! * [`render`]: the real helm, as a subprocess with argument vectors;
//! * [`stream`]: split the rendered stream; untouched documents stay byte slices;
//! * [`locate`]: the API workload and its container, as k8s-openapi types;
//! * [`gate`]: which release this is, whether it may follow the deployed one,
//!   and the values checks of each step crossed;
//! * [`inject`]: the Jobs, gate and record to add, and edits to the chart's own;
//! * [`emit`]: the output bytes, written only after everything passed.
//!
//! Front-ends (the CLI in `main.rs`, [`argocd`], [`helm_plugin`]) only build a
//! [`Request`] and call [`run`]; none of them re-implements a stage.

pub mod argocd;
pub mod config;
pub mod emit;
pub mod exit;
pub mod fetch;
pub mod gate;
pub mod guard;
pub mod helm;
pub mod helm_plugin;
pub mod inject;
pub mod locate;
pub mod private_dir;
pub mod profile;
pub mod settings;
pub mod source;
pub mod stream;
pub mod template;
pub mod values;
pub mod yaml;

use anyhow::{anyhow, bail, Context, Result};
use gate::{Admission, Refusal};
use inject::{Injection, Options, Phase};
use locate::{ApiWorkload, WorkloadRef};
use profile::{Profile, VersionSource};
use semver::Version;
use source::ChartMeta;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// A chart to render with helm.
#[derive(Debug, Clone, Default)]
pub struct ChartInput {
    pub path: PathBuf,
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub set_string: Vec<String>,
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Input {
    Chart(ChartInput),
    /// An already rendered stream (stdin).
    Stream(source::Text),
}

/// Everything one render needs, whichever front-end built it.
#[derive(Debug, Clone)]
pub struct Request {
    pub input: Input,
    pub release: Option<String>,
    pub namespace: Option<String>,
    pub profile: Option<String>,
    pub api_workload: Option<WorkloadRef>,
    pub phase: Phase,
    pub job_template: Option<PathBuf>,
    /// The deployed release, when known (`--from`, `LOCKSTEP_FROM`, lockstep.lock).
    pub from: Option<String>,
    pub from_image: Option<String>,
    pub allow_downgrade: bool,
    pub downgrade_revisions: BTreeMap<String, String>,
    pub gate_image: Option<String>,
    /// The repository the chart and every file it reads must stay in; default: the
    /// nearest directory above the chart holding `.git`, else the chart's own.
    pub repository: Option<PathBuf>,
    /// Run the migrations even when the release record says they are done.
    pub force_migrations: bool,
}

impl Request {
    pub(crate) fn new(input: Input) -> Request {
        Request {
            input,
            release: None,
            namespace: None,
            profile: None,
            api_workload: None,
            phase: Phase::Presync,
            job_template: None,
            from: None,
            from_image: None,
            allow_downgrade: false,
            downgrade_revisions: BTreeMap::new(),
            gate_image: None,
            repository: None,
            force_migrations: false,
        }
    }
}

/// What the stages found, before anything is injected.
pub(crate) struct Analysis<'a> {
    pub stream: stream::Stream<'a>,
    pub profile: Profile,
    pub chart: ChartMeta,
    pub release: String,
    pub api: ApiWorkload,
    pub target: Version,
    pub admission: Admission,
}

/// What the source stage learnt besides the text; all `None` for a given stream.
#[derive(Default)]
pub(crate) struct Origin {
    /// Chart.yaml of the rendered chart.
    pub chart: Option<ChartMeta>,
    pub profile: Option<Profile>,
    /// The values helm rendered with: the chart's defaults, the files, `--set`.
    pub values: Option<serde_yaml::Value>,
    /// The user's own values: the files and `--set`, without the chart's defaults.
    pub user: Option<serde_yaml::Value>,
}

/// The text to work on: helm's render of the chart, or the given stream
/// (borrowed from the request, not copied).
pub(crate) struct Rendered<'r> {
    pub text: std::borrow::Cow<'r, str>,
    pub origin: Origin,
}

/// The source and render stages under way: helm renders (or the stream is at hand)
/// while the caller goes on; [`Pending::finish`] gives the text.
pub(crate) struct Pending<'r> {
    text: PendingText<'r>,
    pub origin: Origin,
}

enum PendingText<'r> {
    Given(&'r str),
    Helm(helm::Running),
}

impl<'r> Pending<'r> {
    /// Waits for the render.
    pub(crate) fn finish(self) -> Result<Rendered<'r>> {
        let text = match self.text {
            PendingText::Given(text) => std::borrow::Cow::Borrowed(text),
            PendingText::Helm(running) => running.finish()?.into(),
        };
        Ok(Rendered {
            text,
            origin: self.origin,
        })
    }
}

/// Runs the source and render stages.
pub(crate) fn obtain<'r>(req: &'r Request, notes: &mut Vec<String>) -> Result<Rendered<'r>> {
    begin(req, notes)?.finish()
}

/// Starts the source and render stages: starts helm, and while it renders works out
/// the profile, the values and the gate that needs no render. An error there stops
/// helm.
pub(crate) fn begin<'r>(req: &'r Request, notes: &mut Vec<String>) -> Result<Pending<'r>> {
    check_request(req)?;
    match &req.input {
        Input::Stream(text) => Ok(Pending {
            text: PendingText::Given(text),
            origin: Origin {
                profile: req.profile.as_deref().map(profile::load).transpose()?,
                ..Origin::default()
            },
        }),
        Input::Chart(c) => {
            let helm = helm::helm_bin()?;
            let root = chart_repository(req.repository.as_deref(), &c.path)?;
            if c.path.is_dir() {
                // Before helm reads a byte of it: helm follows symlinks.
                guard::chart_tree(&root, &c.path)?;
            }
            let source::LocalChart {
                meta,
                defaults: chart_defaults,
            } = source::read_chart(&c.path)?;
            let release = release_name(req, Some(&meta))?;
            let args = helm::TemplateArgs {
                release,
                chart: c.path.clone(),
                namespace: req.namespace.clone(),
                values: c.values.clone(),
                set: c.set.clone(),
                set_string: c.set_string.clone(),
                kube_version: c.kube_version.clone(),
                api_versions: c.api_versions.clone(),
            };
            // helm renders while the profile, the values and the gate are worked out
            // here; an error in them stops helm (dropping `rendering` kills it).
            let rendering = helm::template(&helm, &args)?;
            let chart = settings::ChartAt {
                meta: &meta,
                root: &root,
                path: &c.path,
            };
            let profile = settings::choose_profile(req.profile.as_deref(), Some(chart), notes)?;
            let values =
                source::merged_values(Some(&chart_defaults), &c.values, &c.set, &c.set_string)?;
            let user = source::merged_values(None, &c.values, &c.set, &c.set_string)?;
            // The gate before helm's output is used, when the release is known without
            // rendering: a chart that `fail`s on a key an older release read must not
            // hide the gate's refusal and its fix (`lockstep values migrate`).
            let early_target = match profile.releases.version_from {
                VersionSource::ImageTag => None,
                _ => gate::parse_release(&settings::release_field(&profile, fields(&meta, None)).1),
            };
            if let Some((target, floating)) = early_target {
                gate_check(req, &profile, &meta.name, &target, floating, &user, &values)?;
            }
            Ok(Pending {
                text: PendingText::Helm(rendering),
                origin: Origin {
                    chart: Some(meta),
                    profile: Some(profile),
                    values: Some(values),
                    user: Some(user),
                },
            })
        }
    }
}

/// What a front-end gathered from flags, environment, parameters and files, checked
/// before it reaches a manifest or a message: every front-end passes through here.
fn check_request(req: &Request) -> Result<()> {
    if let Some(ns) = &req.namespace {
        guard::namespace(ns, "the namespace")?;
    }
    if let Some(from) = &req.from {
        guard::version(
            from,
            "the deployed release (--from, LOCKSTEP_FROM, the `from` parameter or lockstep.lock)",
        )?;
    }
    if let Some(img) = &req.gate_image {
        guard::image(img, "the gate image (--gate-image or gateImage)")?;
    }
    if let Some(img) = &req.from_image {
        guard::image(img, "the deployed image (--from-image or lockstep.lock)")?;
    }
    Ok(())
}

/// The repository a chart must stay in: `given` ([`Request::repository`]), else the
/// nearest directory above the chart holding `.git`, else the chart's own.
pub(crate) fn chart_repository(
    given: Option<&std::path::Path>,
    chart: &std::path::Path,
) -> Result<PathBuf> {
    if let Some(root) = given {
        return Ok(root.to_path_buf());
    }
    let real = chart
        .canonicalize()
        .with_context(|| format!("chart {} does not exist: pass a chart directory or a packaged .tgz (default: the current directory)", chart.display()))?;
    let dir = if real.is_dir() {
        real
    } else {
        real.parent().map(PathBuf::from).unwrap_or(real)
    };
    Ok(config::enclosing_repository(&dir))
}

fn release_name(req: &Request, meta: Option<&ChartMeta>) -> Result<String> {
    let name = req
        .release
        .clone()
        .or_else(|| meta.map(|m| m.name.clone()))
        .ok_or_else(|| anyhow!("no release name: pass --release NAME"))?;
    if let Some(problem) = settings::release_name_problem(&name) {
        bail!("{problem}. Pass a valid --release");
    }
    Ok(name)
}

/// Runs stream, locate and gate over a rendered text.
pub(crate) fn analyze<'a>(
    req: &Request,
    text: &'a str,
    origin: &Origin,
    notes: &mut Vec<String>,
) -> Result<Analysis<'a>> {
    let stream = match stream::split(text) {
        Err(e) if origin.chart.is_some() => {
            return Err(e.context("the output of `helm template` is not a manifest stream lockstep can read: check that HELM_BIN is helm and that the chart renders Kubernetes objects"))
        }
        r => r?,
    };
    let profile = match &origin.profile {
        Some(p) => p.clone(),
        None => {
            // Labels carry no annotations: no file is named here.
            let meta = stream_chart_meta(&stream);
            let chart = meta.as_ref().map(|meta| settings::ChartAt {
                meta,
                root: std::path::Path::new(""),
                path: std::path::Path::new(""),
            });
            settings::choose_profile(req.profile.as_deref(), chart, notes)?
        }
    };
    let hint = match &req.input {
        Input::Chart(_) => Some(release_name(req, origin.chart.as_ref())?),
        Input::Stream(_) => req.release.clone(),
    };
    let names = locate::Names {
        release: hint.as_deref(),
        charts: &profile.charts,
    };
    let api = locate::find(&stream, &profile, req.api_workload.as_ref(), names)?;
    let chart = origin
        .chart
        .clone()
        .or_else(|| source::meta_from_workload(&api))
        .unwrap_or_else(|| ChartMeta {
            name: profile.name.clone(),
            ..Default::default()
        });
    let release = release_of(req, &api, &chart)?;
    let (target, floating) = identify(&profile, &chart, &api)?;
    if req.from.is_none() {
        notes.push(format!(
            "no deployed release is known (--from, LOCKSTEP_FROM or lockstep.lock): only the in-cluster gate protects this sync of {} {target}",
            chart.name
        ));
    }
    let empty = serde_yaml::Value::Null;
    let admission = gate_check(
        req,
        &profile,
        &chart.name,
        &target,
        floating,
        origin.user.as_ref().unwrap_or(&empty),
        origin.values.as_ref().unwrap_or(&empty),
    )?;
    step_notes(&admission, notes);
    Ok(Analysis {
        stream,
        profile,
        chart,
        release,
        api,
        target,
        admission,
    })
}

/// The release name: the request's, else (for a stream) the API workload's instance
/// label, else the chart's name.
fn release_of(req: &Request, api: &ApiWorkload, chart: &ChartMeta) -> Result<String> {
    match &req.input {
        Input::Chart(_) => release_name(req, Some(chart)),
        Input::Stream(_) => release_name(
            &Request {
                release: req
                    .release
                    .clone()
                    .or_else(|| api.labels.get("app.kubernetes.io/instance").cloned())
                    // Charts with the older label convention (Sentry): `release`.
                    .or_else(|| api.labels.get("release").cloned()),
                // Only the name is read: no copy of the input stream.
                ..Request::new(Input::Stream(String::new().into()))
            },
            Some(chart),
        ),
    }
}

/// The notes and requirements of each step the upgrade crosses, for the user.
fn step_notes(admission: &Admission, notes: &mut Vec<String>) {
    for step in &admission.steps {
        for note in step.info.iter().flat_map(|i| &i.notes) {
            notes.push(format!("{} → {}: {note}", step.from_line, step.to_line));
        }
        for req in step.info.iter().flat_map(|i| &i.requires) {
            notes.push(format!(
                "{} → {} requires: {req}",
                step.from_line, step.to_line
            ));
        }
    }
}

/// The render-time gate: may `target` follow the deployed release, and do the
/// values (`user`: files and --set; `effective`: over the chart's defaults)
/// pass the breaking rules of the step?
fn gate_check(
    req: &Request,
    profile: &Profile,
    chart: &str,
    target: &Version,
    floating: bool,
    user: &serde_yaml::Value,
    effective: &serde_yaml::Value,
) -> Result<Admission> {
    let from = req
        .from
        .as_deref()
        .map(|f| {
            gate::parse_version(f)
                .ok_or_else(|| anyhow!("the deployed release {f:?} is not a version (e.g. 0.8.2)"))
        })
        .transpose()?;
    let admission = gate::admit_release(
        profile,
        chart,
        from.as_ref(),
        target,
        floating,
        req.allow_downgrade,
    )
    .map_err(anyhow::Error::new)?;
    let findings = gate::check_values_with(&admission.steps, user, effective);
    if !findings.is_empty() {
        let list: Vec<String> = findings
            .iter()
            .map(|f| format!("  - [{}] {}\n    fix: {}", f.step, f.problem, f.fix))
            .collect();
        return Err(anyhow::Error::new(Refusal(format!(
            "refusing to render {chart} {target}: the values break {} rule{} of the upgrade from {}:\n{}",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            admission.from.as_ref().map(ToString::to_string).unwrap_or_default(),
            list.join("\n")
        ))));
    }
    Ok(admission)
}

/// Refuses a stream in which a document lockstep adds (its record ConfigMap, its gate
/// and migration Jobs) has the same API group, kind, namespace and name as one of the
/// chart's own that stays: applied, one would replace the other, and the in-cluster gate
/// trusts the record by its name. A document without a namespace is in `namespace`
/// (the release's), as helm and Argo CD apply it.
fn refuse_collisions(
    stream: &stream::Stream,
    injection: &Injection,
    namespace: Option<&str>,
) -> Result<()> {
    if injection.added.is_empty() {
        return Ok(());
    }
    let key = |h: &stream::Head| {
        let group = h
            .api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned();
        let ns = h
            .namespace
            .as_deref()
            .or(namespace)
            .unwrap_or("")
            .to_owned();
        (group, h.kind.to_string(), ns, h.name.to_string())
    };
    let added = injection.added.concat();
    let ours = stream::split(&added).context("lockstep's own documents do not read back")?;
    let ours: Vec<_> = ours
        .docs
        .iter()
        .filter_map(|d| d.head.as_ref().map(|h| (key(h), d)))
        .collect();
    for (i, doc) in stream.docs.iter().enumerate() {
        if matches!(injection.edits.get(&i), Some(inject::Edit::Drop)) {
            continue;
        }
        let Some(head) = &doc.head else { continue };
        let k = key(head);
        if let Some((_, mine)) = ours.iter().find(|(o, _)| *o == k) {
            let name = mine
                .head
                .as_ref()
                .map(|h| format!("{} {}", h.kind, h.name))
                .unwrap_or_default();
            bail!(
                "the chart renders {}, which has the kind, namespace and name of a document lockstep adds ({name}): applied, one would replace the other, and the upgrade gate trusts lockstep's by its name. Rename the chart's object, or render under another release name (--release)",
                doc.describe()
            );
        }
    }
    Ok(())
}

/// The chart a rendered stream came from, by its workloads' `helm.sh/chart`
/// labels: the first whose chart has a profile (subcharts such as a bundled
/// database may come first, e.g. in Helm 4's post-renderer order), else the first.
fn stream_chart_meta(stream: &stream::Stream) -> Option<ChartMeta> {
    let metas: Vec<ChartMeta> = stream
        .docs
        .iter()
        .filter(|d| {
            d.head
                .as_ref()
                .is_some_and(|h| profile::API_KINDS.contains(&h.kind.as_ref()))
        })
        .filter_map(|d| source::meta_from_labels(&locate::labels(d.value().ok()?)))
        .collect();
    let known = metas
        .iter()
        .position(|m| profile::detect(&m.name, None).is_ok());
    metas.into_iter().nth(known.unwrap_or(0))
}

/// The release being rendered, read where the profile says, and whether it floats
/// (`kong:3.9`: any 3.9.x).
fn identify(profile: &Profile, chart: &ChartMeta, api: &ApiWorkload) -> Result<(Version, bool)> {
    let (what, text) = settings::release_field(profile, fields(chart, api.image.tag.as_deref()));
    gate::parse_release(&text).ok_or_else(|| {
        anyhow!(
            "cannot tell which release this is: the {what} {text:?} ({}) is not a version. Profile {} reads the release from the {what}; pin a versioned tag or use a profile that reads another field (releases.versionFrom)",
            api.image.full, profile.name
        )
    })
}

/// Where a chart's release can be read from.
fn fields<'a>(chart: &'a ChartMeta, image_tag: Option<&'a str>) -> settings::ReleaseFields<'a> {
    settings::ReleaseFields {
        chart_version: &chart.version,
        app_version: chart.app_version.as_deref(),
        image_tag,
    }
}

/// The whole pipeline: writes the final stream to `out` only when every stage passed.
pub fn run(req: &Request, out: &mut dyn Write, notes: &mut Vec<String>) -> Result<()> {
    // The templates do not depend on the render: compile them on a thread while helm
    // renders or the stream is split (their errors are still reported only where they
    // were, after the analysis).
    std::thread::scope(|scope| {
        let templates = scope.spawn(|| load_templates(req));
        let join = move || {
            templates
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        let rendered = begin(req, notes)?.finish()?;
        produce(req, &rendered.text, &rendered.origin, join, notes, out)
    })
}

fn load_templates(req: &Request) -> Result<template::Templates> {
    let job_template = req
        .job_template
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --job-template {}", p.display()))
                .map(|t| (p.display().to_string(), t))
        })
        .transpose()?;
    template::Templates::new(job_template.as_ref().map(|(o, t)| (o.as_str(), t.clone())))
}

/// Stream, locate, gate, inject and emit over `text`. `templates` is called only when
/// a Job is to be injected.
fn produce<T: std::borrow::Borrow<template::Templates>>(
    req: &Request,
    text: &str,
    origin: &Origin,
    templates: impl FnOnce() -> Result<T>,
    notes: &mut Vec<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let a = analyze(req, text, origin, notes)?;
    let injection = match inject::skip_reason(&a.profile, &a.api) {
        Some(why) => {
            notes.push(format!(
                "no migration Job injected and nothing changed: {why}"
            ));
            Injection::default()
        }
        None => {
            let templates = templates()?;
            let opts = Options {
                release: a.release.clone(),
                namespace: req.namespace.clone(),
                chart_name: a.chart.name.clone(),
                phase: req.phase,
                gate_image: req.gate_image.clone(),
                deployed_image: req.from_image.clone(),
                downgrade_revisions: req.downgrade_revisions.clone(),
                force_migrations: req.force_migrations,
            };
            inject::inject(
                &a.stream,
                &a.profile,
                &a.api,
                &a.admission,
                templates.borrow(),
                &opts,
                notes,
            )?
        }
    };
    // A document without a namespace lands where lockstep's own go when none is given:
    // the API workload's.
    let namespace = req.namespace.as_deref().or(a.api.namespace.as_deref());
    refuse_collisions(&a.stream, &injection, namespace)?;
    let mut buf = std::io::BufWriter::with_capacity(1 << 16, out);
    emit::write(&a.stream, &injection, &mut buf)?;
    Ok(())
}
