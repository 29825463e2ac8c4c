//! Values files across releases: `lockstep values migrate` rewrites a user's
//! values file for the moves the release steps make.
//!
//! The rules are the `breaking` rules of every step crossed, from the profile's
//! catalog ([`gate::steps`]). The edits are made by a line editor over
//! block-style YAML, so comments and the order of untouched lines stay as they
//! are. Every result is checked before anything is written: it must parse to the
//! original values with exactly the intended changes, else the command refuses
//! and names the changes to make by hand.
//!
//! This module owns the line editor and the mapping from rules to edits. It must
//! not decide the upgrade path (`gate` does) or render anything.

use crate::config::{self, Lock};
use crate::gate::{self, Step};
use crate::profile::{self, Line, ValuesRule};
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

const DEFAULT_PROFILE: &str = "prefect-customer-managed";

#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// The release the values are being prepared for.
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// The release the values are written for now (default: deployed.version of
    /// the lockstep.lock beside FILE).
    #[arg(long, value_name = "VERSION")]
    pub from: Option<String>,
    /// A built-in profile name or a profile file: its catalog lists each step's
    /// breaking values changes (default: the profile of the lockstep.yaml beside
    /// FILE, else prefect-customer-managed).
    #[arg(long)]
    pub profile: Option<String>,
    /// Rewrite FILE instead of printing the new file on stdout.
    #[arg(long)]
    pub in_place: bool,
    /// The values file (block-style YAML; comments and untouched lines are kept).
    pub file: PathBuf,
}

/// What `migrate` did to one values text.
#[derive(Debug, Default, Clone)]
pub struct Migration {
    /// The new text (the original when nothing changed).
    pub text: String,
    /// One line per change made.
    pub changed: Vec<String>,
    /// What the rules require but the editor could not decide: edit by hand.
    pub undecided: Vec<String>,
}

pub fn migrate(a: &MigrateArgs, out: &mut dyn Write, notes: &mut Vec<String>) -> Result<()> {
    let dir = a
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let profile = match &a.profile {
        Some(p) => profile::load(p)?,
        None => {
            let cfg_path = dir.join(config::CONFIG_FILE);
            let from_cfg = if cfg_path.is_file() {
                config::AppConfig::load(&cfg_path)?.profile
            } else {
                None
            };
            profile::load(from_cfg.as_deref().unwrap_or(DEFAULT_PROFILE))?
        }
    };
    let to = gate::parse_version(&a.to)
        .ok_or_else(|| anyhow!("--to {:?} is not a version (e.g. 1.2.0)", a.to))?;
    let (from_text, origin) = match &a.from {
        Some(f) => (f.clone(), "--from".to_owned()),
        None => {
            let lock_path = dir.join(config::LOCK_FILE);
            match Lock::load(&lock_path)? {
                Some(lock) => (lock.deployed.version, format!("{} (deployed.version)", lock_path.display())),
                None => bail!(
                    "which release are the values in {} written for? Pass --from VERSION (no {} beside the file records the deployed release)",
                    a.file.display(),
                    lock_path.display()
                ),
            }
        }
    };
    let from = gate::parse_version(&from_text)
        .ok_or_else(|| anyhow!("{origin} {from_text:?} is not a version (e.g. 0.8.2)"))?;
    let steps =
        gate::steps(&profile, &from, &to).map_err(|r| anyhow!("cannot migrate values: {r}"))?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read values file {}", a.file.display()))?;
    let name = a.file.display().to_string();
    let m = rewrite(&text, &steps, &name)?;

    let crossed: Vec<String> = steps
        .iter()
        .map(|s| format!("{} → {}", s.from_line, s.to_line))
        .collect();
    notes.push(format!(
        "values migrate {from} → {to} ({}): {}",
        profile.name,
        if crossed.is_empty() {
            "same release line, no step crossed".to_owned()
        } else {
            format!("steps {}", crossed.join(", "))
        }
    ));
    for c in &m.changed {
        notes.push(format!("changed: {c}"));
    }
    for u in &m.undecided {
        notes.push(format!("could not decide, edit by hand: {u}"));
    }
    for step in &steps {
        for r in step.info.iter().flat_map(|i| &i.requires) {
            notes.push(format!(
                "[{} → {}] check by hand, the release requires: {r}",
                step.from_line, step.to_line
            ));
        }
    }
    if m.changed.is_empty() && m.undecided.is_empty() {
        notes.push(format!("{name}: nothing to change"));
    }
    if a.in_place {
        if m.text != text {
            write_in_place(&a.file, &m.text)?;
            notes.push(format!("rewrote {name}"));
        } else {
            notes.push(format!("{name} left as it was"));
        }
    } else {
        out.write_all(m.text.as_bytes())?;
    }
    Ok(())
}

fn write_in_place(file: &Path, text: &str) -> Result<()> {
    let target = std::fs::canonicalize(file)
        .with_context(|| format!("cannot resolve {}", file.display()))?;
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!(".{base}.lockstep-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(&target) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, &target).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace {}", target.display())
    })
}

/// Applies the breaking rules of `steps`, in order, to a values text. `name`
/// names the file in messages.
pub fn rewrite(text: &str, steps: &[Step], name: &str) -> Result<Migration> {
    let original = parse_values(text)
        .with_context(|| format!("{name} is not a values file lockstep can migrate"))?;
    let mut expected = original.clone();
    let mut doc = Doc::parse(text);
    let orig_doc = doc.clone();
    let mut m = Migration::default();
    // Rules whose finding is already explained in `undecided`.
    let mut explained: BTreeSet<(usize, usize)> = BTreeSet::new();

    for (si, step) in steps.iter().enumerate() {
        let Some(info) = &step.info else { continue };
        let label = format!("{} → {}", step.from_line, step.to_line);
        for (ri, rule) in info.breaking.iter().enumerate() {
            match rule {
                ValuesRule::Moved { from, to } => {
                    if !gate::has_key(&expected, from) {
                        continue;
                    }
                    let (fp, tp) = (split(from), split(to));
                    let at = line_note(&orig_doc, &fp);
                    let Some(value) = gate::get(&expected, from).cloned() else {
                        // Empty: nothing to move, but the new chart rejects the key.
                        doc.remove(&fp, name)?;
                        remove_path(&mut expected, &fp);
                        m.changed.push(format!(
                            "[{label}] removed the empty `{from}`{at}: this release reads `{to}`"
                        ));
                        continue;
                    };
                    match gate::get(&expected, to) {
                        Some(existing) if *existing == value => {
                            doc.remove(&fp, name)?;
                            remove_path(&mut expected, &fp);
                            m.changed.push(format!("[{label}] removed `{from}`{at}: `{to}` already holds the same value"));
                        }
                        Some(_) => {
                            explained.insert((si, ri));
                            m.undecided.push(format!(
                                "[{label}] `{from}`{at} and `{to}` are both set, to different values: keep the right one under `{to}` and delete `{from}`"
                            ));
                        }
                        None => {
                            set_path(&mut expected, &tp, value.clone())
                                .map_err(|why| anyhow!("cannot move `{from}` to `{to}` in {name}: {why}; make this change by hand"))?;
                            remove_path(&mut expected, &fp);
                            let mut block = doc.take(&fp, name)?;
                            block.rename(tp.last().unwrap());
                            let hint = if fp.len() > tp.len()
                                && fp[..tp.len() - 1] == tp[..tp.len() - 1]
                            {
                                // The new key's parent holds the old one: put it just
                                // before the sibling the old key was in.
                                Hint::Before(fp[..tp.len()].to_vec())
                            } else {
                                Hint::End
                            };
                            doc.insert(&tp, block.lines, hint, name)?;
                            m.changed
                                .push(format!("[{label}] moved `{from}`{at} to `{to}`"));
                        }
                    }
                }
                ValuesRule::Removed { path, fix } => {
                    if !gate::has_key(&expected, path) {
                        continue;
                    }
                    let value = gate::get(&expected, path).cloned().unwrap_or(Value::Null);
                    let p = split(path);
                    let at = line_note(&orig_doc, &p);
                    doc.remove(&p, name)?;
                    remove_path(&mut expected, &p);
                    m.changed.push(format!("[{label}] removed `{path}`{at} (was {}); make sure the rest follows: {fix}", short(&value)));
                }
                ValuesRule::Required {
                    path,
                    when,
                    value,
                    why,
                } => {
                    if gate::get(&expected, path).is_some() {
                        continue;
                    }
                    match gate::get(&expected, when) {
                        Some(v) if is_true(v) => {
                            let p = split(path);
                            set_path(&mut expected, &p, Value::String(value.clone()))
                                .map_err(|e| anyhow!("cannot set `{path}` in {name}: {e}; make this change by hand"))?;
                            let line = format!("{}: {}", fmt_key(p.last().unwrap()), fmt_scalar(value));
                            let w = split(when);
                            let hint = if w.len() == p.len() && w[..w.len() - 1] == p[..p.len() - 1] { Hint::After(w) } else { Hint::End };
                            doc.insert(&p, vec![line], hint, name)?;
                            m.changed.push(format!("[{label}] set `{path}: {value}` because `{when}` is true: {why}"));
                        }
                        None => m.undecided.push(format!(
                            "[{label}] `{when}` is not set in {name}: if the chart enables it by default, set `{path}: {value}` ({why})"
                        )),
                        Some(_) => {}
                    }
                }
                // Which command replaces a probe is not the editor's to decide:
                // the check below lists every hit.
                ValuesRule::Forbidden { .. } => {}
            }
        }
    }

    let new_text = doc.render();
    let todo = || {
        if m.changed.is_empty() {
            String::new()
        } else {
            format!(
                " Make these changes by hand:\n  - {}",
                m.changed.join("\n  - ")
            )
        }
    };
    let reparsed = parse_values(&new_text).map_err(|e| {
        anyhow!("refusing to rewrite {name}: the line editor's result would not be valid YAML ({e:#}); nothing was written.{}", todo())
    })?;
    if let Some(at) = first_difference(&normalize(&reparsed), &normalize(&expected), String::new())
    {
        bail!(
            "refusing to rewrite {name}: the line editor cannot change it safely (the result would differ from the intended values at `{at}`: the file uses a layout the editor does not handle, like anchors, flow style or multi-line values); nothing was written.{}",
            todo()
        );
    }
    // What the gate would still say about the result.
    for (si, step) in steps.iter().enumerate() {
        let Some(info) = &step.info else { continue };
        for (ri, rule) in info.breaking.iter().enumerate() {
            if explained.contains(&(si, ri)) {
                continue;
            }
            let one = Step {
                from_line: step.from_line.clone(),
                to_line: step.to_line.clone(),
                info: Some(Line {
                    breaking: vec![rule.clone()],
                    ..info.clone()
                }),
            };
            for f in gate::check_values(&[one], &reparsed) {
                m.undecided
                    .push(format!("[{}] {}; fix: {}", f.step, f.problem, f.fix));
            }
        }
    }
    m.text = new_text;
    Ok(m)
}

fn parse_values(text: &str) -> Result<Value> {
    let v: Value = serde_yaml::from_str(text).context("not valid YAML (one document)")?;
    match v {
        Value::Mapping(_) | Value::Null => Ok(v),
        _ => bail!("its top level is not a mapping of keys"),
    }
}

fn normalize(v: &Value) -> Value {
    if v.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        v.clone()
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str() == Some("true")
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() <= 60 => format!("{s:?}"),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::String(_) => "a long string".to_owned(),
        Value::Null => "empty".to_owned(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// " (line N)" where `path` is in the original file, when it is.
fn line_note(doc: &Doc, path: &[String]) -> String {
    match doc.find(path, "") {
        Ok(Some(e)) => format!(" (line {})", e.line + 1),
        _ => String::new(),
    }
}

fn remove_path(v: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut cur = v;
    for k in parents {
        cur = cur.as_mapping_mut()?.get_mut(k.as_str())?;
    }
    cur.as_mapping_mut()?.remove(last.as_str())
}

fn set_path(v: &mut Value, path: &[String], new: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let mut cur = v;
    for (i, k) in parents.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Mapping(Mapping::new());
        }
        let map = cur
            .as_mapping_mut()
            .ok_or_else(|| format!("`{}` is not a mapping", path[..i].join(".")))?;
        if !map.contains_key(k.as_str()) {
            map.insert(Value::String(k.clone()), Value::Null);
        }
        cur = map.get_mut(k.as_str()).unwrap();
    }
    if cur.is_null() {
        *cur = Value::Mapping(Mapping::new());
    }
    let map = cur
        .as_mapping_mut()
        .ok_or_else(|| format!("`{}` is not a mapping", parents.join(".")))?;
    map.insert(Value::String(last.clone()), new);
    Ok(())
}

/// The dotted path of the first place two values differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            for (k, va) in x {
                let key = k.as_str().map(str::to_owned).unwrap_or_else(|| short(k));
                let p = if at.is_empty() {
                    key
                } else {
                    format!("{at}.{key}")
                };
                match y.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, p) {
                            return Some(d);
                        }
                    }
                    None => return Some(p),
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| {
                let key = k.as_str().map(str::to_owned).unwrap_or_else(|| short(k));
                if at.is_empty() {
                    key
                } else {
                    format!("{at}.{key}")
                }
            })
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() {
            "(top level)".to_owned()
        } else {
            at
        }),
    }
}

/// A key as YAML: plain when that reads back as the same string, else quoted.
fn fmt_key(k: &str) -> String {
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
fn fmt_scalar(s: &str) -> String {
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

fn reads_as_string(s: &str) -> bool {
    // YAML 1.1 readers (helm's) also take these words as booleans.
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    !WORDS.contains(&s.to_ascii_lowercase().as_str())
        && serde_yaml::from_str::<Value>(s)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(s)
}

// ---------------------------------------------------------------------------
// The line editor.

/// Where an inserted entry goes among its new siblings.
enum Hint {
    /// After the last entry of the parent.
    End,
    /// Just before this sibling (and the comments above it).
    Before(Vec<String>),
    /// Just after this sibling.
    After(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
struct Entry {
    /// The key line.
    line: usize,
    indent: usize,
    /// One past the last line that belongs to the entry (trailing comments and
    /// blank lines do not).
    end: usize,
    kind: Kind,
    /// Byte offset of the end of the key token in the key line.
    key_end: usize,
    /// Byte offset of what follows `: ` (the value, a comment, or the line's end).
    value_at: usize,
}

/// An entry taken out of a document, its key line at indent 0.
struct Block {
    lines: Vec<String>,
    key_line: usize,
    key_end: usize,
}

impl Block {
    fn rename(&mut self, key: &str) {
        let l = &self.lines[self.key_line];
        self.lines[self.key_line] = format!("{}{}", fmt_key(key), &l[self.key_end..]);
        self.key_end = fmt_key(key).len();
    }
}

#[derive(Debug, Clone)]
struct Doc {
    lines: Vec<String>,
    eol: &'static str,
    final_eol: bool,
    /// The indentation step of the file (2 unless it uses another).
    unit: usize,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_blank(l: &str) -> bool {
    l.trim().is_empty()
}

fn is_comment(l: &str) -> bool {
    l.trim_start().starts_with('#')
}

fn is_marker(l: &str) -> bool {
    l == "---" || l == "..." || l.starts_with("--- #")
}

/// A line that carries YAML content (not blank, not a comment, not a `---` marker).
fn is_content(l: &str) -> bool {
    !is_blank(l) && !is_comment(l) && !is_marker(l)
}

fn is_seq_item(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

struct KeyLine {
    key: String,
    key_end: usize,
    value_at: usize,
    kind: Kind,
}

/// Reads `key: value` at indent `n`, or None when the line is not one.
fn parse_key(line: &str, n: usize) -> Option<KeyLine> {
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

impl Doc {
    fn parse(text: &str) -> Doc {
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
        Doc {
            lines,
            eol,
            final_eol,
            unit: if unit == 0 { 2 } else { unit },
        }
    }

    fn render(&self) -> String {
        let mut s = self.lines.join(self.eol);
        if self.final_eol && !self.lines.is_empty() {
            s.push_str(self.eol);
        }
        s
    }

    fn first_content(&self, from: usize, to: usize) -> Option<usize> {
        (from..to).find(|&i| is_content(&self.lines[i]))
    }

    /// The entry `key` among the entries of the block `from..to`.
    fn find_in(&self, from: usize, to: usize, key: &str, name: &str) -> Result<Option<Entry>> {
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

    fn entry_end(&self, line: usize, n: usize, kind: Kind, limit: usize) -> usize {
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
    fn find(&self, path: &[String], name: &str) -> Result<Option<Entry>> {
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

    fn must_find(&self, path: &[String], name: &str) -> Result<Entry> {
        self.find(path, name)?.ok_or_else(|| {
            anyhow!(
                "{name} sets `{}` but the editor cannot find its `key:` line (flow style or an unusual layout); make this change by hand",
                path.join(".")
            )
        })
    }

    /// Removes the entry at `path` (its key line and children).
    fn remove(&mut self, path: &[String], name: &str) -> Result<()> {
        let e = self.must_find(path, name)?;
        self.cut(path, e.line, e.end, name)?;
        Ok(())
    }

    /// Takes the entry at `path` out, with the comment lines right above it.
    fn take(&mut self, path: &[String], name: &str) -> Result<Block> {
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

    fn cut(&mut self, path: &[String], start: usize, end: usize, name: &str) -> Result<()> {
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
    fn insert(
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
        let (from, to, child_indent) = match anchor {
            None => {
                let first = self.first_content(0, self.lines.len());
                let last = (0..self.lines.len())
                    .rev()
                    .find(|&i| is_content(&self.lines[i]));
                (
                    0,
                    last.map_or(self.lines.len(), |l| l + 1),
                    first.map_or(0, |f| indent(&self.lines[f])),
                )
            }
            Some(mut e) => {
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
                        parents[..k].join("."),
                        path[k..].join(".")
                    ),
                }
                let first = self.first_content(e.line + 1, e.end);
                (
                    e.line + 1,
                    e.end,
                    first.map_or(e.indent + self.unit, |f| indent(&self.lines[f])),
                )
            }
        };
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

        // Where among the siblings.
        let sibling = |doc: &Doc, p: &[String]| -> Result<Option<Entry>> {
            if k == parents.len() && p.len() == path.len() {
                doc.find(p, name)
            } else {
                Ok(None)
            }
        };
        let mut at = to;
        let mut before = false;
        match &hint {
            Hint::End => {}
            Hint::After(p) => {
                if let Some(s) = sibling(self, p)? {
                    at = s.end;
                }
            }
            Hint::Before(p) => {
                if let Some(s) = sibling(self, p)? {
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
                    at = start;
                    before = true;
                }
            }
        }
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
}

/// Re-indents a line from `from` to `to` spaces (blank lines stay empty).
fn shift(l: &str, from: usize, to: usize) -> String {
    if is_blank(l) {
        return String::new();
    }
    let drop = indent(l).min(from);
    format!("{}{}", " ".repeat(to), &l[drop..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::built_in;

    fn steps(from: &str, to: &str) -> Vec<Step> {
        let p = built_in("prefect-customer-managed").unwrap();
        gate::steps(
            &p,
            &gate::parse_version(from).unwrap(),
            &gate::parse_version(to).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn moves_removes_and_adds_keeping_the_rest() {
        let text = "# top\nglobal:\n  image:\n    tag: x # pinned\n  authProvider:\n    type: okta\n    okta:\n      clientID: a\n\n# the UI\nfrontendUrl: https://f\nbackendUrl: https://b\n\ningress:\n  enabled: true\n  className: nginx\n";
        let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
        assert_eq!(
            m.text,
            "# top\nglobal:\n  image:\n    tag: x # pinned\n  authProvider:\n    okta:\n      clientID: a\n  # the UI\n  frontendUrl: https://f\n  backendUrl: https://b\n\ningress:\n  enabled: true\n  name: self-managed-prefect-cloud\n  className: nginx\n"
        );
        assert_eq!(m.changed.len(), 4, "{:?}", m.changed);
        assert!(m.undecided.is_empty(), "{:?}", m.undecided);
    }

    #[test]
    fn nested_move_to_the_top_level_goes_before_its_old_parent() {
        let text = "a: 1\n\ningress:\n  frontend:\n    url: https://f\n    path: /\n  backend:\n    url: https://b\n";
        let m = rewrite(text, &steps("0.4.2", "0.5.2"), "v.yaml").unwrap();
        assert_eq!(
            m.text,
            "a: 1\nfrontendUrl: https://f\nbackendUrl: https://b\n\ningress:\n  frontend:\n    path: /\n  backend: {}\n"
        );
    }

    #[test]
    fn creates_parents_and_fills_empty_maps() {
        let m = rewrite(
            "frontendUrl: https://f\nother: 1\n",
            &steps("0.8.2", "1.2.0"),
            "v.yaml",
        )
        .unwrap();
        assert_eq!(m.text, "other: 1\n\nglobal:\n  frontendUrl: https://f\n");
        let m = rewrite(
            "global: {} # g\nfrontendUrl: https://f\n",
            &steps("0.8.2", "1.2.0"),
            "v.yaml",
        )
        .unwrap();
        assert_eq!(m.text, "global: # g\n  frontendUrl: https://f\n");
        let m = rewrite(
            "global:\n    x: 1\nfrontendUrl: https://f\n",
            &steps("0.8.2", "1.2.0"),
            "v.yaml",
        )
        .unwrap();
        assert_eq!(m.text, "global:\n    x: 1\n    frontendUrl: https://f\n");
    }

    #[test]
    fn moves_blocks_with_their_children() {
        let text = "frontendUrl:\n  # odd but legal\n  - a\n  - b\nglobal:\n  x: 1\n";
        let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
        assert_eq!(
            m.text,
            "global:\n  x: 1\n  frontendUrl:\n    # odd but legal\n    - a\n    - b\n"
        );
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        for text in [
            "{frontendUrl: https://f, global: {}}\n",
            "global: {a: 1}\nfrontendUrl: https://f\n",
            "frontendUrl: &u https://f\nother: *u\n",
            "global: &g\n  a: 1\nfrontendUrl: https://f\n",
        ] {
            let err = format!(
                "{:#}",
                rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap_err()
            );
            assert!(
                err.contains("by hand") || err.contains("refusing"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn conflicts_and_forbidden_are_listed_not_guessed() {
        let text = "frontendUrl: a\nglobal:\n  frontendUrl: b\n";
        let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
        assert_eq!(m.text, text);
        assert!(
            m.undecided.iter().any(|u| u.contains("both set")),
            "{:?}",
            m.undecided
        );
        let text = "orion:\n  cloud2:\n    readinessProbe:\n      exec:\n        command: [sh, -c, ps aux]\n";
        let m = rewrite(text, &steps("0.6.1", "0.7.0"), "v.yaml").unwrap();
        assert_eq!(m.text, text);
        assert!(
            m.undecided
                .iter()
                .any(|u| u.contains("orion.cloud2.readinessProbe")),
            "{:?}",
            m.undecided
        );
        let m = rewrite(
            "ingress:\n  className: x\n",
            &steps("0.8.2", "1.2.0"),
            "v.yaml",
        )
        .unwrap();
        assert!(
            m.undecided
                .iter()
                .any(|u| u.contains("`ingress.enabled` is not set")),
            "{:?}",
            m.undecided
        );
    }

    #[test]
    fn empty_old_keys_are_removed() {
        let m = rewrite(
            "frontendUrl:\nglobal:\n  authProvider:\n    type: ~\n  a: 1\n",
            &steps("0.8.2", "1.2.0"),
            "v.yaml",
        )
        .unwrap();
        assert_eq!(m.text, "global:\n  authProvider: {}\n  a: 1\n");
        assert_eq!(m.changed.len(), 2, "{:?}", m.changed);
    }

    #[test]
    fn keys_and_scalars_are_quoted_when_needed() {
        assert_eq!(fmt_key("frontendUrl"), "frontendUrl");
        assert_eq!(fmt_key("on"), "\"on\"");
        assert_eq!(
            fmt_scalar("self-managed-prefect-cloud"),
            "self-managed-prefect-cloud"
        );
        assert_eq!(fmt_scalar("1.10"), "\"1.10\"");
        assert_eq!(fmt_scalar("a: b"), "\"a: b\"");
    }
}
