//! Apps: the built-in profiles temporal, kong, authentik and sentry on real renders of
//! their charts (`tests/apps/`, provenance in its README), on variants of those renders
//! (other release names and values, made by transforming the renders: no chart can be
//! fetched here), and the profile format's parts that these apps need: where a step runs,
//! first-install and post-rollout phases, the entrypoint, matching, warnings.
//! The steps' shell wrappers are executed for real by `sh`, with stub tools on PATH.
//!
//! One test per render and per behaviour; `check_render` is what every render must give.

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

fn fixture_text(app: &str, file: &str) -> String {
    std::fs::read_to_string(repo().join("tests/apps").join(app).join(file)).expect("fixture")
}

/// `lockstep inject ARGS` with `text` on stdin (add expectations, then `.run()`).
fn inject(text: &str, args: &[&str]) -> Test {
    Test::new().arg("inject").args(args).stdin(text)
}

/// The documents of a stream as raw text, with kind and name.
fn raw_docs(text: &str) -> Vec<(String, String, String)> {
    let s = lockstep::stream::split(text).expect("a stream");
    s.docs
        .iter()
        .filter_map(|d| {
            let h = d.head.as_ref()?;
            Some((h.kind.to_string(), h.name.to_string(), d.raw.to_string()))
        })
        .collect()
}

/// What an app's render must give: the chart Jobs removed, and per migration
/// (Job name suffix) the image and env names it must carry.
struct Expect<'a> {
    removed: &'a [&'a str],
    jobs: &'a [(&'a str, &'a str, &'a [&'a str])],
}

fn container(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]["containers"][0]
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn env_of(c: &Value) -> BTreeMap<String, Value> {
    c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn env_value(job: &Value, name: &str) -> Option<String> {
    env_of(container(job))
        .get(name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Checks a render: only the listed chart Jobs removed, every other document
/// byte-identical and in order, lockstep's Jobs with the expected images and env,
/// and the whole output valid against the Kubernetes schema. Returns the Jobs.
fn check_render(input: &str, out: &str, release: &str, e: &Expect, what: &str) -> Vec<Value> {
    let before = raw_docs(input);
    let after = raw_docs(out);
    let kept: Vec<_> = before
        .iter()
        .filter(|(k, n, _)| !(k == "Job" && e.removed.contains(&n.as_str())))
        .collect();
    assert_eq!(
        before.len() - kept.len(),
        e.removed.len(),
        "{what}: the chart's migration Jobs {:?} are in the render",
        e.removed
    );
    for (i, doc) in kept.iter().enumerate() {
        assert_eq!(
            &after[i], *doc,
            "{what}: document {i} ({} {}) is written back byte for byte",
            doc.0, doc.1
        );
    }
    let added = &after[kept.len()..];
    for (k, n, _) in added {
        assert!(
            k == "Job" || k == "ConfigMap",
            "{what}: lockstep adds only Jobs and the record: {k} {n}"
        );
    }
    let d = docs(out);
    let jobs = e.jobs.iter().map(|(suffix, image, env)| {
        let name = format!("{release}-{suffix}");
        let job = find(&d, "Job", &name)
            .unwrap_or_else(|| panic!("{what}: no Job {name}; added: {added:?}"));
        assert_eq!(
            container(job)["image"].as_str(),
            Some(*image),
            "{what}: {name} image"
        );
        let names = env_names(container(job));
        for want in *env {
            assert!(
                names.iter().any(|n| n == want),
                "{what}: {name} carries {want}: {names:?}"
            );
        }
        job.clone()
    });
    let jobs = jobs.collect();
    validate_stream(out, what);
    jobs
}

/// The stream, validated strictly against the Kubernetes schema.
fn validate_stream(out: &str, what: &str) {
    let f = scratch("apps").join(format!("{}.yaml", what.replace(['/', ' '], "_")));
    std::fs::write(&f, out).unwrap();
    validate(&[&f]);
}

fn kong_removed(release: &str) -> Vec<String> {
    ["init", "pre-upgrade", "post-upgrade"]
        .iter()
        .map(|s| format!("{release}-kong-{s}-migrations"))
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn hook_weight(j: &Value) -> &str {
    j["metadata"]["annotations"]["helm.sh/hook-weight"]
        .as_str()
        .unwrap()
}

// ---------------------------------------------------------------------------
// temporal: each store migrated in the admin-tools container of the chart's Job

/// A temporal render: the chart's schema Job replaced by two admin-tools migrations
/// (default, visibility) with the store's plugin and database, no warning; returns them.
fn temporal(file: &str, release: &str, fullname: &str, plugin: &str, tag: &str) -> Vec<Value> {
    let input = fixture_text("temporal", file);
    let ran = inject(&input, &["--profile", "temporal", "--release", release])
        .stderr_lacks("WARNING")
        .run();
    let admin = format!("temporalio/admin-tools:{tag}");
    let sql: &[&str] = &[
        "SQL_PLUGIN",
        "SQL_HOST",
        "SQL_PORT",
        "SQL_DATABASE",
        "SQL_USER",
        "SQL_PASSWORD",
    ];
    let removed = format!("{fullname}-schema");
    let jobs = &[
        ("migrate-default", &*admin, sql),
        ("migrate-visibility", &*admin, sql),
    ];
    let e = Expect {
        removed: &[&removed],
        jobs,
    };
    let jobs = check_render(&input, &ran.stdout, release, &e, file);
    assert_eq!(env_value(&jobs[0], "SQL_PLUGIN").as_deref(), Some(plugin));
    assert_eq!(
        env_value(&jobs[0], "SQL_DATABASE").as_deref(),
        Some("temporal")
    );
    assert_eq!(
        env_value(&jobs[1], "SQL_DATABASE").as_deref(),
        Some("temporal_visibility")
    );
    jobs
}

fn password_secret(job: &Value) -> String {
    env_of(container(job))["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Release temporal: the password comes from the store's Secret; the Jobs run after the
/// store Secrets (hooks of weight -1).
fn temporal_with_store_secret(file: &str, plugin: &str, tag: &str) {
    let jobs = temporal(file, "temporal", "temporal", plugin, tag);
    assert_eq!(password_secret(&jobs[0]), "temporal-default-store");
    assert_eq!((hook_weight(&jobs[0]), hook_weight(&jobs[1])), ("0", "1"));
}

#[test]
fn temporal_1_6_postgres() {
    temporal_with_store_secret("temporal-1.6.0--postgres.yaml", "postgres12", "1.31.2");
}

/// The password comes from the existing Secret; no store Secret to wait for.
#[test]
fn temporal_1_6_existing_secret() {
    let file = "temporal-1.6.0--existing-secret-replicas.yaml";
    let jobs = temporal(file, "tmprl", "tmprl-temporal", "postgres12", "1.31.2");
    assert_eq!(password_secret(&jobs[0]), "temporal-db");
    assert_eq!(hook_weight(&jobs[0]), "-10");
}

#[test]
fn temporal_1_3_mysql() {
    temporal_with_store_secret("temporal-1.3.0--mysql.yaml", "mysql8", "1.31.0");
}

// ---------------------------------------------------------------------------
// kong: bootstrap or up through the entrypoint, finish after the rollout

/// A kong render: the chart's three migration Jobs replaced by `migrate-kong` (PreSync,
/// pre-install/upgrade) and `finish` (PostSync, post-install/upgrade), both through the
/// image's entrypoint (args only, as the chart's own Jobs).
fn kong(file: &str, release: &str, image: &str) {
    let input = fixture_text("kong", file);
    let ran = inject(&input, &["--profile", "kong", "--release", release]).run();
    let removed = kong_removed(release);
    let pg: &[&str] = &["KONG_DATABASE", "KONG_PG_HOST", "KONG_PG_PASSWORD"];
    let jobs = &[("migrate-kong", image, pg), ("finish", image, pg)];
    let e = Expect {
        removed: &refs(&removed),
        jobs,
    };
    let jobs = check_render(&input, &ran.stdout, release, &e, file);
    let hooks = |j: &Value| {
        let a = &j["metadata"]["annotations"];
        (
            a["argocd.argoproj.io/hook"].clone(),
            a["helm.sh/hook"].clone(),
        )
    };
    assert_eq!(
        hooks(&jobs[0]),
        ("PreSync".into(), "pre-install,pre-upgrade".into())
    );
    assert_eq!(
        hooks(&jobs[1]),
        ("PostSync".into(), "post-install,post-upgrade".into())
    );
    for j in &jobs {
        assert!(
            container(j).get("command").is_none(),
            "{file}: {:?}",
            container(j)
        );
    }
}

#[test]
fn kong_3_4_postgres() {
    kong("kong-3.4.1--postgres.yaml", "kong", "kong:3.9");
}

#[test]
fn kong_3_4_pinned_tag() {
    kong("kong-3.4.1--pinned-tag-replicas.yaml", "edge", "kong:3.9.1");
}

#[test]
fn kong_3_0_postgres() {
    kong("kong-3.0.2--postgres.yaml", "kong", "kong:3.9");
}

// ---------------------------------------------------------------------------
// authentik: `ak migrate` with envFrom, through the entrypoint

/// An authentik render: one migration, through the image's entrypoint, with the server's
/// envFrom Secret; the database settings found through envFrom (or global.env): no warning.
fn authentik(file: &str, release: &str, tag: &str, secret: &str) {
    let input = fixture_text("authentik", file);
    let ran = inject(&input, &["--profile", "authentik", "--release", release])
        .stderr_lacks("WARNING")
        .run();
    let image = format!("ghcr.io/goauthentik/server:{tag}");
    let e = Expect {
        removed: &[],
        jobs: &[("migrate-migrate", &image, &[])],
    };
    let jobs = check_render(&input, &ran.stdout, release, &e, file);
    let c = container(&jobs[0]);
    assert!(c.get("command").is_none(), "{file}: keeps the entrypoint");
    assert_eq!(step_argv(&jobs[0]), ["migrate"], "{file}");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"].as_str(), Some(secret));
}

#[test]
fn authentik_2026_8_external_pg() {
    authentik(
        "authentik-2026.8.0--external-pg.yaml",
        "authentik",
        "2026.8.0",
        "authentik",
    );
}

#[test]
fn authentik_2026_8_existing_secret() {
    let file = "authentik-2026.8.0--existing-secret-replicas.yaml";
    authentik(file, "sso", "2026.8.0", "sso-authentik-config");
}

#[test]
fn authentik_2025_12_external_pg() {
    authentik(
        "authentik-2025.12.4--external-pg.yaml",
        "authentik",
        "2025.12.4",
        "authentik",
    );
}

// ---------------------------------------------------------------------------
// sentry: ClickHouse in the snuba image, then Postgres; snuba-db-init stays

/// A sentry render (no --release: it comes from the pods' `release` label): the chart's
/// snuba-migrate and db-init replaced by snuba then sentry migrations; snuba-db-init and
/// db-check stay; no warning.
fn sentry(file: &str, release: &str, fullname: &str, tag: &str) {
    let input = fixture_text("sentry", file);
    let ran = inject(&input, &["--profile", "sentry"])
        .stderr_lacks("WARNING")
        .run();
    let removed = [
        format!("{fullname}-snuba-migrate"),
        format!("{fullname}-db-init"),
    ];
    let (snuba, sentry) = (
        format!("getsentry/snuba:{tag}"),
        format!("getsentry/sentry:{tag}"),
    );
    let jobs: &[(&str, &str, &[&str])] = &[
        (
            "migrate-snuba",
            &snuba,
            &["SNUBA_SETTINGS", "DEFAULT_BROKERS"],
        ),
        (
            "migrate-sentry",
            &sentry,
            &["POSTGRES_HOST", "POSTGRES_PASSWORD", "SENTRY_SECRET_KEY"],
        ),
    ];
    let e = Expect {
        removed: &refs(&removed),
        jobs,
    };
    let jobs = check_render(&input, &ran.stdout, release, &e, file);
    let env_from = &container(&jobs[0])["envFrom"][0]["secretRef"]["name"];
    assert_eq!(
        env_from.as_str(),
        Some(format!("{fullname}-snuba-env").as_str())
    );
    assert_eq!(
        step_argv(&jobs[0]),
        ["snuba", "migrations", "migrate", "--force"]
    );
    let d = docs(&ran.stdout);
    for stays in ["snuba-db-init", "db-check"] {
        let name = format!("{fullname}-{stays}");
        assert!(find(&d, "Job", &name).is_some(), "{file}: {stays} stays");
    }
}

#[test]
fn sentry_25_20_external_services() {
    sentry(
        "sentry-25.20.0--external-services.yaml",
        "sentry",
        "sentry",
        "24.9.0",
    );
}

#[test]
fn sentry_25_20_pre_upgrade_hooks() {
    sentry(
        "sentry-25.20.0--pre-upgrade-hooks.yaml",
        "errors",
        "errors-sentry",
        "24.9.0",
    );
}

#[test]
fn sentry_25_19_external_services() {
    sentry(
        "sentry-25.19.0--external-services.yaml",
        "sentry",
        "sentry",
        "24.8.0",
    );
}

// ---------------------------------------------------------------------------
// Variants: other release names and values, by transforming the renders

/// A fixture with its release renamed (names, instance and release labels) or values
/// changed, by replacing text; every replacement must apply.
fn variant(app: &str, file: &str, pairs: &[(&str, &str)]) -> String {
    let mut t = fixture_text(app, file);
    for (a, b) in pairs {
        assert!(t.contains(a), "{file} holds {a:?}");
        t = t.replace(a, b);
    }
    t
}

/// kong: release edge → gw, namespace gateway → api, tag 3.9.1 → 3.8.4, another host.
#[test]
fn kong_variant_with_another_release_namespace_tag_and_host() {
    let kong = variant(
        "kong",
        "kong-3.4.1--pinned-tag-replicas.yaml",
        &[
            ("edge-kong", "gw-kong"),
            ("\"edge\"", "\"gw\""),
            ("namespace:  gateway", "namespace:  api"),
            ("kong:3.9.1", "kong:3.8.4"),
            ("postgres.data.svc", "pg-ha.db.svc"),
        ],
    );
    let out = inject(&kong, &["--profile", "kong", "--release", "gw"])
        .run()
        .stdout;
    let removed = kong_removed("gw");
    let jobs = &[("migrate-kong", "kong:3.8.4", &["KONG_PG_HOST"][..])];
    let e = Expect {
        removed: &refs(&removed),
        jobs,
    };
    let jobs = check_render(&kong, &out, "gw", &e, "kong variant");
    assert_eq!(
        env_value(&jobs[0], "KONG_PG_HOST").as_deref(),
        Some("pg-ha.db.svc")
    );
    assert_eq!(jobs[0]["metadata"]["namespace"].as_str(), Some("api"));
}

/// temporal: release tmprl → wf, admin-tools pinned apart from the server.
#[test]
fn temporal_variant_with_another_release_and_admin_tools_image() {
    let admin = "registry.local/admin-tools:1.31.2-custom";
    let temporal = variant(
        "temporal",
        "temporal-1.6.0--existing-secret-replicas.yaml",
        &[
            ("tmprl-temporal", "wf-temporal"),
            ("instance: tmprl", "instance: wf"),
            ("temporalio/admin-tools:1.31.2", admin),
            ("temporal_visibility", "wf_visibility"),
        ],
    );
    let out = inject(&temporal, &["--profile", "temporal", "--release", "wf"])
        .run()
        .stdout;
    let jobs = &[
        ("migrate-default", admin, &["SQL_HOST"][..]),
        ("migrate-visibility", admin, &["SQL_HOST"][..]),
    ];
    let e = Expect {
        removed: &["wf-temporal-schema"],
        jobs,
    };
    let jobs = check_render(&temporal, &out, "wf", &e, "temporal variant");
    assert_eq!(
        env_value(&jobs[1], "SQL_DATABASE").as_deref(),
        Some("wf_visibility")
    );
}

/// authentik: release sso → idp, another database host through global.env.
#[test]
fn authentik_variant_with_another_release() {
    let authentik = variant(
        "authentik",
        "authentik-2026.8.0--existing-secret-replicas.yaml",
        &[
            ("sso-authentik", "idp-authentik"),
            ("instance: \"sso\"", "instance: \"idp\""),
            ("name: sso-pg", "name: idp-pg"),
        ],
    );
    let out = inject(&authentik, &["--profile", "authentik", "--release", "idp"])
        .run()
        .stdout;
    let image = "ghcr.io/goauthentik/server:2026.8.0";
    let jobs = &[(
        "migrate-migrate",
        image,
        &["AUTHENTIK_POSTGRESQL__PASSWORD"][..],
    )];
    let e = Expect { removed: &[], jobs };
    let jobs = check_render(&authentik, &out, "idp", &e, "authentik variant");
    let env_from = &container(&jobs[0])["envFrom"][0]["secretRef"]["name"];
    assert_eq!(env_from.as_str(), Some("idp-authentik-config"));
}

/// sentry: release errors → ops, snuba pinned to its own tag.
#[test]
fn sentry_variant_with_another_release_and_snuba_tag() {
    let sentry = variant(
        "sentry",
        "sentry-25.20.0--pre-upgrade-hooks.yaml",
        &[
            ("errors-sentry", "ops-sentry"),
            ("release: \"errors\"", "release: \"ops\""),
            ("getsentry/snuba:24.9.0", "getsentry/snuba:24.9.1"),
        ],
    );
    let out = inject(&sentry, &["--profile", "sentry"]).run().stdout;
    let jobs = &[
        (
            "migrate-snuba",
            "getsentry/snuba:24.9.1",
            &["SNUBA_SETTINGS"][..],
        ),
        (
            "migrate-sentry",
            "getsentry/sentry:24.9.0",
            &["POSTGRES_HOST"][..],
        ),
    ];
    let e = Expect {
        removed: &["ops-sentry-snuba-migrate", "ops-sentry-db-init"],
        jobs,
    };
    check_render(&sentry, &out, "ops", &e, "sentry variant");
}

// ---------------------------------------------------------------------------
// Version rules on the apps, at render time: one test per rule case

/// `inject --profile APP --release RELEASE --from FROM` on a fixture: passes (exit 0),
/// or is refused (exit 3) with exactly this message on stderr.
fn upgrade_rule(app: &str, file: &str, release: &str, from: &str, refusal: Option<&str>) {
    let input = fixture_text(app, file);
    let t = inject(
        &input,
        &["--profile", app, "--release", release, "--from", from],
    );
    match refusal {
        None => t.run(),
        Some(message) => t.status(3).stderr(message).run(),
    };
}

macro_rules! upgrade_rules {
    ($($(#[$m:meta])* $name:ident: $app:literal $file:tt $release:literal from $from:literal => $refusal:expr,)*) => {
        $($(#[$m])* #[test] fn $name() { upgrade_rule($app, $file, $release, $from, $refusal); })*
    };
}

const KONG_PG: &str = "kong-3.4.1--postgres.yaml";
const AUTHENTIK_2026: &str = "authentik-2026.8.0--external-pg.yaml";
const SENTRY_25_20: &str = "sentry-25.20.0--external-services.yaml";
const TEMPORAL_PG: &str = "temporal-1.6.0--postgres.yaml";

upgrade_rules! {
    /// The floating tag 3.9 is any 3.9.x: never a downgrade of 3.9.1.
    kong_floating_tag_over_3_9_1: "kong" KONG_PG "kong" from "3.9.1" => None,
    kong_from_the_previous_line: "kong" KONG_PG "kong" from "3.8.2" => None,
    kong_skipping_a_line: "kong" KONG_PG "kong" from "3.7.1" => Some(
"lockstep: error: refusing to upgrade kong from 3.7.1 to 3.9.0: that skips 1 release line.
  rule: kong upgrades one listed release line at a time (2.8 → 3.4 → 3.5 → 3.6 → 3.7 → 3.8 → 3.9 → 3.10); direct jumps: 2.8 → 3.4, 3.4 → 3.10
  path: 3.7.1 → 3.8.x → 3.9.x
  now:  upgrade to 3.8 first: `lockstep bump --to 3.8.0` (or pin the chart to 3.8.0), sync, then continue
"),
    kong_pinned_tag_downgrade: "kong" "kong-3.4.1--pinned-tag-replicas.yaml" "edge" from "3.9.2" => Some(
"lockstep: error: refusing to downgrade kong from 3.9.2 to 3.9.1.
  rule: downgrades are refused by default; the database schema of 3.9.2 may not work with 3.9.1
  fix:  downgrades are not supported by this application: restore the backup taken before the upgrade
"),
    /// authentik: even-month lines, from the latest patch.
    authentik_from_the_previous_line: "authentik" AUTHENTIK_2026 "authentik" from "2026.6.1" => None,
    authentik_skipping_a_line: "authentik" AUTHENTIK_2026 "authentik" from "2026.4.2" => Some(
"lockstep: error: refusing to upgrade authentik from 2026.4.2 to 2026.8.0: that skips 1 release line.
  rule: authentik upgrades one release (YEAR.MONTH) at a time, in date order (2025.10 → 2025.12 → 2026.2 → 2026.4 → 2026.6 → 2026.8); the next line only from the latest patch of the current one
  path: 2026.4.2 → 2026.6.x → 2026.8.x
  now:  upgrade to 2026.6 first: `lockstep bump --to 2026.6.0` (or pin the chart to 2026.6.0), sync, then continue
"),
    authentik_across_the_year: "authentik" "authentik-2025.12.4--external-pg.yaml" "authentik" from "2025.10.3" => None,
    authentik_patch_downgrade: "authentik" AUTHENTIK_2026 "authentik" from "2026.8.1" => Some(
"lockstep: error: refusing to downgrade authentik from 2026.8.1 to 2026.8.0.
  rule: downgrades are refused by default; the database schema of 2026.8.1 may not work with 2026.8.0
  fix:  downgrades are not supported by this application: restore the backup taken before the upgrade
"),
    /// sentry: any later release, never past a hard stop.
    sentry_from_the_hard_stop: "sentry" SENTRY_25_20 "sentry" from "24.8.0" => None,
    sentry_up_to_the_hard_stop: "sentry" "sentry-25.19.0--external-services.yaml" "sentry" from "24.2.0" => None,
    sentry_past_a_hard_stop: "sentry" SENTRY_25_20 "sentry" from "24.7.0" => Some(
"lockstep: error: refusing to upgrade sentry from 24.7.0 to 24.9.0: that skips 1 required stop (hard stops must be deployed on the way).
  rule: sentry upgrades to any later release, never past a hard stop; hard stops: 9.1.2, 21.5.0, 21.6.3, 23.6.2, 23.11.0, 24.8.0, 25.5.1
  path: 24.7.0 → 24.8.0 → 24.9.x
  now:  upgrade to 24.8.0 first: `lockstep bump --to 24.8.0` (or pin the chart to 24.8.0), sync, then continue
"),
    /// temporal: one minor at a time, from the latest patch when known.
    temporal_from_the_previous_line: "temporal" TEMPORAL_PG "temporal" from "1.30.4" => None,
    temporal_skipping_a_line: "temporal" TEMPORAL_PG "temporal" from "1.29.1" => Some(
"lockstep: error: refusing to upgrade temporal from 1.29.1 to 1.31.2: that skips 1 release line.
  rule: temporal upgrades one listed release line at a time (1.29 → 1.30 → 1.31); the next line only from the latest patch of the current one
  path: 1.29.1 → 1.30.x → 1.31.x
  now:  upgrade to 1.30 first: `lockstep bump --to 1.30.0` (or pin the chart to 1.30.0), sync, then continue
"),
}

// ---------------------------------------------------------------------------
// The steps' shell wrappers, run by sh with stub tools

/// Runs a Job's container argv (command + args, the image's entrypoint taken as
/// `exec "$@"`) with `sh`, stub tools on PATH that log their argv, the Job's literal
/// env, and the record holding `record` (None: no record). Returns (exit code, log).
fn run_step(job: &Value, tools: &[&str], record: Option<&str>) -> (Option<i32>, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let c = container(job);
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    assert_eq!(argv[..2], ["/bin/sh", "-c"], "a wrapped step: {argv:?}");
    let dir = scratch("steps").join(N.fetch_add(1, Ordering::SeqCst).to_string());
    let (bin, state, log) = (dir.join("bin"), dir.join("state"), dir.join("log"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    for t in tools {
        let p = bin.join(t);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{t} $*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if let Some(r) = record {
        std::fs::write(state.join("release"), format!("{r}\n")).unwrap();
    }
    let mut cmd = Command::new("sh");
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("LOCKSTEP_TERMINATION_LOG", dir.join("term"))
        .stdin(Stdio::null());
    for (k, v) in env_of(c) {
        if let Some(v) = v["value"].as_str() {
            cmd.env(k, v);
        }
    }
    cmd.env("LOCKSTEP_STATE_DIR", &state);
    let o = cmd.output().expect("sh");
    (
        o.status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// A Job of the kong render of release edge (tag 3.9.1).
fn kong_edge_job(name: &str) -> Value {
    static OUT: OnceLock<String> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let input = fixture_text("kong", "kong-3.4.1--pinned-tag-replicas.yaml");
        inject(&input, &["--profile", "kong", "--release", "edge"])
            .run()
            .stdout
    });
    find(&docs(out), "Job", name).expect("the Job").clone()
}

/// A Job of the temporal render of release temporal (1.31.2).
fn temporal_job(name: &str) -> Value {
    let input = fixture_text("temporal", "temporal-1.6.0--postgres.yaml");
    let out = inject(&input, &["--profile", "temporal", "--release", "temporal"])
        .run()
        .stdout;
    find(&docs(&out), "Job", name).expect("the Job").clone()
}

/// The record is mounted into the steps, as the gate mounts it (optional).
#[test]
fn kong_steps_mount_the_record() {
    let up = kong_edge_job("edge-migrate-kong");
    let vols = serde_yaml::to_string(&up["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(
        vols.contains("edge-lockstep") && vols.contains("optional: true"),
        "{vols}"
    );
}

#[test]
fn kong_bootstraps_on_a_first_install() {
    let up = kong_edge_job("edge-migrate-kong");
    assert_eq!(
        run_step(&up, &["kong"], None),
        (Some(0), "kong migrations bootstrap\n".into())
    );
}

#[test]
fn kong_migrates_up_over_a_recorded_release() {
    let up = kong_edge_job("edge-migrate-kong");
    assert_eq!(
        run_step(&up, &["kong"], Some("3.9.0")),
        (Some(0), "kong migrations up\n".into())
    );
}

/// The post-rollout step runs only once the record names this release.
#[test]
fn kong_finishes_once_the_record_names_this_release() {
    let finish = kong_edge_job("edge-finish");
    let done = (Some(0), "kong migrations finish\n".into());
    assert_eq!(run_step(&finish, &["kong"], Some("3.9.1")), done);
}

#[test]
fn kong_finish_fails_while_the_record_names_an_older_release() {
    let finish = kong_edge_job("edge-finish");
    assert_eq!(
        run_step(&finish, &["kong"], Some("3.9.0")),
        (Some(1), String::new())
    );
}

#[test]
fn kong_finish_fails_without_a_record() {
    let finish = kong_edge_job("edge-finish");
    assert_eq!(run_step(&finish, &["kong"], None), (Some(1), String::new()));
}

const VISIBILITY_UPDATE: &str = "temporal-sql-tool update-schema --schema-dir /etc/temporal/schema/postgresql/v12/visibility/versioned\n";

#[test]
fn temporal_creates_and_sets_up_the_store_on_a_first_install() {
    let vis = temporal_job("temporal-migrate-visibility");
    let log = format!(
        "temporal-sql-tool create-database\ntemporal-sql-tool setup-schema -v 0.0\n{VISIBILITY_UPDATE}"
    );
    assert_eq!(run_step(&vis, &["temporal-sql-tool"], None), (Some(0), log));
}

#[test]
fn temporal_only_updates_the_schema_over_a_recorded_release() {
    let vis = temporal_job("temporal-migrate-visibility");
    let log = VISIBILITY_UPDATE.to_owned();
    assert_eq!(
        run_step(&vis, &["temporal-sql-tool"], Some("1.30.4")),
        (Some(0), log)
    );
}

// ---------------------------------------------------------------------------
// Prefect: the entrypoint

const PREFECT_ENTRYPOINT: &str = "          command:\n            - /usr/bin/tini\n            - -g\n            - --\n            - /opt/prefect/entrypoint.sh\n";

/// The migration Job (and stderr) of the real prefect-server render whose API container
/// has `command` set as `api_command` (None: removed).
fn prefect_job(api_command: Option<&str>) -> (Value, String) {
    static RENDER: OnceLock<String> = OnceLock::new();
    let text = RENDER.get_or_init(|| {
        let o = Command::new(tool("helm4"))
            .args(["template", "prefect-server"])
            .arg(repo().join("examples/charts/prefect-server"))
            .env("HELM_CACHE_HOME", scratch("helm-cache"))
            .env("HELM_CONFIG_HOME", scratch("helm-config"))
            .env("HELM_DATA_HOME", scratch("helm-data"))
            .output()
            .unwrap();
        ok(&o)
    });
    assert!(
        text.contains(PREFECT_ENTRYPOINT),
        "the chart's API command is the entrypoint"
    );
    let text = text.replace(PREFECT_ENTRYPOINT, api_command.unwrap_or(""));
    let ran = inject(&text, &["--profile", "prefect-server"]).run();
    let job = find(&docs(&ran.stdout), "Job", "prefect-server-migrate-database")
        .expect("the migration Job")
        .clone();
    (job, ran.stderr)
}

const PREFECT_UPGRADE: [&str; 5] = ["prefect", "server", "database", "upgrade", "-y"];

/// The chart's API command is the image's entrypoint (tini → entrypoint.sh, which
/// installs EXTRA_PIP_PACKAGES): the Job runs through it (and lockstep's wrapper).
#[test]
fn prefect_migrations_run_through_the_entrypoint_the_api_runs_through() {
    let (job, _) = prefect_job(Some(PREFECT_ENTRYPOINT));
    assert_eq!(
        strings(&container(&job)["command"]),
        ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    );
    assert_eq!(step_argv(&job), PREFECT_UPGRADE);
}

/// No command: the image's entrypoint runs; the Job sets args only.
#[test]
fn prefect_migrations_set_args_only_when_the_api_has_no_command() {
    let (job, _) = prefect_job(None);
    assert!(container(&job).get("command").is_none());
    assert_eq!(step_argv(&job), PREFECT_UPGRADE);
}

/// A command that bypasses the entrypoint: the Job bypasses it too, and says so.
#[test]
fn prefect_migrations_bypass_the_entrypoint_the_api_bypasses() {
    let (job, err) = prefect_job(Some("          command: [prefect]\n"));
    assert_eq!(step_argv(&job), PREFECT_UPGRADE);
    assert!(container(&job).get("args").is_none());
    assert!(err.contains("replaces it"), "{err}");
}

// ---------------------------------------------------------------------------
// Matching and warnings, with edited copies of the built-in profiles

fn builtin(name: &str) -> String {
    Test::new().args(["profiles", "show", name]).run().stdout
}

/// A profile file: the built-in `name` with `edit` applied, which must change it.
fn edited_profile(name: &str, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = builtin(name);
    let new = edit(&text);
    assert_ne!(new, text, "{file}: the edit applies to the built-in {name}");
    let p = scratch("profiles").join(file);
    std::fs::write(&p, new).unwrap();
    p
}

/// `text` without its `key:` block (up to the next top-level `job:`, or `until`).
fn without_block(text: &str, key: &str, until: &str) -> String {
    let start = text.find(key).unwrap();
    let end = start + text[start..].find(until).unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

fn jobs_of(input: &str, args: &[&str]) -> Vec<Value> {
    docs(&inject(input, args).run().stdout)
}

fn has_job(d: &[Value], name: &str) -> bool {
    find(d, "Job", name).is_some()
}

fn sentry_input() -> String {
    fixture_text("sentry", SENTRY_25_20)
}

#[test]
fn a_name_suffix_would_catch_snuba_db_init() {
    let f = edited_profile("sentry", "sentry-suffix.yaml", |t| {
        t.replace(
            "  name: '{fullname}-db-init'\n  command:\n  - sentry\n  - upgrade\n",
            "  nameSuffix: -db-init\n",
        )
    });
    let d = jobs_of(&sentry_input(), &["--profile", f.to_str().unwrap()]);
    assert!(
        !has_job(&d, "sentry-snuba-db-init"),
        "the suffix catches it"
    );
}

#[test]
fn the_exact_hook_name_keeps_snuba_db_init() {
    let d = jobs_of(&sentry_input(), &["--profile", "sentry"]);
    assert!(has_job(&d, "sentry-snuba-db-init"));
    assert!(!has_job(&d, "sentry-db-init"));
}

/// The pods' label alone finds the web Deployment among ~40 (no name needed).
#[test]
fn the_api_is_found_by_pod_template_labels_alone() {
    let input = fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml");
    let f = edited_profile("sentry", "sentry-labels-only.yaml", |t| {
        t.replace("  name: '{fullname}-web'\n", "")
    });
    let d = jobs_of(&input, &["--profile", f.to_str().unwrap()]);
    assert!(has_job(&d, "errors-migrate-sentry"));
}

/// Without the name and with metadata labels only, no Deployment carries `role`.
#[test]
fn metadata_labels_are_not_pod_template_labels() {
    let input = fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml");
    let f = edited_profile("sentry", "sentry-meta.yaml", |t| {
        t.replace(
            "  podLabels:\n    role: web\n",
            "  matchLabels:\n    role: web\n",
        )
    });
    inject(&input, &["--profile", f.to_str().unwrap()])
        .status(1)
        .stderr_contains("no API workload found")
        .run();
}

/// {fullname} is the release plus the chart's name here: errors-sentry-web.
#[test]
fn fullname_is_the_release_and_the_chart_name() {
    let input = fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml");
    let d = jobs_of(&input, &["--profile", "sentry", "--release", "errors"]);
    assert!(has_job(&d, "errors-migrate-sentry"));
}

/// Another release name: the pattern no longer names the workload.
#[test]
fn another_release_name_finds_no_workload_and_names_the_pattern() {
    let input = fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml");
    inject(&input, &["--profile", "sentry", "--release", "other"])
        .status(1)
        .stderr_contains("{fullname}-web")
        .run();
}

/// `inject --profile FILE` of `input` succeeds and warns with these words.
fn warns(input: &str, profile: &Path, words: &[&str]) {
    let t = inject(input, &["--profile", profile.to_str().unwrap()]);
    words.iter().fold(t, |t, w| t.stderr_contains(*w)).run();
}

/// snuba-db-init stays: with keepHooks removed from the profile it is warned about.
#[test]
fn a_staying_job_that_looks_like_a_migration_warns() {
    let edit = |t: &str| without_block(t, "keepHooks:", "\njob:");
    let f = edited_profile("sentry", "sentry-nokeep.yaml", edit);
    warns(
        &sentry_input(),
        &f,
        &["WARNING: Job sentry-snuba-db-init", "\"db-init\""],
    );
}

/// A Job that runs a profile's migration command stays when chartHooks miss it: warned.
#[test]
fn a_staying_job_that_runs_the_migration_command_warns() {
    let edit = |t: &str| without_block(t, "chartHooks:", "\njob:");
    let f = edited_profile("kong", "kong-nohooks.yaml", edit);
    let words = [
        "kong-kong-pre-upgrade-migrations",
        "it runs `kong migrations up`",
    ];
    warns(&fixture_text("kong", KONG_PG), &f, &words);
}

/// database.env that reaches nothing, by env or envFrom, is warned about...
#[test]
fn database_env_that_reaches_nothing_warns() {
    let input = fixture_text("authentik", AUTHENTIK_2026);
    let broken = input.replace("AUTHENTIK_POSTGRESQL__", "AUTHENTIK_PG__");
    assert_ne!(broken, input);
    inject(&broken, &["--profile", "authentik"])
        .stderr_contains("WARNING: none of the profile's database.env")
        .run();
}

/// ... and through envFrom, they are found: no warning on the real render.
#[test]
fn database_env_found_through_env_from_does_not_warn() {
    let input = fixture_text("authentik", AUTHENTIK_2026);
    inject(&input, &["--profile", "authentik"])
        .stderr_lacks("database.env")
        .run();
}

fn sentry_with_image(file: &str, image: &str) -> PathBuf {
    edited_profile("sentry", file, |t| {
        t.replace(
            "  runs:\n    workload:\n      kind: Deployment\n      name: '{fullname}-snuba-api'\n      container: sentry-snuba\n",
            &format!("  runs:\n    image: {image}\n"),
        )
    })
}

/// An image expression ties a step to the release on another repository; without
/// runs.workload, the rest comes from the API container.
#[test]
fn an_image_expression_ties_a_step_to_the_release() {
    let f = sentry_with_image(
        "sentry-image.yaml",
        "registry.local/getsentry/snuba:{api.tag}",
    );
    let d = jobs_of(&sentry_input(), &["--profile", f.to_str().unwrap()]);
    let job = find(&d, "Job", "sentry-migrate-snuba").unwrap();
    let image = container(job)["image"].as_str();
    assert_eq!(image, Some("registry.local/getsentry/snuba:24.9.0"));
    assert!(env_names(container(job)).contains(&"POSTGRES_HOST".to_owned()));
}

/// An unknown placeholder is an error naming the known ones.
#[test]
fn an_unknown_image_placeholder_names_the_known_ones() {
    let f = sentry_with_image(
        "sentry-bad-image.yaml",
        "registry.local/getsentry/snuba:{api.version}",
    );
    inject(&sentry_input(), &["--profile", f.to_str().unwrap()])
        .status(1)
        .stderr_contains("{api.version}")
        .stderr_contains("{api.tag}")
        .run();
}

/// Sentry's hooks by command alone: snuba-migrate and db-init go, snuba-db-init
/// (`snuba bootstrap`) and db-check stay.
#[test]
fn chart_hooks_match_by_command() {
    let f = edited_profile("sentry", "sentry-by-command.yaml", |t| {
        let rest = without_block(t, "chartHooks:", "keepHooks:");
        rest.replacen(
            "keepHooks:",
            "chartHooks:\n- {kind: Job, command: [snuba, migrations, migrate]}\n- {kind: Job, command: [sentry, upgrade]}\nkeepHooks:",
            1,
        )
    });
    let d = jobs_of(&sentry_input(), &["--profile", f.to_str().unwrap()]);
    let present: Vec<bool> = [
        "sentry-snuba-migrate",
        "sentry-db-init",
        "sentry-snuba-db-init",
        "sentry-db-check",
    ]
    .iter()
    .map(|j| has_job(&d, j))
    .collect();
    assert_eq!(present, [false, false, true, true]);
}

/// Kong with its chartHooks replaced by `hooks`: the chart's three Jobs are gone.
fn kong_hooks_remove_the_chart_jobs(file: &str, hooks: &str) {
    let f = edited_profile("kong", file, |t| {
        let start = t.find("chartHooks:").unwrap();
        let end = start + t[start..].find("\njob:").unwrap() + 1;
        format!("{}{hooks}{}", &t[..start], &t[end..])
    });
    let input = fixture_text("kong", "kong-3.4.1--pinned-tag-replicas.yaml");
    let d = jobs_of(
        &input,
        &["--profile", f.to_str().unwrap(), "--release", "edge"],
    );
    for job in kong_removed("edge") {
        assert!(!has_job(&d, &job), "{job}");
    }
}

#[test]
fn chart_hooks_match_by_pod_labels() {
    kong_hooks_remove_the_chart_jobs(
        "kong-hooks-labels.yaml",
        "chartHooks:\n- {kind: Job, podLabels: {app.kubernetes.io/component: init-migrations}}\n- {kind: Job, podLabels: {app.kubernetes.io/component: pre-upgrade-migrations}}\n- {kind: Job, podLabels: {app.kubernetes.io/component: post-upgrade-migrations}}\n",
    );
}

#[test]
fn chart_hooks_match_by_a_name_pattern() {
    kong_hooks_remove_the_chart_jobs(
        "kong-hooks-pattern.yaml",
        "chartHooks:\n- {kind: Job, name: '{release}-kong-*-migrations'}\n",
    );
}

/// The kong render with a profile whose `up` step adds env (one replacing the API's
/// KONG_PG_HOST), envFrom and a volume.
fn kong_with_step_extras() -> &'static str {
    static OUT: OnceLock<String> = OnceLock::new();
    OUT.get_or_init(|| {
        let f = edited_profile("kong", "kong-extra.yaml", |t| {
            t.replacen(
                "  command:\n  - kong\n  - migrations\n  - up\n",
                "  command:\n  - kong\n  - migrations\n  - up\n  env:\n  - {name: KONG_PG_TIMEOUT, value: '60000'}\n  - {name: KONG_PG_HOST, value: pg-primary.db.svc}\n  envFrom:\n  - secretRef: {name: kong-migration-extra}\n  volumes:\n  - name: pg-ca\n    secret: {secretName: pg-ca}\n  volumeMounts:\n  - {name: pg-ca, mountPath: /etc/pg-ca, readOnly: true}\n",
                1,
            )
        });
        let input = fixture_text("kong", KONG_PG);
        inject(&input, &["--profile", f.to_str().unwrap(), "--release", "kong"]).run().stdout
    })
}

/// Added, and replaced in place (not duplicated); the API's env is kept.
#[test]
fn a_step_adds_and_replaces_env_of_its_source_container() {
    let job = find(&docs(kong_with_step_extras()), "Job", "kong-migrate-kong")
        .unwrap()
        .clone();
    assert_eq!(env_value(&job, "KONG_PG_TIMEOUT").as_deref(), Some("60000"));
    assert_eq!(
        env_value(&job, "KONG_PG_HOST").as_deref(),
        Some("pg-primary.db.svc")
    );
    let names = env_names(container(&job));
    assert_eq!(names.iter().filter(|n| *n == "KONG_PG_HOST").count(), 1);
    assert!(
        names.contains(&"KONG_DATABASE".to_owned()),
        "the API's env is kept"
    );
}

#[test]
fn a_step_adds_env_from_and_volumes() {
    let out = kong_with_step_extras();
    let job = find(&docs(out), "Job", "kong-migrate-kong")
        .unwrap()
        .clone();
    let c = container(&job);
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("kong-migration-extra")
    );
    let mounts = serde_yaml::to_string(&c["volumeMounts"]).unwrap();
    assert!(mounts.contains("/etc/pg-ca"), "{mounts}");
    let vols = serde_yaml::to_string(&job["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(vols.contains("secretName: pg-ca"), "{vols}");
    validate_stream(out, "kong-extra");
}

/// The finish step has none of the `up` step's additions.
#[test]
fn a_step_adds_nothing_to_the_other_steps() {
    let finish = find(&docs(kong_with_step_extras()), "Job", "kong-finish")
        .unwrap()
        .clone();
    assert_eq!(env_value(&finish, "KONG_PG_TIMEOUT"), None);
    assert!(container(&finish)
        .get("envFrom")
        .is_none_or(|e| !serde_yaml::to_string(e)
            .unwrap()
            .contains("kong-migration-extra")));
}

// ---------------------------------------------------------------------------
// The profiles themselves

/// `lockstep profiles` lists the built-in and `profiles show` prints it.
fn listed_and_shown(name: &str) {
    let list = Test::new().arg("profiles").run().stdout;
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(name)),
        "{list}"
    );
    Test::new()
        .args(["profiles", "show", name])
        .stdout_contains(format!("name: {name}\n"))
        .run();
}

macro_rules! builtin_profiles {
    ($($test:ident: $name:literal,)*) => { $(#[test] fn $test() { listed_and_shown($name); })* };
}

builtin_profiles! {
    profile_prefect_server: "prefect-server",
    profile_prefect_customer_managed: "prefect-customer-managed",
    profile_temporal: "temporal",
    profile_kong: "kong",
    profile_authentik: "authentik",
    profile_sentry: "sentry",
    profile_generic: "generic",
}

/// A new app with a profile file alone: the kong profile, as a user's file.
#[test]
fn a_copy_of_a_built_in_works_as_a_profile_file() {
    let f = edited_profile("kong", "my-kong.yaml", |t| {
        t.replacen("name: kong\n", "name: my-kong\n", 1)
    });
    let d = jobs_of(
        &fixture_text("kong", KONG_PG),
        &["--profile", f.to_str().unwrap(), "--release", "kong"],
    );
    assert!(has_job(&d, "kong-migrate-kong"));
}
