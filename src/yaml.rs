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

/// A document as block-style YAML text, ending in a newline.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Value::Sequence(s) if !s.is_empty() => sequence(s, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// A serializable object (a k8s-openapi type) as YAML text.
pub fn to_string_of<T: serde::Serialize>(obj: &T) -> Result<String, serde_yaml::Error> {
    Ok(to_string(&serde_yaml::to_value(obj)?))
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Tagged(t) => is_block(&t.value),
        _ => false,
    }
}

fn mapping(m: &serde_yaml::Mapping, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(k));
        out.push(':');
        match v {
            Value::Mapping(child) if !child.is_empty() => {
                out.push('\n');
                mapping(child, indent + 2, out);
            }
            // Kubernetes style: a list under a key starts at the key's indentation.
            Value::Sequence(child) if !child.is_empty() => {
                out.push('\n');
                sequence(child, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(s: &[Value], indent: usize, out: &mut String) {
    for item in s {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        if is_block(item) {
            // Emit the item two deeper, then let `- ` stand in for its first indentation.
            let mut child = String::new();
            match item {
                Value::Mapping(m) => mapping(m, indent + 2, &mut child),
                Value::Sequence(s) => sequence(s, indent + 2, &mut child),
                Value::Tagged(t) => {
                    child.push_str(&" ".repeat(indent + 2));
                    child.push_str(&to_string(&Value::Tagged(t.clone())));
                }
                _ => unreachable!("is_block"),
            }
            out.push_str(&child[indent + 2..]);
        } else {
            out.push_str(&scalar(item));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Mapping(_) => "{}".to_owned(),
        Value::Sequence(_) => "[]".to_owned(),
        // Tags do not occur in Kubernetes objects; keep the value, JSON-encoded.
        Value::Tagged(t) => serde_json::to_string(&t.value).unwrap_or_else(|_| "null".to_owned()),
    }
}

/// YAML 1.1 words for booleans and null, any case.
const SPECIAL: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// A string plain when no YAML 1.1 or 1.2 reader can take it for anything else,
/// else double-quoted.
fn string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._/+=@-".contains(c))
        && !s.contains(" #")
        && !s.contains("  ")
        && !SPECIAL.iter().any(|w| s.eq_ignore_ascii_case(w));
    if plain {
        s.to_owned()
    } else {
        // JSON leaves U+0085, U+2028 and U+2029 raw; a YAML reader folds a raw NEL
        // (a YAML 1.1 line break) in a quoted scalar into a space: escape all three.
        serde_json::to_string(s)
            .expect("strings serialize")
            .replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
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
