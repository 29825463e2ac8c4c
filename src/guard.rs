//! Guard: the rules for input lockstep does not trust, in one place.
//!
//! lockstep runs on repositories, parameters, environments and streams that users
//! control (in Argo CD, any author of an Application). This module says what such
//! input may be and how it is read:
//!
//! * YAML from a user ([`yaml`]) is read with its flow nesting bounded first (the
//!   YAML reader's time grows with nesting depth), and its errors never quote the
//!   text: a file may be a symlink to a secret, or hold one;
//! * strings that reach manifests or messages are checked where they enter:
//!   namespaces ([`namespace`]), versions ([`version`]), image references
//!   ([`image`]), annotation keys ([`qualified_name`]), names that become parts of
//!   object or container names ([`dns_label`]);
//! * a chart directory is walked before helm reads it ([`chart_tree`]): every
//!   symlink must resolve inside the repository, as must `file://` dependency
//!   repositories ([`file_dependency`]).
//!
//! It owns these checks and their messages. It must not read manifests for meaning
//! or run anything.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// Deepest flow nesting (`[`, `{`) read: serde_yaml refuses past 128 levels anyway,
/// but only after its scanner has read the whole document, in time that grows with
/// the depth.
pub(crate) const MAX_FLOW_DEPTH: usize = 128;

/// Parses user YAML as `T`: nesting bounded first, errors without the text.
/// `what` names the input ("lockstep.yaml", "values file x.yaml").
pub(crate) fn yaml<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    check_depth(text).with_context(|| what.to_owned())?;
    serde_yaml::from_str(text).map_err(|e| anyhow!("{what}: {}", yaml_error(&e)))
}

/// A serde_yaml error as a message that quotes nothing of the input: serde names
/// a wrong value by its text (`invalid type: string "…"`), and the input may be a
/// secret. Field names (in backticks) are kept: they are the schema's, or a key.
pub(crate) fn yaml_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    // Drop the location serde_yaml appends; it is given once, below.
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    // Every double- or single-quoted stretch is text of the input.
    while let Some(i) = rest.find(['"', '\'']) {
        let q = rest.as_bytes()[i] as char;
        out.push_str(&rest[..i]);
        match rest[i + 1..].find(q) {
            Some(j) => {
                out.push_str("(a value, not shown)");
                rest = &rest[i + 1 + j + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let out = out.trim().trim_end_matches(',');
    match e.location() {
        Some(l) => format!("{out} at line {} column {}", l.line(), l.column()),
        None => out.to_owned(),
    }
}

/// Refuses flow nesting deeper than [`MAX_FLOW_DEPTH`], in time linear in the text.
///
/// Guarantee: a text is refused exactly when the YAML reader serde_yaml uses would
/// reach a flow nesting deeper than the limit, because the depth is counted on the
/// tokens of that same reader (unsafe-libyaml's scanner, the crate serde_yaml reads
/// with), not by a second reading of YAML that could disagree with it. The scanner's
/// cost per token grows with the flow level it holds (it checks one simple-key slot
/// per level at every token); the count stops at the first level past the limit, and
/// the scanner reads at most one line or 1024 characters ahead of the token it hands
/// out, so it never holds more than the limit plus that look-ahead. An accepted text
/// then costs the parser at most the limit's slots per token.
///
/// A text with no more `[` and `{` than the limit cannot nest past it (every flow
/// collection opens at one of them): it is not scanned.
pub(crate) fn check_depth(text: &str) -> Result<()> {
    check_depth_at(text, MAX_FLOW_DEPTH)
}

/// [`check_depth`] with another limit (tests and fuzzing use small ones).
#[doc(hidden)]
pub fn check_depth_at(text: &str, limit: usize) -> Result<()> {
    let b = text.as_bytes();
    if memchr::memchr2_iter(b'[', b'{', b).nth(limit).is_none() {
        return Ok(());
    }
    match libyaml::first_flow_level_past(b, limit) {
        Some(line) => bail!(
            "nesting deeper than {limit} levels (line {line} of the document): no Kubernetes object nests this deep. Fix the template or values that produce it"
        ),
        None => Ok(()),
    }
}

/// The YAML reader's own scanner, driven token by token.
mod libyaml {
    use std::mem::MaybeUninit;
    use unsafe_libyaml as unsafe_ffi;

    /// A scanner over `input`, freed when dropped. Boxed: the scanner keeps a
    /// pointer to itself (its read handler's data), so it must not move.
    struct Scanner<'a> {
        sys: Box<MaybeUninit<unsafe_ffi::yaml_parser_t>>,
        _input: &'a [u8],
    }

    impl<'a> Scanner<'a> {
        fn new(input: &'a [u8]) -> Scanner<'a> {
            let mut sys = Box::new(MaybeUninit::<unsafe_ffi::yaml_parser_t>::uninit());
            // SAFETY: as serde_yaml's own parser (libyaml/parser.rs): initialize the
            // boxed (pinned) struct, then give it the input, which `_input` keeps
            // borrowed for the scanner's whole life.
            unsafe {
                let p = sys.as_mut_ptr();
                assert!(!unsafe_ffi::yaml_parser_initialize(p).fail, "out of memory");
                unsafe_ffi::yaml_parser_set_encoding(p, unsafe_ffi::YAML_UTF8_ENCODING);
                unsafe_ffi::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as u64);
            }
            Scanner { sys, _input: input }
        }

        /// The next token's type and 0-based line; `None` at a scanner error.
        fn next(&mut self) -> Option<(unsafe_ffi::yaml_token_type_t, u64)> {
            let mut token = MaybeUninit::<unsafe_ffi::yaml_token_t>::uninit();
            // SAFETY: the scanner is initialized (`new`); a token the scanner filled
            // is read, then freed once.
            unsafe {
                let t = token.as_mut_ptr();
                if unsafe_ffi::yaml_parser_scan(self.sys.as_mut_ptr(), t).fail {
                    return None;
                }
                let out = ((*t).type_, (*t).start_mark.line);
                unsafe_ffi::yaml_token_delete(t);
                Some(out)
            }
        }
    }

    impl Drop for Scanner<'_> {
        fn drop(&mut self) {
            // SAFETY: initialized in `new`, deleted once.
            unsafe { unsafe_ffi::yaml_parser_delete(self.sys.as_mut_ptr()) }
        }
    }

    /// The 1-based line of the first flow collection that opens past `limit` levels,
    /// or `None` (the text stays within it, or the scanner fails first: then so does
    /// the parser, at the same place).
    pub(crate) fn first_flow_level_past(input: &[u8], limit: usize) -> Option<u64> {
        let mut scanner = Scanner::new(input);
        let mut depth = 0usize;
        loop {
            let (kind, line) = scanner.next()?;
            match kind {
                unsafe_ffi::YAML_FLOW_SEQUENCE_START_TOKEN
                | unsafe_ffi::YAML_FLOW_MAPPING_START_TOKEN => {
                    depth += 1;
                    if depth > limit {
                        return Some(line + 1);
                    }
                }
                // The scanner lowers its level only above zero: so does the count.
                unsafe_ffi::YAML_FLOW_SEQUENCE_END_TOKEN
                | unsafe_ffi::YAML_FLOW_MAPPING_END_TOKEN => depth = depth.saturating_sub(1),
                unsafe_ffi::YAML_STREAM_END_TOKEN => return None,
                _ => {}
            }
        }
    }

    /// The oracle for tests and fuzzing: the deepest flow nesting the parser's
    /// events reach (collections opened by `[` or `{`), and whether the parser
    /// stopped at an error.
    #[cfg(any(test, fuzzing))]
    pub fn parser_flow_depth(input: &[u8]) -> (usize, bool) {
        let mut scanner = Scanner::new(input);
        let (mut depth, mut max, mut flow) = (0usize, 0usize, Vec::new());
        loop {
            let mut event = MaybeUninit::<unsafe_ffi::yaml_event_t>::uninit();
            // SAFETY: as `Scanner::next`, with the parser's events.
            let kind = unsafe {
                let e = event.as_mut_ptr();
                if unsafe_ffi::yaml_parser_parse(scanner.sys.as_mut_ptr(), e).fail {
                    return (max, true);
                }
                // A flow collection opened by its bracket, not a single-pair mapping
                // the parser makes of `[a: b]` (a zero-width start).
                let (start, end) = ((*e).start_mark.index, (*e).end_mark.index);
                let bracket =
                    end == start + 1 && matches!(input.get(start as usize), Some(b'[' | b'{'));
                let kind = match (*e).type_ {
                    unsafe_ffi::YAML_SEQUENCE_START_EVENT
                    | unsafe_ffi::YAML_MAPPING_START_EVENT => Some(bracket),
                    unsafe_ffi::YAML_SEQUENCE_END_EVENT | unsafe_ffi::YAML_MAPPING_END_EVENT => {
                        None
                    }
                    unsafe_ffi::YAML_STREAM_END_EVENT => {
                        unsafe_ffi::yaml_event_delete(e);
                        return (max, false);
                    }
                    _ => {
                        unsafe_ffi::yaml_event_delete(e);
                        continue;
                    }
                };
                unsafe_ffi::yaml_event_delete(e);
                kind
            };
            match kind {
                Some(is_flow) => {
                    flow.push(is_flow);
                    depth += usize::from(is_flow);
                    max = max.max(depth);
                }
                None => depth -= usize::from(flow.pop().unwrap_or(false)),
            }
        }
    }
}

#[cfg(any(test, fuzzing))]
pub use libyaml::parser_flow_depth;

/// Values shorter than this are not blanked from helm's messages: they are no secret,
/// and blanking them would blank line numbers and words of every message.
pub(crate) const MIN_BLANKED: usize = 4;

/// The texts of the values in `files` (values files helm reads), to blank out of
/// helm's messages before they are relayed (Argo CD shows them in its UI): every
/// string and number of at least [`MIN_BLANKED`] characters, and each line of one
/// that spans lines, longest first. A file that cannot be read or parsed again is an
/// error: then nothing of helm's message may be relayed.
pub(crate) fn value_texts(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    fn walk(v: &serde_yaml::Value, out: &mut Vec<String>) {
        use serde_yaml::Value as V;
        let text = match v {
            V::String(s) => s.clone(),
            V::Number(n) => n.to_string(),
            V::Sequence(items) => return items.iter().for_each(|i| walk(i, out)),
            V::Mapping(m) => return m.values().for_each(|i| walk(i, out)),
            V::Tagged(t) => return walk(&t.value, out),
            V::Bool(_) | V::Null => return,
        };
        out.extend(
            text.lines()
                .filter(|l| l.trim().len() >= MIN_BLANKED)
                .map(str::to_owned),
        );
        if text.len() >= MIN_BLANKED {
            out.push(text);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let v: serde_yaml::Value = std::fs::read_to_string(f)
            .map_err(anyhow::Error::from)
            .and_then(|t| yaml(&t, "values"))
            .with_context(|| format!("values file {} could not be read again", f.display()))?;
        walk(&v, &mut out);
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    Ok(out)
}

/// A DNS-1123 label: 1-63 of `a-z0-9-`, alphanumeric at both ends.
pub(crate) use crate::profile::is_dns_label as dns_label;

/// A namespace, as Kubernetes takes it: a DNS label. `from` says where it came from.
pub(crate) fn namespace(s: &str, from: &str) -> Result<()> {
    if !dns_label(s) {
        bail!(
            "namespace {} ({from}) is not valid: a namespace is a lower-case DNS label (a-z, 0-9, '-', at most 63 characters)",
            shown(s)
        );
    }
    Ok(())
}

/// A version as a user writes one: `[v]MAJOR.MINOR[.PATCH][-PRE][+BUILD]`, nothing
/// before or after it (no spaces, no line breaks). `from` says where it came from.
pub fn version(s: &str, from: &str) -> Result<()> {
    let t = s.strip_prefix('v').unwrap_or(s);
    let (core, rest) = match t.find(['-', '+']) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let nums: Vec<&str> = core.split('.').collect();
    let core_ok = (2..=3).contains(&nums.len())
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|c| c.is_ascii_digit()));
    let rest_ok = rest.is_empty()
        || (rest.len() > 1
            && rest[1..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+')));
    if !core_ok || !rest_ok || s.len() > 128 {
        bail!(
            "{from} {} is not a version: write MAJOR.MINOR.PATCH (e.g. 1.2.0), optionally with a -pre-release, and nothing else",
            shown(s)
        );
    }
    Ok(())
}

/// An image reference by the distribution reference grammar:
/// `[host[:port]/]path[:tag][@algorithm:hex]`. `from` says where it came from.
pub(crate) fn image(s: &str, from: &str) -> Result<()> {
    if !image_ok(s) {
        bail!(
            "{from} {} is not an image reference: expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST] (e.g. busybox:1.36), lower-case repository, no spaces or line breaks",
            shown(s)
        );
    }
    Ok(())
}

fn image_ok(s: &str) -> bool {
    if s.is_empty() || s.len() > 512 {
        return false;
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return false;
        };
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c))
            && algo.as_bytes()[0].is_ascii_alphanumeric();
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // The tag follows the last ':' after the last '/'.
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
        if !ok {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first part with a dot or a port, or `localhost`, is a registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
    }
    !parts.is_empty() && parts.iter().all(|p| path_component(p))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_len = match c {
            b'.' => 1,
            b'_' if b.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => b[i..].iter().take_while(|&&x| x == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        if !b
            .get(i)
            .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
        {
            return false;
        }
    }
    true
}

/// A Kubernetes qualified name (label and annotation keys): `[PREFIX/]NAME`, NAME 1-63
/// of `[A-Za-z0-9._-]` alphanumeric at both ends, PREFIX a DNS subdomain.
pub(crate) fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(dns_label));
    name_ok && prefix_ok
}

/// A user string in a message: quoted, control characters escaped, cut at 80
/// characters (it is not a secret, but it may be long or hold line breaks).
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{:?}{more}", cut)
}

/// Walks the chart directory `chart` (its templates, files, `charts/` subcharts,
/// and charts unpacked there) and refuses any symlink that resolves outside `root`,
/// before helm reads any of it: helm follows symlinks, and `.Files.Get` puts what
/// it reads into the manifests. Symlinked directories inside the repository are
/// walked too (each once).
pub(crate) fn chart_tree(root: &Path, chart: &Path) -> Result<()> {
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve the repository root {}", root.display()))?;
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut todo = vec![chart.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let real = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        if !real.starts_with(&root) {
            bail!(
                "the chart directory {} resolves outside the repository ({}): charts must stay inside the repository",
                dir.display(),
                real.display()
            );
        }
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read the chart directory {}", dir.display()))?;
        for e in entries {
            let e =
                e.with_context(|| format!("cannot read the chart directory {}", dir.display()))?;
            let path = e.path();
            let ft = e
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            if ft.is_symlink() {
                let shown_path = path
                    .strip_prefix(chart)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let target = match path.canonicalize() {
                    Ok(t) => t,
                    Err(_) => bail!(
                        "the chart has a symlink {shown_path} whose target does not exist: remove it or point it at a file inside the repository"
                    ),
                };
                if !target.starts_with(&root) {
                    bail!(
                        "the chart has a symlink {shown_path} that resolves outside the repository: helm would read {} into the manifests. Every file of a chart must stay inside the repository: remove the symlink or copy the file into the chart",
                        target.display()
                    );
                }
                if target.is_dir() {
                    todo.push(path);
                }
            } else if ft.is_dir() {
                todo.push(path);
            }
        }
    }
    Ok(())
}

/// A dependency's `repository:` of a chart at `chart`: a `file://` path must stay
/// inside `root` (helm copies the chart it names into `charts/`). Other repositories
/// (https, oci, `@alias`) are helm's to fetch.
pub(crate) fn file_dependency(
    root: &Path,
    chart: &Path,
    name: &str,
    repository: &str,
) -> Result<()> {
    let Some(path) = repository.strip_prefix("file://") else {
        return Ok(());
    };
    let dir = crate::config::inside(root, chart, path, &format!("dependency {name:?} repository"))
        .with_context(|| {
            format!("Chart.yaml of {} names a local chart for dependency {name:?}: `file://` dependencies must name a directory inside the repository", chart.display())
        })?;
    // helm packages that directory into charts/, following its symlinks.
    if dir.is_dir() {
        chart_tree(root, &dir).with_context(|| format!("dependency {name:?} (`{repository}`)"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_bounded_without_false_alarms() {
        assert!(check_depth(&"[".repeat(200)).is_err());
        assert!(check_depth(&"{a: ".repeat(200)).is_err());
        assert!(check_depth(&format!("a: {}", "[".repeat(200))).is_err());
        assert!(check_depth(&format!("- {}", "[".repeat(200))).is_err());
        // Brackets in plain and quoted scalars and comments open nothing.
        assert!(check_depth(&format!("a: x{}\n", "[".repeat(200))).is_ok());
        assert!(check_depth(&format!("a: \"{}\"\n", "[".repeat(200))).is_ok());
        assert!(check_depth(&format!("a: [\"{}\"]\n", "[".repeat(200))).is_ok());
        assert!(check_depth(&format!("# {}\na: 1\n", "[".repeat(200))).is_ok());
        assert!(check_depth(&format!("a: [1] # {}\n", "[".repeat(200))).is_ok());
        // A closing bracket in a string inside flow does not hide depth.
        let sneaky = "[ \"]\" ".repeat(200);
        assert!(check_depth(&sneaky).is_err());
        assert!(check_depth(&"[ ']' ".repeat(200)).is_err());
        // Balanced deep-ish JSON passes.
        assert!(check_depth(&format!("{}{}", "[".repeat(100), "]".repeat(100))).is_ok());
    }

    /// Block context a hand-written pre-scan misread (issue 14, case 9): text that
    /// looks like a flow collection and a quote, but is a plain scalar's continuation
    /// line, a block scalar's line or a comment, must not hide the real nesting after it.
    #[test]
    fn depth_hidden_behind_block_context_is_found() {
        let deep = "[".repeat(200);
        for hide in [
            "data:\n  a: x\n    [ \"\n  b: ",
            "data:\n  a: |\n    [ \"\n  b: ",
            "data:\n  a: >-\n    { '\n  b: ",
            "data:\n  a: x\n    [ # \n  b: ",
            "data:\n  a: \"x\n    [\"\n  b: ",
        ] {
            let doc = format!("metadata: {{name: e}}\n{hide}{deep}\n");
            assert!(check_depth(&doc).is_err(), "{doc:?}");
            assert_eq!(parser_flow_depth(doc.as_bytes()).0, 200, "{doc:?}");
        }
    }

    /// Brackets a block document holds as text never count, however many (was an
    /// over-count: a continuation line starting with `[`).
    #[test]
    fn brackets_in_block_scalars_open_nothing() {
        let lines = "    [ x\n".repeat(300);
        for doc in [
            format!("a: x\n{lines}b: 1\n"),
            format!("a: |\n{lines}b: 1\n"),
            format!("a: >\n{}b: 1\n", "    { \"\n".repeat(300)),
            format!("a: \"x\n{lines}\"\nb: 1\n"),
            format!("a: [{}]\n", "{x: [1]}, ".repeat(300)),
        ] {
            check_depth(&doc).unwrap();
            serde_yaml::from_str::<serde_yaml::Value>(&doc).unwrap();
        }
    }

    /// Property: on documents built from YAML's tricky pieces, the count refuses
    /// exactly the texts whose parse nests past the limit (the parser's events are
    /// the oracle; past a parse error only the scanner reads on, and the count may
    /// then refuse what the parser never reached).
    #[test]
    fn depth_count_agrees_with_the_parser() {
        const PIECES: &[&str] = &[
            "[", "[", "{", "]", "}", ", ", "\"", "'", "\\", " #", "#", "\n", "\n  ", "\n    ",
            "- ", ": ", "a", "x y", "|\n", ">-\n", "? ", "&a ", "*a", "---\n", "...\n", "\t",
            "!t ", "%", "\"[\"", "'{'", "[a: b", "\r\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut refused, mut accepted) = (0, 0);
        for _ in 0..20_000 {
            let len = 1 + next(40);
            let doc: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            let (depth, failed) = parser_flow_depth(doc.as_bytes());
            for limit in [1, 2, 3] {
                match check_depth_at(&doc, limit) {
                    Ok(()) => {
                        accepted += 1;
                        assert!(depth <= limit, "under-count at {limit}: {doc:?}");
                    }
                    Err(_) => {
                        refused += 1;
                        assert!(depth > limit || failed, "over-count at {limit}: {doc:?}");
                    }
                }
            }
        }
        assert!(refused > 1000 && accepted > 1000, "{refused} {accepted}");
    }

    #[test]
    fn yaml_errors_quote_nothing() {
        let e = yaml::<crate::config::Lock>("s3cret-hostname\n", "lockstep.lock").unwrap_err();
        let m = format!("{e:#}");
        assert!(!m.contains("s3cret"), "{m}");
        let e = yaml::<crate::config::Lock>("deployed: {version: 'pass=word', x: 1}\n", "lock")
            .unwrap_err();
        let m = format!("{e:#}");
        assert!(!m.contains("pass=word") && m.contains("`x`"), "{m}");
    }

    #[test]
    fn versions_are_strict() {
        for ok in [
            "1.2.0",
            "v1.2.0",
            "1.2",
            "1.2.0-rc.1",
            "2026.8.18172642",
            "1.0.0+b.1",
        ] {
            assert!(version(ok, "v").is_ok(), "{ok}");
        }
        for bad in [
            "1.2.0\n",
            " 1.2.0",
            "1.1.0\"; id; echo \"",
            "1",
            "1.2.0-",
            "a.b.c",
            "1..2",
            "",
        ] {
            assert!(version(bad, "v").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn images_follow_the_reference_grammar() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "prefecthq/prefect:3.8.3-python3.11",
            "registry.example.com:5000/a/b_c__d--e:v1",
            "localhost/x@sha256:0f3c0a4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f2f1a",
        ] {
            assert!(image_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "busybox:1.36\n",
            "Busybox",
            "a b",
            "x:",
            "x@sha256:zz",
            "-x",
            "a//b",
            "x:-1",
        ] {
            assert!(!image_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn qualified_names() {
        for ok in ["a", "sidecar.istio.io/inject", "x_y.z-1"] {
            assert!(qualified_name(ok), "{ok}");
        }
        for bad in ["", "a\nb", "/a", "a/", "Ex.com/a", "-a", &"a".repeat(64)] {
            assert!(!qualified_name(bad), "{bad:?}");
        }
    }
}
