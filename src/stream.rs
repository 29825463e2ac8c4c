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
    pub fn value(&self) -> Result<&Value> {
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
    pub fn describe(&self) -> String {
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
    pub fn span(&self, doc: &Doc<'a>) -> Option<std::ops::Range<usize>> {
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
        is_list(h) || matches!(h.kind.as_ref(), "Deployment" | "StatefulSet" | "Job")
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

enum Scan<'a> {
    Empty,
    Simple(Head<'a>),
    Complex,
}

/// The fast path: block-style top-level keys, plain or simply quoted scalars.
///
/// The scan stops once the head is complete (kind, apiVersion and metadata read,
/// and a top-level key after metadata seen): the rest of the document cannot
/// change the head of a valid document. In that rest, a line starting with one of
/// the head's keys (a duplicate, or text that only looks like one) sends the
/// document to the parser. Beyond that, documents lockstep neither edits nor reads
/// are not validated here: they pass through as they came, and whatever applies
/// them parses them.
fn scan_head(body: &str) -> Scan<'_> {
    let mut kind = None;
    let mut api_version = None;
    let mut name = None;
    let mut namespace = None;
    // Top-level keys read so far (a duplicate is for the parser to report).
    let mut seen_keys: [&str; 8] = [""; 8];
    let mut seen = 0;
    let mut in_meta = false;
    let mut meta_indent = None;
    let mut any = false;
    // Indentation of the line that opened a block scalar (`key: |`): deeper lines are its text.
    let mut block: Option<usize> = None;
    // Indentation of the head field just read: a deeper line continues its scalar.
    let mut head_field: Option<usize> = None;
    for (i, (at, line)) in lines(body).enumerate() {
        let complete = kind.is_some() && api_version.is_some() && name.is_some();
        if complete && !in_meta && head_field.is_none() {
            if head_keys_again(&body[at..]) {
                return Scan::Complex;
            }
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A carriage return that ends no line (`v1\r\r\n`): YAML readers differ on it.
        if line.contains('\r') {
            return Scan::Complex;
        }
        // A byte-order mark starts the input, not a key.
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if i == 0 {
            // The rest of a `---` line, or the first line of the input.
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') {
                return Scan::Complex;
            }
        }
        let Some(&first) = line.as_bytes().first() else {
            continue;
        };
        let content = &line[line.bytes().take_while(|&c| c == b' ').count()..];
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if let Some(b) = block {
            if indent > b {
                continue;
            }
            block = None;
        }
        if head_field.take().is_some_and(|h| indent > h) {
            return Scan::Complex;
        }
        // A quoted scalar or flow collection left open spans lines that could
        // look like keys: only the parser knows.
        if content.bytes().any(|b| OPENERS[usize::from(b)]) {
            match line_end(content) {
                LineEnd::Open => return Scan::Complex,
                LineEnd::Block => block = Some(indent),
                LineEnd::Closed => {}
            }
        }
        match first {
            b'\t' => return Scan::Complex,
            b' ' => {
                // A tab in the indentation, or content before any top-level key
                // (an indented document): the parser decides.
                if content.starts_with('\t') || !any {
                    return Scan::Complex;
                }
                if in_meta {
                    let mi = *meta_indent.get_or_insert(indent);
                    if indent < mi {
                        return Scan::Complex;
                    }
                    if indent == mi && !other_meta_key(content) {
                        let Some((key, value)) = split_key(content) else {
                            return Scan::Complex;
                        };
                        let slot = match key {
                            "name" => &mut name,
                            "namespace" => &mut namespace,
                            _ => continue,
                        };
                        if slot.is_some() {
                            return Scan::Complex;
                        }
                        match plain_scalar(value) {
                            Some(v) => *slot = Some(v),
                            None => return Scan::Complex,
                        }
                        head_field = Some(indent);
                    }
                }
            }
            _ => {
                any = true;
                let Some((key, value)) = split_key(line) else {
                    return Scan::Complex;
                };
                if seen_keys[..seen].contains(&key) || seen == seen_keys.len() {
                    return Scan::Complex;
                }
                seen_keys[seen] = key;
                seen += 1;
                in_meta = false;
                let slot = match key {
                    "kind" => &mut kind,
                    "apiVersion" => &mut api_version,
                    "metadata" => {
                        if !value.is_empty() && !value.starts_with('#') {
                            return Scan::Complex;
                        }
                        in_meta = true;
                        continue;
                    }
                    _ => {
                        if value.starts_with(['&', '*', '!']) {
                            return Scan::Complex;
                        }
                        continue;
                    }
                };
                match plain_scalar(value) {
                    Some(v) if !v.is_empty() => *slot = Some(v),
                    _ => return Scan::Complex,
                }
                head_field = Some(0);
            }
        }
    }
    if !any {
        return Scan::Empty;
    }
    match (kind, api_version, name) {
        (Some(kind), Some(api_version), Some(name)) => Scan::Simple(Head {
            api_version: Cow::Borrowed(api_version),
            kind: Cow::Borrowed(kind),
            name: Cow::Borrowed(name),
            namespace: namespace.map(Cow::Borrowed),
        }),
        _ => Scan::Complex,
    }
}

/// Bytes that can open a quoted scalar, a flow collection or a block scalar (a table:
/// fewer instructions per byte than a `matches!`).
const OPENERS: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    t[b'[' as usize] = true;
    t[b'{' as usize] = true;
    t[b'|' as usize] = true;
    t[b'>' as usize] = true;
    t
};

/// The lines of `s`, as `s.split('\n')` gives them, each with its offset in `s`.
/// (A memchr per line: `str::split` costs 11 % more instructions on big streams.)
fn lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut next = Some(0);
    std::iter::from_fn(move || {
        let start = next?;
        let end = memchr::memchr(b'\n', &s.as_bytes()[start..]).map(|i| start + i);
        next = end.map(|e| e + 1);
        Some((start, &s[start..end.unwrap_or(s.len())]))
    })
}

/// Whether `rest` (which starts at a line start) has a line starting with one of
/// the head's top-level keys.
fn head_keys_again(rest: &str) -> bool {
    use memchr::memmem::Finder;
    static FINDERS: std::sync::OnceLock<[Finder<'static>; 3]> = std::sync::OnceLock::new();
    let finders =
        FINDERS.get_or_init(|| [&b"kind:"[..], b"apiVersion:", b"metadata:"].map(Finder::new));
    let b = rest.as_bytes();
    finders
        .iter()
        .any(|f| b.starts_with(f.needle()) || f.find_iter(b).any(|i| i > 0 && b[i - 1] == b'\n'))
}

/// A key of metadata that is neither `name` nor `namespace` (labels, annotations, ...):
/// not read. A line without `key: ` could continue a scalar: not one of these.
fn other_meta_key(content: &str) -> bool {
    let t = content.as_bytes();
    t[0].is_ascii_alphanumeric()
        && !content.starts_with("name")
        && memchr::memchr(b':', t).is_some_and(|c| matches!(t.get(c + 1), None | Some(b' ')))
}

enum LineEnd {
    /// Every quoted scalar and flow collection the line opens, it closes.
    Closed,
    /// One stays open, or the line is too unusual to tell.
    Open,
    /// The line's value is a block scalar header (`|`, `>-`, ...).
    Block,
}

/// How a line's content (after its indentation) ends, for the line scan.
fn line_end(content: &str) -> LineEnd {
    let mut s = content;
    // Sequence entries and explicit keys and values: `- `, `? `, `: `.
    while let Some(rest) = s
        .strip_prefix(['-', '?', ':'])
        .filter(|r| r.is_empty() || r.starts_with([' ', '\t']))
    {
        s = rest.trim_start_matches([' ', '\t']);
    }
    // The key, if any: the value follows it.
    let mut value = s;
    if s.starts_with(['"', '\'']) {
        let Some(end) = quoted_end(s) else {
            return LineEnd::Open;
        };
        let after = s[end..].trim_start_matches([' ', '\t']);
        match after.strip_prefix(':') {
            Some(v) if v.is_empty() || v.starts_with([' ', '\t']) => value = v,
            _ => {
                return if blank(after) {
                    LineEnd::Closed
                } else {
                    LineEnd::Open
                }
            }
        }
    } else if !s.starts_with(['[', '{']) {
        let b = s.as_bytes();
        match (0..b.len())
            .find(|&i| b[i] == b':' && matches!(b.get(i + 1), None | Some(b' ' | b'\t')))
        {
            Some(i) => value = &s[i + 1..],
            None => return LineEnd::Closed,
        }
    }
    let mut v = value.trim_start_matches([' ', '\t']);
    // Anchors and tags before the value.
    while v.starts_with(['&', '!']) {
        v = v
            .find([' ', '\t'])
            .map_or("", |i| v[i..].trim_start_matches([' ', '\t']));
    }
    match v.as_bytes().first() {
        Some(b'"' | b'\'') => match quoted_end(v) {
            Some(end) if blank(&v[end..]) => LineEnd::Closed,
            _ => LineEnd::Open,
        },
        Some(b'[' | b'{') => {
            if flow_closes(v) {
                LineEnd::Closed
            } else {
                LineEnd::Open
            }
        }
        Some(b'|' | b'>') => LineEnd::Block,
        _ => LineEnd::Closed,
    }
}

/// Nothing but spaces and a comment.
fn blank(rest: &str) -> bool {
    let r = rest.trim_start_matches([' ', '\t']);
    r.is_empty() || r.starts_with('#')
}

/// The byte after the closing quote of the quoted scalar `s` starts with.
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let q = b[0];
    let mut i = 1;
    while i < b.len() {
        // Jump to the next quote or escape.
        i += match q {
            b'"' => memchr::memchr2(b'"', b'\\', &b[i..])?,
            _ => memchr::memchr(q, &b[i..])?,
        };
        match b[i] {
            b'\\' => i += 2,
            _ if q == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 2,
            _ => return Some(i + 1),
        }
    }
    None
}

/// Whether the flow collection `s` starts with closes on this line, followed by
/// nothing but a comment.
fn flow_closes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut token_start = true;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > 64 {
                    // Nesting this deep is for the parser (and its limits).
                    return false;
                }
                token_start = true;
            }
            b']' | b'}' => {
                let Some(d) = depth.checked_sub(1) else {
                    return false;
                };
                depth = d;
                token_start = false;
                if depth == 0 {
                    return blank(&s[i + 1..]);
                }
            }
            b',' => token_start = true,
            b':' if matches!(b.get(i + 1), Some(b' ' | b'\t')) => token_start = true,
            b' ' | b'\t' => {
                if b.get(i + 1) == Some(&b'#') {
                    return false;
                }
            }
            b'"' | b'\'' if token_start => match quoted_end(&s[i..]) {
                Some(end) => {
                    i += end;
                    token_start = false;
                    continue;
                }
                None => return false,
            },
            _ => token_start = false,
        }
        i += 1;
    }
    false
}

/// `key: rest` with a plain key; None for anything else.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    let end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/')))
        .unwrap_or(b.len());
    if end == 0 || b.get(end) != Some(&b':') || !matches!(b.get(end + 1), None | Some(b' ')) {
        return None;
    }
    Some((&line[..end], trim_blank(&line[end + 1..])))
}

/// `s` without leading and trailing spaces and tabs.
fn trim_blank(s: &str) -> &str {
    let b = s.as_bytes();
    let blank = |c: &u8| matches!(c, b' ' | b'\t');
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// A scalar the scan can read without a parser: plain or simply quoted.
fn plain_scalar(value: &str) -> Option<&str> {
    // A comment starts at a `#` after a space or a tab.
    let b = value.as_bytes();
    let v = match memchr::memchr_iter(b'#', b).find(|&i| i > 0 && matches!(b[i - 1], b' ' | b'\t'))
    {
        Some(i) => value[..i].trim_end_matches([' ', '\t']),
        None => value,
    };
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (!inner.contains(['"', '\\'])).then_some(inner);
    }
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return (!inner.contains('\'')).then_some(inner);
    }
    let first = *v.as_bytes().first()?;
    if matches!(
        first,
        b'&' | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'{'
            | b'['
            | b'%'
            | b'@'
            | b'`'
            | b'"'
            | b'\''
            | b'#'
            | b'?'
            | b','
    ) {
        return None;
    }
    // Plain scalars YAML reads as null, a boolean or a number are not strings.
    if first.is_ascii_digit()
        || matches!(first, b'+' | b'-' | b'.' | b'~')
        || ["null", "true", "false"]
            .iter()
            .any(|w| v.eq_ignore_ascii_case(w))
    {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(src: &str) -> Vec<(String, String)> {
        split(src)
            .unwrap()
            .docs
            .iter()
            .filter_map(|d| {
                d.head
                    .as_ref()
                    .map(|h| (h.kind.to_string(), h.name.to_string()))
            })
            .collect()
    }

    #[test]
    fn raw_slices_tile_the_input() {
        let src = "---\n# Source: a\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# only a comment\n--- # c\napiVersion: v1\nkind: Secret\nmetadata:\n  labels:\n    name: wrong\n  name: \"b\"\n...\n";
        let s = split(src).unwrap();
        let joined: String = s.docs.iter().map(|d| d.raw.as_ref()).collect();
        assert_eq!(joined, src);
        assert_eq!(
            heads(src),
            vec![
                ("ConfigMap".into(), "a".into()),
                ("Secret".into(), "b".into())
            ]
        );
    }

    #[test]
    fn fast_scan_agrees_with_the_parser() {
        let src = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  namespace: 'ns'\n  name: web # c\nspec: {}\n";
        match scan_head(src) {
            Scan::Simple(h) => assert_eq!(
                h,
                head_of_value(&serde_yaml::from_str(src).unwrap()).unwrap()
            ),
            _ => panic!("expected the fast path"),
        }
    }

    #[test]
    fn unusual_documents_take_the_parser() {
        for src in [
            "{\"apiVersion\": v1, kind: ConfigMap, metadata: {name: a}}\n",
            "\"kind\": ConfigMap\napiVersion: v1\nmetadata:\n  name: a\n",
            "kind: ConfigMap\napiVersion: v1\nmetadata: &m\n  name: a\n",
        ] {
            assert!(matches!(scan_head(src), Scan::Complex), "{src}");
            assert_eq!(heads(src), vec![("ConfigMap".into(), "a".into())]);
        }
    }

    #[test]
    fn duplicate_keys_and_missing_kind_are_errors() {
        let dup = "kind: A\nkind: B\napiVersion: v1\nmetadata:\n  name: a\n";
        assert!(format!("{:#}", split(dup).unwrap_err()).contains("duplicate"));
        let nokind = "apiVersion: v1\nmetadata:\n  name: a\n";
        assert!(format!("{:#}", split(nokind).unwrap_err()).contains("no `kind`"));
    }

    #[test]
    fn the_scan_stops_at_the_head() {
        // What follows the head of a document lockstep does not edit is not read...
        let tail = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n- - [not read\n";
        assert!(matches!(scan_head(tail), Scan::Simple(h) if h.name == "a"));
        // ...but a head key again in it (a duplicate, or a key in a block scalar) is
        // for the parser, which reports the duplicate.
        let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {}\nkind: Secret\n";
        assert!(matches!(scan_head(dup), Scan::Complex));
        assert!(format!("{:#}", split(dup).unwrap_err()).contains("duplicate"));
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: |\nkind: Secret\n";
        assert!(matches!(scan_head(text), Scan::Complex));
        // A key of metadata other than name and namespace is not read; a line that
        // could continue the name's scalar is.
        let cont = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  b\ndata: {}\n";
        assert!(matches!(scan_head(cont), Scan::Complex));
    }

    #[test]
    fn large_streams_split_on_two_threads_like_one() {
        let doc = |i: usize| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: {}\n",
                "v".repeat(200)
            )
        };
        let mut src: String = (0..30_000).map(doc).collect();
        assert!(src.len() > PARALLEL_MIN_BYTES);
        let heads = heads(&src);
        assert_eq!(heads.len(), 30_000);
        assert!(heads
            .iter()
            .enumerate()
            .all(|(i, (_, n))| *n == format!("c{i}")));
        // The first error in document order is the one reported, from either half.
        let bad = |s: &mut String, at: usize| {
            let p = s.match_indices("---\n").nth(at).unwrap().0;
            s.insert_str(p, "---\nkind: [unclosed\n");
        };
        // Split in halves, the documents are those of one pass, line numbers included;
        // near the cut, lines that only look like markers and `...` ends.
        let mid = src.len() / 2;
        let cut = mid + src[mid..].find("---\n").unwrap();
        src.insert_str(cut, "---x\n# not a marker\n...\n");
        let halves = split(&src).unwrap();
        let one = read_heads(&split_yaml(&src, 1)).unwrap();
        assert_eq!(halves.docs.len(), one.len());
        for (a, b) in halves.docs.iter().zip(&one) {
            assert_eq!(
                (&a.raw, &a.body, a.line, &a.head),
                (&b.raw, &b.body, b.line, &b.head)
            );
        }
        bad(&mut src, 25_000);
        let late = format!("{:#}", split(&src).unwrap_err());
        assert!(
            late.contains(&format!("line {}", 25_000 * 7 + 3 + 1)),
            "{late}"
        );
        bad(&mut src, 100);
        let early = format!("{:#}", split(&src).unwrap_err());
        assert!(late.contains("malformed YAML") && early.contains("malformed YAML"));
        assert_ne!(late, early, "the earlier error wins");
        assert!(early.contains(&format!("line {}", 100 * 7 + 1)), "{early}");
    }

    #[test]
    fn json_stream_and_lists() {
        let src = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"}}]}";
        let s = split(src).unwrap();
        assert!(s.json);
        assert_eq!(
            heads(src),
            vec![
                ("ConfigMap".into(), "a".into()),
                ("Secret".into(), "s".into())
            ]
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        for src in ["", "\n\n", "---\n# nothing\n---\n"] {
            assert!(format!("{:#}", split(src).unwrap_err()).contains("empty"));
        }
    }
}
