//! The YAML line editor of `values migrate`: finds, removes, takes and inserts entries
//! of block-style YAML by lines, so comments and the order of untouched lines stay as
//! they are, and writes keys and scalars YAML-safely.
//!
//! It must not know release steps or rules (the command does), and it never trusts its
//! own result: the command re-parses the text and compares it with the intended values.

use super::*;

/// " (line N)" where `path` is in the original file, when it is.
pub(super) fn line_note(doc: &ValuesText, path: &[String]) -> String {
    match doc.find(path, "") {
        Ok(Some(e)) => format!(" (line {})", e.line + 1),
        _ => String::new(),
    }
}

/// A key as YAML: plain when that reads back as the same string, else quoted.
pub(super) fn fmt_key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain && reads_as_string(k) {
        k.to_owned()
    } else {
        serde_json::to_string(k).expect("a string serializes")
    }
}

/// A scalar string as YAML, plain when that reads back as the same string.
pub(super) fn fmt_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain && reads_as_string(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
}

pub(super) fn reads_as_string(s: &str) -> bool {
    // YAML 1.1 readers (helm's) also take these words as booleans.
    !crate::yaml::is_1_1_word(s)
        && serde_yaml::from_str::<Value>(s)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(s)
}

/// Where an inserted entry goes among its new siblings.
pub(super) enum Hint {
    /// After the last entry of the parent.
    End,
    /// Just before this sibling (and the comments above it).
    Before(Vec<String>),
    /// Just after this sibling.
    After(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Nothing after the colon: a block mapping or list follows, or null.
    Empty,
    /// `{}`.
    EmptyFlowMap,
    /// `{...}` or `[...]`.
    Flow,
    /// `|` or `>`.
    BlockScalar,
    /// A one-line scalar (or a multi-line plain or quoted one).
    Scalar,
    /// An anchor, alias or tag: not for the editor to look into.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// The key line.
    pub(super) line: usize,
    pub(super) indent: usize,
    /// One past the last line that belongs to the entry (trailing comments and
    /// blank lines do not).
    pub(super) end: usize,
    pub(super) kind: Kind,
    /// Byte offset of the end of the key token in the key line.
    pub(super) key_end: usize,
    /// Byte offset of what follows `: ` (the value, a comment, or the line's end).
    pub(super) value_at: usize,
}

/// An entry taken out of a document, its key line at indent 0.
pub(super) struct Block {
    pub(super) lines: Vec<String>,
    pub(super) key_line: usize,
    pub(super) key_end: usize,
}

impl Block {
    pub(super) fn rename(&mut self, key: &str) {
        let l = &self.lines[self.key_line];
        self.lines[self.key_line] = format!("{}{}", fmt_key(key), &l[self.key_end..]);
        self.key_end = fmt_key(key).len();
    }
}

#[derive(Debug, Clone)]
pub(super) struct ValuesText {
    pub(super) lines: Vec<String>,
    pub(super) eol: &'static str,
    pub(super) final_eol: bool,
    /// The indentation step of the file (2 unless it uses another).
    pub(super) unit: usize,
}

pub(super) fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

pub(super) fn is_blank(l: &str) -> bool {
    l.trim().is_empty()
}

pub(super) fn is_comment(l: &str) -> bool {
    l.trim_start().starts_with('#')
}

pub(super) fn is_separator(l: &str) -> bool {
    l == "---" || l == "..." || l.starts_with("--- #")
}

/// A line that carries YAML content (not blank, not a comment, not a `---` marker).
pub(super) fn is_content(l: &str) -> bool {
    !is_blank(l) && !is_comment(l) && !is_separator(l)
}

pub(super) fn is_seq_item(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

pub(super) struct KeyLine {
    pub(super) key: String,
    pub(super) key_end: usize,
    pub(super) value_at: usize,
    pub(super) kind: Kind,
}

/// Reads `key: value` at indent `n`, or None when the line is not one.
pub(super) fn parse_key(line: &str, n: usize) -> Option<KeyLine> {
    let s = &line[n..];
    let (key, after) = if let Some(body) = s.strip_prefix('"') {
        let mut esc = false;
        let close = body.char_indices().find(|&(_, c)| {
            let end = c == '"' && !esc;
            esc = c == '\\' && !esc;
            end
        })?;
        let token = &s[..close.0 + 2];
        (serde_json::from_str::<String>(token).ok()?, token.len())
    } else if let Some(body) = s.strip_prefix('\'') {
        let bytes = body.as_bytes();
        let mut i = 0;
        loop {
            if i >= bytes.len() {
                return None;
            }
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                break;
            }
            i += 1;
        }
        (body[..i].replace("''", "'"), i + 2)
    } else {
        if is_seq_item(s) || s.starts_with(|c: char| "?:,[]{}#&*!|>%@`".contains(c)) {
            return None;
        }
        let b = s.as_bytes();
        let mut colon = None;
        for i in 0..b.len() {
            if b[i] == b'#' && i > 0 && b[i - 1] == b' ' {
                return None;
            }
            if b[i] == b':' && (i + 1 == b.len() || b[i + 1] == b' ') {
                colon = Some(i);
                break;
            }
        }
        let c = colon?;
        let key = s[..c].trim_end();
        (key.to_owned(), key.len())
    };
    let rest = &s[after..];
    let t = rest.trim_start_matches(' ');
    let t = t.strip_prefix(':')?;
    if !(t.is_empty() || t.starts_with(' ')) {
        return None;
    }
    let value = t.trim_start_matches(' ');
    let value_at = line.len() - value.len();
    let bare = match value.find(" #") {
        Some(i) if !value.starts_with(['"', '\'']) => value[..i].trim_end(),
        _ => value.trim_end(),
    };
    let kind = match value.chars().next() {
        None | Some('#') => Kind::Empty,
        Some('{') if bare == "{}" => Kind::EmptyFlowMap,
        Some('{') | Some('[') => Kind::Flow,
        Some('|') | Some('>') => Kind::BlockScalar,
        Some('&') | Some('*') | Some('!') => Kind::Other,
        _ => Kind::Scalar,
    };
    Some(KeyLine {
        key,
        key_end: n + after,
        value_at,
        kind,
    })
}

impl ValuesText {
    pub(super) fn parse(text: &str) -> ValuesText {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let final_eol = text.ends_with('\n');
        let body = text.strip_suffix(eol).unwrap_or(text);
        let lines: Vec<String> = if text.is_empty() {
            vec![]
        } else {
            body.split(eol).map(str::to_owned).collect()
        };
        let mut unit = 0;
        for w in lines
            .iter()
            .filter(|l| is_content(l))
            .collect::<Vec<_>>()
            .windows(2)
        {
            let (a, b) = (indent(w[0]), indent(w[1]));
            if b > a && (unit == 0 || b - a < unit) {
                unit = b - a;
            }
        }
        ValuesText {
            lines,
            eol,
            final_eol,
            unit: if unit == 0 { 2 } else { unit },
        }
    }

    pub(super) fn render(&self) -> String {
        let mut s = self.lines.join(self.eol);
        if self.final_eol && !self.lines.is_empty() {
            s.push_str(self.eol);
        }
        s
    }

    pub(super) fn first_content(&self, from: usize, to: usize) -> Option<usize> {
        (from..to).find(|&i| is_content(&self.lines[i]))
    }

    /// The entry `key` among the entries of the block `from..to`.
    pub(super) fn find_in(
        &self,
        from: usize,
        to: usize,
        key: &str,
        name: &str,
    ) -> Result<Option<Entry>> {
        let Some(first) = self.first_content(from, to) else {
            return Ok(None);
        };
        let ind = indent(&self.lines[first]);
        for i in first..to {
            let l = &self.lines[i];
            if !is_content(l) || indent(l) > ind {
                continue;
            }
            let rest = &l[ind..];
            if is_seq_item(rest) {
                if i == first {
                    bail!("{name} line {}: a list where the values have a mapping; make this change by hand", i + 1);
                }
                continue; // a list at the indent of the key it belongs to
            }
            let kl = parse_key(l, indent(l)).ok_or_else(|| {
                anyhow!(
                    "{name} line {}: `{}` is not a `key: value` line the editor can read (flow style, a complex key or a multi-line value); make this change by hand",
                    i + 1,
                    l.trim()
                )
            })?;
            if kl.key == key {
                return Ok(Some(Entry {
                    line: i,
                    indent: ind,
                    end: self.entry_end(i, ind, kl.kind, to),
                    kind: kl.kind,
                    key_end: kl.key_end,
                    value_at: kl.value_at,
                }));
            }
        }
        Ok(None)
    }

    pub(super) fn entry_end(&self, line: usize, n: usize, kind: Kind, limit: usize) -> usize {
        let mut last = line;
        for j in line + 1..limit {
            let l = &self.lines[j];
            if is_blank(l) {
                continue;
            }
            let m = indent(l);
            if kind == Kind::BlockScalar && m > n {
                last = j;
                continue;
            }
            if is_comment(l) {
                continue;
            }
            if m > n || (m == n && kind == Kind::Empty && is_seq_item(&l[n..])) {
                last = j;
                continue;
            }
            break;
        }
        last + 1
    }

    /// The entry at a key path, None when some key on the path is not there.
    pub(super) fn find(&self, path: &[String], name: &str) -> Result<Option<Entry>> {
        let (mut from, mut to) = (0, self.lines.len());
        let mut found: Option<Entry> = None;
        for (i, key) in path.iter().enumerate() {
            if let Some(e) = found {
                match e.kind {
                    Kind::Empty => (from, to) = (e.line + 1, e.end),
                    Kind::EmptyFlowMap | Kind::Scalar | Kind::BlockScalar => return Ok(None),
                    Kind::Flow | Kind::Other => bail!(
                        "{name} line {}: `{}` is written in flow style or with an anchor, alias or tag; the editor changes block-style YAML only: make this change by hand",
                        e.line + 1,
                        path[..i].join(".")
                    ),
                }
            }
            found = self.find_in(from, to, key, name)?;
            if found.is_none() {
                return Ok(None);
            }
        }
        Ok(found)
    }

    pub(super) fn must_find(&self, path: &[String], name: &str) -> Result<Entry> {
        self.find(path, name)?.ok_or_else(|| {
            anyhow!(
                "{name} sets `{}` but the editor cannot find its `key:` line (flow style or an unusual layout); make this change by hand",
                path.join(".")
            )
        })
    }

    /// Removes the entry at `path` (its key line and children).
    pub(super) fn remove(&mut self, path: &[String], name: &str) -> Result<()> {
        let e = self.must_find(path, name)?;
        self.cut(path, e.line, e.end, name)?;
        Ok(())
    }

    /// Takes the entry at `path` out, with the comment lines right above it.
    pub(super) fn take(&mut self, path: &[String], name: &str) -> Result<Block> {
        let e = self.must_find(path, name)?;
        let mut start = e.line;
        while start > 0
            && is_comment(&self.lines[start - 1])
            && indent(&self.lines[start - 1]) == e.indent
        {
            start -= 1;
        }
        let lines = self.lines[start..e.end]
            .iter()
            .map(|l| shift(l, e.indent, 0))
            .collect();
        let block = Block {
            lines,
            key_line: e.line - start,
            key_end: e.key_end - e.indent,
        };
        self.cut(path, start, e.end, name)?;
        Ok(block)
    }

    pub(super) fn cut(
        &mut self,
        path: &[String],
        start: usize,
        end: usize,
        name: &str,
    ) -> Result<()> {
        self.lines.drain(start..end);
        // No double blank line where the entry was.
        if start > 0
            && is_blank(&self.lines[start - 1])
            && (start == self.lines.len() || is_blank(&self.lines[start]))
        {
            self.lines.remove(start - 1);
        }
        // A mapping left without entries is `{}`, not null.
        if path.len() > 1 {
            let parent = self.must_find(&path[..path.len() - 1], name)?;
            if parent.kind == Kind::Empty
                && self.first_content(parent.line + 1, parent.end).is_none()
            {
                let l = &self.lines[parent.line];
                let new = if parent.value_at >= l.len() {
                    format!("{} {{}}", l.trim_end())
                } else {
                    format!("{}{{}} {}", &l[..parent.value_at], &l[parent.value_at..])
                };
                self.lines[parent.line] = new;
            }
        }
        Ok(())
    }

    /// Inserts `block` (lines at indent 0, the first entry's key already named
    /// after the last key of `path`) as the entry `path`, creating missing parents.
    pub(super) fn insert(
        &mut self,
        path: &[String],
        block: Vec<String>,
        hint: Hint,
        name: &str,
    ) -> Result<()> {
        let parents = &path[..path.len() - 1];
        // The deepest parent that exists (None: the top level).
        let mut k = parents.len();
        let mut anchor: Option<Entry> = None;
        while k > 0 {
            if let Some(e) = self.find(&parents[..k], name)? {
                anchor = Some(e);
                break;
            }
            k -= 1;
        }
        let (from, to, child_indent) = self.open_parent(anchor, path, k, name)?;
        let mut new_lines = Vec::new();
        for (depth, key) in parents[k..].iter().enumerate() {
            new_lines.push(format!(
                "{}{}:",
                " ".repeat(child_indent + depth * self.unit),
                fmt_key(key)
            ));
        }
        let ind = child_indent + (parents.len() - k) * self.unit;
        new_lines.extend(block.iter().map(|l| shift(l, 0, ind)));
        // Where among the siblings: a sibling counts only when the parent existed.
        let siblings = k == parents.len();
        let (at, before) = self.place(&hint, siblings, path.len(), from, to, name)?;
        if child_indent == 0 && anchor.is_none() {
            // Top-level entries: a blank line after a block or a comment, and
            // before what follows unless it is blank already.
            let prev = at
                .checked_sub(1)
                .map(|i| self.lines[i].as_str())
                .filter(|l| !is_blank(l));
            if prev.is_some_and(|l| is_comment(l) || indent(l) > 0 || new_lines.len() > 1) {
                new_lines.insert(0, String::new());
            }
            if at < self.lines.len()
                && !is_blank(&self.lines[at])
                && (before || new_lines.len() > 1)
            {
                new_lines.push(String::new());
            }
        }
        self.lines.splice(at..at, new_lines);
        Ok(())
    }

    /// The lines new children of `anchor` (the deepest existing parent of `path`, the
    /// first `k` keys; None: the top level) go between, and their indent. `key: {}`
    /// is opened into `key:`; any other value refuses.
    pub(super) fn open_parent(
        &mut self,
        anchor: Option<Entry>,
        path: &[String],
        k: usize,
        name: &str,
    ) -> Result<(usize, usize, usize)> {
        let Some(mut e) = anchor else {
            let first = self.first_content(0, self.lines.len());
            let last = (0..self.lines.len())
                .rev()
                .find(|&i| is_content(&self.lines[i]));
            return Ok((
                0,
                last.map_or(self.lines.len(), |l| l + 1),
                first.map_or(0, |f| indent(&self.lines[f])),
            ));
        };
        match e.kind {
            Kind::Empty => {}
            Kind::EmptyFlowMap => {
                // `key: {}` becomes `key:` with the new entries below it.
                let l = self.lines[e.line].clone();
                let rest = l[e.value_at..].trim_start_matches("{}").trim_start();
                self.lines[e.line] = if rest.is_empty() {
                    l[..e.value_at].trim_end().to_owned()
                } else {
                    format!("{}{rest}", &l[..e.value_at])
                };
                e.kind = Kind::Empty;
            }
            _ => bail!(
                "{name} line {}: `{}` is not a block mapping the editor can add `{}` to; make this change by hand",
                e.line + 1,
                path[..k].join("."),
                path[k..].join(".")
            ),
        }
        let first = self.first_content(e.line + 1, e.end);
        Ok((
            e.line + 1,
            e.end,
            first.map_or(e.indent + self.unit, |f| indent(&self.lines[f])),
        ))
    }

    /// Where in `from..to` the new entry goes for `hint` (`to`, the parent's end,
    /// when the sibling is not there), and whether that is before a sibling.
    pub(super) fn place(
        &self,
        hint: &Hint,
        siblings: bool,
        depth: usize,
        from: usize,
        to: usize,
        name: &str,
    ) -> Result<(usize, bool)> {
        let sibling = |p: &[String]| -> Result<Option<Entry>> {
            if siblings && p.len() == depth {
                self.find(p, name)
            } else {
                Ok(None)
            }
        };
        match hint {
            Hint::End => {}
            Hint::After(p) => {
                if let Some(s) = sibling(p)? {
                    return Ok((s.end, false));
                }
            }
            Hint::Before(p) => {
                if let Some(s) = sibling(p)? {
                    let mut start = s.line;
                    while start > from
                        && is_comment(&self.lines[start - 1])
                        && indent(&self.lines[start - 1]) == s.indent
                    {
                        start -= 1;
                    }
                    while start > from && is_blank(&self.lines[start - 1]) {
                        start -= 1;
                    }
                    return Ok((start, true));
                }
            }
        }
        Ok((to, false))
    }
}

/// Re-indents a line from `from` to `to` spaces (blank lines stay empty).
pub(super) fn shift(l: &str, from: usize, to: usize) -> String {
    if is_blank(l) {
        return String::new();
    }
    let drop = indent(l).min(from);
    format!("{}{}", " ".repeat(to), &l[drop..])
}
