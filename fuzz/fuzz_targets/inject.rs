//! The whole pipeline on a mutated stream: `lockstep::run` with Input::Stream and
//! the prefect-server profile. Errors are values: it must never panic, and what it
//! writes on success is a YAML stream.
//! The first byte picks options (bit 0: --phase sync, bit 1: --from 3.7.8,
//! bit 2: --api-workload Deployment/prefect-server); the rest is the stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep::inject::Phase;
use lockstep::{Input, Request};
use serde::Deserialize;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut req = Request::new(Input::Stream(text.into()));
    req.profile = Some("prefect-server".into());
    if flags & 1 != 0 {
        req.phase = Phase::Sync;
    }
    if flags & 2 != 0 {
        req.from = Some("3.7.8".into());
    }
    if flags & 4 != 0 {
        req.api_workload = Some("Deployment/prefect-server".parse().unwrap());
    }
    let mut out = Vec::new();
    let mut notes = Vec::new();
    if lockstep::run(&req, &mut out, &mut notes).is_ok() {
        let out = String::from_utf8(out).expect("output is UTF-8");
        assert!(
            out.contains("lockstep/job.yaml.hbs")
                || notes.iter().any(|n| n.contains("no migration Job"))
        );
        // Untouched documents are passed through unparsed, so only lockstep's own
        // documents are checked here: each parses on its own.
        for part in out.split("\n---\n# Source: lockstep/").skip(1) {
            let body = part.split_once('\n').map_or("", |(_, b)| b);
            for d in serde_yaml::Deserializer::from_str(body) {
                serde_yaml::Value::deserialize(d).expect("lockstep's own documents are valid YAML");
            }
        }
    }
});
