//! The Helm plugin front-end: `helm lockstep template|plan|install|upgrade RELEASE CHART [flags]`.
//!
//! Helm runs `$HELM_PLUGIN_DIR/bin/lockstep helm ARGS...` with its plugin environment:
//! `HELM_BIN`, `HELM_NAMESPACE`, `HELM_KUBECONTEXT` (helm strips its global flags such as
//! `-n` and `--kube-context` from ARGS and passes them this way).
//!
//! This module gathers what a `helm lockstep` run gives (its flags, HELM_NAMESPACE, the
//! deployed release) for [`settings::resolve`] and runs the shared pipeline
//! ([`crate::run`]) into a buffer, so a gate refusal exits 3 before helm changes
//! anything. By concern:
//! * [`args`]: the whitelist of flags. Nothing the user typed reaches helm as a flag of
//!   its own; install/upgrade flags are validated and handed to helm as `--flag=value`;
//! * [`cluster`]: the deployed release, read from the cluster with the real helm;
//! * [`chart`]: install/upgrade through a temporary chart whose only template is the
//!   final stream, so helm takes lockstep's hooks as real hooks (Helm 3 post-renderers
//!   can neither see nor create hooks).
//!
//! It owns no stage: rendering, locating, gating and injecting are the pipeline's.

mod args;
mod chart;
mod cluster;

use crate::settings::{self, FrontEnd, Inputs, Setting};
use crate::{exit, gate, helm, source, Input, Request};
use anyhow::{anyhow, Result};
use args::{Action, Invocation, Parsed, PlanOutput, USAGE};
use cluster::{deployed_image, lookup, Connection};
use std::io::Write;
use std::path::Path;

/// Entry point of `lockstep helm ...`.
pub fn main(args: &[String], notes: &mut Vec<String>) -> Result<()> {
    let inv = match args::parse(args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return Ok(());
        }
        Ok(Parsed::Run(inv)) => inv,
        Err(msg) => return Err(usage(&msg)),
    };
    // A chart not on disk is pulled once; `_pulled` keeps it until helm is done with it.
    let mut inv = inv;
    let (path, _pulled) = crate::fetch::resolve(&inv.chart.path.to_string_lossy(), &inv.pull)?;
    inv.pulled = _pulled.is_some();
    inv.chart.path = path;
    let helm = helm::helm_bin()?;
    match inv.command.expect("parse sets the command") {
        Action::Template => {
            let req = build_request(&helm, &inv, notes)?;
            let mut buf = Vec::new();
            crate::run(&req, &mut buf, notes)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)?;
            out.flush()?;
            Ok(())
        }
        Action::Plan => plan(&helm, &inv, notes),
        Action::Install | Action::Upgrade => chart::deploy(&helm, &inv, notes),
    }
}

/// A usage error (exit 2): the message, then the usage.
pub(super) fn usage(msg: &str) -> anyhow::Error {
    exit::Usage(format!("{msg}\n\n{USAGE}")).into()
}

/// Gathers the flags, HELM_NAMESPACE and the deployed release (from the cluster, unless
/// `--from` names it for template and plan) for the settings layer.
pub(super) fn build_request(
    helm: &Path,
    inv: &Invocation,
    notes: &mut Vec<String>,
) -> Result<Request> {
    let cmd = inv.command.expect("parsed");
    let mut inputs = Inputs::new(
        FrontEnd::HelmPlugin {
            plan: cmd == Action::Plan,
        },
        Input::Chart(inv.chart.clone()),
    );
    inputs.flags = inv.flags.clone();
    inputs.platform.namespace = env("HELM_NAMESPACE");
    let namespace = inputs.pick(Setting::Namespace, |l| l.namespace);
    let conn = Connection::new(namespace.map(|(_, ns)| ns), inv);
    let meta = source::read_chart(&inv.chart.path)?.meta;
    let root = crate::chart_repository(None, &inv.chart.path)?;
    let chart = settings::ChartAt {
        meta: &meta,
        root: &root,
        path: &inv.chart.path,
    };
    // The pipeline notes its choice of profile; the same choice here is not noted twice.
    let profile =
        settings::choose_profile(inv.flags.profile.as_deref(), Some(chart), &mut Vec::new())?;
    if !inv.pulled {
        crate::fetch::check_version(&inv.chart.path, inv.pull.version.as_deref(), &meta)?;
    }
    inputs.cluster = if inv.flags.from.is_some() && !cmd.deploys() {
        notes.push(format!(
            "the deployed release is {} (--from); the cluster was not asked",
            inv.flags.from.as_deref().unwrap_or_default()
        ));
        None
    } else {
        let mut d = lookup(
            helm,
            &conn,
            inv.release(),
            &meta,
            &profile,
            inv.flags.api_workload.as_ref(),
            notes,
        )?;
        // A downgrade Job runs the deployed (newer) image: read it from the deployed manifest.
        if let Some(d) = d.as_mut().filter(|d| {
            inv.flags.allow_downgrade == Some(true)
                && inv.flags.from_image.is_none()
                && d.image.is_none()
        }) {
            d.image = Some(deployed_image(
                helm,
                &conn,
                inv.release(),
                d.revision,
                &profile,
                inv.flags.api_workload.as_ref(),
            )?);
        }
        d
    };
    settings::resolve(inputs, notes)
}

/// A variable of helm's plugin environment; empty counts as not set.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// `helm lockstep plan`: the stops from the deployed release to the chart's.
fn plan(helm: &Path, inv: &Invocation, notes: &mut Vec<String>) -> Result<()> {
    let req = build_request(helm, inv, notes)?;
    // The target as the pipeline reads it; the gate's verdict is the plan's to explain.
    let target_req = Request {
        from: None,
        ..req.clone()
    };
    let mut scratch = Vec::new();
    let rendered = crate::obtain(&target_req, &mut scratch)?;
    let a = crate::analyze(&target_req, &rendered.text, &rendered.origin, &mut scratch)?;
    let text = match req.from.as_deref() {
        Some(f) => {
            let from = gate::parse_version(f).ok_or_else(|| anyhow!("--from {f:?} is not a version (e.g. 0.8.2)"))?;
            let p = gate::plan(&a.profile, &from, &a.target)?;
            match inv.output {
                PlanOutput::Text => p.to_text(),
                PlanOutput::Json => serde_json::to_string_pretty(&p)? + "\n",
            }
        }
        None => match inv.output {
            PlanOutput::Text => format!(
                "First install of {} {} as release {} (profile {}): no deployed release, nothing to upgrade from.\n",
                a.chart.name, a.target, inv.release(), a.profile.name
            ),
            PlanOutput::Json => {
                serde_json::to_string_pretty(&serde_json::json!({
                    "profile": a.profile.name,
                    "from": null,
                    "to": a.target.to_string(),
                    "firstInstall": true,
                    "stops": [],
                }))? + "\n"
            }
        },
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
