//! Helm plugin front-end (placeholder while being written).
pub fn main(_args: &[String], _notes: &mut Vec<String>) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
