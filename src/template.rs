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
//! Reading a rendered template back is the costly part (libyaml over every
//! value's JSON), so it is first done without the values: the `json` helper writes
//! a placeholder node, `!lockstep-slot N`, and keeps the value, and the values are
//! put in place once the template's own few lines are parsed. That is taken only
//! when every placeholder comes back exactly once as a node of its own, which is
//! where the JSON would have been read as exactly that value; otherwise (a helper
//! call inside a quoted or block scalar, a key, a comment, an alias, a parse error)
//! the template is rendered again with the JSON and read the plain way, so results
//! and errors are what that gives.
//!
//! What the fast read buys, counted by callgrind (bench/README.md, "Complexity that
//! pays"): without it `lockstep render` runs 18.4 M instructions instead of 14.9 M for
//! prefect-server (+23 %) and 35.4 M instead of 26.5 M for prefect-cloud 1.2.0 (+33 %),
//! all of it after helm's output arrives, on the way to lockstep's own output.
//!
//! This module must not decide what goes into a template: `inject` builds contexts.

use anyhow::{anyhow, bail, Context, Result};
use handlebars::Handlebars;
use serde::{de::DeserializeOwned, Serialize};
use serde_yaml::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;

pub(crate) const JOB: &str = include_str!("../templates/job.yaml.hbs");
pub(crate) const RECORD: &str = include_str!("../templates/record-configmap.yaml.hbs");
/// The gate's script: which record to read, then the decision.
pub(crate) const GATE_SCRIPT: &str = concat!(
    include_str!("../templates/record.sh"),
    include_str!("../templates/gate.sh")
);
/// The wrapper of every step Job: which record to read, then run the step as the record
/// says (once, not again, the first-install or the upgrade command, after the rollout).
pub(crate) const STEP_SCRIPT: &str = concat!(
    include_str!("../templates/record.sh"),
    include_str!("../templates/step.sh")
);

/// A script as a Job runs it: without its comment lines (the files document it).
pub(crate) fn script(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect()
}

pub(crate) struct Templates {
    hb: Handlebars<'static>,
    /// Per template, the last placeholder text read and its parse: the Jobs of one
    /// render mostly share theirs, so it is parsed once.
    skeletons: RefCell<BTreeMap<String, (String, Value)>>,
}

handlebars::handlebars_helper!(json_helper: |v: Json| crate::yaml::json(v));

/// The tag of the placeholder the `json` helper writes on the fast path.
const SLOT_TAG: &str = "lockstep-slot";

thread_local! {
    /// While [`Templates::read_fast`] renders: the values the `json` helper was given,
    /// in order (each `Some` until put in place); `None` otherwise (the helper writes
    /// JSON).
    static SLOTS: RefCell<Option<Vec<Option<Value>>>> = const { RefCell::new(None) };
}

/// `json`: the JSON of its value, or on the fast path a placeholder for it.
struct JsonHelper;

impl handlebars::HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc handlebars::Context,
        rc: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let slot = SLOTS.with_borrow_mut(|slots| {
            let slots = slots.as_mut()?;
            let param = h.param(0).filter(|p| !p.is_value_missing())?;
            slots.push(Some(serde_yaml::to_value(param.value()).ok()?));
            Some(slots.len() - 1)
        });
        match slot {
            Some(i) => Ok(out.write(&format!("!{SLOT_TAG} {i}"))?),
            // Not on the fast path, or a call the plain helper reports on.
            None => json_helper.call(h, r, ctx, rc, out),
        }
    }
}

/// Clears [`SLOTS`] when dropped, however the render ends.
struct SlotsGuard;

impl Drop for SlotsGuard {
    fn drop(&mut self) {
        SLOTS.with_borrow_mut(|slots| *slots = None);
    }
}

/// Puts `slots` in place of the placeholders in `v`. False when that does not give
/// what the JSON would: a placeholder that is not a node of its own, is in a key, or
/// is seen twice or out of range. Each slot taken is left `None`.
fn fill_slots(v: &mut Value, slots: &mut [Option<Value>]) -> bool {
    match v {
        Value::Tagged(t) if t.tag == serde_yaml::value::Tag::new(SLOT_TAG) => {
            let index = match &t.value {
                Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                _ => None,
            };
            match index.and_then(|i| slots.get_mut(i)).and_then(Option::take) {
                Some(value) => {
                    *v = value;
                    true
                }
                None => false,
            }
        }
        Value::Tagged(t) => fill_slots(&mut t.value, slots),
        Value::Mapping(m) => {
            m.keys().all(|k| !mentions_slot(k)) && m.values_mut().all(|x| fill_slots(x, slots))
        }
        Value::Sequence(s) => s.iter_mut().all(|x| fill_slots(x, slots)),
        _ => true,
    }
}

fn mentions_slot(v: &Value) -> bool {
    match v {
        Value::Tagged(t) => {
            t.tag == serde_yaml::value::Tag::new(SLOT_TAG) || mentions_slot(&t.value)
        }
        Value::Mapping(m) => m.iter().any(|(k, x)| mentions_slot(k) || mentions_slot(x)),
        Value::Sequence(s) => s.iter().any(mentions_slot),
        _ => false,
    }
}

impl Templates {
    /// The embedded templates, with `job` replaced when the user gives one.
    pub(crate) fn new(job_override: Option<(&str, String)>) -> Result<Templates> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(JsonHelper));
        let (job_origin, job_text) = match job_override {
            Some((origin, text)) => (origin.to_owned(), text),
            None => ("templates/job.yaml.hbs".to_owned(), JOB.to_owned()),
        };
        hb.register_template_string("job", job_text)
            .map_err(|e| anyhow!("{job_origin}: not a valid handlebars template: {e}"))?;
        hb.register_template_string("record", RECORD)
            .map_err(|e| anyhow!("templates/record-configmap.yaml.hbs: {e}"))?;
        Ok(Templates {
            hb,
            skeletons: RefCell::new(BTreeMap::new()),
        })
    }

    /// Renders template `name`, checks it as a `T` and returns its document: the
    /// text of the checked object (as a `T` serializes), with a `# Source:` line.
    pub(crate) fn document<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        ctx: &serde_json::Value,
        source: &str,
    ) -> Result<String> {
        let checked = self.checked::<T>(name, ctx)?;
        Ok(format!(
            "---\n# Source: {source}\n{}",
            crate::yaml::to_string(&checked)
        ))
    }

    /// Template `name` rendered and checked as a `T`: the `T` it reads as, serialized
    /// back (what is emitted).
    fn checked<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        ctx: &serde_json::Value,
    ) -> Result<Value> {
        let value = match self.read_fast(name, ctx) {
            Some(value) => {
                #[cfg(fuzzing)]
                assert_eq!(
                    Some(&value),
                    self.read(name, ctx).ok().as_ref(),
                    "the fast read of {name} differs"
                );
                value
            }
            None => self.read(name, ctx)?,
        };
        check::<T>(name, value)
    }

    /// Template `name` rendered with the values' JSON and read as YAML.
    fn read(&self, name: &str, ctx: &serde_json::Value) -> Result<Value> {
        let text = self
            .hb
            .render(name, ctx)
            .with_context(|| format!("rendering the {name} template"))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("the {name} template did not produce valid YAML"))
    }

    /// What [`read`](Templates::read) gives, when it can be had without the values'
    /// JSON (see the module doc); `None` when it cannot.
    fn read_fast(&self, name: &str, ctx: &serde_json::Value) -> Option<Value> {
        let _guard = SlotsGuard;
        SLOTS.with_borrow_mut(|slots| *slots = Some(Vec::new()));
        let text = self.hb.render(name, ctx).ok()?;
        let mut slots = SLOTS.with_borrow_mut(Option::take)?;
        let mut skeletons = self.skeletons.borrow_mut();
        let mut value = match skeletons.get(name) {
            Some((seen, parsed)) if *seen == text => parsed.clone(),
            _ => {
                let parsed: Value = serde_yaml::from_str(&text).ok()?;
                skeletons.insert(name.to_owned(), (text, parsed.clone()));
                parsed
            }
        };
        (fill_slots(&mut value, &mut slots) && slots.iter().all(Option::is_none)).then_some(value)
    }
}

/// `value`, read from template `name`, checked as a `T`: the `T` serialized back.
fn check<T: Serialize + DeserializeOwned>(name: &str, mut value: Value) -> Result<Value> {
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
    Ok(back)
}

/// Removes null map entries (absent optional fields) recursively.
pub(crate) fn strip_nulls(v: &mut Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn values_cannot_add_keys() {
        let t = Templates::new(None).unwrap();
        let evil = "x\"\nkind: Secret\n# \": {a: b}";
        let ctx = serde_json::json!({
            "name": "n", "namespace": null, "labels": {"a": evil},
            "annotations": {"b": evil},
            "release": evil, "line": "1.2", "image": "i:1", "chart": "c", "profile": "p",
            "oneTime": evil
        });
        let cm: ConfigMap =
            serde_yaml::from_value(t.checked::<ConfigMap>("record", &ctx).unwrap()).unwrap();
        let data = cm.data.unwrap();
        assert_eq!(data["release"], evil);
        assert_eq!(data["one-time"], evil);
        assert_eq!(cm.metadata.annotations.unwrap()["b"], evil);
        assert_eq!(cm.metadata.labels.unwrap()["a"], evil);
    }

    #[test]
    fn unknown_template_fields_are_errors() {
        let t = Templates::new(Some(("t.hbs", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: a}\nspec:\n  backofLimit: 1\n  template: {spec: {containers: []}}\n".into()))).unwrap();
        let err = format!(
            "{:#}",
            t.checked::<Job>("job", &serde_json::json!({})).unwrap_err()
        );
        assert!(err.contains("spec.backofLimit"), "{err}");
    }

    /// What the fast read gives and what the plain read gives.
    fn both(t: &Templates, ctx: &serde_json::Value) -> (Option<Value>, Option<Value>) {
        (t.read_fast("job", ctx), t.read("job", ctx).ok())
    }

    fn custom(text: &str) -> Templates {
        Templates::new(Some(("t.hbs", text.to_owned()))).unwrap()
    }

    #[test]
    fn the_fast_read_gives_what_the_json_gives() {
        let t = Templates::new(None).unwrap();
        let odd = serde_json::json!([
            "no", "off", "Y", "0755", "1e3", ".inf", "", "~", "null", "true", "3.8.3",
            "a\nb", "x\"\nkind: Secret", "\u{85}\u{2028}\u{2029}", "!lockstep-slot 0",
            "*alias", "&anchor", "# not a comment", "- item", "{a: b}", "ü 🦀",
            u64::MAX, -7, 1.5, 1e300, 0, true, null, {}, [], {"k": [1, {"n": null}]}
        ]);
        let ctx = serde_json::json!({
            "name": "n", "namespace": "ns", "labels": {"a": "no", "b": "0755"},
            "annotations": {"odd": odd}, "activeDeadlineSeconds": 60, "backoffLimit": 0,
            "podLabels": {}, "podAnnotations": null,
            "pod": {"serviceAccountName": "sa", "automountServiceAccountToken": false,
                    "imagePullSecrets": [{"name": "s"}], "securityContext": null,
                    "nodeSelector": {"disk": "ssd"}, "tolerations": [], "affinity": null},
            "volumes": [], "containerName": "c", "image": "i:1@sha256:ab",
            "imagePullPolicy": null, "command": odd, "args": ["a", "no"], "env": [{"name": "E", "value": "1e3"}],
            "envFrom": [], "volumeMounts": [], "workingDir": null, "resources": {},
            "securityContext": {"runAsUser": 1000}
        });
        let (fast, plain) = both(&t, &ctx);
        assert!(plain.is_some(), "the context is complete");
        assert!(
            fast.is_some(),
            "the embedded Job template takes the fast path"
        );
        assert_eq!(fast, plain);
        // Again: from the parsed skeleton kept from the first read.
        assert_eq!(both(&t, &ctx), (plain.clone(), plain));
    }

    #[test]
    fn a_helper_call_that_is_not_a_node_of_its_own_reads_the_plain_way() {
        let ctx = serde_json::json!({"x": "v", "k": "key", "n": 1});
        for text in [
            "a: \"{{json x}}\"\n", // inside a quoted scalar: an error either way
            "a: '{{json x}}'\n",
            "a: pre{{json x}}\n", // part of a plain scalar
            "a: {{json x}}{{json n}}\n",
            "{{json k}}: 1\n",                      // a key
            "a: 1 # {{json x}}\n",                  // a comment
            "a: |\n  {{json x}}\n",                 // a block scalar
            "a: &r {{json x}}\nb: *r\n",            // an alias: the value twice
            "a: {{json x}}\nb: !lockstep-slot 0\n", // the tag written by hand
            "a: !lockstep-slot 5\n",
            "a: {{json x}}\n---\nb: 1\n", // two documents
        ] {
            let t = custom(text);
            assert_eq!(t.read_fast("job", &ctx), None, "{text:?}");
            // What is checked is then the plain read: its result, or its error.
            let outcome = |r: Result<Value>| r.map_err(|e| format!("{e:#}"));
            assert_eq!(
                outcome(t.checked::<Job>("job", &ctx)),
                outcome(t.read("job", &ctx).and_then(|v| check::<Job>("job", v))),
                "{text:?}"
            );
        }
        // A template without helper calls, and with calls in flow collections.
        let (fast, plain) = both(&custom("a: [{{json x}}, {b: {{json n}}}]\nc: d\n"), &ctx);
        assert!(fast.is_some());
        assert_eq!(fast, plain);
    }
}
