//! The hand head scanner: reads a document's head (apiVersion, kind, metadata.name,
//! metadata.namespace) from the block style helm prints, line by line, and stops once
//! the head is read. What it does not fully understand it hands back as
//! [`Scan::Complex`], for the parser.
//!
//! It must not parse bodies or report errors: a document it cannot read goes to the
//! parser, which gives the precise error.

use super::*;

pub(super) enum Scan<'a> {
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
///
/// What the scan buys (callgrind, bench/README.md): `lockstep inject` of the 10 MB
/// benchmark stream runs 180 M instructions with it and 4,098 M (23×) with every head
/// read by the parser, which would put the 50 MB target (≥ 500 MB/s) far out of reach.
///
/// One function of about 150 lines, on purpose: it is a single pass whose state (the
/// keys seen, whether metadata is open, its indent) every line updates; split, that
/// state would travel through every part.
pub(super) fn scan_head(body: &str) -> Scan<'_> {
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
pub(super) const OPENERS: [bool; 256] = {
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
pub(super) fn lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
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
pub(super) fn head_keys_again(rest: &str) -> bool {
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
pub(super) fn other_meta_key(content: &str) -> bool {
    let t = content.as_bytes();
    t[0].is_ascii_alphanumeric()
        && !content.starts_with("name")
        && memchr::memchr(b':', t).is_some_and(|c| matches!(t.get(c + 1), None | Some(b' ')))
}

pub(super) enum LineEnd {
    /// Every quoted scalar and flow collection the line opens, it closes.
    Closed,
    /// One stays open, or the line is too unusual to tell.
    Open,
    /// The line's value is a block scalar header (`|`, `>-`, ...).
    Block,
}

/// How a line's content (after its indentation) ends, for the line scan.
pub(super) fn line_end(content: &str) -> LineEnd {
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
pub(super) fn blank(rest: &str) -> bool {
    let r = rest.trim_start_matches([' ', '\t']);
    r.is_empty() || r.starts_with('#')
}

/// The byte after the closing quote of the quoted scalar `s` starts with.
fn quoted_end(s: &str) -> Option<usize> {
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
pub(super) fn flow_closes(s: &str) -> bool {
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
pub(super) fn split_key(line: &str) -> Option<(&str, &str)> {
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
pub(super) fn trim_blank(s: &str) -> &str {
    let b = s.as_bytes();
    let blank = |c: &u8| matches!(c, b' ' | b'\t');
    let start = b.iter().position(|c| !blank(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// A scalar the scan can read without a parser: plain or simply quoted.
pub(super) fn plain_scalar(value: &str) -> Option<&str> {
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
