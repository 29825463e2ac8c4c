//! Templates: render what lockstep injects from handlebars files, YAML-safely,
//! and check the result as k8s-openapi types.
//!
//! Values enter templates only through the `json` helper, which writes a JSON
//! scalar, list or map: valid YAML flow content that no value can break out of.
//! HTML escaping is off and strict mode is on (a misspelled variable is an error).
//! After rendering, nulls are dropped, the document is deserialized into its
//! k8s-openapi type, and any field the type does not know is an error, so a
//! template typo cannot silently disappear.
//!
//! This module must not decide what goes into a template: `inject` builds contexts.

use anyhow::{anyhow, bail, Context, Result};
use handlebars::Handlebars;
use serde::{de::DeserializeOwned, Serialize};
use serde_yaml::Value;
use std::fmt::Write;

pub const JOB: &str = include_str!("../templates/job.yaml.hbs");
pub const RECORD: &str = include_str!("../templates/record-configmap.yaml.hbs");
pub const GATE_SCRIPT: &str = include_str!("../templates/gate.sh");

pub struct Templates {
    hb: Handlebars<'static>,
}

handlebars::handlebars_helper!(json_helper: |v: Json| crate::yaml::json(v));

impl Templates {
    /// The embedded templates, with `job` replaced when the user gives one.
    pub fn new(job_override: Option<(&str, String)>) -> Result<Templates> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(json_helper));
        let (job_origin, job_text) = match job_override {
            Some((origin, text)) => (origin.to_owned(), text),
            None => ("templates/job.yaml.hbs".to_owned(), JOB.to_owned()),
        };
        hb.register_template_string("job", job_text)
            .map_err(|e| anyhow!("{job_origin}: not a valid handlebars template: {e}"))?;
        hb.register_template_string("record", RECORD)
            .map_err(|e| anyhow!("templates/record-configmap.yaml.hbs: {e}"))?;
        Ok(Templates { hb })
    }

    /// Renders template `name` and checks the result as a `T`.
    pub fn render<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        ctx: &serde_json::Value,
    ) -> Result<T> {
        let text = self
            .hb
            .render(name, ctx)
            .with_context(|| format!("rendering the {name} template"))?;
        let mut value: Value = serde_yaml::from_str(&text)
            .with_context(|| format!("the {name} template did not produce valid YAML"))?;
        strip_nulls(&mut value);
        let typed = T::deserialize(&value).with_context(|| {
            format!("the {name} template did not produce a valid Kubernetes object")
        })?;
        let back = serde_yaml::to_value(&typed)?;
        let mut dropped = Vec::new();
        unknown_fields(&value, &back, &mut String::new(), &mut dropped);
        if !dropped.is_empty() {
            bail!(
                "the {name} template sets fields its Kubernetes type does not have: {}. Fix the template",
                dropped.join(", ")
            );
        }
        Ok(typed)
    }
}

/// Removes null map entries (absent optional fields) recursively.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, x| !x.is_null());
            for x in m.values_mut() {
                strip_nulls(x);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Paths present in `orig` but gone from `typed` after a round trip. `at` is the
/// path so far, restored before returning.
fn unknown_fields(orig: &Value, typed: &Value, at: &mut String, out: &mut Vec<String>) {
    let len = at.len();
    match (orig, typed) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in a {
                if !at.is_empty() {
                    at.push('.');
                }
                match k.as_str() {
                    Some(key) => at.push_str(key),
                    None => {
                        let _ = write!(at, "{k:?}");
                    }
                }
                match b.get(k) {
                    Some(w) => unknown_fields(v, w, at, out),
                    // An empty map or list may be omitted by the type: not a loss.
                    None if is_empty(v) => {}
                    None => out.push(at.clone()),
                }
                at.truncate(len);
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                let _ = write!(at, "[{i}]");
                unknown_fields(v, w, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// A YAML document's text for a typed object, with a `# Source:` line.
pub fn document<T: Serialize>(source: &str, obj: &T) -> Result<String> {
    Ok(format!(
        "---\n# Source: {source}\n{}",
        crate::yaml::to_string_of(obj)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn values_cannot_add_keys() {
        let t = Templates::new(None).unwrap();
        let evil = "x\"\nkind: Secret\n# \": {a: b}";
        let ctx = serde_json::json!({
            "name": "n", "namespace": null, "labels": {"a": evil},
            "release": evil, "line": "1.2", "image": "i:1", "chart": "c", "profile": "p"
        });
        let cm: ConfigMap = t.render("record", &ctx).unwrap();
        assert_eq!(cm.data.unwrap()["release"], evil);
        assert_eq!(cm.metadata.labels.unwrap()["a"], evil);
    }

    #[test]
    fn unknown_template_fields_are_errors() {
        let t = Templates::new(Some(("t.hbs", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: a}\nspec:\n  backofLimit: 1\n  template: {spec: {containers: []}}\n".into()))).unwrap();
        let err = format!(
            "{:#}",
            t.render::<k8s_openapi::api::batch::v1::Job>("job", &serde_json::json!({}))
                .unwrap_err()
        );
        assert!(err.contains("spec.backofLimit"), "{err}");
    }
}
