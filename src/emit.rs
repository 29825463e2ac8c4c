//! Emit: write the final stream.
//!
//! Untouched documents are written as the exact slices of the input they were (a
//! run of them that lay side by side in the input, as one slice); edited documents
//! are re-serialized in place (keeping their leading comment lines, such as helm's
//! `# Source:`); dropped ones are left out; new documents follow in the order
//! `inject` gave them.
//!
//! This module owns the output bytes. It is called only after every check has
//! passed, so nothing reaches stdout for a render that fails. It must not decide
//! anything about the documents.

use crate::inject::{Edit, Injection};
use crate::stream::Stream;
use anyhow::Result;
use std::io::Write;

pub(crate) fn write(stream: &Stream, injection: &Injection, out: &mut impl Write) -> Result<()> {
    let mut ends_with_newline = true;
    // Untouched input not written yet: a range of `stream.text`.
    let mut run = 0..0;
    for (i, doc) in stream.docs.iter().enumerate() {
        let edit = injection.edits.get(&i);
        if edit.is_none() && !stream.json {
            ends_with_newline = doc.raw.is_empty() && ends_with_newline || doc.raw.ends_with('\n');
            match stream.span(doc) {
                Some(span) if span.start == run.end => run.end = span.end,
                Some(span) => {
                    out.write_all(stream.text[std::mem::replace(&mut run, span)].as_bytes())?
                }
                None => {
                    out.write_all(stream.text[std::mem::take(&mut run)].as_bytes())?;
                    out.write_all(doc.raw.as_bytes())?;
                }
            }
            continue;
        }
        out.write_all(stream.text[std::mem::take(&mut run)].as_bytes())?;
        match edit {
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
            None => {
                if doc.head.is_some() {
                    writeln!(out, "---\n{}", doc.body)?;
                }
                ends_with_newline = true;
            }
        }
    }
    out.write_all(stream.text[run].as_bytes())?;
    if !ends_with_newline && !injection.added.is_empty() {
        out.write_all(b"\n")?;
    }
    for text in &injection.added {
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
