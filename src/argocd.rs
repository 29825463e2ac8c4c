//! Argo CD config-management plugin front-end (placeholder while being written).
use anyhow::Result;
use std::io::Write;

#[derive(clap::Subcommand)]
pub enum Command {
    Init,
    Generate,
    Parameters,
}

pub fn main(_cmd: Command, _out: &mut dyn Write, _notes: &mut Vec<String>) -> Result<()> {
    anyhow::bail!("not yet")
}

