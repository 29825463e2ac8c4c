//! Core: render a chart and inject migration Jobs locked to the API image.
//!
//! End-to-end through the built binary: the 17 real prefect-server renders of
//! `tests/fixtures/prefect-server`, the example charts rendered by the real
//! helm 4 and helm 3, profile selection, `--api-workload`, the phases, the Job
//! template, helm missing or failing, and the CLI's usage contract.
//! Small charts of our own are under `tests/data/core/`.

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------------------
// Helpers

const SWITCHES: &[&str] = &[
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START",
    "PREFECT_API_DATABASE_MIGRATE_ON_START",
];
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/core").join(name)
}

fn example(rel: &str) -> PathBuf {
    repo().join("examples").join(rel)
}

/// Runs every command at once (helm is ~0.1 s a call) and returns their outputs in order.
fn run_all(cmds: Vec<Command>) -> Vec<Output> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect()
}

/// Runs every (command, stdin) pair at once.
fn run_all_stdin(jobs: Vec<(Command, Vec<u8>)>) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(cmd, input)| s.spawn(move || run_with_stdin(cmd, &input)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn inject(args: &[&str]) -> Command {
    let mut c = lockstep();
    c.arg("inject").args(args);
    c
}

fn render(chart: &Path, args: &[&str]) -> Command {
    let mut c = lockstep();
    c.arg("render").arg(chart).args(args);
    c
}

fn write_scratch(name: &str, text: &str) -> PathBuf {
    let p = scratch("core").join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Validates every document of `streams` (strict, Kubernetes 1.33) in one call,
/// each distinct document text once: streams that share documents (the same
/// chart in several modes) cost no more than their distinct documents.
fn validate_streams(name: &str, streams: &[&str]) {
    let mut seen = BTreeSet::new();
    let mut all = String::new();
    for s in streams {
        for c in chunks(s) {
            if seen.insert(c) {
                if !c.starts_with("---") {
                    all.push_str("---\n");
                }
                all.push_str(c);
                if !c.ends_with('\n') {
                    all.push('\n');
                }
            }
        }
    }
    let f = write_scratch(name, &all);
    validate(&[&f]);
}

/// The stream split at `---` lines, each chunk starting with its separator line:
/// the same boundaries lockstep keeps for untouched documents.
fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut pos) = (0, 0);
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if (l == "---" || l.starts_with("--- ")) && pos > start {
            out.push(&text[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn parse(chunk: &str) -> Value {
    serde_yaml::from_str(chunk).unwrap_or_else(|e| panic!("chunk does not parse: {e}\n{chunk}"))
}

/// (kind, name) of a parsed document; None for an empty one.
fn head(v: &Value) -> Option<(String, String)> {
    Some((
        v["kind"].as_str()?.to_owned(),
        v["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    ))
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str()
                            .unwrap_or_else(|| panic!("{k:?} is not a string: {v:?}"))
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn containers(doc: &Value) -> &Vec<Value> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap_or_else(|| panic!("no containers in {doc:?}"))
}

fn container<'a>(doc: &'a Value, name: &str) -> &'a Value {
    containers(doc)
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name} in {:?}", head(doc)))
}

/// A container's env; for lockstep's Jobs without the LOCKSTEP_* variables the step
/// wrapper reads.
fn env(c: &Value) -> Vec<Value> {
    app_env(c)
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// Env without the migrate-on-start switches (the one thing lockstep may change).
fn env_without_switch(c: &Value) -> Vec<Value> {
    env(c)
        .into_iter()
        .filter(|e| {
            !e["name"].as_str().is_some_and(|n| {
                SWITCHES.contains(&n) || n == "PREFECT_CLOUD_DATABASE_MIGRATE_ON_START"
            })
        })
        .collect()
}

/// Values of the migrate-on-start switches a container sets.
fn switch_values(c: &Value) -> Vec<String> {
    env(c)
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| SWITCHES.contains(&n)))
        .map(|e| e["value"].as_str().unwrap_or("<not a literal>").to_owned())
        .collect()
}

/// A workload with the switch entries removed from every container (and an env
/// left empty by that removed too).
fn strip_switch(doc: &Value) -> Value {
    let mut v = doc.clone();
    for c in v["spec"]["template"]["spec"]["containers"]
        .as_sequence_mut()
        .unwrap()
    {
        let kept = env_without_switch(c);
        let m = c.as_mapping_mut().unwrap();
        if kept.is_empty() {
            m.remove("env");
        } else {
            m.insert("env".into(), Value::Sequence(kept));
        }
    }
    v
}

/// The Jobs lockstep added.
fn lockstep_jobs(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| {
            d["kind"] == "Job"
                && d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "lockstep"
        })
        .collect()
}

fn component<'a>(jobs: &[&'a Value], c: &str) -> Vec<&'a Value> {
    jobs.iter()
        .copied()
        .filter(|j| j["metadata"]["labels"]["app.kubernetes.io/component"] == c)
        .collect()
}

fn job_container(job: &Value) -> &Value {
    let cs = containers(job);
    assert_eq!(cs.len(), 1, "a lockstep Job has one container");
    &cs[0]
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn wave(doc: &Value) -> i32 {
    doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        .as_str()
        .unwrap_or_else(|| panic!("no sync-wave on {:?}", head(doc)))
        .parse()
        .unwrap()
}

/// The hook annotations of a lockstep Job in a phase, at a wave.
fn hook_annotations(phase: &str, wave: i32) -> BTreeMap<String, String> {
    let (argo, helm) = match phase {
        "presync" => ("PreSync", "pre-install,pre-upgrade"),
        "sync" => ("Sync", "post-install,pre-upgrade"),
        _ => unreachable!(),
    };
    [
        ("argocd.argoproj.io/hook", argo.to_owned()),
        (
            "argocd.argoproj.io/hook-delete-policy",
            "BeforeHookCreation,HookSucceeded".to_owned(),
        ),
        ("argocd.argoproj.io/sync-wave", wave.to_string()),
        ("helm.sh/hook", helm.to_owned()),
        (
            "helm.sh/hook-delete-policy",
            "before-hook-creation,hook-succeeded".to_owned(),
        ),
        ("helm.sh/hook-weight", wave.to_string()),
        ("helm.sh/hook-output-log-policy", "hook-failed".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Checks common to every lockstep Job: name, deadline, backoff, restart policy.
fn check_job_basics(job: &Value, deadline: i64, backoff: i64) {
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        is_dns_label(name),
        "Job name {name:?} is not a DNS-1123 label of at most 63 characters"
    );
    assert_eq!(
        job["spec"]["activeDeadlineSeconds"].as_i64(),
        Some(deadline),
        "{name}: activeDeadlineSeconds"
    );
    assert_eq!(
        job["spec"]["backoffLimit"].as_i64(),
        Some(backoff),
        "{name}: backoffLimit"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"], "Never",
        "{name}: restartPolicy"
    );
}

/// `prefecthq/prefect:3.8.3-python3.11@sha256:..` → 3.8.3
fn version_of_image(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap();
    let tag = no_digest.rsplit(':').next().unwrap();
    tag.split('-').next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------
// 1. Every real prefect-server render

struct FixtureRun {
    name: String,
    input: String,
    out: String,
    err: String,
}

/// One test per real render (`tests/fixtures/prefect-server`), and the list of them
/// ([`FIXTURES`]) for the matrix and schema tests.
macro_rules! fixture_tests {
    ($($name:ident: $file:literal,)*) => {
        const FIXTURES: &[&str] = &[$($file,)*];
        $(#[test] fn $name() { check_one_fixture($file); })*
    };
}

fixture_tests! {
    fixture_2025_5_bundled_pg: "prefect-server-2025.5.2200058--bundled-pg.yaml",
    fixture_2025_5_pinned_digest: "prefect-server-2025.5.2200058--pinned-digest.yaml",
    fixture_2025_5_replicas_3: "prefect-server-2025.5.2200058--replicas-3.yaml",
    fixture_2025_5_separate_services_redis: "prefect-server-2025.5.2200058--separate-services-redis.yaml",
    fixture_2025_5_sqlite: "prefect-server-2025.5.2200058--sqlite.yaml",
    fixture_2026_7_bundled_pg: "prefect-server-2026.7.15163855--bundled-pg.yaml",
    fixture_2026_7_external_db_redis: "prefect-server-2026.7.15163855--external-db-redis.yaml",
    fixture_2026_7_pinned_digest: "prefect-server-2026.7.15163855--pinned-digest.yaml",
    fixture_2026_7_replicas_3: "prefect-server-2026.7.15163855--replicas-3.yaml",
    fixture_2026_7_separate_services_redis: "prefect-server-2026.7.15163855--separate-services-redis.yaml",
    fixture_2026_7_sqlite: "prefect-server-2026.7.15163855--sqlite.yaml",
    fixture_2026_8_bundled_pg: "prefect-server-2026.8.18172642--bundled-pg.yaml",
    fixture_2026_8_external_db_redis: "prefect-server-2026.8.18172642--external-db-redis.yaml",
    fixture_2026_8_pinned_digest: "prefect-server-2026.8.18172642--pinned-digest.yaml",
    fixture_2026_8_replicas_3: "prefect-server-2026.8.18172642--replicas-3.yaml",
    fixture_2026_8_separate_services_redis: "prefect-server-2026.8.18172642--separate-services-redis.yaml",
    fixture_2026_8_sqlite: "prefect-server-2026.8.18172642--sqlite.yaml",
}

/// The README's matrix: three chart versions by six modes, but no external-db-redis for
/// 2025.5 (its values schema rejects it): 17 renders, each with its test above.
#[test]
fn the_fixtures_are_the_readme_matrix() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let mut expected = Vec::new();
    for v in ["2025.5.2200058", "2026.7.15163855", "2026.8.18172642"] {
        for m in [
            "bundled-pg",
            "external-db-redis",
            "pinned-digest",
            "replicas-3",
            "separate-services-redis",
            "sqlite",
        ] {
            if !(v.starts_with("2025.5") && m == "external-db-redis") {
                expected.push(format!("prefect-server-{v}--{m}.yaml"));
            }
        }
    }
    assert_eq!(names, expected, "the fixtures are the README's matrix");
    assert_eq!(FIXTURES, expected, "each fixture has its test");
}

fn inject_fixture(name: &str) -> Ran {
    Test::new()
        .args(["inject", "--profile", "prefect-server"])
        .stdin_file(fixture(name))
        .run()
}

/// One render: injected twice (the same bytes), then the checks of its mode.
fn check_one_fixture(name: &str) {
    let (a, b) = (inject_fixture(name), inject_fixture(name));
    assert_eq!(
        a.stdout, b.stdout,
        "{name}: two runs on the same input differ"
    );
    let r = FixtureRun {
        name: name.to_owned(),
        input: std::fs::read_to_string(fixture(name)).unwrap(),
        out: a.stdout,
        err: a.stderr,
    };
    if r.name.contains("--sqlite") {
        check_sqlite_fixture(&r);
    } else {
        check_fixture(&r);
    }
}

/// Every output of the fixtures validates (strict, Kubernetes 1.33), in one validator run.
#[test]
fn every_fixture_output_validates() {
    let outs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = FIXTURES
            .iter()
            .map(|n| s.spawn(move || inject_fixture(n).stdout))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    validate_streams(
        "fixtures.yaml",
        &outs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

fn check_sqlite_fixture(r: &FixtureRun) {
    assert!(
        r.input.contains("sqlite"),
        "{}: the input is a SQLite render",
        r.name
    );
    assert!(
        r.out == r.input,
        "{}: a SQLite render must come out byte-identical",
        r.name
    );
    assert!(
        r.err.contains("no migration Job injected") && r.err.contains("sqlite"),
        "{}: stderr explains why nothing was injected: {}",
        r.name,
        r.err
    );
}

fn check_fixture(r: &FixtureRun) {
    let name = r.name.as_str();
    let in_docs = docs(&r.input);
    let out_docs = docs(&r.out);
    let api_in = find(&in_docs, "Deployment", "prefect-server")
        .unwrap_or_else(|| panic!("{name}: no server Deployment"));
    let api_c = container(api_in, "prefect-server");
    let api_image = api_c["image"].as_str().unwrap();

    // The chart's own migration hook: present in the input exactly in the
    // separate-services modes of 2026.x, and gone from the output.
    let chart_hook_expected = !name.contains("2025.5")
        && (name.contains("separate-services") || name.contains("external-db"));
    let chart_hook = find(&in_docs, "Job", "prefect-server-db-migrations");
    assert_eq!(
        chart_hook.is_some(),
        chart_hook_expected,
        "{name}: the chart's own db-migrations Job in the input"
    );
    assert!(
        find(&out_docs, "Job", "prefect-server-db-migrations").is_none(),
        "{name}: the chart's own migration Job must be removed"
    );
    let separate = name.contains("separate-services") || name.contains("external-db");
    assert_eq!(
        find(&in_docs, "Deployment", "prefect-server-background-services").is_some(),
        separate,
        "{name}: background-services Deployment in the input"
    );

    // Walk the input documents: each one is untouched (byte-identical), edited
    // (only the migrate-on-start switch), or dropped (the chart's hook).
    let in_chunks = chunks(&r.input);
    let out_chunks = chunks(&r.out);
    let mut j = 0;
    let mut edited = BTreeSet::new();
    for c in &in_chunks {
        let v = parse(c);
        let h = head(&v);
        let Some((kind, wname)) = h.clone() else {
            assert_eq!(out_chunks[j], *c, "{name}: an empty document changed");
            j += 1;
            continue;
        };
        if kind == "Job" && wname == "prefect-server-db-migrations" {
            continue;
        }
        let api_container = match (kind.as_str(), wname.as_str()) {
            ("Deployment", "prefect-server") => Some("prefect-server"),
            ("Deployment", "prefect-server-background-services") => {
                Some("prefect-background-services")
            }
            _ => None,
        };
        let out_c = out_chunks
            .get(j)
            .unwrap_or_else(|| panic!("{name}: {kind}/{wname} is missing from the output"));
        j += 1;
        let already_off = api_container.is_some_and(|cn| {
            let s = switch_values(container(&v, cn));
            !s.is_empty() && s.iter().all(|x| x == "false")
        });
        if api_container.is_none() || already_off {
            assert!(out_c == c, "{name}: {kind}/{wname} must be byte-identical to the input\n--- input:\n{c}\n--- output:\n{out_c}");
            continue;
        }
        // Edited: same head, same `# Source:` line, and equal to the input but for the switch.
        let ov = parse(out_c);
        assert_eq!(head(&ov), h, "{name}: documents out of order");
        assert_ne!(
            out_c, c,
            "{name}: {wname} needed migrate-on-start off but is unchanged"
        );
        let source = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("# Source:"))
                .map(str::to_owned)
        };
        assert_eq!(
            source(out_c),
            source(c),
            "{name}: {wname} keeps its # Source: line"
        );
        assert_eq!(
            strip_switch(&ov),
            strip_switch(&v),
            "{name}: {wname}: only the switch may change"
        );
        edited.insert(wname);
    }
    // The bundled-pg single Deployment migrates on start: lockstep must have edited it.
    if name.contains("bundled-pg") || name.contains("replicas-3") {
        assert!(
            edited.contains("prefect-server"),
            "{name}: the server Deployment must get migrate-on-start off"
        );
    }

    // What remains is what lockstep added: the gate, one migration, the release record
    // and its backup (written after the migration).
    let added: Vec<Value> = out_chunks[j..].iter().map(|c| parse(c)).collect();
    let kinds: Vec<_> = added.iter().map(|d| head(d).unwrap()).collect();
    assert_eq!(
        kinds,
        vec![
            ("Job".to_owned(), "prefect-server-lockstep-gate".to_owned()),
            (
                "Job".to_owned(),
                "prefect-server-migrate-database".to_owned()
            ),
            ("ConfigMap".to_owned(), "prefect-server-lockstep".to_owned()),
            (
                "ConfigMap".to_owned(),
                "prefect-server-lockstep-backup".to_owned()
            ),
        ],
        "{name}: added documents"
    );
    for d in &added {
        assert_eq!(
            d["metadata"]["namespace"], "prefect",
            "{name}: added objects go to the release namespace"
        );
    }

    // migrate-on-start: "false" on the server and background services, on no other workload.
    for d in &out_docs {
        let Some((kind, wname)) = head(d) else {
            continue;
        };
        if !WORKLOADS.contains(&kind.as_str()) {
            continue;
        }
        for c in containers(d) {
            let cname = c["name"].as_str().unwrap();
            let vals = switch_values(c);
            match (wname.as_str(), cname) {
                ("prefect-server", "prefect-server")
                | ("prefect-server-background-services", "prefect-background-services") => {
                    assert!(
                        !vals.is_empty() && vals.iter().all(|v| v == "false"),
                        "{name}: {wname}/{cname} migrate-on-start: {vals:?}"
                    )
                }
                _ => assert!(
                    vals.is_empty(),
                    "{name}: {kind}/{wname}/{cname} must not get a migrate-on-start switch"
                ),
            }
        }
    }

    // The migration Job runs the API's exact image with its exact env.
    let jobs = lockstep_jobs(&out_docs);
    let migrate = component(&jobs, "database-migration");
    assert_eq!(migrate.len(), 1, "{name}: one migration Job");
    let job = migrate[0];
    let jc = job_container(job);
    assert_eq!(
        jc["image"].as_str(),
        Some(api_image),
        "{name}: the Job's image is the API's"
    );
    if name.contains("pinned-digest") {
        assert!(
            api_image.contains("@sha256:"),
            "{name}: the digest is part of the image"
        );
    }
    assert!(
        api_c["imagePullPolicy"].is_string(),
        "{name}: the API sets imagePullPolicy"
    );
    assert_eq!(
        jc["imagePullPolicy"], api_c["imagePullPolicy"],
        "{name}: imagePullPolicy"
    );
    // The API container's final env: as lockstep emits it, migrate-on-start off.
    let api_out = find(&out_docs, "Deployment", "prefect-server").unwrap();
    assert_eq!(
        env(jc),
        env(container(api_out, "prefect-server")),
        "{name}: the Job's env is the API container's final env (output)"
    );
    assert!(
        !switch_values(jc).is_empty() && switch_values(jc).iter().all(|v| v == "false"),
        "{name}: the Job carries migrate-on-start off, as the API does: {:?}",
        switch_values(jc)
    );
    // Through the image's entrypoint when the server runs through it (issue 15):
    // `tini -g -- /opt/prefect/entrypoint.sh` installs EXTRA_PIP_PACKAGES.
    let upgrade = ["prefect", "server", "database", "upgrade", "-y"];
    let tini = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"];
    assert_eq!(step_argv(job), upgrade, "{name}: the step's argv");
    if api_c["command"].is_null() || strings(&api_c["command"]) == tini {
        assert_eq!(
            step_entrypoint(job),
            Some(api_c["command"].clone()),
            "{name}: the entrypoint"
        );
    } else {
        assert_eq!(
            step_entrypoint(job),
            None,
            "{name}: the wrapper is the command"
        );
    }
    assert_eq!(
        job["spec"]["template"]["spec"]["serviceAccountName"],
        api_in["spec"]["template"]["spec"]["serviceAccountName"],
        "{name}: service account"
    );
    // Redis / messaging / lease settings: wherever the server has them, the Job has them.
    let redis: Vec<&Value> = env(api_c)
        .iter()
        .filter(|e| {
            let n = e["name"].as_str().unwrap();
            n.starts_with("PREFECT_REDIS_MESSAGING_")
                || n.starts_with("PREFECT_MESSAGING_")
                || n.contains("LEASE_STORAGE")
        })
        .map(|e| env_value(api_c, e["name"].as_str().unwrap()).unwrap())
        .collect();
    if chart_hook_expected {
        assert!(
            !redis.is_empty(),
            "{name}: the server container has Redis settings"
        );
        // ...which the chart's own Job lacked: that is why lockstep replaces it.
        let hook_c = &containers(chart_hook.unwrap())[0];
        assert!(
            redis
                .iter()
                .any(|e| env_value(hook_c, e["name"].as_str().unwrap()).is_none()),
            "{name}: the chart's own Job was expected to miss some Redis setting"
        );
    }
    for e in &redis {
        assert_eq!(
            env_value(jc, e["name"].as_str().unwrap()),
            Some(*e),
            "{name}: {:?} in the Job",
            e["name"]
        );
    }

    // Hooks, waves, deadlines.
    let mut ann = str_map(&job["metadata"]["annotations"]);
    let first = ann.remove("lockstep.dev/first-install");
    assert!(
        first.is_some(),
        "{name}: every fixture renders the ServiceAccount the Job uses: presync warns"
    );
    assert_eq!(
        ann,
        hook_annotations("presync", -10),
        "{name}: migration Job hook annotations"
    );
    check_job_basics(job, 900, 1);
    let gate = component(&jobs, "upgrade-gate");
    assert_eq!(gate.len(), 1, "{name}: one gate Job");
    assert_eq!(
        str_map(&gate[0]["metadata"]["annotations"]),
        hook_annotations("presync", -11),
        "{name}: gate hook annotations"
    );
    check_job_basics(gate[0], 300, 0);
    assert_eq!(
        job_container(gate[0])["image"].as_str(),
        Some(api_image),
        "{name}: the gate runs the API image"
    );

    // The release record follows the image, not the chart's labels.
    let record = find(&out_docs, "ConfigMap", "prefect-server-lockstep").unwrap();
    assert_eq!(
        record["data"]["image"].as_str(),
        Some(api_image),
        "{name}: record image"
    );
    assert_eq!(
        record["data"]["release"].as_str(),
        Some(version_of_image(api_image).as_str()),
        "{name}: record release"
    );
    if name.contains("2026.8") && name.contains("pinned-digest") {
        assert_eq!(
            record["data"]["release"], "3.7.8",
            "{name}: the tag, not appVersion 3.8.3"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. The example charts, rendered by the real helm 4 and helm 3

const PS_SEPARATE: &[&str] = &[
    "--set",
    "backgroundServices.runAsSeparateDeployment=true",
    "--set",
    "redis.enabled=true",
];
const PS_SQLITE: &[&str] = &[
    "--set",
    "sqlite.enabled=true",
    "--set",
    "postgresql.enabled=false",
];
const CM: &[&str] = &["--release", "customer-managed", "-n", "customer-managed"];

fn helm_cmd(helm: &str) -> Command {
    let mut c = Command::new(tool(helm));
    c.env("HELM_CACHE_HOME", scratch("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch("helm-config"))
        .env("HELM_DATA_HOME", scratch("helm-data"));
    c
}

/// The example renders, by helm 4 and helm 3: every command once per test process, all at
/// once (helm is ~0.1 s a call); the tests below each check one of them.
const MODES: &[&str] = &[
    "default",
    "separate",
    "sqlite",
    "sqlite-direct",
    "cloud12",
    "broken-redis",
    "cloud08",
];

fn example_renders() -> &'static BTreeMap<(&'static str, &'static str), Output> {
    static RENDERS: std::sync::OnceLock<BTreeMap<(&'static str, &'static str), Output>> =
        std::sync::OnceLock::new();
    RENDERS.get_or_init(|| {
        let ps = example("charts/prefect-server");
        let cloud12 = example("charts/prefect-cloud-1.2.0");
        let cloud08 = example("charts/prefect-cloud-0.8.2");
        let v12 = example("values/prefect-cloud/values-1.2.0.yaml");
        let broken = example("values/prefect-cloud/broken-redis-1.2.0.yaml");
        let v08 = example("values/prefect-cloud/values-0.8.2.yaml");
        let mut renders = BTreeMap::new();
        for h in ["helm4", "helm3"] {
            let with_helm = |mut c: Command| {
                c.env("HELM_BIN", tool(h));
                c
            };
            let mut direct = helm_cmd(h);
            direct
                .args(["template", "prefect-server"])
                .arg(&ps)
                .args(PS_SQLITE)
                .arg("--include-crds");
            let mut c12 = render(&cloud12, CM);
            c12.arg("-f").arg(&v12);
            let mut cbroken = render(&cloud12, CM);
            cbroken.arg("-f").arg(&broken);
            let mut c08 = render(&cloud08, CM);
            c08.arg("-f").arg(&v08);
            let these = [
                with_helm(render(&ps, &[])),
                with_helm(render(&ps, PS_SEPARATE)),
                with_helm(render(&ps, PS_SQLITE)),
                direct,
                with_helm(c12),
                with_helm(cbroken),
                with_helm(c08),
            ];
            // One helm's seven at a time: on a loaded machine fourteen at once starve
            // lockstep's reader past its 2 s grace after helm exits (render.rs).
            let outs = run_all(these.into_iter().collect());
            for (mode, o) in MODES.iter().zip(outs) {
                renders.insert((h, *mode), o);
            }
        }
        renders
    })
}

fn example_render(helm: &'static str, mode: &'static str) -> &'static Output {
    &example_renders()[&(helm, mode)]
}

/// `example_tests! { name(helm) { body } }`: the body as two tests, `name::helm4` and
/// `name::helm3`, with `helm` the helm's name.
macro_rules! example_tests {
    ($($(#[$m:meta])* $name:ident($helm:ident) $body:block)*) => {
        $(mod $name {
            use super::*;
            fn check($helm: &'static str) $body
            $(#[$m])* #[test] fn helm4() { check("helm4"); }
            $(#[$m])* #[test] fn helm3() { check("helm3"); }
        })*
    };
}

example_tests! {
    /// prefect-server, default: one Deployment that migrates on start.
    prefect_server_default(h) {
        let o = example_render(h, "default");
        let out = ok(o);
        let err = stderr(o);
        assert!(
            err.contains("profile prefect-server (chosen by chart name"),
            "{h} default: stderr names the profile: {err}"
        );
        check_prefect_server_example(&out, false, &format!("{h} default"));
    }

    /// Separate services: the chart's own migration Job is replaced.
    prefect_server_separate_services(h) {
        let o = example_render(h, "separate");
        let out = ok(o);
        let err = stderr(o);
        assert!(
            err.contains("removed the chart's own migration hook Job")
                && err.contains("prefect-server-db-migrations"),
            "{h} separate: {err}"
        );
        check_prefect_server_example(&out, true, &format!("{h} separate"));
    }

    /// SQLite: exactly what this helm renders, and a note.
    prefect_server_sqlite_passes_through(h) {
        let o = example_render(h, "sqlite");
        let out = ok(o);
        let direct = ok(example_render(h, "sqlite-direct"));
        assert!(direct.contains("sqlite"), "{h} sqlite: the direct render is a SQLite one");
        assert!(
            out == direct,
            "{h} sqlite: a SQLite render passes through byte-identical to `{h} template`"
        );
        assert!(
            stderr(o).contains("no migration Job injected"),
            "{h} sqlite: {}",
            stderr(o)
        );
    }

    /// Customer-Managed 1.2.0.
    prefect_cloud_1_2_0(h) {
        let o = example_render(h, "cloud12");
        check_cloud(&ok(o), &stderr(o), true, &format!("{h} prefect-cloud 1.2.0"));
    }

    /// Broken Redis values: refused, naming the variable and the workload.
    prefect_cloud_broken_redis_values_are_refused(h) {
        let err = fails(example_render(h, "broken-redis"), 1);
        assert!(
            err.contains("PREFECT_CLOUD_REDIS_CACHE_URL")
                && err.contains("Deployment customer-managed-orion"),
            "{h} broken-redis: {err}"
        );
    }

    /// 0.8.2: no Redis requirement before 1.2.
    prefect_cloud_0_8_2(h) {
        let o = example_render(h, "cloud08");
        check_cloud(&ok(o), &stderr(o), false, &format!("{h} prefect-cloud 0.8.2"));
    }
}

/// HELM_BIN really chose the helm: the two versions print different bytes.
#[test]
fn helm_bin_chooses_the_helm() {
    assert_ne!(
        ok(example_render("helm4", "sqlite-direct")),
        ok(example_render("helm3", "sqlite-direct")),
        "helm 4 and helm 3 print different bytes (helm 4 adds blank lines): if they ever agree, this check proves nothing"
    );
}

/// ...and mean the same, with or without lockstep.
#[test]
fn helm4_and_helm3_renders_mean_the_same() {
    for mode in ["default", "separate", "cloud12", "cloud08"] {
        assert_eq!(
            docs(&ok(example_render("helm4", mode))),
            docs(&ok(example_render("helm3", mode))),
            "{mode}: helm 4 and helm 3 renders differ in content"
        );
    }
}

/// The example outputs validate; equal in content, so validating helm 4's covers helm 3's.
#[test]
fn example_outputs_validate() {
    let outs: Vec<String> = ["default", "separate", "cloud12", "cloud08"]
        .iter()
        .map(|m| ok(example_render("helm4", m)))
        .collect();
    validate_streams(
        "examples.yaml",
        &outs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

fn check_prefect_server_example(out: &str, separate: bool, ctx: &str) {
    let d = docs(out);
    let server =
        find(&d, "Deployment", "prefect-server").unwrap_or_else(|| panic!("{ctx}: no server"));
    let sc = container(server, "prefect-server");
    assert_eq!(
        switch_values(sc),
        ["false"],
        "{ctx}: server migrate-on-start"
    );
    let bg = find(&d, "Deployment", "prefect-server-background-services");
    assert_eq!(
        bg.is_some(),
        separate,
        "{ctx}: background services Deployment"
    );
    if let Some(bg) = bg {
        assert_eq!(
            switch_values(container(bg, "prefect-background-services")),
            ["false"],
            "{ctx}: background services migrate-on-start"
        );
    }
    let pg = find(&d, "StatefulSet", "prefect-server-postgresql")
        .unwrap_or_else(|| panic!("{ctx}: no postgresql"));
    for c in containers(pg) {
        assert!(
            switch_values(c).is_empty(),
            "{ctx}: postgresql gets no switch"
        );
    }
    assert!(
        find(&d, "Job", "prefect-server-db-migrations").is_none(),
        "{ctx}: chart's Job removed"
    );
    let jobs = lockstep_jobs(&d);
    assert_eq!(jobs.len(), 2, "{ctx}: gate + migration");
    let m = component(&jobs, "database-migration");
    assert_eq!(m.len(), 1, "{ctx}: one migration Job");
    let jc = job_container(m[0]);
    assert_eq!(jc["image"], sc["image"], "{ctx}: image");
    assert_eq!(
        jc["imagePullPolicy"], sc["imagePullPolicy"],
        "{ctx}: imagePullPolicy"
    );
    assert_eq!(env_without_switch(jc), env_without_switch(sc), "{ctx}: env");
    assert!(!env(jc).is_empty(), "{ctx}: the server has env");
    if separate {
        // The chart sets the switch itself here: the Job's env is the server's, unfiltered.
        assert_eq!(env(jc), env(sc), "{ctx}: env");
    }
    assert_eq!(
        str_map(&m[0]["metadata"]["annotations"])
            .get("helm.sh/hook")
            .map(String::as_str),
        Some("pre-install,pre-upgrade")
    );
    check_job_basics(m[0], 900, 1);
}

fn check_cloud(out: &str, err: &str, v12: bool, ctx: &str) {
    let d = docs(out);
    assert!(
        err.contains("removed the chart's own migration hook Job customer-managed-db-migrations"),
        "{ctx}: the chart rendered its own migration Job and lockstep removed it: {err}"
    );
    assert!(
        find(&d, "Job", "customer-managed-db-migrations").is_none(),
        "{ctx}: chart's Job removed"
    );
    let orion = find(&d, "Deployment", "customer-managed-orion")
        .unwrap_or_else(|| panic!("{ctx}: no orion"));
    let oc = container(orion, "orion");
    let image = oc["image"].as_str().unwrap();
    let jobs = lockstep_jobs(&d);
    assert_eq!(jobs.len(), 4, "{ctx}: three migrations and the gate");
    let gate = component(&jobs, "upgrade-gate");
    assert_eq!(gate.len(), 1, "{ctx}: one gate");
    let migrations = component(&jobs, "database-migration");
    let mut by_db = BTreeMap::new();
    for j in &migrations {
        let db = j["metadata"]["labels"]["lockstep.dev/migration"]
            .as_str()
            .unwrap()
            .to_owned();
        by_db.insert(db, *j);
    }
    assert_eq!(
        by_db.keys().map(String::as_str).collect::<Vec<_>>(),
        ["migrate-events", "migrate-nebula", "migrate-orion"],
        "{ctx}"
    );
    for (db, j) in &by_db {
        let dbname = db.strip_prefix("migrate-").unwrap();
        assert_eq!(
            j["metadata"]["name"].as_str(),
            Some(format!("customer-managed-{db}").as_str()),
            "{ctx}"
        );
        assert_eq!(
            step_argv(j),
            ["prefect-cloud", dbname, "database", "upgrade"],
            "{ctx}: {db}"
        );
        assert_eq!(
            env_without_switch(job_container(j)),
            env_without_switch(oc),
            "{ctx}: {db} has orion's env"
        );
        check_job_basics(j, 1800, 1);
    }
    for j in &jobs {
        assert_eq!(
            job_container(j)["image"].as_str(),
            Some(image),
            "{ctx}: every Job runs the orion image"
        );
        assert_eq!(
            j["metadata"]["namespace"], "customer-managed",
            "{ctx}: namespace"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"], "false",
            "{ctx}: {:?}: no Istio sidecar on the Job pod",
            j["metadata"]["name"]
        );
    }
    let oj = job_container(by_db["migrate-orion"]);
    for var in [
        "PREFECT_CLOUD_REDIS_CACHE_URL",
        "PREFECT_CLOUD_REDIS_CONCURRENCY_LEASES_URL",
    ] {
        if v12 {
            let e =
                env_value(oj, var).unwrap_or_else(|| panic!("{ctx}: the orion Job needs {var}"));
            assert!(
                e["value"].as_str().unwrap().starts_with("redis://"),
                "{ctx}: {var}"
            );
        } else {
            assert!(
                env_value(oc, var).is_none(),
                "{ctx}: 0.8.2 values set no {var}: the render must not need it"
            );
        }
    }
    // migrate-on-start off on every Deployment sharing the databases.
    for w in d.iter().filter(|w| w["kind"] == "Deployment") {
        for c in containers(w) {
            if let Some(e) = env_value(c, "PREFECT_CLOUD_DATABASE_MIGRATE_ON_START") {
                assert_eq!(e["value"], "false", "{ctx}: {:?}", w["metadata"]["name"]);
            }
        }
    }
    assert_eq!(
        env_value(oc, "PREFECT_CLOUD_DATABASE_MIGRATE_ON_START").unwrap()["value"],
        "false",
        "{ctx}"
    );
}

// ---------------------------------------------------------------------------
// 3. Profile selection

#[test]
fn profile_selection() {
    let ps = example("charts/prefect-server");
    let shown = ok(&lockstep()
        .args(["profiles", "show", "prefect-server"])
        .output()
        .unwrap());
    let parsed: Value = serde_yaml::from_str(&shown).unwrap();
    assert_eq!(parsed["name"], "prefect-server");
    assert!(
        shown.contains("wave: -10"),
        "the shown profile carries the Job wave: {shown}"
    );
    let file = write_scratch("prefect-server.profile.yaml", &shown);
    let changed = write_scratch(
        "prefect-server-wave20.profile.yaml",
        &shown.replace("wave: -10", "wave: -20"),
    );

    let outs = run_all(vec![
        render(&ps, &[]),
        render(&ps, &["--profile", file.to_str().unwrap()]),
        render(&ps, &["--profile", changed.to_str().unwrap()]),
        render(&data("unknown"), &[]),
        render(&data("app"), &["--release", "core"]),
        {
            let mut c = lockstep();
            c.arg("profiles");
            c
        },
    ]);

    // Chosen from the chart's name, and said so.
    let auto = ok(&outs[0]);
    assert!(
        stderr(&outs[0])
            .contains("profile prefect-server (chosen by chart name \"prefect-server\")"),
        "{}",
        stderr(&outs[0])
    );
    // `profiles show` parses back: the same output as the built-in.
    let from_file = ok(&outs[1]);
    assert!(
        !stderr(&outs[1]).contains("chosen by"),
        "an explicit --profile is not detected: {}",
        stderr(&outs[1])
    );
    assert!(
        auto == from_file,
        "--profile FILE (from `profiles show`) renders exactly like the built-in"
    );
    // ...and the file is really read.
    let d = docs(&ok(&outs[2]));
    let m = component(&lockstep_jobs(&d), "database-migration");
    assert_eq!(wave(m[0]), -20, "the profile file's job.wave is used");

    // An unknown chart: the profiles and the fix.
    let err = fails(&outs[3], 1);
    for want in [
        "nginx-lite",
        "prefect-server",
        "prefect-customer-managed",
        "generic",
        "--profile",
        "lockstep.dev/profile",
    ] {
        assert!(err.contains(want), "the message names {want:?}: {err}");
    }

    // The Chart.yaml annotation picks generic.
    let out = ok(&outs[4]);
    assert!(
        stderr(&outs[4]).contains("profile generic (chosen by annotation lockstep.dev/profile"),
        "{}",
        stderr(&outs[4])
    );
    let d = docs(&out);
    let m = component(&lockstep_jobs(&d), "database-migration");
    assert_eq!(m.len(), 1);
    assert_eq!(
        step_argv(m[0]),
        ["migrate"],
        "the generic profile's command"
    );
    assert_eq!(
        job_container(m[0])["image"],
        "example.org/core-app-api:1.4.2"
    );

    // `lockstep profiles` lists the built-ins.
    let list = ok(&outs[5]);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "prefect-server",
            "prefect-customer-managed",
            "temporal",
            "kong",
            "authentik",
            "sentry",
            "generic"
        ],
        "{list}"
    );
}

// ---------------------------------------------------------------------------
// 4. --api-workload

#[test]
fn api_workload_none_two_and_explicit() {
    let app = data("app");
    let outs = run_all(vec![
        render(&app, &["--release", "core", "--set", "role=web"]),
        render(&app, &["--release", "core", "--set", "second=true"]),
        render(
            &app,
            &[
                "--release",
                "core",
                "--set",
                "second=true",
                "--api-workload",
                "Deployment/core-worker:app",
            ],
        ),
        render(
            &app,
            &[
                "--release",
                "core",
                "--set",
                "second=true",
                "--api-workload",
                "Deployment/core-worker:nope",
            ],
        ),
    ]);

    let err = fails(&outs[0], 1);
    assert!(
        err.contains("no API workload found")
            && err.contains("Deployment/core-api")
            && err.contains("lockstep.dev/role=api")
            && err.contains("--api-workload"),
        "{err}"
    );

    let err = fails(&outs[1], 1);
    assert!(
        err.contains("2 workloads match")
            && err.contains("core-api")
            && err.contains("core-worker")
            && err.contains("--api-workload"),
        "{err}"
    );

    let out = ok(&outs[2]);
    let d = docs(&out);
    let worker = find(&d, "Deployment", "core-worker").unwrap();
    let jobs = lockstep_jobs(&d);
    let m = component(&jobs, "database-migration");
    assert_eq!(m.len(), 1);
    let jc = job_container(m[0]);
    assert_eq!(
        jc["image"], "example.org/core-app-worker:1.4.2",
        "the named workload's image, not the first one's"
    );
    assert_eq!(env(jc), env(container(worker, "app")));
    assert_eq!(m[0]["metadata"]["name"], "core-migrate-migrate");
    let f = write_scratch("api-workload-explicit.yaml", &out);
    validate(&[&f]);

    let err = fails(&outs[3], 1);
    assert!(
        err.contains("\"nope\"") && err.contains("containers: app"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// 5. Phases

#[test]
fn sync_phase_moves_dependencies_and_presync_warns() {
    let input = std::fs::read(fixture("prefect-server-2026.8.18172642--bundled-pg.yaml")).unwrap();
    let outs = run_all_stdin(vec![
        (
            inject(&["--profile", "prefect-server", "--phase", "sync"]),
            input.clone(),
        ),
        (inject(&["--profile", "prefect-server"]), input.clone()),
    ]);
    let in_docs = docs(std::str::from_utf8(&input).unwrap());
    let deps = [
        ("Secret", "prefect-server-postgresql-connection"),
        ("ServiceAccount", "prefect-server"),
    ];

    // sync
    let sync = ok(&outs[0]);
    let d = docs(&sync);
    let jobs = lockstep_jobs(&d);
    assert_eq!(jobs.len(), 2);
    let mut job_waves = Vec::new();
    for j in &jobs {
        let w = wave(j);
        assert!(w < 0, "a negative wave: {w}");
        // The gate stays in PreSync (pre-install,pre-upgrade) in both phases: it runs
        // before anything of the release is applied.
        let phase = if j["metadata"]["labels"]["app.kubernetes.io/component"] == "upgrade-gate" {
            "presync"
        } else {
            "sync"
        };
        assert_eq!(
            str_map(&j["metadata"]["annotations"]),
            hook_annotations(phase, w),
            "{:?}",
            j["metadata"]["name"]
        );
        job_waves.push(w);
    }
    let first_job = *job_waves.iter().min().unwrap();
    for (kind, name) in deps {
        let before = find(&in_docs, kind, name).unwrap();
        assert!(
            before["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"].is_null(),
            "{kind}/{name} had no wave"
        );
        let after = find(&d, kind, name).unwrap_or_else(|| panic!("{kind}/{name} kept"));
        assert!(
            wave(after) < first_job,
            "{kind}/{name} at wave {} must come before the Jobs ({first_job})",
            wave(after)
        );
        let mut stripped = after.clone();
        let meta = stripped["metadata"].as_mapping_mut().unwrap();
        let ann = meta
            .get_mut("annotations")
            .unwrap()
            .as_mapping_mut()
            .unwrap();
        ann.remove("argocd.argoproj.io/sync-wave");
        if ann.is_empty() {
            meta.remove("annotations");
        }
        assert_eq!(&stripped, before, "{kind}/{name}: only the wave is added");
    }
    // The bundled database (profile database.bundled) comes up before the Jobs too:
    // on a first install the migration needs a running database to migrate.
    for (kind, name) in [
        ("StatefulSet", "prefect-server-postgresql"),
        ("Secret", "prefect-server-postgresql"),
        ("Service", "prefect-server-postgresql"),
    ] {
        let doc = find(&d, kind, name).unwrap_or_else(|| panic!("{kind}/{name} kept"));
        assert!(
            wave(doc) < first_job,
            "{kind}/{name} at wave {} must come before the Jobs ({first_job})",
            wave(doc)
        );
    }
    // What neither the Job nor the database needs stays where it was.
    for (kind, name) in [
        ("Service", "prefect-server"),
        ("Deployment", "prefect-server"),
    ] {
        assert!(
            find(&d, kind, name).unwrap()["metadata"]["annotations"]
                ["argocd.argoproj.io/sync-wave"]
                .is_null(),
            "{kind}/{name} must keep its wave"
        );
    }
    assert!(
        stderr(&outs[0]).contains("sync phase"),
        "{}",
        stderr(&outs[0])
    );

    // presync: the Jobs say what a first install waits for, and stderr explains.
    let pre = ok(&outs[1]);
    let d = docs(&pre);
    let m = component(&lockstep_jobs(&d), "database-migration")[0];
    let note = m["metadata"]["annotations"]["lockstep.dev/first-install"]
        .as_str()
        .unwrap_or_else(|| panic!("no first-install annotation"));
    for (kind, name) in deps {
        assert!(note.contains(&format!("{kind}/{name}")), "{note}");
        assert!(
            find(&d, kind, name).unwrap()["metadata"]["annotations"]
                ["argocd.argoproj.io/sync-wave"]
                .is_null(),
            "presync moves nothing"
        );
    }
    let err = stderr(&outs[1]);
    assert!(
        err.contains("first install") && err.contains("--phase sync"),
        "{err}"
    );
    assert_eq!(
        str_map(&m["metadata"]["annotations"])
            .get("argocd.argoproj.io/hook")
            .map(String::as_str),
        Some("PreSync")
    );

    let f = write_scratch("phase-sync.yaml", &sync);
    validate(&[&f]);
}

// ---------------------------------------------------------------------------
// 6. --job-template, and values that try to inject YAML

#[test]
fn job_template_override_and_misspelt_field() {
    let default = std::fs::read_to_string(repo().join("templates/job.yaml.hbs")).unwrap();
    assert_eq!(default.matches("restartPolicy: Never").count(), 1);
    assert_eq!(default.matches("backoffLimit:").count(), 1);
    let custom = write_scratch(
        "custom-job.yaml.hbs",
        &default.replace(
            "restartPolicy: Never",
            "restartPolicy: Never\n      priorityClassName: \"core-test-priority\"",
        ),
    );
    let misspelt = write_scratch(
        "misspelt-job.yaml.hbs",
        &default.replace("backoffLimit:", "backofLimit:"),
    );
    let input = std::fs::read(fixture("prefect-server-2026.8.18172642--replicas-3.yaml")).unwrap();
    let outs = run_all_stdin(vec![
        (
            inject(&[
                "--profile",
                "prefect-server",
                "--job-template",
                custom.to_str().unwrap(),
            ]),
            input.clone(),
        ),
        (
            inject(&[
                "--profile",
                "prefect-server",
                "--job-template",
                misspelt.to_str().unwrap(),
            ]),
            input.clone(),
        ),
        (inject(&["--profile", "prefect-server"]), input.clone()),
    ]);
    let d = docs(&ok(&outs[0]));
    let jobs = lockstep_jobs(&d);
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        assert_eq!(
            j["spec"]["template"]["spec"]["priorityClassName"], "core-test-priority",
            "the override is used"
        );
    }
    let err = fails(&outs[1], 1);
    assert!(
        err.contains("spec.backofLimit"),
        "the misspelt field is named: {err}"
    );
    let d = docs(&ok(&outs[2]));
    for j in lockstep_jobs(&d) {
        assert!(
            j["spec"]["template"]["spec"]["priorityClassName"].is_null(),
            "the default template sets no priority class"
        );
    }
}

#[test]
fn env_values_cannot_inject_yaml() {
    let evil = [
        "x\nkind: Secret",
        "say \"hi\" and 'bye'",
        "# not a comment",
        "key: value",
        "a: b\nc: d",
        "{a: b}",
        "- item\n- other",
        "x\"\nkind: Secret\n# \": {a: b}",
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: evil}",
        "true",
        "0123",
        "",
    ];
    let env_in: Vec<serde_json::Value> = evil
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"name": format!("EVIL_{i}"), "value": v}))
        .collect();
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "evil-api",
            "labels": {
                "lockstep.dev/role": "api",
                "app.kubernetes.io/instance": "evil",
                "app.kubernetes.io/version": "2.1.0",
                "helm.sh/chart": "evil-app-0.1.0",
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app": "evil"}},
            "template": {
                "metadata": {"labels": {"app": "evil"}},
                "spec": {"containers": [{"name": "api", "image": "example.org/evil:2.1.0", "env": env_in}]},
            },
        },
    });
    let input = format!("---\n{}", serde_yaml::to_string(&deployment).unwrap());
    let o = run_with_stdin(inject(&["--profile", "generic"]), input.as_bytes());
    let out = ok(&o);
    assert!(
        out.starts_with(&input),
        "the Deployment passes through untouched"
    );
    let d = docs(&out);
    let heads: Vec<_> = d.iter().map(|x| head(x).unwrap()).collect();
    assert_eq!(
        heads,
        vec![
            ("Deployment".to_owned(), "evil-api".to_owned()),
            ("Job".to_owned(), "evil-lockstep-gate".to_owned()),
            ("Job".to_owned(), "evil-migrate-migrate".to_owned()),
            ("ConfigMap".to_owned(), "evil-lockstep".to_owned()),
            ("ConfigMap".to_owned(), "evil-lockstep-backup".to_owned()),
        ],
        "no document was added by a value"
    );
    let job = find(&d, "Job", "evil-migrate-migrate").unwrap();
    let top: Vec<&str> = job
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        top.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["apiVersion", "kind", "metadata", "spec"])
    );
    assert_eq!(job["kind"], "Job");
    let jc = job_container(job);
    let got = env(jc);
    assert_eq!(got.len(), evil.len(), "no env entry added or lost");
    for (i, (e, want)) in got.iter().zip(evil).enumerate() {
        assert_eq!(e["name"].as_str(), Some(format!("EVIL_{i}").as_str()));
        assert_eq!(
            e["value"].as_str(),
            Some(want),
            "EVIL_{i} arrives as the same plain string"
        );
        assert_eq!(
            e.as_mapping().unwrap().len(),
            2,
            "EVIL_{i}: only name and value"
        );
    }
    let cmap = jc.as_mapping().unwrap();
    assert!(
        !cmap.contains_key("kind") && !cmap.contains_key("a") && !cmap.contains_key("key"),
        "no key leaked into the container"
    );
    let f = write_scratch("evil.yaml", &out);
    validate(&[&f]);
}

// ---------------------------------------------------------------------------
// 7. helm missing or failing

#[test]
fn helm_missing_or_failing() {
    let app = data("app");
    let empty_path = scratch("core-empty-path");
    let mut missing_bin = render(&app, &["--release", "core"]);
    missing_bin.env("HELM_BIN", repo().join("target/no-such-dir/helm"));
    let mut not_on_path = render(&app, &["--release", "core"]);
    not_on_path.env_remove("HELM_BIN").env("PATH", &empty_path);
    let outs = run_all(vec![
        missing_bin,
        not_on_path,
        render(&app, &["--release", "core", "--set", "fail=true"]),
    ]);

    for (what, o) in [
        ("HELM_BIN pointing nowhere", &outs[0]),
        ("no helm on PATH", &outs[1]),
    ] {
        let err = fails(o, 1);
        for want in ["HELM_BIN", "PATH", "https://helm.sh/docs/intro/install"] {
            assert!(
                err.contains(want),
                "{what}: the message names {want:?}: {err}"
            );
        }
    }
    assert!(
        stderr(&outs[0]).contains("no-such-dir/helm"),
        "names the path it tried: {}",
        stderr(&outs[0])
    );

    let err = fails(&outs[2], 1);
    assert!(err.contains("helm template failed"), "{err}");
    assert!(
        err.contains("core-app: the value `mustSet` is required (core test)"),
        "helm's own message: {err}"
    );
}

// ---------------------------------------------------------------------------
// 8. Usage

#[test]
fn help_and_usage_errors() {
    let outs = run_all(vec![
        {
            let mut c = lockstep();
            c.arg("--help");
            c
        },
        {
            let mut c = lockstep();
            c.args(["render", "--help"]);
            c
        },
        {
            let mut c = lockstep();
            c.args(["inject", "--help"]);
            c
        },
        {
            let mut c = lockstep();
            c.args(["render", "--no-such-flag", "examples/charts/prefect-server"]);
            c
        },
    ]);
    for (what, o) in [
        ("lockstep --help", &outs[0]),
        ("render --help", &outs[1]),
        ("inject --help", &outs[2]),
    ] {
        let text = ok(o);
        for want in [
            "Exit codes",
            "0 success",
            "1 error",
            "2 usage",
            "3 the upgrade gate refused",
        ] {
            assert!(text.contains(want), "{what} mentions {want:?}:\n{text}");
        }
    }
    let err = fails(&outs[3], 2);
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn long_release_names_still_give_valid_job_names() {
    let release = format!("prefect-{}", "x".repeat(45)); // 53: helm's maximum
    assert_eq!(release.len(), 53);
    let input = std::fs::read(fixture("prefect-server-2026.8.18172642--replicas-3.yaml")).unwrap();
    let o = run_with_stdin(
        inject(&["--profile", "prefect-server", "--release", &release]),
        &input,
    );
    let d = docs(&ok(&o));
    let jobs = lockstep_jobs(&d);
    assert_eq!(jobs.len(), 2);
    let names: BTreeSet<&str> = jobs
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "distinct names: {names:?}");
    for n in &names {
        assert!(
            is_dns_label(n),
            "{n:?} ({} characters) is a DNS-1123 label of at most 63",
            n.len()
        );
        assert!(
            n.starts_with("prefect-x"),
            "{n:?} keeps the release's start"
        );
    }
    assert!(
        names.iter().any(|n| n.ends_with("-migrate-database")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("-lockstep-gate")),
        "{names:?}"
    );
}
