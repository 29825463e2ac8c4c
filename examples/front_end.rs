//! A front-end in one file, as the README's Development section shows it: a (hypothetical)
//! GitLab CI job that renders the app whose lockstep.yaml is in a directory, with the
//! release named by `CI_ENVIRONMENT_NAME` when lockstep.yaml names none.
//!
//! It only gathers inputs; `settings::resolve` applies the precedence and `lockstep::run`
//! is the whole pipeline. `cargo run --example front_end -- examples/apps/prefect-server`
//! prints what `lockstep render` prints in that directory: tests/front_end.rs checks
//! that, byte for byte, and that the README shows this function as it is here.

use anyhow::{bail, Result};
use lockstep::config::{self, AppConfig, ChartSource, Lock};
use lockstep::settings::{self, FrontEnd, Inputs, Layer};
use lockstep::{ChartInput, Input, Request};
use std::path::Path;

// front-end: begin
pub fn build_request(dir: &Path) -> Result<Request> {
    let cfg = AppConfig::load(&dir.join(config::CONFIG_FILE))?;
    let root = config::enclosing_repository(&dir.canonicalize()?);
    let Some(ChartSource::Path(path)) = cfg.chart_source(&root, dir)? else {
        bail!("lockstep.yaml must name a chart in the repository");
    };
    let chart = ChartInput {
        path,
        values: cfg.values_in(&root, dir)?,
        set_string: cfg.set_strings(|_| false)?,
        ..ChartInput::default()
    };
    let mut inputs = Inputs::new(FrontEnd::Cli, Input::Chart(chart));
    inputs.config = Layer::from_config(&cfg)?;
    inputs.lock = Layer::from_lock(Lock::load(&dir.join(config::LOCK_FILE))?);
    inputs.platform.release = std::env::var("CI_ENVIRONMENT_NAME").ok();
    settings::resolve(inputs, &mut Vec::new())
}
// front-end: end

#[allow(dead_code)] // tests/front_end.rs includes this file for build_request only
fn main() -> Result<()> {
    let dir = std::env::args_os().nth(1).unwrap_or_else(|| ".".into());
    let request = build_request(Path::new(&dir))?;
    let mut notes = Vec::new();
    lockstep::run(&request, &mut std::io::stdout().lock(), &mut notes)?;
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
