//! Source: what the chart is and which values the user gives it.
//!
//! Reads chart metadata (Chart.yaml of a directory, `helm show chart` of a
//! packaged .tgz, or the `helm.sh/chart` labels of an already rendered stream)
//! and merges the user's values (chart defaults, `-f` files, `--set`) for the
//! gate's values checks, and holds a stream given on stdin ([`Text`]). It must not
//! render: `render` runs helm.

mod text;
pub use text::{ReadError, Text};

use crate::locate::ApiWorkload;
use crate::render;
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

/// Chart.yaml of a chart directory, or of a packaged chart through helm.
pub fn chart_meta(helm: &Path, chart: &Path) -> Result<ChartMeta> {
    let text = if chart.is_dir() {
        let file = chart.join("Chart.yaml");
        std::fs::read_to_string(&file).with_context(|| {
            format!("{} is not a chart directory: it has no readable Chart.yaml. Pass a chart directory or a packaged .tgz", chart.display())
        })?
    } else if chart.is_file() {
        render::run(
            helm,
            &["show".into(), "chart".into(), chart.as_os_str().to_owned()],
            "helm show chart",
        )?
    } else {
        bail!("chart {} does not exist: pass a chart directory or a packaged .tgz (default: the current directory)", chart.display());
    };
    let meta: ChartMeta = serde_yaml::from_str(&text)
        .with_context(|| format!("Chart.yaml of {} is not valid", chart.display()))?;
    if meta.name.is_empty() {
        bail!("Chart.yaml of {} has no name", chart.display());
    }
    Ok(meta)
}

/// Chart metadata as the rendered labels tell it (`helm.sh/chart: NAME-VERSION`).
pub fn meta_from_labels(labels: &BTreeMap<String, String>) -> Option<ChartMeta> {
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
pub fn split_chart_label(label: &str) -> Option<(&str, &str)> {
    label
        .match_indices('-')
        .map(|(i, _)| (&label[..i], &label[i + 1..]))
        .find(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()))
}

pub fn meta_from_workload(api: &ApiWorkload) -> Option<ChartMeta> {
    meta_from_labels(&api.labels)
}

/// The user's values as helm would merge them: chart defaults (for a chart
/// directory), each `-f` file in order, then `--set` and `--set-string`.
pub fn merged_values(
    chart: Option<&Path>,
    files: &[std::path::PathBuf],
    set: &[String],
    set_string: &[String],
) -> Result<Value> {
    let mut merged = Value::Mapping(Mapping::new());
    if let Some(defaults) = chart.map(|c| c.join("values.yaml")).filter(|p| p.is_file()) {
        merge(&mut merged, read_values(&defaults)?);
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
    let v: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("values file {} is not valid YAML", path.display()))?;
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
pub fn escape_set_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace(',', "\\,")
}

/// `a.b=c,d=e` → [([a, b], c), ([d], e)], with helm's `\,` and `\.` escapes.
pub fn parse_set(item: &str) -> Result<Vec<(Vec<String>, String)>> {
    let mut out = Vec::new();
    for part in split_unescaped(item, ',') {
        let Some(eq) = part.find('=') else {
            // Never echo the item: its value may be a secret, and stderr reaches the Argo CD UI.
            bail!("a --set item is not KEY=VALUE (its text is not shown: it may hold a secret)");
        };
        let (k, v) = (&part[..eq], &part[eq + 1..]);
        let path: Vec<String> = split_unescaped(k, '.')
            .into_iter()
            .map(|s| s.replace("\\.", "."))
            .collect();
        if path.iter().any(String::is_empty) {
            bail!("--set key {k:?} is not a valid key path (an empty segment?)");
        }
        out.push((path, v.replace("\\,", ",")));
    }
    Ok(out)
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if c == sep && !escaped {
            out.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        out.last_mut().expect("never empty").push(c);
    }
    out
}

fn typed_scalar(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(s.to_owned())),
    }
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
