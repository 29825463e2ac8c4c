//! The settings precedence (src/settings.rs, README "Precedence"), end to end through
//! each front-end's own gathering: one table, one row per setting and source, for the CLI,
//! the Argo CD plugin and the Helm plugin. The resolver's own table test covers every
//! setting; these rows prove the front-ends feed it what the table says.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An app directory inside the repository: lockstep.yaml naming the example prefect-server
/// chart (3.8.3) with `yaml`'s extra lines, and a lockstep.lock when `lock` is given.
fn app(yaml: &str, lock: Option<&str>) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch(&format!("precedence-{}", N.fetch_add(1, Ordering::SeqCst)));
    let chart = format!("{}examples/charts/prefect-server", up_to_repo(&dir));
    std::fs::write(
        dir.join("lockstep.yaml"),
        format!("chart: {chart}\nprofile: prefect-server\n{yaml}"),
    )
    .unwrap();
    if let Some(v) = lock {
        std::fs::write(
            dir.join("lockstep.lock"),
            format!("deployed:\n  version: {v}\n"),
        )
        .unwrap();
    }
    dir
}

#[derive(Clone, Copy, Debug)]
enum Front {
    Cli,
    ArgoCd,
    Helm,
}

fn run(front: Front, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = lockstep();
    c.current_dir(dir).stdin(Stdio::null());
    c.env_remove("HELM_NAMESPACE");
    match front {
        Front::Cli => {
            c.arg("render");
        }
        Front::ArgoCd => {
            c.args(["argocd", "generate"]).env("ARGOCD_APP_NAME", "app");
        }
        Front::Helm => {
            let chart = repo().join("examples/charts/prefect-server");
            c.args(["helm", "template", "rel"]).arg(chart);
        }
    }
    c.args(args).envs(env.iter().copied()).output().unwrap()
}

/// The migration Job's hook annotation: which phase won.
fn hook(front: Front, out: &str) -> String {
    let docs = docs(out);
    let job = find(
        &docs,
        "Job",
        &format!("{}-migrate-database", release(&docs)),
    )
    .expect("Job");
    let key = match front {
        Front::Helm => "helm.sh/hook",
        _ => "argocd.argoproj.io/hook",
    };
    job["metadata"]["annotations"][key]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The release the render used: the API Deployment's instance label.
fn release(docs: &[serde_yaml::Value]) -> String {
    docs.iter()
        .find(|d| d["kind"] == "Deployment")
        .and_then(|d| d["metadata"]["labels"]["app.kubernetes.io/instance"].as_str())
        .unwrap()
        .to_owned()
}

/// Environment variables and arguments of one row.
type Env = &'static [(&'static str, &'static str)];
type Args = &'static [&'static str];

struct Row {
    front: Front,
    yaml: &'static str,
    lock: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    /// The phase hook the Job carries.
    want: &'static str,
}

/// `phase`: flag, then parameter, then plugin env, then lockstep.yaml, then the default.
/// The first row is stop 11's bug: `--phase presync` lost to `phase: sync`.
#[test]
fn phase() {
    const P: &str = "ARGOCD_APP_PARAMETERS";
    let rows = [
        Row {
            front: Front::Cli,
            yaml: "phase: sync\n",
            lock: None,
            env: &[],
            args: &["--from", "3.7.8", "--phase", "presync"],
            want: "PreSync",
        },
        Row {
            front: Front::Cli,
            yaml: "phase: sync\n",
            lock: None,
            env: &[],
            args: &["--from", "3.7.8"],
            want: "Sync",
        },
        Row {
            front: Front::Cli,
            yaml: "",
            lock: None,
            env: &[],
            args: &["--from", "3.7.8"],
            want: "PreSync",
        },
        Row {
            front: Front::ArgoCd,
            yaml: "phase: sync\n",
            lock: None,
            env: &[
                (P, r#"[{"name":"phase","string":"presync"}]"#),
                ("ARGOCD_ENV_LOCKSTEP_PHASE", "sync"),
            ],
            args: &[],
            want: "PreSync",
        },
        Row {
            front: Front::ArgoCd,
            yaml: "phase: presync\n",
            lock: None,
            env: &[("ARGOCD_ENV_LOCKSTEP_PHASE", "sync")],
            args: &[],
            want: "Sync",
        },
        Row {
            front: Front::ArgoCd,
            yaml: "phase: sync\n",
            lock: None,
            env: &[],
            args: &[],
            want: "Sync",
        },
        Row {
            front: Front::ArgoCd,
            yaml: "",
            lock: None,
            env: &[],
            args: &[],
            want: "PreSync",
        },
        Row {
            front: Front::Helm,
            yaml: "",
            lock: None,
            env: &[],
            args: &["--from", "3.7.8", "--phase", "sync"],
            want: "post-install,pre-upgrade",
        },
        Row {
            front: Front::Helm,
            yaml: "",
            lock: None,
            env: &[],
            args: &["--from", "3.7.8"],
            want: "pre-install,pre-upgrade",
        },
    ];
    for (i, r) in rows.iter().enumerate() {
        let dir = app(r.yaml, r.lock);
        let out = ok(&run(r.front, &dir, r.env, r.args));
        assert_eq!(
            hook(r.front, &out),
            r.want,
            "row {i}: {:?} {:?} {:?}",
            r.front,
            r.env,
            r.args
        );
    }
}

/// `from` (the deployed release): the gate refuses 3.4.0 → 3.8.3 (a skip, exit 3) and
/// admits 3.7.8, so the exit code tells which source won.
#[test]
fn from() {
    const P: &str = "ARGOCD_APP_PARAMETERS";
    let skip = 3;
    let rows: [(Front, Option<&str>, Env, Args, i32); 8] = [
        (
            Front::Cli,
            Some("3.4.0"),
            &[("LOCKSTEP_FROM", "3.4.0")],
            &["--from", "3.7.8"],
            0,
        ),
        (
            Front::Cli,
            Some("3.4.0"),
            &[("LOCKSTEP_FROM", "3.7.8")],
            &[],
            0,
        ),
        (
            Front::Cli,
            Some("3.7.8"),
            &[("LOCKSTEP_FROM", "3.4.0")],
            &[],
            skip,
        ),
        (Front::Cli, Some("3.4.0"), &[], &[], skip),
        (
            Front::ArgoCd,
            Some("3.4.0"),
            &[
                (P, r#"[{"name":"from","string":"3.7.8"}]"#),
                ("ARGOCD_ENV_LOCKSTEP_FROM", "3.4.0"),
            ],
            &[],
            0,
        ),
        (
            Front::ArgoCd,
            Some("3.4.0"),
            &[("ARGOCD_ENV_LOCKSTEP_FROM", "3.7.8")],
            &[],
            0,
        ),
        (Front::ArgoCd, Some("3.4.0"), &[], &[], skip),
        // The Helm plugin reads no lockstep.lock: the flag (the cluster is not asked).
        (Front::Helm, Some("3.4.0"), &[], &["--from", "3.7.8"], 0),
    ];
    for (i, (front, lock, env, args, code)) in rows.into_iter().enumerate() {
        let dir = app("", lock);
        let o = run(front, &dir, env, args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "row {i}: {front:?}\n{}",
            stderr(&o)
        );
    }
}

/// `release`: flag, then parameter, then plugin env, then lockstep.yaml, then Argo CD's
/// application name.
#[test]
fn release_name() {
    const P: &str = "ARGOCD_APP_PARAMETERS";
    let rows: [(Front, &str, Env, Args, &str); 6] = [
        (
            Front::Cli,
            "release: cfg\n",
            &[],
            &["--release", "flag"],
            "flag",
        ),
        (Front::Cli, "release: cfg\n", &[], &[], "cfg"),
        (
            Front::ArgoCd,
            "release: cfg\n",
            &[
                (P, r#"[{"name":"release","string":"param"}]"#),
                ("ARGOCD_ENV_LOCKSTEP_RELEASE", "env"),
            ],
            &[],
            "param",
        ),
        (
            Front::ArgoCd,
            "release: cfg\n",
            &[("ARGOCD_ENV_LOCKSTEP_RELEASE", "env")],
            &[],
            "env",
        ),
        (Front::ArgoCd, "release: cfg\n", &[], &[], "cfg"),
        (Front::ArgoCd, "", &[], &[], "app"),
    ];
    for (i, (front, yaml, env, args, want)) in rows.into_iter().enumerate() {
        let dir = app(yaml, None);
        let args = [args, &["--from", "3.7.8"][..]].concat();
        let args: &[&str] = if matches!(front, Front::Cli) {
            &args
        } else {
            &[]
        };
        // The Argo CD rows pass `from` by the plugin env.
        let mut env: Vec<(&str, &str)> = env.to_vec();
        if matches!(front, Front::ArgoCd) {
            env.push(("ARGOCD_ENV_LOCKSTEP_FROM", "3.7.8"));
        }
        let out = ok(&run(front, &dir, &env, args));
        assert_eq!(release(&docs(&out)), want, "row {i}: {front:?}");
    }
}
