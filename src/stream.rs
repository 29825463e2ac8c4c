//! The manifest stream: split a rendered stream into documents in one pass.
//!
//! Every document keeps the exact bytes it had in the input (`raw`), so documents
//! no stage changes are written back byte-for-byte. Only a document's head
//! (apiVersion, kind, metadata.name, metadata.namespace) is read up front, by a
//! line scan that understands the block style helm prints and stops once the head
//! is read; a document the scan does not fully understand (flow style, quoted or
//! duplicate top-level keys, anchors, tabs, a separator line with content) is
//! parsed with serde_yaml instead, which also gives precise errors for malformed
//! input. Full parses of the documents that matter happen on demand and are cached.
//! So the body of a document lockstep neither reads nor edits is not validated
//! here: it passes through as it came, and whatever applies it parses it.
//! Streams of several MiB have their heads read on two threads.
//!
//! This module owns splitting, heads and parsing. It must not decide what a
//! document means: that is `locate` and `inject`.

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;
use std::cell::OnceCell;

mod scan;
#[cfg(test)]
mod tests;

use scan::{scan_head, Scan};

/// What a document is, from its top-level keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub api_version: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    /// `metadata.name`, or `metadata.generateName`, or empty.
    pub name: Cow<'a, str>,
    pub namespace: Option<Cow<'a, str>>,
}

#[derive(Debug)]
pub struct Doc<'a> {
    /// The bytes written back when the document is untouched: from its
    /// separator line (or the start of input) up to the next separator line.
    pub raw: Cow<'a, str>,
    /// The YAML (or JSON) text of the document itself.
    pub body: Cow<'a, str>,
    /// None for a document that holds only comments or nothing.
    pub head: Option<Head<'a>>,
    /// 1-based line of the document's first byte in the input, for messages.
    pub line: usize,
    /// Boxed: most documents are never parsed, and a smaller `Doc` keeps the index small.
    parsed: OnceCell<Box<Value>>,
    /// An object of a JSON stream: parsed as JSON.
    json: bool,
}

impl<'a> Doc<'a> {
    fn new(raw: Cow<'a, str>, body: Cow<'a, str>, line: usize) -> Doc<'a> {
        Doc {
            raw,
            body,
            head: None,
            line,
            parsed: OnceCell::new(),
            json: false,
        }
    }

    /// The document parsed as YAML; parsed once, on first use.
    pub(crate) fn value(&self) -> Result<&Value> {
        if let Some(v) = self.parsed.get() {
            return Ok(v);
        }
        let v = if self.json {
            parse_json(&self.body)
        } else {
            parse_body(&self.body)
        }
        .with_context(|| self.describe())?;
        Ok(self.parsed.get_or_init(|| Box::new(v)))
    }

    /// "Deployment prefect/prefect-server (document at line 120)".
    pub(crate) fn describe(&self) -> String {
        match &self.head {
            Some(h) => format!(
                "{} {}{} (document at line {})",
                h.kind,
                h.namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                h.name,
                self.line
            ),
            None => format!("document at line {}", self.line),
        }
    }
}

/// A rendered stream, split into documents.
#[derive(Debug)]
pub struct Stream<'a> {
    pub docs: Vec<Doc<'a>>,
    /// The input was a stream of JSON objects (written back as a YAML stream).
    pub json: bool,
    /// The whole input: the borrowed `raw`s are slices of it, in order.
    pub text: &'a str,
}

impl<'a> Stream<'a> {
    /// Where `doc`'s raw bytes lie in [`Stream::text`]; None for a document made here
    /// (an item of a List).
    pub(crate) fn span(&self, doc: &Doc<'a>) -> Option<std::ops::Range<usize>> {
        let Cow::Borrowed(raw) = doc.raw else {
            return None;
        };
        let start = (raw.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        (start + raw.len() <= self.text.len()).then(|| start..start + raw.len())
    }
}

/// Kinds whose `List` wrappers are expanded so their items can be found.
const LIST_ITEM_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "Job",
    "Secret",
    "ConfigMap",
    "ServiceAccount",
];

/// Splits `src` into documents and reads every document's head.
pub fn split(src: &str) -> Result<Stream<'_>> {
    let content = src.strip_prefix('\u{feff}').unwrap_or(src);
    let first = content.trim_start();
    if first.starts_with('{') {
        if let Some(stream) = split_json(src)? {
            return Ok(stream);
        }
    }
    let docs = match halfway(src) {
        None => read_heads(&split_yaml(src, 1))?,
        Some(mid) => {
            // Two halves cut at a document marker, each split and read on a thread of
            // its own; the halves are joined in order, and the first error in document
            // order is the one reported, as in one pass. The second half's lines are
            // numbered on from the first's.
            let (first, second) = src.split_at(mid);
            let (first, second) = std::thread::scope(|s| {
                let second = s.spawn(move || {
                    let line = 1 + memchr::memchr_iter(b'\n', first.as_bytes()).count();
                    read_heads(&split_yaml(second, line))
                });
                let first = read_heads(&split_yaml(first, 1));
                let second = second
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (first, second)
            });
            let mut docs = first?;
            docs.extend(second?);
            docs
        }
    };
    if docs.iter().all(|d| d.head.is_none()) {
        bail!("the manifest stream is empty: there is no Kubernetes object in it. Check that the chart renders something (`helm template`), and that the input is the rendered stream");
    }
    Ok(Stream {
        docs,
        json: false,
        text: src,
    })
}

/// Streams this large are split and read on two threads.
#[cfg(not(fuzzing))]
const PARALLEL_MIN_BYTES: usize = 4 << 20;
/// Fuzzed inputs are small: cut them too, so the fuzzer reaches the cut.
#[cfg(fuzzing)]
const PARALLEL_MIN_BYTES: usize = 64;

/// Where to cut a large stream in two: the first document marker (`---` at the start
/// of a line) from the middle on. None for a small stream, or one with no marker there.
fn halfway(src: &str) -> Option<usize> {
    if src.len() < PARALLEL_MIN_BYTES {
        return None;
    }
    let bytes = src.as_bytes();
    let from = src.len() / 2;
    memchr::memmem::find_iter(&bytes[from..], b"\n---")
        .map(|i| from + i + 1)
        .find(|&pos| is_marker(line_at(bytes, pos), b"---"))
}

/// Documents with their heads read, Lists expanded.
fn read_heads<'a>(parts: &[(&'a str, &'a str, usize)]) -> Result<Vec<Doc<'a>>> {
    let mut docs = Vec::with_capacity(parts.len());
    for &(raw, body, line) in parts {
        let mut doc = Doc::new(Cow::Borrowed(raw), Cow::Borrowed(body), line);
        read_head(&mut doc, body)?;
        if doc.head.as_ref().is_some_and(is_list) {
            expand_list(doc, &mut docs)?;
        } else {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn is_list(h: &Head<'_>) -> bool {
    h.kind.ends_with("List") && h.api_version == "v1"
}

/// Splits a YAML stream on `---` lines (and after `...` lines), returning
/// (raw, body, line) triples that tile the input exactly. `src` starts at line
/// `first_line` of the input.
fn split_yaml(src: &str, first_line: usize) -> Vec<(&str, &str, usize)> {
    let mut out = Vec::new();
    let mut doc_start = 0; // start of the current raw slice
    let mut body_start = 0; // start of the current body
    let mut doc_line = first_line;
    let bytes = src.as_bytes();
    // Only lines starting with `---` or `...` can be markers: find them with a
    // vectorized search instead of visiting every line.
    let mut starts: Vec<usize> = memchr::memmem::find_iter(bytes, b"\n---")
        .chain(memchr::memmem::find_iter(bytes, b"\n..."))
        .map(|i| i + 1)
        .collect();
    starts.sort_unstable();
    // The first line, after a byte-order mark if there is one.
    let first = if src.starts_with('\u{feff}') { 3 } else { 0 };
    if bytes[first..].starts_with(b"---") || bytes[first..].starts_with(b"...") {
        starts.insert(0, first);
    }
    let (mut line_no, mut counted) = (first_line, 0);
    for pos in starts {
        if pos < doc_start {
            continue;
        }
        let line = line_at(bytes, pos);
        let end = pos + line.len();
        let is_start = is_marker(line, b"---");
        if !is_start && !is_marker(line, b"...") {
            continue;
        }
        line_no += memchr::memchr_iter(b'\n', &bytes[counted..pos]).count();
        counted = pos;
        if is_start {
            if pos > doc_start {
                out.push((&src[doc_start..pos], &src[body_start..pos], doc_line));
            }
            doc_start = pos;
            // Anything after `---` on the line (a comment, rarely content) is body.
            body_start = pos + 3;
            doc_line = line_no;
        } else {
            out.push((&src[doc_start..end], &src[body_start..pos], doc_line));
            doc_start = end;
            body_start = end;
            doc_line = line_no + 1;
        }
    }
    if doc_start < src.len() {
        out.push((&src[doc_start..], &src[body_start..], doc_line));
    }
    out
}

/// The line starting at `pos`, with its line end.
fn line_at(bytes: &[u8], pos: usize) -> &[u8] {
    let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i + 1);
    &bytes[pos..end]
}

fn is_marker(line: &[u8], marker: &[u8]) -> bool {
    line.starts_with(marker) && matches!(line.get(3), None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

/// A stream of JSON objects (`kubectl -o json`, concatenated). Returns None when
/// the input is not JSON after all (a YAML flow mapping), to be split as YAML.
fn split_json(src: &str) -> Result<Option<Stream<'_>>> {
    let mut docs = Vec::new();
    let mut iter = serde_json::Deserializer::from_str(src).into_iter::<serde_json::Value>();
    let mut prev = 0;
    // Lines are counted on from the previous object, never from the start.
    let mut line = 1;
    loop {
        let item = iter.next();
        let end = iter.byte_offset();
        match item {
            None => break,
            // Not JSON after all (a YAML flow mapping): split it as YAML.
            Some(Err(_)) if docs.is_empty() => return Ok(None),
            Some(Err(e)) => bail!(
                "malformed JSON in the manifest stream: {e}. Each object must be complete JSON"
            ),
            Some(Ok(v)) => {
                let raw = &src[prev..end];
                // The object's own line: after the blank lines before it.
                let lead = &raw[..raw.len() - raw.trim_start().len()];
                let at = line + memchr::memchr_iter(b'\n', lead.as_bytes()).count();
                let mut doc = Doc::new(Cow::Borrowed(raw), Cow::Borrowed(raw.trim()), at);
                doc.json = true;
                doc.head = Some(
                    head_of_value(&json_head(&v)?)
                        .with_context(|| format!("JSON object at line {at}"))?,
                );
                line += memchr::memchr_iter(b'\n', raw.as_bytes()).count();
                // Kept only where a stage may read it: a workload's, or a List's (its
                // items become documents); any other is parsed again if ever needed.
                // Per-object memory stays small whatever the count.
                if keep_parsed(doc.head.as_ref()) {
                    let _ = doc.parsed.set(Box::new(serde_yaml::to_value(&v)?));
                }
                if doc.head.as_ref().is_some_and(is_list) {
                    expand_list(doc, &mut docs)?;
                } else {
                    docs.push(doc);
                }
                prev = end;
            }
        }
    }
    if docs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Stream {
        docs,
        json: true,
        text: src,
    }))
}

/// Whether a document's parse is worth keeping once its head is read: it is one the
/// pipeline reads (a workload, a Job, a List to expand). Others are parsed again on
/// the rare occasion they are read, so a stream of many small documents costs a small
/// constant per document, not a parsed tree each.
fn keep_parsed(head: Option<&Head>) -> bool {
    head.is_some_and(|h| {
        is_list(h) || h.kind == "Job" || crate::profile::API_KINDS.contains(&h.kind.as_ref())
    })
}

fn parse_body(body: &str) -> Result<Value> {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let fix =
        "Fix the template or values that produce it (run `helm template` to see the document)";
    // The YAML reader's time grows with flow nesting depth: bounded before it reads.
    crate::guard::check_depth(body).map_err(|e| anyhow!("malformed YAML: {e:#}"))?;
    let mut value: Value =
        serde_yaml::from_str(body).map_err(|e| anyhow!("malformed YAML: {e}. {fix}"))?;
    merge_keys(&mut value, body).map_err(|e| anyhow!("{e} {fix}"))?;
    Ok(value)
}

/// The part of a JSON object its head is read from (kind, apiVersion, metadata's name,
/// generateName and namespace), as YAML: converting whole objects took longer than
/// parsing them.
fn json_head(v: &serde_json::Value) -> Result<Value> {
    let Some(obj) = v.as_object() else {
        return Ok(serde_yaml::to_value(v)?);
    };
    let pick = |o: &serde_json::Map<String, serde_json::Value>, keys: &[&str]| {
        keys.iter()
            .filter_map(|k| Some(((*k).to_owned(), o.get(*k)?.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    let mut head = pick(obj, &["apiVersion", "kind"]);
    if let Some(meta) = obj.get("metadata").and_then(serde_json::Value::as_object) {
        head.insert(
            "metadata".into(),
            pick(meta, &["name", "generateName", "namespace"]).into(),
        );
    }
    Ok(serde_yaml::to_value(head)?)
}

/// An object of a JSON stream, as [`split_json`] read it.
fn parse_json(body: &str) -> Result<Value> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| anyhow!("malformed JSON in the manifest stream: {e}"))?;
    Ok(serde_yaml::to_value(&v)?)
}

/// Resolves YAML merge keys (`<<: *anchor`) as Kubernetes reads them: sigs.k8s.io/yaml
/// decodes with go-yaml v2, which applies the entries of a mapping in order, a merge
/// putting in the merged mapping's entries (for a list of mappings, the first wins),
/// and a later entry overriding an earlier one, merged or not. serde_yaml keeps `<<`
/// as a plain key: without this, a container written with `- <<: *base` would lose
/// every field of `base` (its env) in the Job copied from it, while the cluster's pod
/// has them. A merge of anything but mappings is refused, as go-yaml refuses it.
fn merge_keys(value: &mut Value, body: &str) -> Result<()> {
    fn has_merge(v: &Value) -> bool {
        match v {
            Value::Mapping(m) => m
                .iter()
                .any(|(k, v)| k.as_str() == Some("<<") || has_merge(v)),
            Value::Sequence(s) => s.iter().any(has_merge),
            Value::Tagged(t) => has_merge(&t.value),
            _ => false,
        }
    }
    if !has_merge(value) {
        return Ok(());
    }
    // go-yaml merges only a plain `<<`; serde_yaml does not say whether the key was
    // quoted. A quoted one is not guessed at.
    if body.contains("\"<<\"") || body.contains("'<<'") {
        bail!("a document has a quoted \"<<\" key beside merge keys: Kubernetes reads a quoted one as a plain key and an unquoted one as a merge, and lockstep cannot tell them apart here. Write merges as a plain `<<:` and rename the other key");
    }
    resolve_merges(value)
}

fn resolve_merges(value: &mut Value) -> Result<()> {
    match value {
        Value::Mapping(m) => {
            for (_, v) in m.iter_mut() {
                resolve_merges(v)?;
            }
            if !m.contains_key("<<") {
                return Ok(());
            }
            let old = std::mem::take(m);
            for (k, v) in old {
                if k.as_str() != Some("<<") {
                    m.insert(k, v);
                    continue;
                }
                let sources = match v {
                    Value::Mapping(one) => vec![one],
                    Value::Sequence(list) => {
                        let mut maps = Vec::with_capacity(list.len());
                        for item in list {
                            match item {
                                Value::Mapping(one) => maps.push(one),
                                _ => bail!("a merge key (`<<`) lists something that is not a mapping: Kubernetes refuses this document (go-yaml: map merge requires map or sequence of maps as the value)."),
                            }
                        }
                        // go-yaml applies the list last to first: the first mapping wins.
                        maps.reverse();
                        maps
                    }
                    _ => bail!("a merge key (`<<`) whose value is not a mapping: Kubernetes refuses this document (go-yaml: map merge requires map or sequence of maps as the value)."),
                };
                for src in sources {
                    for (k, v) in src {
                        m.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        Value::Sequence(s) => s.iter_mut().try_for_each(resolve_merges),
        Value::Tagged(t) => resolve_merges(&mut t.value),
        _ => Ok(()),
    }
}

/// Reads the head with the line scan, falling back to a full parse.
fn read_head<'a>(doc: &mut Doc<'a>, body: &'a str) -> Result<()> {
    match scan_head(body) {
        Scan::Empty => {}
        Scan::Simple(head) => doc.head = Some(head),
        Scan::Complex => {
            let value = parse_body(body).with_context(|| doc.describe())?;
            if value.is_null() {
                return Ok(());
            }
            doc.head = Some(head_of_value(&value).with_context(|| doc.describe())?);
            if keep_parsed(doc.head.as_ref()) {
                let _ = doc.parsed.set(Box::new(value));
            }
        }
    }
    Ok(())
}

/// A List's items become documents of their own when one of them matters.
fn expand_list<'a>(doc: Doc<'a>, out: &mut Vec<Doc<'a>>) -> Result<()> {
    let value = doc.value()?;
    let items = value
        .get("items")
        .and_then(Value::as_sequence)
        .ok_or_else(|| {
            anyhow!(
                "{}: a List without `items`. Put its objects under `items:`, or write each as a document of its own after a `---` line",
                doc.describe()
            )
        })?;
    // Every item is an object of its own, whether or not lockstep reads it.
    for (n, item) in items.iter().enumerate() {
        head_of_value(item).with_context(|| format!("item {n} of {}", doc.describe()))?;
    }
    let matters = items.iter().any(|i| {
        i.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| LIST_ITEM_KINDS.contains(&k))
    });
    if !matters {
        out.push(doc);
        return Ok(());
    }
    for (n, item) in items.iter().enumerate() {
        let head =
            head_of_value(item).with_context(|| format!("item {n} of {}", doc.describe()))?;
        let body = crate::yaml::to_string(item);
        let mut d = Doc::new(
            Cow::Owned(format!("---\n{body}")),
            Cow::Owned(body),
            doc.line,
        );
        d.head = Some(head);
        let _ = d.parsed.set(Box::new(item.clone()));
        out.push(d);
    }
    Ok(())
}

/// The head of a parsed document.
pub fn head_of_value(value: &Value) -> Result<Head<'static>> {
    let map = value.as_mapping().ok_or_else(|| {
        anyhow!(
            "a document must be a mapping (a Kubernetes object), not {}",
            kind_of(value)
        )
    })?;
    let text = |m: &Mapping, k: &str| -> Option<String> {
        m.get(k).and_then(Value::as_str).map(str::to_owned)
    };
    let kind = text(map, "kind").filter(|k| !k.is_empty()).ok_or_else(|| {
        anyhow!("the document has no `kind`: every Kubernetes object needs `apiVersion` and `kind`")
    })?;
    let api_version = text(map, "apiVersion").unwrap_or_default();
    let meta = map.get("metadata").and_then(Value::as_mapping);
    let name = meta
        .and_then(|m| text(m, "name").or_else(|| text(m, "generateName")))
        .unwrap_or_default();
    let namespace = meta.and_then(|m| text(m, "namespace"));
    Ok(Head {
        api_version: Cow::Owned(api_version),
        kind: Cow::Owned(kind),
        name: Cow::Owned(name),
        namespace: namespace.map(Cow::Owned),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
