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
use crate::profile::{self, Line, RequiredRule, ValuesRule};
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

mod editor;
#[cfg(test)]
mod tests;

use editor::{fmt_key, fmt_scalar, line_note, Hint, ValuesText};

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
pub(crate) struct Rewritten {
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

    report(&profile.name, (&from, &to), &steps, &m, &name, notes);
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

/// The notes of one migration: the steps crossed, each change, what is left to the
/// user, what each release requires beyond the values.
fn report(
    profile_name: &str,
    (from, to): (&semver::Version, &semver::Version),
    steps: &[Step],
    m: &Rewritten,
    name: &str,
    notes: &mut Vec<String>,
) {
    let crossed: Vec<String> = steps
        .iter()
        .map(|s| format!("{} → {}", s.from_line, s.to_line))
        .collect();
    notes.push(format!(
        "values migrate {from} → {to} ({}): {}",
        profile_name,
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
    for step in steps {
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
pub(crate) fn rewrite(text: &str, steps: &[Step], name: &str) -> Result<Rewritten> {
    let original = parse_values(text)
        .with_context(|| format!("{name} is not a values file lockstep can migrate"))?;
    let doc = ValuesText::parse(text);
    let mut r = Rewriter {
        name,
        orig_doc: doc.clone(),
        doc,
        expected: original,
        m: Rewritten::default(),
        explained: BTreeSet::new(),
    };
    for (si, step) in steps.iter().enumerate() {
        let Some(info) = &step.info else { continue };
        let label = format!("{} → {}", step.from_line, step.to_line);
        for (ri, rule) in info.breaking.iter().enumerate() {
            match rule {
                ValuesRule::Moved { from, to } => r.moved((si, ri), &label, from, to)?,
                ValuesRule::Removed { path, fix } => r.removed(&label, path, fix)?,
                ValuesRule::Required(rule) => r.required(&label, rule)?,
                // Which command replaces a probe is not the editor's to decide:
                // the check below lists every hit.
                ValuesRule::Forbidden { .. } => {}
            }
        }
    }
    r.finish(steps)
}

/// One rewrite under way: the edited text, the values it must parse to, and what was
/// done and left undecided.
struct Rewriter<'a> {
    name: &'a str,
    doc: ValuesText,
    orig_doc: ValuesText,
    expected: Value,
    m: Rewritten,
    /// Rules (step, rule) whose finding is already explained in `undecided`.
    explained: BTreeSet<(usize, usize)>,
}

impl Rewriter<'_> {
    /// `from` moved to `to`: the block moves (renamed), or an empty or duplicate old
    /// key goes; both set to different values is left to the user.
    fn moved(&mut self, rule: (usize, usize), label: &str, from: &str, to: &str) -> Result<()> {
        let name = self.name;
        if !gate::has_key(&self.expected, from) {
            return Ok(());
        }
        let (fp, tp) = (split(from), split(to));
        let at = line_note(&self.orig_doc, &fp);
        let Some(value) = gate::get(&self.expected, from).cloned() else {
            // Empty: nothing to move, but the new chart rejects the key.
            self.doc.remove(&fp, name)?;
            remove_path(&mut self.expected, &fp);
            self.m.changed.push(format!(
                "[{label}] removed the empty `{from}`{at}: this release reads `{to}`"
            ));
            return Ok(());
        };
        match gate::get(&self.expected, to) {
            Some(existing) if *existing == value => {
                self.doc.remove(&fp, name)?;
                remove_path(&mut self.expected, &fp);
                self.m.changed.push(format!(
                    "[{label}] removed `{from}`{at}: `{to}` already holds the same value"
                ));
            }
            Some(_) => {
                self.explained.insert(rule);
                self.m.undecided.push(format!(
                    "[{label}] `{from}`{at} and `{to}` are both set, to different values: keep the right one under `{to}` and delete `{from}`"
                ));
            }
            None => {
                set_path(&mut self.expected, &tp, value.clone()).map_err(|why| {
                    anyhow!(
                        "cannot move `{from}` to `{to}` in {name}: {why}; make this change by hand"
                    )
                })?;
                remove_path(&mut self.expected, &fp);
                let mut block = self.doc.take(&fp, name)?;
                block.rename(tp.last().unwrap());
                let hint = if fp.len() > tp.len() && fp[..tp.len() - 1] == tp[..tp.len() - 1] {
                    // The new key's parent holds the old one: put it just
                    // before the sibling the old key was in.
                    Hint::Before(fp[..tp.len()].to_vec())
                } else {
                    Hint::End
                };
                self.doc.insert(&tp, block.lines, hint, name)?;
                self.m
                    .changed
                    .push(format!("[{label}] moved `{from}`{at} to `{to}`"));
            }
        }
        Ok(())
    }

    /// `path` removed by the release: the key goes, the note says what to follow up.
    fn removed(&mut self, label: &str, path: &str, fix: &str) -> Result<()> {
        if !gate::has_key(&self.expected, path) {
            return Ok(());
        }
        let value = gate::get(&self.expected, path)
            .cloned()
            .unwrap_or(Value::Null);
        let p = split(path);
        let at = line_note(&self.orig_doc, &p);
        self.doc.remove(&p, self.name)?;
        remove_path(&mut self.expected, &p);
        self.m.changed.push(format!(
            "[{label}] removed `{path}`{at} (was {}); make sure the rest follows: {fix}",
            short(&value)
        ));
        Ok(())
    }

    /// `path` required (as `value`) when `when` is true: set beside `when`; when
    /// `when` is not set, left to the user.
    fn required(&mut self, label: &str, rule: &RequiredRule) -> Result<()> {
        let RequiredRule {
            path,
            when,
            value,
            why,
        } = rule;
        let name = self.name;
        if gate::get(&self.expected, path).is_some() {
            return Ok(());
        }
        match gate::get(&self.expected, when) {
            Some(v) if is_true(v) => {
                let p = split(path);
                set_path(&mut self.expected, &p, Value::String(value.to_owned())).map_err(
                    |e| anyhow!("cannot set `{path}` in {name}: {e}; make this change by hand"),
                )?;
                let line = format!("{}: {}", fmt_key(p.last().unwrap()), fmt_scalar(value));
                let w = split(when);
                let hint = if w.len() == p.len() && w[..w.len() - 1] == p[..p.len() - 1] {
                    Hint::After(w)
                } else {
                    Hint::End
                };
                self.doc.insert(&p, vec![line], hint, name)?;
                self.m.changed.push(format!(
                    "[{label}] set `{path}: {value}` because `{when}` is true: {why}"
                ));
            }
            None => self.m.undecided.push(format!(
                "[{label}] `{when}` is not set in {name}: if the chart enables it by default, set `{path}: {value}` ({why})"
            )),
            Some(_) => {}
        }
        Ok(())
    }

    /// The new text, checked: it must parse to the intended values; then what the gate
    /// would still say of it goes to `undecided`.
    fn finish(mut self, steps: &[Step]) -> Result<Rewritten> {
        let name = self.name;
        let new_text = self.doc.render();
        let m = &self.m;
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
        if let Some(at) = first_difference(
            &normalize(&reparsed),
            &normalize(&self.expected),
            String::new(),
        ) {
            bail!(
                "refusing to rewrite {name}: the line editor cannot change it safely (the result would differ from the intended values at `{at}`: the file uses a layout the editor does not handle, like anchors, flow style or multi-line values); nothing was written.{}",
                todo()
            );
        }
        // What the gate would still say about the result.
        for (si, step) in steps.iter().enumerate() {
            let Some(info) = &step.info else { continue };
            for (ri, rule) in info.breaking.iter().enumerate() {
                if self.explained.contains(&(si, ri)) {
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
                    self.m
                        .undecided
                        .push(format!("[{}] {}; fix: {}", f.step, f.problem, f.fix));
                }
            }
        }
        self.m.text = new_text;
        Ok(self.m)
    }
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
