//! Emit: write the final stream.
//!
//! Untouched documents are written as the exact slices of the input they were;
//! edited documents are re-serialized in place (keeping their leading comment
//! lines, such as helm's `# Source:`); dropped ones are left out; new documents
//! follow in the order `inject` gave them.
//!
//! This module owns the output bytes. It is called only after every check has
//! passed, so nothing reaches stdout for a render that fails. It must not decide
//! anything about the documents.

use crate::inject::{Edit, Injection};
use crate::stream::Stream;
use anyhow::Result;
use std::io::Write;

pub fn write(stream: &Stream, injection: &Injection, out: &mut impl Write) -> Result<()> {
    let mut ends_with_newline = true;
    for (i, doc) in stream.docs.iter().enumerate() {
        match injection.edits.get(&i) {
            Some(Edit::Drop) => continue,
            Some(Edit::Replace(value)) => {
                out.write_all(b"---\n")?;
                for line in doc.body.lines().skip_while(|l| l.trim().is_empty()) {
                    if !line.starts_with('#') {
                        break;
                    }
                    writeln!(out, "{line}")?;
                }
                out.write_all(crate::yaml::to_string(value).as_bytes())?;
                ends_with_newline = true;
            }
            None if stream.json => {
                if doc.head.is_some() {
                    writeln!(out, "---\n{}", doc.body)?;
                }
                ends_with_newline = true;
            }
            None => {
                out.write_all(doc.raw.as_bytes())?;
                ends_with_newline =
                    doc.raw.is_empty() && ends_with_newline || doc.raw.ends_with('\n');
            }
        }
    }
    if !ends_with_newline && !injection.added.is_empty() {
        out.write_all(b"\n")?;
    }
    for text in &injection.added {
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
