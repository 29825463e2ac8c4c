//! YAML output that every Kubernetes reader understands the same way.
//!
//! serde_yaml writes YAML 1.2, where `no`, `off`, `y` or `0755` are plain
//! strings; Kubernetes (sigs.k8s.io/yaml, go-yaml v2) and most tooling read
//! YAML 1.1, where they are booleans and numbers. A document lockstep writes
//! (an edited one, or one it adds) goes through this emitter: block style, keys
//! in the value's order, and any string that is not unmistakably a string in
//! both versions double-quoted (JSON escapes, valid YAML).
//!
//! This module owns the text of re-serialized documents. It must not be used for
//! untouched documents: those are written back as the bytes helm printed.

use serde_yaml::Value;
use std::fmt::Write;

/// A document as block-style YAML text, ending in a newline.
pub(crate) fn to_string(v: &Value) -> String {
    let mut out = String::with_capacity(4096);
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(m, 0, false, &mut out),
        Value::Sequence(s) if !s.is_empty() => sequence(s, 0, false, &mut out),
        other => {
            scalar(other, &mut out);
            out.push('\n');
        }
    }
    out
}

/// A serializable object (a k8s-openapi type) as YAML text.
pub(crate) fn to_string_of<T: serde::Serialize>(obj: &T) -> Result<String, serde_yaml::Error> {
    Ok(to_string(&serde_yaml::to_value(obj)?))
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `inline`: the first entry continues a line on which `- ` is already written.
fn mapping(m: &serde_yaml::Mapping, indent: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if !(inline && i == 0) {
            pad(out, indent);
        }
        scalar(k, out);
        out.push(':');
        match v {
            Value::Mapping(child) if !child.is_empty() => {
                out.push('\n');
                mapping(child, indent + 2, false, out);
            }
            // Kubernetes style: a list under a key starts at the key's indentation.
            Value::Sequence(child) if !child.is_empty() => {
                out.push('\n');
                sequence(child, indent, false, out);
            }
            other => {
                out.push(' ');
                scalar(other, out);
                out.push('\n');
            }
        }
    }
}

/// `inline` as for [`mapping`]. A block item is written two deeper, its first line
/// after the `- `.
fn sequence(s: &[Value], indent: usize, inline: bool, out: &mut String) {
    for (i, item) in s.iter().enumerate() {
        if !(inline && i == 0) {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Mapping(m) if !m.is_empty() => mapping(m, indent + 2, true, out),
            Value::Sequence(s) if !s.is_empty() => sequence(s, indent + 2, true, out),
            other => {
                scalar(other, out);
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(s, out),
        Value::Mapping(_) => out.push_str("{}"),
        Value::Sequence(_) => out.push_str("[]"),
        // Tags do not occur in Kubernetes objects; keep the value, JSON-encoded.
        Value::Tagged(t) => out.push_str(&json(&t.value)),
    }
}

/// YAML 1.1 words for booleans and null, any case.
const SPECIAL: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// Whether `s` is one of the YAML 1.1 words, which a YAML 1.1 reader (helm's) takes for
/// a boolean or null: written plain, it would not read back as a string.
pub(crate) fn is_1_1_word(s: &str) -> bool {
    SPECIAL.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// A string plain when no YAML 1.1 or 1.2 reader can take it for anything else,
/// else double-quoted.
fn string(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let plain = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'_'))
        && !s.ends_with(' ')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b" ._/+=@-".contains(c))
        && !s.contains(" #")
        && !s.contains("  ")
        && !is_1_1_word(s);
    if plain {
        out.push_str(s);
        return;
    }
    out.push_str(&json(s));
}

/// `v` as JSON that a YAML reader reads back unchanged (JSON is YAML flow content).
/// JSON leaves U+0085, U+2028 and U+2029 raw, but a YAML 1.1 reader folds a raw NEL (a
/// line break to it) in a quoted scalar into a space: all three are escaped. A value JSON
/// cannot hold (a map with non-string keys, possible only under a YAML tag) is `null`.
pub(crate) fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let Ok(json) = serde_json::to_string(v) else {
        return "null".to_owned();
    };
    if json.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        json.replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let v: Value = serde_yaml::from_str(text).unwrap();
        let out = to_string(&v);
        let back: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(back, v, "{out}");
    }

    #[test]
    fn yaml_1_1_words_are_quoted() {
        let v: Value = serde_yaml::from_str("a: \"no\"\nb: \"off\"\nc: \"Y\"\nd: \"0755\"\ne: \"3.8.3\"\nf: \"1e3\"\ng: \".inf\"\nh: \"\"\n").unwrap();
        let out = to_string(&v);
        for line in out.lines() {
            assert!(line.contains(": \""), "{line} must be quoted");
        }
    }

    #[test]
    fn structures_round_trip() {
        round_trip("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {}\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        args: [x, \"y: z\", \"# c\", \"multi\\nline\"]\n        env:\n        - name: A\n          value: \"false\"\n        - {name: B, value: \"no\"}\n      volumes: []\n");
        round_trip("- - a\n  - b\n- {}\n- []\n- null\n- 1.5\n- -3\n- key: v\n  other:\n  - 1\n");
        round_trip("k: \"trailing \"\nu: \"ünïcode and \\t tab\"\n\"key with: colon\": 1\n");
    }

    #[test]
    fn plain_where_safe() {
        let v: Value =
            serde_yaml::from_str("image: prefecthq/prefect\nname: prefect-server\n").unwrap();
        assert_eq!(
            to_string(&v),
            "image: prefecthq/prefect\nname: prefect-server\n"
        );
    }
}
