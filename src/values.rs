//! Values files across releases (placeholder while being written).
use anyhow::Result;
use std::io::Write;

#[derive(clap::Args)]
pub struct MigrateArgs {
    #[arg(long)]
    pub to: String,
    pub file: std::path::PathBuf,
}

pub fn migrate(_a: &MigrateArgs, _out: &mut dyn Write, _notes: &mut Vec<String>) -> Result<()> {
    anyhow::bail!("not yet")
}
