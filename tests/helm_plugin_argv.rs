//! `lockstep helm ARGS` (what `helm lockstep ARGS` runs): the command line, its usage
//! errors and refusals, one behaviour per test. Every case here fails before lockstep runs
//! helm or reads a file, so no plugin install and no cluster is needed (the plugin end to
//! end is tests/helm_plugin.rs).
//!
//! A usage error exits 2, prints nothing on stdout, and prints on stderr
//! `lockstep: error: MESSAGE`, a blank line and the usage (the text `help` prints).

mod common;

use common::Test;

/// `lockstep helm ARGS` fails with exit 2, the exact `message`, then the usage.
#[track_caller]
fn usage_error(args: &[&str], message: &str) {
    let ran = Test::new()
        .arg("helm")
        .args(args)
        .status(2)
        .stderr_contains("\n\nUsage:\n  helm lockstep template RELEASE CHART [flags]")
        .run();
    let first = ran.stderr.split("\n\nUsage:").next().unwrap_or_default();
    assert_eq!(
        first,
        format!("lockstep: error: {message}"),
        "{}",
        ran.command
    );
}

/// `usage_errors! { test_name: [ARGS...] => "message", ... }`: one test per line.
macro_rules! usage_errors {
    ($($name:ident: [$($a:expr),* $(,)?] => $msg:expr,)*) => {
        $(
            #[test]
            fn $name() {
                usage_error(&[$($a),*], $msg);
            }
        )*
    };
}

const NOT_SUPPORTED: &str = "is not supported by helm lockstep";
const PULL_ONLY: &str = "helm lockstep fetches charts with --version, --repo, --username, --password-file, --ca-file, --insecure-skip-tls-verify and --plain-http only: `helm pull` the chart yourself for anything else, then pass the .tgz";
const UNKNOWN: &str =
    "helm lockstep passes no flag to helm it does not know (the supported flags are listed below)";

/// `FLAG is not supported by helm lockstep: WHY`.
fn refused(flag: &str, why: &str) -> String {
    format!("{flag} {NOT_SUPPORTED}: {why}")
}

fn unknown(flag: &str) -> String {
    format!("unknown or unsupported flag {flag}: {UNKNOWN}")
}

#[track_caller]
fn refusal(args: &[&str], flag: &str, why: &str) {
    usage_error(args, &refused(flag, why));
}

// ---- flags lockstep knows and refuses, with the reason ------------------------------------

const NO_HOOKS: &str =
    "it would skip lockstep's migration Jobs, which are hooks: the database would not be migrated";
const POST_RENDERER: &str = "lockstep is the renderer here; with Helm 4 use `helm install|upgrade ... --post-renderer lockstep-postrender` instead of `helm lockstep`";
const REUSE: &str = "lockstep renders the chart itself, from the values given on this command line: pass every values file (-f) and --set again";
const SET_FILE: &str =
    "lockstep reads values from -f, --set and --set-string only: put this value into a values file";
const PASSWORD: &str = "a password on a command line shows in process lists and shell history: set LOCKSTEP_REPO_PASSWORD, or pass --password-file FILE";
const DEPENDENCY_UPDATE: &str =
    "build the chart's dependencies first (`helm dependency build CHART`), then pass the chart";
const NEEDS_RELEASE: &str = "lockstep needs the release name: pass RELEASE";

#[test]
fn refuses_no_hooks() {
    refusal(&["install", "r", "c", "--no-hooks"], "--no-hooks", NO_HOOKS);
}

#[test]
fn refuses_no_hooks_given_true() {
    refusal(
        &["upgrade", "r", "c", "--no-hooks=true"],
        "--no-hooks",
        NO_HOOKS,
    );
}

#[test]
fn refuses_no_hooks_even_false() {
    refusal(
        &["template", "r", "c", "--no-hooks=false"],
        "--no-hooks",
        NO_HOOKS,
    );
}

#[test]
fn refuses_post_renderer() {
    refusal(
        &["install", "r", "c", "--post-renderer", "x"],
        "--post-renderer",
        POST_RENDERER,
    );
}

#[test]
fn refuses_post_renderer_args() {
    refusal(
        &["install", "r", "c", "--post-renderer-args=a"],
        "--post-renderer-args",
        POST_RENDERER,
    );
}

#[test]
fn refuses_reuse_values() {
    refusal(
        &["upgrade", "r", "c", "--reuse-values"],
        "--reuse-values",
        REUSE,
    );
}

#[test]
fn refuses_reset_values() {
    refusal(
        &["upgrade", "r", "c", "--reset-values"],
        "--reset-values",
        REUSE,
    );
}

#[test]
fn refuses_reset_then_reuse_values() {
    refusal(
        &["upgrade", "r", "c", "--reset-then-reuse-values"],
        "--reset-then-reuse-values",
        REUSE,
    );
}

#[test]
fn refuses_set_file() {
    refusal(
        &["template", "r", "c", "--set-file", "k=f"],
        "--set-file",
        SET_FILE,
    );
}

#[test]
fn refuses_set_json() {
    refusal(
        &["template", "r", "c", "--set-json=k={}"],
        "--set-json",
        SET_FILE,
    );
}

#[test]
fn refuses_set_literal() {
    refusal(
        &["template", "r", "c", "--set-literal", "k=v"],
        "--set-literal",
        SET_FILE,
    );
}

#[test]
fn refuses_password() {
    refusal(
        &["template", "r", "c", "--password", "pw-x1"],
        "--password",
        PASSWORD,
    );
}

#[test]
fn refuses_password_inline() {
    refusal(
        &["template", "r", "c", "--password=pw-x1"],
        "--password",
        PASSWORD,
    );
}

#[test]
fn refuses_devel() {
    refusal(&["template", "r", "c", "--devel"], "--devel", PULL_ONLY);
}

#[test]
fn refuses_the_other_pull_flags() {
    for flag in [
        "--verify",
        "--keyring",
        "--cert-file",
        "--key-file",
        "--pass-credentials",
    ] {
        refusal(&["template", "r", "c", flag], flag, PULL_ONLY);
    }
}

#[test]
fn refuses_dependency_update() {
    refusal(
        &["install", "r", "c", "--dependency-update"],
        "--dependency-update",
        DEPENDENCY_UPDATE,
    );
}

#[test]
fn refuses_generate_name() {
    refusal(
        &["install", "c", "--generate-name"],
        "--generate-name",
        NEEDS_RELEASE,
    );
}

#[test]
fn refuses_generate_name_short() {
    refusal(&["install", "c", "-g"], "-g", NEEDS_RELEASE);
}

#[test]
fn refuses_name_template() {
    refusal(
        &["install", "c", "--name-template", "x"],
        "--name-template",
        NEEDS_RELEASE,
    );
}

#[test]
fn refuses_a_flag_before_the_command() {
    refusal(&["--no-hooks", "install", "r", "c"], "--no-hooks", NO_HOOKS);
}

#[test]
fn a_refused_flag_wins_over_a_wrong_command() {
    refusal(&["frobnicate", "--no-hooks"], "--no-hooks", NO_HOOKS);
}

// ---- unknown flags ------------------------------------------------------------------------

#[test]
fn unknown_long_flag() {
    usage_error(&["install", "r", "c", "--force"], &unknown("--force"));
}

#[test]
fn unknown_long_flag_with_a_value() {
    usage_error(&["install", "r", "c", "--foo=bar"], &unknown("--foo"));
}

#[test]
fn unknown_short_flag() {
    usage_error(&["template", "r", "c", "-x"], &unknown("-x"));
}

#[test]
fn unknown_short_flag_names_its_letter() {
    usage_error(&["template", "r", "c", "-xyz"], &unknown("-x"));
}

#[test]
fn a_negative_number_is_an_unknown_flag() {
    usage_error(&["template", "r", "c", "-5"], &unknown("-5"));
}

#[test]
fn the_first_bad_flag_is_reported() {
    usage_error(
        &["template", "r", "c", "--force", "--no-hooks"],
        &unknown("--force"),
    );
}

// ---- flags given wrong --------------------------------------------------------------------

usage_errors! {
    set_needs_a_value: ["template", "r", "c", "--set"] => "--set needs a value (KEY=VALUE)",
    values_needs_a_value: ["template", "r", "c", "--values"] => "--values needs a value (a values file)",
    short_values_needs_a_value: ["template", "r", "c", "-f"] => "-f needs a value (a values file)",
    namespace_needs_a_value: ["template", "r", "c", "-n"] => "-n needs a value (a namespace)",
    output_needs_a_value: ["plan", "r", "c", "-o"] => "-o needs a value (text or json)",
    from_needs_a_value: ["template", "r", "c", "--from"] => "--from needs a value (the deployed release's version)",
    switch_takes_no_value: ["install", "r", "c", "--skip-crds=yes"] => "--skip-crds takes no value (got \"yes\")",
    short_switch_takes_no_value: ["upgrade", "r", "c", "-i=yes"] => "-i takes no value (got \"yes\")",
    long_install_takes_no_value: ["upgrade", "r", "c", "--install=1"] => "--install takes no value (got \"1\")",
    atomic_takes_no_value: ["upgrade", "r", "c", "--atomic=on"] => "--atomic takes no value (got \"on\")",
    rollback_on_failure_takes_no_value: ["upgrade", "r", "c", "--rollback-on-failure=on"] => "--rollback-on-failure takes no value (got \"on\")",
    allow_downgrade_takes_no_value: ["template", "r", "c", "--allow-downgrade=no"] => "--allow-downgrade takes no value (got \"no\")",
    timeout_is_a_duration: ["install", "r", "c", "--timeout", "5"] => "--timeout \"5\" is not a duration: use e.g. 300s, 10m or 1h30m",
    history_max_is_a_number: ["upgrade", "r", "c", "--history-max", "x"] => "--history-max \"x\" is not a number",
    output_is_text_or_json: ["plan", "r", "c", "-o", "yaml"] => "--output \"yaml\": use text or json",
    phase_is_presync_or_sync: ["template", "r", "c", "--phase", "later"] => "--phase: phase \"later\" is not `presync` or `sync`",
    api_workload_is_kind_slash_name: ["template", "r", "c", "--api-workload=bad"] => "--api-workload \"bad\" is not KIND/NAME[:CONTAINER], e.g. Deployment/prefect-server:prefect-server",
    wait_strategy: ["install", "r", "c", "--wait=forever"] => "--wait=forever: use --wait, or --wait=watcher|hookOnly|legacy (Helm 4)",
    dry_run_mode: ["install", "r", "c", "--dry-run=true"] => "--dry-run=true: use --dry-run, --dry-run=client or --dry-run=server",
    the_first_bad_value_is_reported: ["template", "r", "c", "--phase", "later", "--no-hooks"] => "--phase: phase \"later\" is not `presync` or `sync`",
}

// ---- flags of another command -------------------------------------------------------------

usage_errors! {
    wait_is_not_a_template_flag: ["template", "r", "c", "--wait"] => "--wait is a flag of install and upgrade, not of template",
    dry_run_is_not_a_plan_flag: ["plan", "r", "c", "--dry-run"] => "--dry-run is a flag of install and upgrade, not of plan",
    atomic_is_not_a_template_flag: ["template", "r", "c", "--atomic"] => "--atomic/--rollback-on-failure is a flag of install and upgrade, not of template",
    install_is_an_upgrade_flag: ["install", "r", "c", "--install"] => "--install is a flag of upgrade, not of install",
    short_install_is_an_upgrade_flag: ["install", "r", "c", "-i"] => "--install is a flag of upgrade, not of install",
    history_max_is_an_upgrade_flag: ["install", "r", "c", "--history-max=3"] => "--history-max is a flag of upgrade, not of install",
    cleanup_on_fail_is_not_a_template_flag: ["template", "r", "c", "--cleanup-on-fail"] => "--cleanup-on-fail is a flag of install and upgrade, not of template",
    output_is_a_plan_flag: ["template", "r", "c", "-o", "json"] => "--output is a flag of plan, not of template",
    a_switch_given_true_is_on: ["template", "r", "c", "--skip-crds=true"] => "--skip-crds is a flag of install and upgrade, not of template",
    // A switch given `=false` is off, so the next problem is reported.
    a_switch_given_false_is_off: ["template", "r", "c", "--skip-crds=false", "-o", "json"] => "--output is a flag of plan, not of template",
    wait_for_jobs_false_is_off: ["template", "r", "c", "--wait-for-jobs=false", "-o", "json"] => "--output is a flag of plan, not of template",
    short_install_false_is_off: ["install", "r", "c", "-i=false", "-o", "json"] => "--output is a flag of plan, not of install",
    wait_true_is_wait: ["template", "r", "c", "--wait=true"] => "--wait is a flag of install and upgrade, not of template",
    // A value is taken even when it starts with a dash.
    a_value_may_start_with_a_dash: ["template", "r", "c", "--set", "--no-hooks", "-o", "json"] => "--output is a flag of plan, not of template",
    a_short_flag_value_inline: ["template", "r", "c", "-ojson"] => "--output is a flag of plan, not of template",
    a_short_flag_value_after_equals: ["template", "r", "c", "-o=json"] => "--output is a flag of plan, not of template",
    a_long_flag_value_after_equals: ["template", "r", "c", "--output=json"] => "--output is a flag of plan, not of template",
}

// ---- the command, RELEASE and CHART -------------------------------------------------------

usage_errors! {
    no_command: ["-f", "x.yaml"] => "no command: use template, plan, install or upgrade",
    unknown_command: ["frobnicate", "r", "c"] => "unknown command \"frobnicate\": use template, plan, install or upgrade",
    needs_release_and_chart: ["template", "r"] => "template needs RELEASE and CHART: helm lockstep template RELEASE CHART [flags]",
    needs_release_and_chart_upgrade: ["upgrade"] => "upgrade needs RELEASE and CHART: helm lockstep upgrade RELEASE CHART [flags]",
    too_many_arguments: ["template", "r", "c", "d", "e"] => "template takes RELEASE and CHART, got 4 arguments: r c d e",
    after_double_dash_all_is_positional: ["template", "r", "c", "--", "--no-hooks"] => "template takes RELEASE and CHART, got 3 arguments: r c --no-hooks",
    a_lone_dash_is_positional: ["template", "r", "c", "-"] => "template takes RELEASE and CHART, got 3 arguments: r c -",
    release_name_upper_case: ["template", "Rel", "c"] => "release name \"Rel\" is not valid: helm release names are lower-case DNS labels (a-z, 0-9, '-') of at most 53 characters",
    release_name_checked_before_flags_of_another_command: ["template", "Rel", "c", "--wait"] => "release name \"Rel\" is not valid: helm release names are lower-case DNS labels (a-z, 0-9, '-') of at most 53 characters",
}

// ---- help ---------------------------------------------------------------------------------

/// The usage `help` prints on stdout (exit 0).
fn help(args: &[&str]) -> String {
    let ran = Test::new().arg("helm").args(args).run();
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);
    ran.stdout
}

#[test]
fn help_prints_the_usage_an_error_prints() {
    let out = help(&["help"]);
    let err = Test::new()
        .args(["helm", "template"])
        .status(2)
        .run()
        .stderr;
    let usage = err
        .split_once("\n\n")
        .expect("message, blank line, usage")
        .1;
    assert_eq!(out, usage);
    assert!(out.starts_with("Usage:\n  helm lockstep template RELEASE CHART [flags]"));
    assert!(out.ends_with("install and upgrade exit with helm's own code once helm runs.\n"));
}

#[test]
fn dash_h_is_help() {
    assert_eq!(help(&["-h"]), help(&["help"]));
}

#[test]
fn dash_dash_help_is_help() {
    assert_eq!(help(&["template", "r", "c", "--help"]), help(&["help"]));
}

#[test]
fn help_before_a_bad_flag_is_help() {
    assert_eq!(help(&["install", "-h", "--no-hooks"]), help(&["help"]));
}

#[test]
fn a_bad_flag_before_help_is_an_error() {
    refusal(&["install", "--no-hooks", "-h"], "--no-hooks", NO_HOOKS);
}

#[test]
fn help_command_after_flags_is_help() {
    assert_eq!(help(&["--from", "1.0.0", "help"]), help(&["help"]));
}
