//! The accepted syntax, one behaviour per test: what each form of a flag parses to. The
//! error and refusal messages are tested end to end in tests/helm_plugin_argv.rs.

use super::*;
use std::path::Path;

/// The words of `line`, as a shell would split a line without quotes.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn parsed(line: &str) -> std::result::Result<Parsed, String> {
    parse(&words(line))
}

fn run(line: &str) -> Invocation {
    match parsed(line) {
        Ok(Parsed::Run(i)) => *i,
        other => panic!("{line}: {other:?}"),
    }
}

/// `template r c ARGS`.
fn template(args: &str) -> Invocation {
    run(&format!("template r c {args}"))
}

/// `upgrade r c ARGS`: the behaviour flags, as Helm 4 gets them.
fn upgrade_flags(args: &str) -> Vec<String> {
    helm_flags(&run(&format!("upgrade r c {args}")).behaviour, 4).unwrap()
}

fn err(line: &str) -> String {
    match parsed(line) {
        Err(e) => e,
        other => panic!("{line}: expected a usage error, got {other:?}"),
    }
}

/// `--allow-downgrade` and `--force-migrations` as the flags' layer holds them.
fn downgrade_switches(i: &Invocation) -> (Option<bool>, Option<bool>) {
    (i.flags.allow_downgrade, i.flags.force_migrations)
}

fn paths(p: &[&str]) -> Vec<PathBuf> {
    p.iter().map(PathBuf::from).collect()
}

#[test]
fn command_release_and_chart() {
    let i = run("upgrade rel ./chart");
    assert_eq!(i.command, Some(Action::Upgrade));
    assert_eq!(i.release(), "rel");
    assert_eq!(i.chart.path, Path::new("./chart"));
}

#[test]
fn flags_go_anywhere() {
    let i = run("-f a.yaml plan --from 1.0.0 rel -o json chart");
    assert_eq!((i.command, i.release()), (Some(Action::Plan), "rel"));
    assert_eq!(i.chart.path, Path::new("chart"));
    assert_eq!(i.chart.values, paths(&["a.yaml"]));
    assert_eq!(i.flags.from.as_deref(), Some("1.0.0"));
    assert_eq!(i.output, PlanOutput::Json);
}

#[test]
fn values_in_every_form() {
    let i = template("-f a.yaml -fb.yaml -f=c.yaml --values d.yaml --values=e.yaml");
    assert_eq!(
        i.chart.values,
        paths(&["a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml"])
    );
}

#[test]
fn values_comma_separated() {
    let i = template("-f a.yaml,b.yaml --values=c.yaml,,d.yaml,");
    assert_eq!(
        i.chart.values,
        paths(&["a.yaml", "b.yaml", "c.yaml", "d.yaml"])
    );
}

#[test]
fn set_and_set_string_repeat_and_keep_commas() {
    let i = template("--set a=1,b=2 --set=c=3 --set-string d=x --set-string=e=y");
    assert_eq!(i.chart.set, ["a=1,b=2", "c=3"]);
    assert_eq!(i.chart.set_string, ["d=x", "e=y"]);
}

#[test]
fn an_empty_inline_value_is_a_value() {
    let i = template("--set= --from=");
    assert_eq!(i.chart.set, [""]);
    assert_eq!(i.flags.from.as_deref(), Some(""));
}

#[test]
fn a_value_may_start_with_a_dash() {
    let i = template("--set --no-hooks --from - -n -x --set --");
    assert_eq!(i.chart.set, ["--no-hooks", "--"]);
    assert_eq!(i.flags.from.as_deref(), Some("-"));
    assert_eq!(i.flags.namespace.as_deref(), Some("-x"));
}

#[test]
fn api_versions_repeat_and_comma_separated() {
    let i = template("--api-versions a/v1,b/v1 --api-versions=c/v1");
    assert_eq!(i.chart.api_versions, ["a/v1", "b/v1", "c/v1"]);
}

#[test]
fn a_single_valued_flag_given_twice_keeps_the_last() {
    let i = template("--from 1.0.0 --from=2.0.0 --phase sync --phase presync");
    assert_eq!(i.flags.from.as_deref(), Some("2.0.0"));
    assert_eq!(i.flags.phase, Some(Phase::Presync));
}

#[test]
fn output_forms() {
    let i = run("plan r c -o json --output table");
    assert_eq!(i.output, PlanOutput::Text);
    let i = run("plan r c --output=json");
    assert_eq!(i.output, PlanOutput::Json);
    let i = run("plan r c -ojson");
    assert_eq!(i.output, PlanOutput::Json);
}

#[test]
fn chart_pulling_flags() {
    let i = template("--version 1.2.3 --repo=https://charts.example --username u --password-file pw --ca-file=ca.pem --insecure-skip-tls-verify --plain-http=true");
    assert_eq!(i.pull.version.as_deref(), Some("1.2.3"));
    assert_eq!(i.pull.repo.as_deref(), Some("https://charts.example"));
    assert_eq!(i.pull.username.as_deref(), Some("u"));
    assert_eq!(i.pull.password_file.as_deref(), Some(Path::new("pw")));
    assert_eq!(i.pull.ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert!(i.pull.insecure_skip_tls_verify && i.pull.plain_http);
}

#[test]
fn switches_given_false_are_off() {
    let i = template("--insecure-skip-tls-verify=false --plain-http=false --allow-downgrade=false --force-migrations=false");
    assert!(!i.pull.insecure_skip_tls_verify && !i.pull.plain_http);
    assert_eq!(downgrade_switches(&i), (Some(false), Some(false)));
}

#[test]
fn switches_and_lists_not_given_are_said_off_and_empty() {
    // The flags' layer speaks for them even when not given, so lockstep.yaml does not.
    let i = template("");
    assert_eq!(downgrade_switches(&i), (Some(false), Some(false)));
    assert_eq!(i.flags.downgrade_revisions, Some(Vec::new()));
    assert_eq!(i.flags.release.as_deref(), Some("r"));
}

#[test]
fn a_later_false_turns_a_switch_off() {
    let i = template(
        "--allow-downgrade --allow-downgrade=false --force-migrations=false --force-migrations",
    );
    assert_eq!(downgrade_switches(&i), (Some(false), Some(true)));
}

#[test]
fn lockstep_flags() {
    let i = template("--profile generic --api-workload Deployment/api:app --phase=sync --from 0.8.2 --from-image img:1 --allow-downgrade=true --force-migrations --downgrade-revision db=abc --downgrade-revision=db2=def --gate-image gate:1 --job-template job.yaml --kube-version 1.30.0");
    assert_eq!(i.flags.profile.as_deref(), Some("generic"));
    let w = i.flags.api_workload.clone().unwrap();
    assert_eq!(
        (w.kind.as_str(), w.name.as_str(), w.container.as_deref()),
        ("Deployment", "api", Some("app"))
    );
    assert_eq!(i.flags.phase, Some(Phase::Sync));
    assert_eq!(
        (i.flags.from.as_deref(), i.flags.from_image.as_deref()),
        (Some("0.8.2"), Some("img:1"))
    );
    assert_eq!(downgrade_switches(&i), (Some(true), Some(true)));
    let revisions = i.flags.downgrade_revisions.unwrap_or_default();
    assert_eq!(revisions, ["db=abc", "db2=def"]);
    assert_eq!(i.flags.gate_image.as_deref(), Some("gate:1"));
    assert_eq!(i.flags.job_template.as_deref(), Some(Path::new("job.yaml")));
    assert_eq!(i.chart.kube_version.as_deref(), Some("1.30.0"));
}

#[test]
fn namespace_and_kube_context() {
    let i = template("-n ns --kube-context=ctx");
    assert_eq!(
        (i.flags.namespace.as_deref(), i.kube_context.as_deref()),
        (Some("ns"), Some("ctx"))
    );
    assert_eq!(
        template("--namespace=a -nb").flags.namespace.as_deref(),
        Some("b")
    );
}

#[test]
fn behaviour_in_argv_order_for_helm_3_and_4() {
    let i = run("upgrade rel c --wait --timeout 10m --atomic --dry-run -i --history-max=3");
    assert_eq!(
        helm_flags(&i.behaviour, 3).unwrap(),
        [
            "--wait",
            "--timeout=10m",
            "--atomic",
            "--dry-run=client",
            "--install",
            "--history-max=3"
        ]
    );
    assert_eq!(
        helm_flags(&i.behaviour, 4).unwrap(),
        [
            "--wait",
            "--timeout=10m",
            "--rollback-on-failure",
            "--dry-run=client",
            "--install",
            "--history-max=3"
        ]
    );
}

#[test]
fn wait_forms() {
    assert_eq!(upgrade_flags("--wait=true"), ["--wait"]);
    assert_eq!(
        upgrade_flags("--wait=watcher --wait=hookOnly"),
        ["--wait=watcher", "--wait=hookOnly"]
    );
    assert_eq!(upgrade_flags("--wait=legacy"), ["--wait=legacy"]);
}

#[test]
fn wait_takes_no_separate_value() {
    assert_eq!(
        err("upgrade r c --wait legacy"),
        "upgrade takes RELEASE and CHART, got 3 arguments: r c legacy"
    );
}

#[test]
fn wait_strategies_are_helm_4s() {
    let i = run("install r c --wait=legacy");
    assert_eq!(
        helm_flags(&i.behaviour, 3).unwrap_err(),
        "--wait=legacy: wait strategies are Helm 4's; with Helm 3 use --wait"
    );
}

#[test]
fn dry_run_forms() {
    assert_eq!(upgrade_flags("--dry-run=client"), ["--dry-run=client"]);
    assert_eq!(upgrade_flags("--dry-run=server"), ["--dry-run=server"]);
}

#[test]
fn switches_in_every_form() {
    assert_eq!(
        upgrade_flags("--wait-for-jobs --create-namespace=true --disable-openapi-validation --skip-crds=true --cleanup-on-fail --rollback-on-failure=true"),
        [
            "--wait-for-jobs",
            "--create-namespace",
            "--disable-openapi-validation",
            "--skip-crds",
            "--cleanup-on-fail",
            "--rollback-on-failure"
        ]
    );
    assert_eq!(
        upgrade_flags("-i=true --install=true"),
        ["--install", "--install"]
    );
}

#[test]
fn behaviour_switches_given_false_are_left_out() {
    let flags = upgrade_flags("--wait-for-jobs=false --atomic=false --rollback-on-failure=false --create-namespace=false --disable-openapi-validation=false --skip-crds=false -i=false --install=false --cleanup-on-fail=false");
    assert!(flags.is_empty(), "{flags:?}");
}

#[test]
fn description_and_timeout_values() {
    let mut args = words("upgrade r c --description");
    args.push("a, b".to_owned());
    args.extend(words("--timeout=1h30m --description=c"));
    let Ok(Parsed::Run(i)) = parse(&args) else {
        panic!("{args:?}")
    };
    assert_eq!(
        helm_flags(&i.behaviour, 4).unwrap(),
        ["--description=a, b", "--timeout=1h30m", "--description=c"]
    );
}

#[test]
fn double_dash_ends_the_flags() {
    let i = run("template -- r -c");
    assert_eq!(
        (i.release(), i.chart.path.as_path()),
        ("r", Path::new("-c"))
    );
}

#[test]
fn a_lone_dash_is_a_chart() {
    assert_eq!(run("template r -").chart.path, Path::new("-"));
}

#[test]
fn help_anywhere() {
    for line in [
        "-h",
        "--help",
        "help",
        "template r c -h",
        "help me",
        "upgrade -ih",
    ] {
        assert!(matches!(parsed(line), Ok(Parsed::Help)), "{line}");
    }
}

#[test]
fn short_switches_cluster_as_in_helm() {
    // helm (pflag) reads `-if FILE` as `-i -f FILE`, and `-ih` as `-i -h`; so does clap.
    let i = run("upgrade r c -if a.yaml");
    assert_eq!(helm_flags(&i.behaviour, 4).unwrap(), ["--install"]);
    assert_eq!(i.chart.values, paths(&["a.yaml"]));
}

#[test]
fn durations() {
    for ok in ["0", "5m", "300s", "1h30m", "1.5h", "10ms", "2µs"] {
        assert!(is_go_duration(ok), "{ok}");
    }
    for bad in ["", "5", "m", "1.2.3s", "10 m", "5mm", "-5m", "1d"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
}
