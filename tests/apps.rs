//! Apps: the built-in profiles temporal, kong, authentik and sentry on real renders of
//! their charts (`tests/fixtures/apps/`, provenance in its README), on variants of those
//! renders (other release names and values, made by transforming the renders: no chart
//! can be fetched here), and the profile format's parts that these apps need: where a
//! step runs, first-install and post-rollout phases, the entrypoint, matching, warnings.
//! The steps' shell wrappers are executed for real by `sh`, with stub tools on PATH.

mod common;

use common::*;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture_text(app: &str, file: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/apps").join(app).join(file))
        .expect("fixture")
}

fn inject(text: &str, args: &[&str]) -> Output {
    let mut c = lockstep();
    c.arg("inject").args(args);
    run_with_stdin(c, text.as_bytes())
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

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Checks a render: only the listed chart Jobs removed, every other document
/// byte-identical and in order, lockstep's Jobs with the expected images and env,
/// and the whole output valid against the Kubernetes schema.
fn check(input: &str, out: &str, release: &str, e: &Expect, what: &str) -> Vec<Value> {
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
    let mut jobs = Vec::new();
    for (suffix, image, env) in e.jobs {
        let name = format!("{release}-{suffix}");
        let job = find(&d, "Job", &name)
            .unwrap_or_else(|| panic!("{what}: no Job {name}; added: {added:?}"))
            .clone();
        let c = container(&job);
        assert_eq!(c["image"].as_str(), Some(*image), "{what}: {name} image");
        let names = env_names(c);
        for want in *env {
            assert!(
                names.iter().any(|n| n == want),
                "{what}: {name} carries {want}: {names:?}"
            );
        }
        jobs.push(job);
    }
    let f = scratch("apps").join(format!("{}.yaml", what.replace(['/', ' '], "_")));
    std::fs::write(&f, out).unwrap();
    validate(&[&f]);
    jobs
}

const KONG_REMOVED: [&str; 3] = [
    "-kong-init-migrations",
    "-kong-pre-upgrade-migrations",
    "-kong-post-upgrade-migrations",
];

fn kong_removed(release: &str) -> Vec<String> {
    KONG_REMOVED
        .iter()
        .map(|s| format!("{release}{s}"))
        .collect()
}

// ---------------------------------------------------------------------------
// The fixture renders

#[test]
fn temporal_migrates_each_store_in_the_admin_tools_container_of_the_chart_job() {
    for (file, release, fullname, plugin, tag) in [
        (
            "temporal-1.6.0--postgres.yaml",
            "temporal",
            "temporal",
            "postgres12",
            "1.31.2",
        ),
        (
            "temporal-1.6.0--existing-secret-replicas.yaml",
            "tmprl",
            "tmprl-temporal",
            "postgres12",
            "1.31.2",
        ),
        (
            "temporal-1.3.0--mysql.yaml",
            "temporal",
            "temporal",
            "mysql8",
            "1.31.0",
        ),
    ] {
        let input = fixture_text("temporal", file);
        let o = inject(&input, &["--profile", "temporal", "--release", release]);
        let out = ok(&o);
        let removed = format!("{fullname}-schema");
        let admin = format!("temporalio/admin-tools:{tag}");
        let sql: &[&str] = &[
            "SQL_PLUGIN",
            "SQL_HOST",
            "SQL_PORT",
            "SQL_DATABASE",
            "SQL_USER",
            "SQL_PASSWORD",
        ];
        let jobs = check(
            &input,
            &out,
            release,
            &Expect {
                removed: &[&removed],
                jobs: &[
                    ("migrate-default", &admin, sql),
                    ("migrate-visibility", &admin, sql),
                ],
            },
            file,
        );
        let env = env_of(container(&jobs[0]));
        assert_eq!(env["SQL_PLUGIN"]["value"].as_str(), Some(plugin), "{file}");
        assert_eq!(
            env["SQL_DATABASE"]["value"].as_str(),
            Some("temporal"),
            "{file}"
        );
        assert_eq!(
            env_of(container(&jobs[1]))["SQL_DATABASE"]["value"].as_str(),
            Some("temporal_visibility"),
            "{file}"
        );
        // The password comes from the store's Secret, or the existing one.
        let secret = env["SQL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
            .as_str()
            .unwrap();
        if file.contains("existing-secret") {
            assert_eq!(secret, "temporal-db");
        } else {
            assert_eq!(secret, format!("{fullname}-default-store"));
        }
        // After the store Secrets (hooks of weight -1), when the chart renders them.
        let wave = |j: &Value| {
            j["metadata"]["annotations"]["helm.sh/hook-weight"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        if file.contains("existing-secret") {
            assert_eq!(wave(&jobs[0]), "-10", "{file}");
        } else {
            assert_eq!(
                (wave(&jobs[0]).as_str(), wave(&jobs[1]).as_str()),
                ("0", "1"),
                "{file}"
            );
        }
        // The namespace Job (post-install) stays, without a warning.
        assert!(!stderr(&o).contains("WARNING"), "{file}: {}", stderr(&o));
    }
}

#[test]
fn kong_bootstraps_or_migrates_through_the_entrypoint_and_finishes_after_the_rollout() {
    for (file, release, image) in [
        ("kong-3.4.1--postgres.yaml", "kong", "kong:3.9"),
        ("kong-3.4.1--pinned-tag-replicas.yaml", "edge", "kong:3.9.1"),
        ("kong-3.0.2--postgres.yaml", "kong", "kong:3.9"),
    ] {
        let input = fixture_text("kong", file);
        let out = ok(&inject(
            &input,
            &["--profile", "kong", "--release", release],
        ));
        let removed = kong_removed(release);
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        let pg: &[&str] = &["KONG_DATABASE", "KONG_PG_HOST", "KONG_PG_PASSWORD"];
        let jobs = check(
            &input,
            &out,
            release,
            &Expect {
                removed: &removed,
                jobs: &[("migrate-kong", image, pg), ("finish", image, pg)],
            },
            file,
        );
        let (up, finish) = (&jobs[0], &jobs[1]);
        for (j, argo, helm) in [
            (up, "PreSync", "pre-install,pre-upgrade"),
            (finish, "PostSync", "post-install,post-upgrade"),
        ] {
            let a = &j["metadata"]["annotations"];
            assert_eq!(a["argocd.argoproj.io/hook"].as_str(), Some(argo), "{file}");
            assert_eq!(a["helm.sh/hook"].as_str(), Some(helm), "{file}");
            // Through the image's entrypoint: args only, as the chart's own Jobs.
            assert!(
                container(j).get("command").is_none(),
                "{file}: {:?}",
                container(j)
            );
        }
    }
}

#[test]
fn authentik_migrates_with_env_from_through_the_entrypoint() {
    for (file, release, tag) in [
        (
            "authentik-2026.8.0--external-pg.yaml",
            "authentik",
            "2026.8.0",
        ),
        (
            "authentik-2026.8.0--existing-secret-replicas.yaml",
            "sso",
            "2026.8.0",
        ),
        (
            "authentik-2025.12.4--external-pg.yaml",
            "authentik",
            "2025.12.4",
        ),
    ] {
        let input = fixture_text("authentik", file);
        let o = inject(&input, &["--profile", "authentik", "--release", release]);
        let out = ok(&o);
        let image = format!("ghcr.io/goauthentik/server:{tag}");
        let jobs = check(
            &input,
            &out,
            release,
            &Expect {
                removed: &[],
                jobs: &[("migrate-migrate", &image, &[])],
            },
            file,
        );
        let c = container(&jobs[0]);
        assert!(c.get("command").is_none(), "{file}: keeps the entrypoint");
        assert_eq!(step_argv(&jobs[0]), ["migrate"], "{file}");
        let secret = if file.contains("existing-secret") {
            "sso-authentik-config"
        } else {
            "authentik"
        };
        assert_eq!(
            c["envFrom"][0]["secretRef"]["name"].as_str(),
            Some(secret),
            "{file}"
        );
        // The database settings are found through envFrom (or global.env): no warning.
        assert!(!stderr(&o).contains("WARNING"), "{file}: {}", stderr(&o));
    }
}

#[test]
fn sentry_migrates_clickhouse_in_the_snuba_image_then_postgres_and_keeps_snuba_db_init() {
    for (file, release, fullname, tag) in [
        (
            "sentry-25.20.0--external-services.yaml",
            "sentry",
            "sentry",
            "24.9.0",
        ),
        (
            "sentry-25.20.0--pre-upgrade-hooks.yaml",
            "errors",
            "errors-sentry",
            "24.9.0",
        ),
        (
            "sentry-25.19.0--external-services.yaml",
            "sentry",
            "sentry",
            "24.8.0",
        ),
    ] {
        let input = fixture_text("sentry", file);
        // No --release: the release comes from the pods' `release` label.
        let o = inject(&input, &["--profile", "sentry"]);
        let out = ok(&o);
        let removed = [
            format!("{fullname}-snuba-migrate"),
            format!("{fullname}-db-init"),
        ];
        let snuba = format!("getsentry/snuba:{tag}");
        let sentry = format!("getsentry/sentry:{tag}");
        let jobs = check(
            &input,
            &out,
            release,
            &Expect {
                removed: &[&removed[0], &removed[1]],
                jobs: &[
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
                ],
            },
            file,
        );
        let snuba_c = container(&jobs[0]);
        assert_eq!(
            snuba_c["envFrom"][0]["secretRef"]["name"].as_str(),
            Some(format!("{fullname}-snuba-env").as_str())
        );
        assert_eq!(
            step_argv(&jobs[0]),
            ["snuba", "migrations", "migrate", "--force"]
        );
        let d = docs(&out);
        for stays in ["snuba-db-init", "db-check"] {
            assert!(
                find(&d, "Job", &format!("{fullname}-{stays}")).is_some(),
                "{file}: {stays} stays"
            );
        }
        assert!(!stderr(&o).contains("WARNING"), "{file}: {}", stderr(&o));
    }
}

// ---------------------------------------------------------------------------
// Variants: other release names and values, by transforming the renders

/// A render with its release renamed: names, instance and release labels.
fn rename(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut t = text.to_owned();
    for (a, b) in pairs {
        t = t.replace(a, b);
    }
    t
}

#[test]
fn variants_with_other_release_names_and_values_give_the_right_jobs() {
    // kong: release edge → gw, namespace gateway → api, tag 3.9.1 → 3.8.4, another host.
    let kong = rename(
        &fixture_text("kong", "kong-3.4.1--pinned-tag-replicas.yaml"),
        &[
            ("edge-kong", "gw-kong"),
            ("\"edge\"", "\"gw\""),
            ("namespace:  gateway", "namespace:  api"),
            ("kong:3.9.1", "kong:3.8.4"),
            ("postgres.data.svc", "pg-ha.db.svc"),
        ],
    );
    let out = ok(&inject(&kong, &["--profile", "kong", "--release", "gw"]));
    let removed = kong_removed("gw");
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    let jobs = check(
        &kong,
        &out,
        "gw",
        &Expect {
            removed: &removed,
            jobs: &[("migrate-kong", "kong:3.8.4", &["KONG_PG_HOST"])],
        },
        "kong variant",
    );
    assert_eq!(
        env_of(container(&jobs[0]))["KONG_PG_HOST"]["value"].as_str(),
        Some("pg-ha.db.svc")
    );
    assert_eq!(jobs[0]["metadata"]["namespace"].as_str(), Some("api"));

    // temporal: release tmprl → wf, admin-tools pinned apart from the server.
    let temporal = rename(
        &fixture_text("temporal", "temporal-1.6.0--existing-secret-replicas.yaml"),
        &[
            ("tmprl-temporal", "wf-temporal"),
            ("instance: tmprl", "instance: wf"),
            (
                "temporalio/admin-tools:1.31.2",
                "registry.local/admin-tools:1.31.2-custom",
            ),
            ("temporal_visibility", "wf_visibility"),
        ],
    );
    let out = ok(&inject(
        &temporal,
        &["--profile", "temporal", "--release", "wf"],
    ));
    let jobs = check(
        &temporal,
        &out,
        "wf",
        &Expect {
            removed: &["wf-temporal-schema"],
            jobs: &[
                (
                    "migrate-default",
                    "registry.local/admin-tools:1.31.2-custom",
                    &["SQL_HOST"],
                ),
                (
                    "migrate-visibility",
                    "registry.local/admin-tools:1.31.2-custom",
                    &["SQL_HOST"],
                ),
            ],
        },
        "temporal variant",
    );
    assert_eq!(
        env_of(container(&jobs[1]))["SQL_DATABASE"]["value"].as_str(),
        Some("wf_visibility")
    );

    // authentik: release sso → idp, another database host through global.env.
    let authentik = rename(
        &fixture_text(
            "authentik",
            "authentik-2026.8.0--existing-secret-replicas.yaml",
        ),
        &[
            ("sso-authentik", "idp-authentik"),
            ("instance: sso", "instance: idp"),
            ("name: sso-pg", "name: idp-pg"),
        ],
    );
    let out = ok(&inject(
        &authentik,
        &["--profile", "authentik", "--release", "idp"],
    ));
    let jobs = check(
        &authentik,
        &out,
        "idp",
        &Expect {
            removed: &[],
            jobs: &[(
                "migrate-migrate",
                "ghcr.io/goauthentik/server:2026.8.0",
                &["AUTHENTIK_POSTGRESQL__PASSWORD"],
            )],
        },
        "authentik variant",
    );
    assert_eq!(
        container(&jobs[0])["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("idp-authentik-config")
    );

    // sentry: release errors → ops, snuba pinned to its own tag.
    let sentry = rename(
        &fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml"),
        &[
            ("errors-sentry", "ops-sentry"),
            ("release: \"errors\"", "release: \"ops\""),
            ("getsentry/snuba:24.9.0", "getsentry/snuba:24.9.1"),
        ],
    );
    let out = ok(&inject(&sentry, &["--profile", "sentry"]));
    check(
        &sentry,
        &out,
        "ops",
        &Expect {
            removed: &["ops-sentry-snuba-migrate", "ops-sentry-db-init"],
            jobs: &[
                (
                    "migrate-snuba",
                    "getsentry/snuba:24.9.1",
                    &["SNUBA_SETTINGS"],
                ),
                (
                    "migrate-sentry",
                    "getsentry/sentry:24.9.0",
                    &["POSTGRES_HOST"],
                ),
            ],
        },
        "sentry variant",
    );
}

// ---------------------------------------------------------------------------
// Version rules on the apps

#[test]
fn each_app_follows_its_upgrade_rules_at_render_time() {
    // (app, render, release, deployed release, refusal: what the message says)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a [&'a str]>);
    let cases: &[Case] = &[
        // kong: the floating tag 3.9 is any 3.9.x: never a downgrade of 3.9.1
        ("kong", "kong-3.4.1--postgres.yaml", "kong", "3.9.1", None),
        ("kong", "kong-3.4.1--postgres.yaml", "kong", "3.8.2", None),
        (
            "kong",
            "kong-3.4.1--postgres.yaml",
            "kong",
            "3.7.1",
            Some(&["skips 1 release line", "3.7.1 → 3.8.x → 3.9.x"]),
        ),
        (
            "kong",
            "kong-3.4.1--pinned-tag-replicas.yaml",
            "edge",
            "3.9.2",
            Some(&["refusing to downgrade"]),
        ),
        // authentik: even-month lines, from the latest patch
        (
            "authentik",
            "authentik-2026.8.0--external-pg.yaml",
            "authentik",
            "2026.6.1",
            None,
        ),
        (
            "authentik",
            "authentik-2026.8.0--external-pg.yaml",
            "authentik",
            "2026.4.2",
            Some(&["2026.4.2 → 2026.6.x → 2026.8.x"]),
        ),
        (
            "authentik",
            "authentik-2025.12.4--external-pg.yaml",
            "authentik",
            "2025.10.3",
            None,
        ),
        (
            "authentik",
            "authentik-2026.8.0--external-pg.yaml",
            "authentik",
            "2026.8.1",
            Some(&["refusing to downgrade"]),
        ),
        // sentry: hard stops
        (
            "sentry",
            "sentry-25.20.0--external-services.yaml",
            "sentry",
            "24.8.0",
            None,
        ),
        (
            "sentry",
            "sentry-25.19.0--external-services.yaml",
            "sentry",
            "24.2.0",
            None,
        ),
        (
            "sentry",
            "sentry-25.20.0--external-services.yaml",
            "sentry",
            "24.7.0",
            Some(&[
                "hard stop",
                "24.7.0 → 24.8.0 → 24.9.x",
                "lockstep bump --to 24.8.0",
            ]),
        ),
        // temporal: one minor at a time, from the latest patch when known
        (
            "temporal",
            "temporal-1.6.0--postgres.yaml",
            "temporal",
            "1.30.4",
            None,
        ),
        (
            "temporal",
            "temporal-1.6.0--postgres.yaml",
            "temporal",
            "1.29.1",
            Some(&["1.29.1 → 1.30.x → 1.31.x"]),
        ),
    ];
    for (app, file, release, from, refusal) in cases {
        let input = fixture_text(app, file);
        let o = inject(
            &input,
            &["--profile", app, "--release", release, "--from", from],
        );
        match refusal {
            None => {
                ok(&o);
            }
            Some(needles) => {
                let e = fails(&o, 3);
                for n in *needles {
                    assert!(e.contains(n), "{app} from {from}: {n:?} in\n{e}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The steps' shell wrappers, run by sh with stub tools

/// Runs a Job's container argv (command + args, the image's entrypoint taken as
/// `exec "$@"`) with `sh`, stub tools on PATH that log their argv, the Job's literal
/// env, and the record holding `record` (None: no record). Returns (exit code, log).
fn run_step(job: &Value, tools: &[&str], record: Option<&str>) -> (Option<i32>, String) {
    let c = container(job);
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    assert_eq!(argv[..2], ["/bin/sh", "-c"], "a wrapped step: {argv:?}");
    let dir = scratch("steps").join(format!("{}", rand_suffix()));
    let bin = dir.join("bin");
    let state = dir.join("state");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let log = dir.join("log");
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

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn first_install_and_upgrade_commands_are_chosen_from_the_record_in_the_pod() {
    let input = fixture_text("kong", "kong-3.4.1--pinned-tag-replicas.yaml");
    let out = ok(&inject(&input, &["--profile", "kong", "--release", "edge"]));
    let d = docs(&out);
    let up = find(&d, "Job", "edge-migrate-kong").unwrap();
    let finish = find(&d, "Job", "edge-finish").unwrap();
    // The record is mounted, as the gate mounts it.
    let vols = serde_yaml::to_string(&up["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(
        vols.contains("edge-lockstep") && vols.contains("optional: true"),
        "{vols}"
    );
    assert_eq!(
        run_step(up, &["kong"], None),
        (Some(0), "kong migrations bootstrap\n".into())
    );
    assert_eq!(
        run_step(up, &["kong"], Some("3.9.0")),
        (Some(0), "kong migrations up\n".into())
    );
    // The post-rollout step runs only once the record names this release.
    assert_eq!(
        run_step(finish, &["kong"], Some("3.9.1")),
        (Some(0), "kong migrations finish\n".into())
    );
    assert_eq!(run_step(finish, &["kong"], Some("3.9.0")).0, Some(1));
    assert_eq!(run_step(finish, &["kong"], None).0, Some(1));

    let input = fixture_text("temporal", "temporal-1.6.0--postgres.yaml");
    let out = ok(&inject(
        &input,
        &["--profile", "temporal", "--release", "temporal"],
    ));
    let d = docs(&out);
    let vis = find(&d, "Job", "temporal-migrate-visibility").unwrap();
    assert_eq!(
        run_step(vis, &["temporal-sql-tool"], None),
        (
            Some(0),
            "temporal-sql-tool create-database\ntemporal-sql-tool setup-schema -v 0.0\ntemporal-sql-tool update-schema --schema-dir /etc/temporal/schema/postgresql/v12/visibility/versioned\n".into()
        )
    );
    assert_eq!(
        run_step(vis, &["temporal-sql-tool"], Some("1.30.4")),
        (
            Some(0),
            "temporal-sql-tool update-schema --schema-dir /etc/temporal/schema/postgresql/v12/visibility/versioned\n".into()
        )
    );
}

// ---------------------------------------------------------------------------
// Prefect: the entrypoint

/// The migration Job of a prefect-server render whose API container has `command`
/// set as `api_command` (None: removed).
fn prefect_job(api_command: Option<&str>) -> (Value, String) {
    let o = Command::new(tool("helm4"))
        .args(["template", "prefect-server"])
        .arg(repo().join("examples/charts/prefect-server"))
        .env("HELM_CACHE_HOME", scratch("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch("helm-config"))
        .env("HELM_DATA_HOME", scratch("helm-data"))
        .output()
        .unwrap();
    let text = ok(&o);
    let tini = "          command:\n            - /usr/bin/tini\n            - -g\n            - --\n            - /opt/prefect/entrypoint.sh\n";
    assert!(
        text.contains(tini),
        "the chart's API command is the entrypoint"
    );
    let text = text.replace(tini, api_command.unwrap_or(""));
    let o = inject(&text, &["--profile", "prefect-server"]);
    let out = ok(&o);
    let d = docs(&out);
    (
        find(&d, "Job", "prefect-server-migrate-database")
            .unwrap()
            .clone(),
        stderr(&o),
    )
}

#[test]
fn prefect_migrations_keep_the_image_entrypoint_when_the_api_runs_through_it() {
    // The chart's API command is the image's entrypoint (tini → entrypoint.sh, which
    // installs EXTRA_PIP_PACKAGES): the Job runs through it.
    let (job, _) = prefect_job(Some(
        "          command:\n            - /usr/bin/tini\n            - -g\n            - --\n            - /opt/prefect/entrypoint.sh\n",
    ));
    // (Every step runs through lockstep's wrapper, templates/step.sh: step_argv.)
    let c = container(&job);
    assert_eq!(
        strings(&c["command"]),
        ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    );
    assert_eq!(
        step_argv(&job),
        ["prefect", "server", "database", "upgrade", "-y"]
    );
    // No command: the image's entrypoint runs; the Job sets args only.
    let (job, _) = prefect_job(None);
    assert!(container(&job).get("command").is_none());
    assert_eq!(
        step_argv(&job),
        ["prefect", "server", "database", "upgrade", "-y"]
    );
    // A command that bypasses the entrypoint: the Job bypasses it too, and says so.
    let (job, err) = prefect_job(Some("          command: [prefect]\n"));
    assert_eq!(
        step_argv(&job),
        ["prefect", "server", "database", "upgrade", "-y"]
    );
    assert!(container(&job).get("args").is_none());
    assert!(err.contains("replaces it"), "{err}");
}

// ---------------------------------------------------------------------------
// Matching and warnings

fn profile_file(name: &str, text: &str) -> PathBuf {
    let p = scratch("profiles").join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn builtin(name: &str) -> String {
    ok(&lockstep()
        .args(["profiles", "show", name])
        .output()
        .unwrap())
}

#[test]
fn a_name_suffix_would_catch_snuba_db_init_an_exact_name_does_not() {
    let input = fixture_text("sentry", "sentry-25.20.0--external-services.yaml");
    let suffix = builtin("sentry").replace(
        "  name: '{fullname}-db-init'\n  command:\n  - sentry\n  - upgrade\n",
        "  nameSuffix: -db-init\n",
    );
    assert_ne!(
        suffix,
        builtin("sentry"),
        "the sentry profile names its hook exactly"
    );
    let f = profile_file("sentry-suffix.yaml", &suffix);
    let d = docs(&ok(&inject(&input, &["--profile", f.to_str().unwrap()])));
    assert!(
        find(&d, "Job", "sentry-snuba-db-init").is_none(),
        "the suffix catches it"
    );
    let d = docs(&ok(&inject(&input, &["--profile", "sentry"])));
    assert!(find(&d, "Job", "sentry-snuba-db-init").is_some());
    assert!(find(&d, "Job", "sentry-db-init").is_none());
}

#[test]
fn the_api_is_found_by_pod_template_labels_and_release_relative_names() {
    let input = fixture_text("sentry", "sentry-25.20.0--pre-upgrade-hooks.yaml");
    // The pods' label alone finds the web Deployment among ~40 (no name needed).
    let labels_only = builtin("sentry").replace("  name: '{fullname}-web'\n", "");
    assert_ne!(labels_only, builtin("sentry"));
    let f = profile_file("sentry-labels-only.yaml", &labels_only);
    let d = docs(&ok(&inject(&input, &["--profile", f.to_str().unwrap()])));
    assert!(find(&d, "Job", "errors-migrate-sentry").is_some());
    // Without the pod-template label, every sentry Deployment named *-web... only one:
    // but without the name and with metadata labels only, none carries `role`.
    let meta = builtin("sentry").replace(
        "  podLabels:\n    role: web\n",
        "  matchLabels:\n    role: web\n",
    );
    let f = profile_file("sentry-meta.yaml", &meta);
    let e = fails(&inject(&input, &["--profile", f.to_str().unwrap()]), 1);
    assert!(e.contains("no API workload found"), "{e}");
    // {fullname} is the release plus the chart's name here: errors-sentry-web.
    let o = inject(&input, &["--profile", "sentry", "--release", "errors"]);
    assert!(find(&docs(&ok(&o)), "Job", "errors-migrate-sentry").is_some());
    // Another release name: the pattern no longer names the workload.
    let e = fails(
        &inject(&input, &["--profile", "sentry", "--release", "other"]),
        1,
    );
    assert!(e.contains("{fullname}-web"), "{e}");
}

#[test]
fn staying_jobs_that_look_like_migrations_and_unreachable_database_env_warn() {
    // snuba-db-init stays: with keepHooks removed from the profile it is warned about.
    let input = fixture_text("sentry", "sentry-25.20.0--external-services.yaml");
    let text = builtin("sentry");
    let start = text.find("keepHooks:").unwrap();
    let end = start + text[start..].find("\njob:").unwrap() + 1;
    let f = profile_file(
        "sentry-nokeep.yaml",
        &format!("{}{}", &text[..start], &text[end..]),
    );
    let e = stderr(&inject(&input, &["--profile", f.to_str().unwrap()]));
    assert!(
        e.contains("WARNING: Job sentry-snuba-db-init") && e.contains("\"db-init\""),
        "{e}"
    );
    // A Job that runs a profile's migration command stays when chartHooks miss it.
    let input = fixture_text("kong", "kong-3.4.1--postgres.yaml");
    let text = builtin("kong");
    let start = text.find("chartHooks:").unwrap();
    let end = start + text[start..].find("\njob:").unwrap() + 1;
    let f = profile_file(
        "kong-nohooks.yaml",
        &format!("{}{}", &text[..start], &text[end..]),
    );
    let e = stderr(&inject(&input, &["--profile", f.to_str().unwrap()]));
    assert!(
        e.contains("kong-kong-pre-upgrade-migrations")
            && e.contains("it runs `kong migrations up`"),
        "{e}"
    );
    // database.env that reaches nothing, by env or envFrom.
    let input = fixture_text("authentik", "authentik-2026.8.0--external-pg.yaml");
    let broken = input.replace("AUTHENTIK_POSTGRESQL__", "AUTHENTIK_PG__");
    let e = stderr(&inject(&broken, &["--profile", "authentik"]));
    assert!(
        e.contains("WARNING: none of the profile's database.env"),
        "{e}"
    );
    // Through envFrom, they are found: no warning on the real render.
    assert!(!stderr(&inject(&input, &["--profile", "authentik"])).contains("database.env"));
}

#[test]
fn an_image_expression_ties_a_step_to_the_release_on_another_repository() {
    let input = fixture_text("sentry", "sentry-25.20.0--external-services.yaml");
    let text = builtin("sentry").replace(
        "  runs:\n    workload:\n      kind: Deployment\n      name: '{fullname}-snuba-api'\n      container: sentry-snuba\n",
        "  runs:\n    image: registry.local/getsentry/snuba:{api.tag}\n",
    );
    assert_ne!(text, builtin("sentry"));
    let f = profile_file("sentry-image.yaml", &text);
    let d = docs(&ok(&inject(&input, &["--profile", f.to_str().unwrap()])));
    let job = find(&d, "Job", "sentry-migrate-snuba").unwrap();
    assert_eq!(
        container(job)["image"].as_str(),
        Some("registry.local/getsentry/snuba:24.9.0")
    );
    // Without runs.workload, the rest comes from the API container.
    assert!(env_names(container(job)).contains(&"POSTGRES_HOST".to_owned()));
    // An unknown placeholder is an error naming the known ones.
    let bad = profile_file(
        "sentry-bad-image.yaml",
        &text.replace("{api.tag}", "{api.version}"),
    );
    let e = fails(&inject(&input, &["--profile", bad.to_str().unwrap()]), 1);
    assert!(
        e.contains("{api.version}") && e.contains("{api.tag}"),
        "{e}"
    );
}

#[test]
fn chart_hooks_match_by_command_by_pod_labels_and_by_name_pattern() {
    // Sentry's hooks by command alone: snuba-migrate and db-init go, snuba-db-init
    // (`snuba bootstrap`) and db-check stay.
    let input = fixture_text("sentry", "sentry-25.20.0--external-services.yaml");
    let text = builtin("sentry");
    let start = text.find("chartHooks:").unwrap();
    let end = start + text[start..].find("keepHooks:").unwrap();
    let by_command = format!(
        "{}chartHooks:\n- {{kind: Job, command: [snuba, migrations, migrate]}}\n- {{kind: Job, command: [sentry, upgrade]}}\n{}",
        &text[..start],
        &text[end..]
    );
    let f = profile_file("sentry-by-command.yaml", &by_command);
    let d = docs(&ok(&inject(&input, &["--profile", f.to_str().unwrap()])));
    for (job, stays) in [
        ("sentry-snuba-migrate", false),
        ("sentry-db-init", false),
        ("sentry-snuba-db-init", true),
        ("sentry-db-check", true),
    ] {
        assert_eq!(find(&d, "Job", job).is_some(), stays, "{job}");
    }
    // Kong's by pod-template labels, and by a name pattern.
    let input = fixture_text("kong", "kong-3.4.1--pinned-tag-replicas.yaml");
    let text = builtin("kong");
    let start = text.find("chartHooks:").unwrap();
    let end = start + text[start..].find("\njob:").unwrap() + 1;
    for (what, hooks) in [
        (
            "pod labels",
            "chartHooks:\n- {kind: Job, podLabels: {app.kubernetes.io/component: init-migrations}}\n- {kind: Job, podLabels: {app.kubernetes.io/component: pre-upgrade-migrations}}\n- {kind: Job, podLabels: {app.kubernetes.io/component: post-upgrade-migrations}}\n",
        ),
        ("a name pattern", "chartHooks:\n- {kind: Job, name: '{release}-kong-*-migrations'}\n"),
    ] {
        let f = profile_file("kong-hooks.yaml", &format!("{}{hooks}{}", &text[..start], &text[end..]));
        let d = docs(&ok(&inject(&input, &["--profile", f.to_str().unwrap(), "--release", "edge"])));
        for job in kong_removed("edge") {
            assert!(find(&d, "Job", &job).is_none(), "{what}: {job}");
        }
    }
}

#[test]
fn a_step_adds_env_env_from_and_volumes_to_its_source_container() {
    let input = fixture_text("kong", "kong-3.4.1--postgres.yaml");
    let text = builtin("kong").replacen(
        "  command:\n  - kong\n  - migrations\n  - up\n",
        "  command:\n  - kong\n  - migrations\n  - up\n  env:\n  - {name: KONG_PG_TIMEOUT, value: '60000'}\n  - {name: KONG_PG_HOST, value: pg-primary.db.svc}\n  envFrom:\n  - secretRef: {name: kong-migration-extra}\n  volumes:\n  - name: pg-ca\n    secret: {secretName: pg-ca}\n  volumeMounts:\n  - {name: pg-ca, mountPath: /etc/pg-ca, readOnly: true}\n",
        1,
    );
    assert_ne!(text, builtin("kong"));
    let f = profile_file("kong-extra.yaml", &text);
    let out = ok(&inject(
        &input,
        &["--profile", f.to_str().unwrap(), "--release", "kong"],
    ));
    let d = docs(&out);
    let job = find(&d, "Job", "kong-migrate-kong").unwrap();
    let c = container(job);
    let env = env_of(c);
    assert_eq!(env["KONG_PG_TIMEOUT"]["value"].as_str(), Some("60000"));
    // Replaced in place, not duplicated.
    assert_eq!(
        env["KONG_PG_HOST"]["value"].as_str(),
        Some("pg-primary.db.svc")
    );
    assert_eq!(
        env_names(c).iter().filter(|n| *n == "KONG_PG_HOST").count(),
        1
    );
    assert!(env.contains_key("KONG_DATABASE"), "the API's env is kept");
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("kong-migration-extra")
    );
    let mounts = serde_yaml::to_string(&c["volumeMounts"]).unwrap();
    assert!(mounts.contains("/etc/pg-ca"), "{mounts}");
    let vols = serde_yaml::to_string(&job["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(vols.contains("secretName: pg-ca"), "{vols}");
    // The finish step has none of it.
    let finish = find(&d, "Job", "kong-finish").unwrap();
    assert!(!env_of(container(finish)).contains_key("KONG_PG_TIMEOUT"));
    let f2 = scratch("apps").join("kong-extra.yaml");
    std::fs::write(&f2, &out).unwrap();
    validate(&[&f2]);
}

// ---------------------------------------------------------------------------
// The profiles themselves

#[test]
fn profiles_show_prints_every_built_in_and_a_copy_works_as_a_file() {
    let list = ok(&lockstep().arg("profiles").output().unwrap());
    for name in [
        "prefect-server",
        "prefect-customer-managed",
        "temporal",
        "kong",
        "authentik",
        "sentry",
        "generic",
    ] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{list}");
        let text = builtin(name);
        assert!(text.contains(&format!("name: {name}")), "{text}");
    }
    // A new app with a profile file alone: the kong profile, as a user's file.
    let f = profile_file(
        "my-kong.yaml",
        &builtin("kong").replacen("name: kong\n", "name: my-kong\n", 1),
    );
    let input = fixture_text("kong", "kong-3.4.1--postgres.yaml");
    let d = docs(&ok(&inject(
        &input,
        &["--profile", f.to_str().unwrap(), "--release", "kong"],
    )));
    assert!(find(&d, "Job", "kong-migrate-kong").is_some());
}
