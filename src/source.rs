//! Source: what the chart is and which values the user gives it.
//!
//! Reads a chart's Chart.yaml and default values.yaml (of a directory, or of a
//! packaged .tgz in-process, [`archive`]), or the `helm.sh/chart` labels of an already
//! rendered stream, merges the user's values (chart defaults, `-f` files, `--set`) for
//! the gate's values checks, and holds a stream given on stdin ([`Text`]). It must not
//! render: `render` runs helm.

pub(crate) mod archive;
mod text;
pub use text::{ReadError, Text};

use crate::locate::ApiWorkload;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMeta {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What lockstep reads of a chart before helm renders it.
#[derive(Debug, Clone)]
pub struct LocalChart {
    pub meta: ChartMeta,
    /// The chart's default values (its values.yaml), as helm starts from them.
    pub defaults: serde_yaml::Value,
}

/// Chart.yaml and values.yaml of a chart directory or a packaged chart, read the same
/// way for both.
pub fn read_chart(chart: &Path) -> Result<LocalChart> {
    let (text, values) = if chart.is_dir() {
        let file = chart.join("Chart.yaml");
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!("{} is not a chart directory: it has no readable Chart.yaml. Pass a chart directory or a packaged .tgz", chart.display())
        })?;
        let values = chart.join("values.yaml");
        let values = if values.is_file() {
            Some(std::fs::read_to_string(&values).with_context(|| {
                format!("cannot read the chart's values file {}", values.display())
            })?)
        } else {
            None
        };
        (text, values)
    } else if chart.is_file() {
        let p = archive::read(chart)?;
        let text = p.chart_yaml.with_context(|| {
            format!(
                "{} has no Chart.yaml in its chart directory: it is not a packaged chart",
                chart.display()
            )
        })?;
        (text, p.values_yaml)
    } else {
        bail!("chart {} does not exist: pass a chart directory or a packaged .tgz (default: the current directory)", chart.display());
    };
    let meta: ChartMeta = crate::guard::yaml(&text, "Chart.yaml")
        .with_context(|| format!("Chart.yaml of {} is not valid", chart.display()))?;
    if meta.name.is_empty() {
        bail!("Chart.yaml of {} has no name", chart.display());
    }
    let defaults = match values {
        Some(v) => parse_values(&v, &format!("values.yaml of {}", chart.display()))?,
        None => Value::Mapping(Mapping::new()),
    };
    Ok(LocalChart { meta, defaults })
}

/// Chart metadata as the rendered labels tell it (`helm.sh/chart: NAME-VERSION`).
pub(crate) fn meta_from_labels(labels: &BTreeMap<String, String>) -> Option<ChartMeta> {
    let chart = labels.get("helm.sh/chart")?;
    let (name, version) = split_chart_label(chart)?;
    Some(ChartMeta {
        name: name.to_owned(),
        version: version.to_owned(),
        app_version: labels.get("app.kubernetes.io/version").cloned(),
        annotations: BTreeMap::new(),
    })
}

/// `prefect-server-2026.8.18172642` → (`prefect-server`, `2026.8.18172642`).
pub(crate) fn split_chart_label(label: &str) -> Option<(&str, &str)> {
    label
        .match_indices('-')
        .map(|(i, _)| (&label[..i], &label[i + 1..]))
        .find(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()))
}

pub(crate) fn meta_from_workload(api: &ApiWorkload) -> Option<ChartMeta> {
    meta_from_labels(&api.labels)
}

/// The user's values as helm would merge them: the chart's defaults (of a chart
/// directory or a packaged chart alike, [`read_chart`]), each `-f` file in order, then
/// `--set` and `--set-string`.
pub(crate) fn merged_values(
    defaults: Option<&Value>,
    files: &[std::path::PathBuf],
    set: &[String],
    set_string: &[String],
) -> Result<Value> {
    let mut merged = Value::Mapping(Mapping::new());
    if let Some(defaults) = defaults {
        merge(&mut merged, defaults.clone());
    }
    for f in files {
        merge(&mut merged, read_values(f)?);
    }
    for (items, typed) in [(set, true), (set_string, false)] {
        for item in items {
            for (path, value) in parse_set(item)? {
                let v = if typed {
                    typed_scalar(&value)
                } else {
                    Value::String(value)
                };
                set_path(&mut merged, &path, v);
            }
        }
    }
    Ok(merged)
}

fn read_values(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read values file {}", path.display()))?;
    parse_values(&text, &format!("values file {}", path.display()))
}

fn parse_values(text: &str, what: &str) -> Result<Value> {
    // Errors name the place, never the text: values hold secrets.
    let v: Value =
        crate::guard::yaml(text, "values").with_context(|| format!("{what} is not valid YAML"))?;
    Ok(if v.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        v
    })
}

/// Helm's merge: maps merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_mapping() && v.is_mapping() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A value for `--set KEY=VALUE` that stays one value: helm splits on commas.
pub(crate) fn escape_set_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

/// `a.b=c,d=e` → [([a, b], c), ([d], e)], as helm's strvals reads it: a backslash
/// takes the next character as it is (`\,` a comma in a value, `\.` a dot in a key,
/// `\\` a backslash).
pub(crate) fn parse_set(item: &str) -> Result<Vec<(Vec<String>, String)>> {
    let mut out = Vec::new();
    let mut chars = item.chars();
    loop {
        let mut path = vec![String::new()];
        let mut has_value = false;
        while let Some(c) = chars.next() {
            let seg = path.last_mut().expect("never empty");
            match c {
                '\\' => seg.extend(chars.next()),
                '=' => {
                    has_value = true;
                    break;
                }
                '.' => path.push(String::new()),
                ',' => break,
                c => seg.push(c),
            }
        }
        if !has_value {
            // Never echo the item: its value may be a secret, and stderr reaches the Argo CD UI.
            bail!("a --set item is not KEY=VALUE (its text is not shown: it may hold a secret)");
        }
        if path.iter().any(String::is_empty) {
            bail!(
                "--set key {:?} is not a valid key path (an empty segment?)",
                path.join(".")
            );
        }
        let mut value = String::new();
        let mut more = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap_or('\\')),
                ',' => {
                    more = true;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((path, value));
        if !more {
            return Ok(out);
        }
    }
}

/// A `--set` value typed as helm's strvals types it: `true`, `false`, `null` in any
/// case; `0`, and whole numbers without a leading zero, as int64; else a string.
fn typed_scalar(s: &str) -> Value {
    if s.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if s.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if s.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if s == "0" {
        return Value::from(0);
    }
    if !s.starts_with('0') {
        if let Ok(n) = s.parse::<i64>() {
            return Value::from(n);
        }
    }
    Value::String(s.to_owned())
}

fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut cur = root;
    for key in &path[..path.len() - 1] {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        cur = cur
            .as_mapping_mut()
            .expect("made a mapping")
            .entry(key.as_str().into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !cur.is_mapping() {
        *cur = Value::Mapping(Mapping::new());
    }
    cur.as_mapping_mut()
        .expect("made a mapping")
        .insert(path[path.len() - 1].as_str().into(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_labels() {
        assert_eq!(
            split_chart_label("prefect-server-2026.8.18172642"),
            Some(("prefect-server", "2026.8.18172642"))
        );
        assert_eq!(
            split_chart_label("a-b-1.2.0-rc.1"),
            Some(("a-b", "1.2.0-rc.1"))
        );
        assert_eq!(split_chart_label("nover"), None);
    }

    #[test]
    fn set_syntax() {
        let s = parse_set("a.b=1,c\\.d=x\\,y").unwrap();
        assert_eq!(s[0], (vec!["a".into(), "b".into()], "1".into()));
        assert_eq!(s[1], (vec!["c.d".into()], "x,y".into()));
        let mut v = Value::Mapping(Mapping::new());
        set_path(&mut v, &s[0].0, typed_scalar("1"));
        assert_eq!(crate::gate::get(&v, "a.b"), Some(&Value::from(1)));
    }
}
