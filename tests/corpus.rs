//! The bad-input and odd-input corpus (tests/bad, tests/odd), determinism, and the
//! regressions the fuzz targets (fuzz/) found in the stream splitter.
//!
//! Bad input: every case exits non-zero with the documented code (3 gate refusal,
//! 2 usage, 1 anything else), names the cause (and, where there is one, the fix) on
//! stderr, writes nothing to stdout and never panics.
//! Odd but valid input: exit 0, the migration Job with the API's image, documents
//! lockstep does not edit byte-identical to the input, and a stream that parses.
mod common;

use common::*;
use serde_yaml::Value;
use std::path::PathBuf;

fn bad(name: &str) -> PathBuf {
    repo().join("tests/bad").join(name)
}

fn odd(name: &str) -> PathBuf {
    repo().join("tests/odd").join(name)
}

/// How a bad case runs: `inject` on a file of tests/bad, or any command line.
enum Run {
    /// `lockstep inject --profile prefect-server` with this file on stdin.
    Inject(&'static str),
    /// `lockstep inject ARGS` with this file on stdin.
    InjectWith(&'static str, &'static [&'static str]),
    /// `lockstep ARGS`, stdin empty. `{bad}` in an argument is tests/bad.
    Args(&'static [&'static str]),
}

struct Bad {
    run: Run,
    /// Environment on top of the test's (`{bad}` expands as in arguments).
    env: &'static [(&'static str, &'static str)],
    code: i32,
    /// Substrings of stderr: the cause, and the fix where lockstep gives one.
    expect: &'static [&'static str],
}

const fn inject(file: &'static str, code: i32, expect: &'static [&'static str]) -> Bad {
    Bad {
        run: Run::Inject(file),
        env: &[],
        code,
        expect,
    }
}

const fn inject_with(
    file: &'static str,
    args: &'static [&'static str],
    code: i32,
    expect: &'static [&'static str],
) -> Bad {
    Bad {
        run: Run::InjectWith(file, args),
        env: &[],
        code,
        expect,
    }
}

const fn args(args: &'static [&'static str], code: i32, expect: &'static [&'static str]) -> Bad {
    Bad {
        run: Run::Args(args),
        env: &[],
        code,
        expect,
    }
}

const FIX_TEMPLATE: &str = "Fix the template or values that produce it";
const PS: &str = "prefect-server";

/// One test per case, named by the macro, and the table of all of them ([`BAD`]) for the
/// check that every file of tests/bad is used.
macro_rules! bad_cases {
    ($($(#[$m:meta])* $name:ident: $case:expr,)*) => {
        const BAD: &[Bad] = &[$($case,)*];
        $($(#[$m])* #[test] fn $name() { check_bad(&$case); })*
    };
}

bad_cases! {
    // Malformed YAML, in the documents lockstep reads and at the top level of any document.
    yaml_garbage_line: inject(
        "yaml-garbage-line.yaml",
        1,
        &["malformed YAML", FIX_TEMPLATE],
    ),
    yaml_unclosed_flow: inject(
        "yaml-unclosed-flow.yaml",
        1,
        &["document at line 8", "malformed YAML", FIX_TEMPLATE],
    ),
    yaml_unclosed_quote: inject(
        "yaml-unclosed-quote.yaml",
        1,
        &["document at line 8", "malformed YAML", FIX_TEMPLATE],
    ),
    yaml_bad_indent: inject(
        "yaml-bad-indent.yaml",
        1,
        &[
            "malformed YAML",
            "did not find expected '-' indicator",
            FIX_TEMPLATE,
        ],
    ),
    yaml_flow_unclosed_doc: inject(
        "yaml-flow-unclosed-doc.yaml",
        1,
        &["malformed YAML", "flow mapping", FIX_TEMPLATE],
    ),
    yaml_control_char: inject(
        "yaml-control-char.yaml",
        1,
        &["control characters are not allowed", FIX_TEMPLATE],
    ),
    yaml_scalar_doc: inject(
        "yaml-scalar-doc.yaml",
        1,
        &["must be a mapping (a Kubernetes object), not a string"],
    ),
    yaml_directive_bad: inject(
        "yaml-directive-bad.yaml",
        1,
        &["incompatible YAML document", FIX_TEMPLATE],
    ),
    // Tabs for indentation.
    yaml_tab_indent: inject("yaml-tab-indent.yaml", 1, &["tab character", FIX_TEMPLATE]),
    yaml_tab_indent_nested: inject(
        "yaml-tab-indent-nested.yaml",
        1,
        &["tab character", FIX_TEMPLATE],
    ),
    // Duplicate keys: top level, metadata, inside the API Deployment.
    yaml_dup_key_top: inject(
        "yaml-dup-key-top.yaml",
        1,
        &["duplicate entry with key \"kind\"", FIX_TEMPLATE],
    ),
    yaml_dup_key_metadata: inject(
        "yaml-dup-key-metadata.yaml",
        1,
        &["duplicate entry with key \"name\"", FIX_TEMPLATE],
    ),
    yaml_dup_key_deployment: inject(
        "yaml-dup-key-deployment.yaml",
        1,
        &[
            "Deployment prefect/prefect-server",
            "duplicate entry with key \"image\"",
            FIX_TEMPLATE,
        ],
    ),
    // Billion laughs.
    alias_bomb: inject(
        "alias-bomb.yaml",
        1,
        &["repetition limit exceeded", FIX_TEMPLATE],
    ),
    alias_bomb_deployment: inject(
        "alias-bomb-deployment.yaml",
        1,
        &[
            "Deployment prefect/prefect-server",
            "repetition limit exceeded",
        ],
    ),
    // Nesting thousands deep, flow and block, YAML and JSON.
    deep_flow: inject(
        "deep-flow.yaml",
        1,
        &["nesting deeper than 128 levels", FIX_TEMPLATE],
    ),
    deep_flow_map: inject(
        "deep-flow-map.yaml",
        1,
        &["nesting deeper than 128 levels", FIX_TEMPLATE],
    ),
    deep_block_seq: inject(
        "deep-block-seq.yaml",
        1,
        &["recursion limit exceeded", FIX_TEMPLATE],
    ),
    deep_block_map: inject(
        "deep-block-map.yaml",
        1,
        &["recursion limit exceeded", FIX_TEMPLATE],
    ),
    deep_json: inject("deep-json.json", 1, &["nesting deeper than 128 levels"]),
    // Encoding and shape.
    invalid_utf8: inject(
        "invalid-utf8.yaml",
        1,
        &["not UTF-8", "Kubernetes manifests are UTF-8 text"],
    ),
    no_kind: inject(
        "no-kind.yaml",
        1,
        &["has no `kind`", "needs `apiVersion` and `kind`"],
    ),
    kind_not_string: inject("kind-not-string.yaml", 1, &["has no `kind`"]),
    indented_document: inject("indented-document.yaml", 1, &["has no `kind`"]),
    top_level_sequence: inject(
        "top-level-sequence.yaml",
        1,
        &["must be a mapping (a Kubernetes object), not a sequence"],
    ),
    empty: inject(
        "empty.yaml",
        1,
        &[
            "the manifest stream is empty",
            "Check that the chart renders something",
        ],
    ),
    only_comments: inject("only-comments.yaml", 1, &["the manifest stream is empty"]),
    only_separators: inject("only-separators.yaml", 1, &["the manifest stream is empty"]),
    // JSON and Lists.
    json_truncated: inject(
        "json-truncated.json",
        1,
        &["malformed JSON", "Each object must be complete JSON"],
    ),
    json_trailing_garbage: inject("json-trailing-garbage.json", 1, &["malformed JSON"]),
    list_items_no_kind: inject(
        "list-items-no-kind.yaml",
        1,
        &["item 0 of List", "has no `kind`"],
    ),
    list_item_no_kind_mixed: inject(
        "list-item-no-kind-mixed.yaml",
        1,
        &["item 0 of List", "has no `kind`"],
    ),
    list_without_items: inject(
        "list-without-items.yaml",
        1,
        &["a List without `items`", "Put its objects under `items:`"],
    ),
    // The API workload.
    no_api_workload: inject(
        "no-api-workload.yaml",
        1,
        &[
            "no API workload found",
            "--api-workload KIND/NAME[:CONTAINER]",
        ],
    ),
    two_candidates: inject(
        "two-candidates.yaml",
        1,
        &["2 workloads match", "prefect-server-copy", "--api-workload"],
    ),
    untagged_image: inject(
        "untagged-image.yaml",
        1,
        &["has no tag", "Pin a tag or a digest"],
    ),
    registry_port_untagged: inject(
        "registry-port-untagged.yaml",
        1,
        &[
            "\"registry.local:5000/prefecthq/prefect\"",
            "has no tag",
            "Pin a tag or a digest",
        ],
    ),
    latest_image: inject(
        "latest-image.yaml",
        1,
        &["uses `:latest`", "Pin a version tag or a digest"],
    ),
    empty_image: inject("empty-image.yaml", 1, &["has no image"]),
    missing_container: inject(
        "missing-container.yaml",
        1,
        &[
            "has no container \"prefect-server\" (containers: api)",
            "--api-workload Deployment/prefect-server:CONTAINER",
        ],
    ),
    no_pod_spec: inject("no-pod-spec.yaml", 1, &["has no spec.template.spec"]),
    containers_not_a_list: inject(
        "containers-not-a-list.yaml",
        1,
        &["is not a valid pod spec"],
    ),
    unversioned_tag: inject(
        "unversioned-tag.yaml",
        1,
        &["cannot tell which release this is", "pin a versioned tag"],
    ),
    // A digest alone pins the image (tests/odd/digest-only.yaml), but a profile that reads
    // the release from the image tag cannot tell which release it is.
    digest_only_image_tag_profile: inject(
        "digest-only-image-tag-profile.yaml",
        1,
        &["cannot tell which release this is", "pin a versioned tag"],
    ),
    bad_instance_label: inject(
        "bad-instance-label.yaml",
        1,
        &[
            "release name \"Prefect_Server\" is not valid",
            "Pass a valid --release",
        ],
    ),
    // Customer-Managed 1.2.0 rendered with its Redis URLs blanked, and a release the catalog does not know.
    cloud_values_missing_a_required_env: inject_with(
        "cloud-1.2.0-broken-redis.yaml",
        &["--profile", "prefect-customer-managed"],
        1,
        &[
            "requires PREFECT_CLOUD_REDIS_CACHE_URL",
            "Set it in the chart's values",
        ],
    ),
    cloud_release_line_not_in_the_catalog: inject_with(
        "cloud-1.3.0-unknown-line.yaml",
        &["--profile", "prefect-customer-managed"],
        3,
        &[
            "release line 1.3 is not in the prefect-customer-managed catalog",
            "fix: ",
        ],
    ),
    // Profiles.
    unknown_profile_name: inject_with(
        "base.yaml",
        &["--profile", "no-such-profile"],
        1,
        &["unknown profile \"no-such-profile\"", "`lockstep profiles`"],
    ),
    malformed_profile_file: inject_with(
        "base.yaml",
        &["--profile", "{bad}/profile-malformed.yaml"],
        1,
        &[
            "is not a valid lockstep profile",
            "lockstep profiles show generic",
        ],
    ),
    profile_file_with_an_unknown_field: inject_with(
        "base.yaml",
        &["--profile", "{bad}/profile-unknown-field.yaml"],
        1,
        &["unknown field `comand`", "lockstep profiles show generic"],
    ),
    // The gate.
    inject_refuses_a_skipped_release_line: inject_with(
        "base.yaml",
        &["--profile", PS, "--from", "3.6.1"],
        3,
        &[
            "that skips 1 release line",
            "upgrade to 3.7 first",
            "lockstep bump --to 3.7.8",
        ],
    ),
    inject_refuses_a_downgrade: inject_with(
        "base.yaml",
        &["--profile", PS, "--from", "3.9.0"],
        3,
        &[
            "refusing to downgrade prefect-server from 3.9.0 to 3.8.3",
            "--allow-downgrade",
        ],
    ),
    allowed_downgrade_needs_the_deployed_image: inject_with(
        "base.yaml",
        &["--profile", PS, "--from", "3.9.0", "--allow-downgrade"],
        1,
        &[
            "a downgrade Job must run the deployed, newer image",
            "--from-image IMAGE",
        ],
    ),
    from_not_a_version: inject_with(
        "base.yaml",
        &["--profile", PS, "--from", "banana"],
        1,
        &["\"banana\" is not a version"],
    ),
    downgrade_revision_not_db_eq_revision: inject_with(
        "base.yaml",
        &["--profile", PS, "--downgrade-revision", "nope"],
        1,
        &["is not DB=REVISION"],
    ),
    // Names and usage.
    release_name_too_long: inject_with(
        "base.yaml",
        &[
            "--profile",
            PS,
            "--release",
            "a-release-name-that-is-far-too-long-to-be-a-helm-release-name",
        ],
        1,
        &[
            "is not valid",
            "at most 53 characters",
            "Pass a valid --release",
        ],
    ),
    api_workload_without_a_name: inject_with(
        "base.yaml",
        &["--profile", PS, "--api-workload", "Deployment"],
        2,
        &["is not KIND/NAME[:CONTAINER]"],
    ),
    api_workload_with_an_empty_container: inject_with(
        "base.yaml",
        &[
            "--profile",
            PS,
            "--api-workload",
            "Deployment/prefect-server:",
        ],
        2,
        &["is not KIND/NAME[:CONTAINER]"],
    ),
    phase_not_presync_or_sync: inject_with(
        "base.yaml",
        &["--profile", PS, "--phase", "later"],
        2,
        &["invalid value 'later'", "possible values"],
    ),
    unknown_flag: inject_with(
        "base.yaml",
        &["--profile", PS, "--frobnicate"],
        2,
        &["unexpected argument '--frobnicate'"],
    ),
    // Lock files and job templates.
    corrupt_lock_file: inject_with(
        "base.yaml",
        &["--profile", PS, "--lock", "{bad}/corrupt.lock"],
        1,
        &["corrupt.lock is corrupt", "Restore it from git"],
    ),
    lock_file_version_not_a_version: inject_with(
        "base.yaml",
        &["--profile", PS, "--lock", "{bad}/lock-not-a-version.lock"],
        1,
        &[
            "is corrupt",
            "deployed.version \"yesterday\" is not a version",
            "Restore it from git",
        ],
    ),
    job_template_with_an_unknown_field: inject_with(
        "base.yaml",
        &[
            "--profile",
            PS,
            "--job-template",
            "{bad}/job-unknown-field.yaml.hbs",
        ],
        1,
        &["spec.backofLimit", "Fix the template"],
    ),
    job_template_not_handlebars: inject_with(
        "base.yaml",
        &[
            "--profile",
            PS,
            "--job-template",
            "{bad}/job-not-handlebars.yaml.hbs",
        ],
        1,
        &["not a valid handlebars template"],
    ),
    job_template_missing: inject_with(
        "base.yaml",
        &[
            "--profile",
            PS,
            "--job-template",
            "{bad}/no-such-template.hbs",
        ],
        1,
        &["cannot read --job-template"],
    ),
    // Paths from lockstep.yaml that leave the repository.
    config_path_leaves_the_repository: args(
        &["render", "--config", "{bad}/config-escape/lockstep.yaml"],
        1,
        &["leaves the repository", "must stay inside the repository"],
    ),
    config_path_absolute: args(
        &["render", "--config", "{bad}/config-absolute/lockstep.yaml"],
        1,
        &[
            "is an absolute path",
            "must be relative to the app directory",
        ],
    ),
    config_path_symlink_out_of_the_repository: args(
        &["render", "--config", "{bad}/config-symlink/lockstep.yaml"],
        1,
        &[
            "resolves outside the repository",
            "must stay inside the repository",
        ],
    ),
    // Helm missing, failing, printing garbage.
    helm_bin_not_an_executable: Bad {
        run: Run::Args(&["render", "examples/charts/prefect-server"]),
        env: &[("HELM_BIN", "/nonexistent/helm")],
        code: 1,
        expect: &[
            "HELM_BIN is set to \"/nonexistent/helm\", which is not an executable file",
            "Point HELM_BIN at helm",
        ],
    },
    chart_template_error: args(
        &["render", "{bad}/chart-template-error", "--profile", PS],
        1,
        &[
            "helm template failed",
            "nil pointer evaluating",
            "fix: correct the chart or values",
        ],
    ),
    helm_bin_prints_garbage: Bad {
        run: Run::Args(&["render", "examples/charts/prefect-server"]),
        env: &[("HELM_BIN", "{bad}/helm-garbage.sh")],
        code: 1,
        expect: &[
            "the output of `helm template` is not a manifest stream",
            "check that HELM_BIN is helm",
        ],
    },
    chart_missing: args(
        &["render", "{bad}/no-such-chart", "--profile", PS],
        1,
        &["does not exist", "pass a chart directory"],
    ),
    values_file_missing: args(
        &[
            "render",
            "examples/charts/prefect-server",
            "-f",
            "{bad}/no-such-values.yaml",
        ],
        1,
        &["cannot read values file"],
    ),
    render_refuses_a_skipped_release_line: args(
        &[
            "render",
            "examples/charts/prefect-server",
            "--from",
            "3.6.1",
        ],
        3,
        &["that skips 1 release line", "upgrade to 3.7 first"],
    ),
    render_cloud_values_missing_a_required_env: args(
        &[
            "render",
            "examples/charts/prefect-cloud-1.2.0",
            "-f",
            "examples/values/prefect-cloud/broken-redis-1.2.0.yaml",
            "--from",
            "0.8.2",
        ],
        1,
        &[
            "requires PREFECT_CLOUD_REDIS_CACHE_URL",
            "Set it in the chart's values",
        ],
    ),
}

fn expand(s: &str) -> String {
    s.replace("{bad}", &repo().join("tests/bad").display().to_string())
}

/// Runs one bad case: the exit code, nothing on stdout, `error` and the expected cause and fix
/// on stderr, no panic (the failure contract [`Test`] checks for any non-zero status).
fn check_bad(case: &Bad) {
    let mut t = Test::new().status(case.code);
    for (k, v) in case.env {
        t = t.env(k, expand(v));
    }
    t = match &case.run {
        Run::Inject(f) => t.args(["inject", "--profile", PS]).stdin_file(bad(f)),
        Run::InjectWith(f, a) => t
            .arg("inject")
            .args(a.iter().map(|s| expand(s)))
            .stdin_file(bad(f)),
        Run::Args(a) => t.args(a.iter().map(|s| expand(s))),
    };
    for e in case.expect {
        t = t.stderr_contains(*e);
    }
    t.run();
}

/// Every file under tests/bad is used by a case (or is one a case's file refers to).
#[test]
fn every_bad_file_has_a_case() {
    assert!(BAD.len() >= 40, "the corpus has {} bad cases", BAD.len());
    let mut used: Vec<String> = Vec::new();
    for case in BAD {
        match &case.run {
            Run::Inject(f) | Run::InjectWith(f, _) => used.push(f.to_string()),
            Run::Args(_) => {}
        }
        let words = match &case.run {
            Run::InjectWith(_, a) | Run::Args(a) => a.to_vec(),
            Run::Inject(_) => vec![],
        };
        for w in words.iter().chain(case.env.iter().map(|(_, v)| v)) {
            if let Some(rest) = w.strip_prefix("{bad}/") {
                used.push(rest.split('/').next().unwrap().to_owned());
            }
        }
    }
    for entry in std::fs::read_dir(repo().join("tests/bad")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            used.contains(&name),
            "tests/bad/{name} is not used by any case of BAD"
        );
    }
}

/// What must stay byte-identical in an odd case's output.
enum Keep {
    /// Nothing is edited: the output starts with the whole input.
    All,
    /// The one document holding this text is edited (or expanded); all others are kept.
    AllBut(&'static str),
    /// JSON input: the output is YAML; its documents equal the input's objects.
    Json,
}

struct Odd {
    file: &'static str,
    profile: &'static str,
    /// The migration Job's name and the image it must run.
    job: &'static str,
    image: &'static str,
    keep: Keep,
}

const IMG: &str = "prefecthq/prefect:3.8.3-python3.11";
const JOB: &str = "prefect-server-migrate-database";

const fn odd_case(file: &'static str, keep: Keep) -> Odd {
    Odd {
        file,
        profile: PS,
        job: JOB,
        image: IMG,
        keep,
    }
}

/// One test per odd case, and the table of all of them ([`ODD`]).
macro_rules! odd_cases {
    ($($name:ident: $case:expr,)*) => {
        const ODD: &[Odd] = &[$($case,)*];
        $(#[test] fn $name() { check_odd(&$case); })*
    };
}

odd_cases! {
    odd_bom: odd_case("bom.yaml", Keep::All),
    odd_bom_no_separator: odd_case("bom-no-separator.yaml", Keep::All),
    odd_crlf: odd_case("crlf.yaml", Keep::All),
    odd_comment_separators: odd_case("comment-separators.yaml", Keep::All),
    odd_doc_end_markers: odd_case("doc-end-markers.yaml", Keep::All),
    odd_trailing_separator: odd_case("trailing-separator.yaml", Keep::All),
    odd_empty_documents: odd_case("empty-documents.yaml", Keep::All),
    odd_comment_only_documents: odd_case("comment-only-documents.yaml", Keep::All),
    odd_no_final_newline: odd_case("no-final-newline.yaml", Keep::All),
    odd_quoted_keys: odd_case("quoted-keys.yaml", Keep::All),
    odd_anchors_aliases: odd_case("anchors-aliases.yaml", Keep::All),
    odd_env_injection: odd_case("env-injection.yaml", Keep::All),
    odd_flow_style_document: odd_case("flow-style-document.yaml", Keep::All),
    odd_multiline_scalars: odd_case("multiline-scalars.yaml", Keep::All),
    odd_list_of_others: odd_case("list-of-others.yaml", Keep::All),
    odd_list: odd_case("list.yaml", Keep::AllBut("kind: List")),
    odd_edited_deployment: odd_case("edited-deployment.yaml", Keep::AllBut("kind: Deployment")),
    odd_json_stream: odd_case("json-stream.json", Keep::Json),
    odd_json_concatenated: odd_case("json-concatenated.json", Keep::Json),
    odd_digest_only_generic_profile: Odd {
        file: "digest-only.yaml",
        profile: "generic",
        job: "myapp-migrate-migrate",
        image: "registry.example.com/myapp@sha256:0f3c0a4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f2f1a",
        keep: Keep::All,
    },
}

/// The raw documents of a YAML stream, split on `---`/`...` lines (the test's own splitter).
fn raw_docs(text: &str) -> Vec<(usize, usize)> {
    let mut cuts = vec![0];
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_start_matches('\u{feff}');
        if pos > 0 && (l.starts_with("---") || l.starts_with("...")) {
            cuts.push(pos);
        }
        pos += line.len();
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

fn job<'a>(docs: &'a [serde_yaml::Value], name: &str) -> &'a serde_yaml::Value {
    find(docs, "Job", name).unwrap_or_else(|| panic!("no Job {name} in the output"))
}

/// An odd but valid input: exit 0, the migration Job with the API's image, and what lockstep
/// does not edit kept byte for byte.
fn check_odd(case: &Odd) {
    let input = std::fs::read_to_string(odd(case.file)).unwrap();
    let text = Test::new()
        .args(["inject", "--profile", case.profile])
        .stdin(input.as_bytes())
        .run()
        .stdout;
    // A byte-order mark is an encoding mark (serde_yaml's stream reader trips on it).
    let all = docs(text.trim_start_matches('\u{feff}'));
    let j = job(&all, case.job);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some(case.image),
        "Job image"
    );
    match case.keep {
        Keep::All => assert!(
            text.starts_with(&input),
            "the output does not start with the input, byte for byte"
        ),
        Keep::AllBut(marker) => {
            let parts = raw_docs(&input);
            let (s, e) = *parts
                .iter()
                .find(|(s, e)| input[*s..*e].contains(marker))
                .expect("the edited document is in the input");
            assert!(
                text.starts_with(&input[..s]),
                "documents before the edited one changed"
            );
            let rest = &input[e..];
            let at = text[s..].find(rest).map(|i| i + s);
            assert!(
                at.is_some_and(|a| a > s),
                "documents after the edited one changed"
            );
        }
        Keep::Json => {
            let objects: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&input)
                .into_iter::<serde_json::Value>()
                .map(Result::unwrap)
                .collect();
            for o in &objects {
                let want: serde_yaml::Value = serde_yaml::to_value(o).unwrap();
                let name = o["metadata"]["name"].as_str().unwrap();
                let got = find(&all, o["kind"].as_str().unwrap(), name)
                    .expect("every JSON object is in the output");
                if o["kind"] != "Deployment" {
                    assert_eq!(got, &want, "{name} changed");
                }
            }
        }
    }
}

#[test]
fn every_odd_file_has_a_case() {
    for entry in std::fs::read_dir(repo().join("tests/odd")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            ODD.iter().any(|c| c.file == name),
            "tests/odd/{name} is not a case of ODD"
        );
    }
}

/// Env values built to break out of YAML arrive as plain values and add nothing.
#[test]
fn env_values_cannot_inject_keys() {
    let input = std::fs::read_to_string(odd("env-injection.yaml")).unwrap();
    let text = ok(&run_with_stdin(
        {
            let mut c = lockstep();
            c.args(["inject", "--profile", PS]);
            c
        },
        input.as_bytes(),
    ));
    let all = docs(&text);
    let api = find(&all, "Deployment", "prefect-server").unwrap();
    let want = &api["spec"]["template"]["spec"]["containers"][0]["env"];
    let j = job(&all, JOB);
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        &Value::Sequence(app_env(c)),
        want,
        "the Job's env is the API's, value for value"
    );
    assert!(want.as_sequence().unwrap().iter().any(|e| e["value"]
        .as_str()
        .is_some_and(|v| v.contains("kind: Secret"))));
    assert_eq!(
        all.len(),
        docs(&input).len() + 4,
        "lockstep adds its gate Job, one migration Job, the record and its backup, nothing else"
    );
    assert!(find(&all, "Secret", "stolen").is_none());
    for d in &all {
        assert_ne!(
            d["kind"].as_str(),
            Some("Secret"),
            "no Secret appears: {d:?}"
        );
    }
}

/// Runs `lockstep ARGS` (stdin from `input`) under several environments and
/// returns stdout of each run.
fn under_environments(args: &[&str], input: &[u8]) -> Vec<Vec<u8>> {
    let envs: &[&[(&str, &str)]] = &[
        &[
            ("TZ", "UTC"),
            ("LANG", "C"),
            ("LC_ALL", "C"),
            ("HOME", "/nonexistent-home"),
        ],
        &[
            ("TZ", "Pacific/Chatham"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "tr_TR.UTF-8"),
        ],
        &[
            ("TZ", "America/St_Johns"),
            ("LANG", "ja_JP.eucJP"),
            ("LC_ALL", ""),
        ],
        &[],
    ];
    let home = scratch("determinism-home");
    let mut outs = Vec::new();
    for round in 0..2 {
        for env in envs {
            let mut c = lockstep();
            c.current_dir(repo()).args(args).env("HOME", &home);
            for (k, v) in *env {
                c.env(k, v);
            }
            if round == 1 {
                c.env_remove("TZ").env_remove("LANG").env_remove("LC_ALL");
            }
            outs.push(ok(&run_with_stdin(c, input)).into_bytes());
        }
    }
    outs
}

#[test]
fn inject_is_deterministic() {
    let input = std::fs::read(fixture(
        "prefect-server-2026.8.18172642--separate-services-redis.yaml",
    ))
    .unwrap();
    let outs = under_environments(&["inject", "--profile", PS, "--from", "3.7.8"], &input);
    assert!(
        outs.iter().all(|o| o == &outs[0]),
        "inject output differs between runs or environments"
    );
}

#[test]
fn render_is_deterministic() {
    let outs = under_environments(
        &[
            "render",
            "examples/charts/prefect-server",
            "--release",
            "prefect-server",
            "-n",
            "prefect",
            "--from",
            "3.7.8",
        ],
        b"",
    );
    assert!(
        outs.iter().all(|o| o == &outs[0]),
        "render output differs between runs or environments"
    );
    assert!(String::from_utf8_lossy(&outs[0]).contains("prefect-server-migrate-database"));
}

/// Differential check of the splitter's fast line scan against the YAML parser:
/// the fuzz target `split`'s property, on its regressions and on every corpus file.
/// Returns how many heads were compared (0 when the input does not split).
fn scan_agrees(src: &str) -> usize {
    let Ok(stream) = lockstep::stream::split(src) else {
        return 0;
    };
    let mut compared = 0;
    for doc in &stream.docs {
        let parsed =
            serde_yaml::from_str::<serde_yaml::Value>(doc.body.trim_start_matches('\u{feff}'));
        match (&doc.head, parsed) {
            (Some(head), Ok(v)) => {
                let h = lockstep::stream::head_of_value(&v).unwrap_or_else(|e| {
                    panic!("scan read {head:?}, parser: {e:#} in {:?}", doc.body)
                });
                assert_eq!(&h, head, "scan and parser disagree on {:?}", doc.body);
                compared += 1;
            }
            (None, Ok(v)) => assert!(
                v.is_null(),
                "a document with content has no head: {:?}",
                doc.body
            ),
            (_, Err(_)) => {}
        }
    }
    compared
}

/// Inputs the fuzz targets found (minimized), each once a crash of fuzz/fuzz_targets/split.rs.
const SCAN_REGRESSIONS: &[&str] = &[
    // A carriage return before CRLF: the parser keeps it in the value (fuzz, split).
    "---\r\n# Source: t.yaml\r\n0bapiVersion: v1\r\nkind: ServiceAccount\r\nmetadata:\r\n  name: a\r\napiVersion: v1\r\r\n---\r\napiVersion: v1\r\r\nkind: ConfigMap\r\nmetadata:\r\n  name: b\r\n",
    // Plain scalars the parser reads as numbers or null.
    "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: 123\n",
    "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: a\n  namespace: null\n",
    "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: a\n  namespace: ~\n",
    "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: TRUE\n",
    // A comment after a tab.
    "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: a\t# c\n",
    // A plain scalar continued on more indented lines.
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: pref    exit 1\n    fi\nspec: {}\n",
    "apiVersion: v1\nkind: Config\n  Map\nmetadata:\n  name: a\n",
    // Multi-line quoted scalars and flow collections whose lines look like keys.
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    team: \"x\n  namespace: kube-system\n  y\"\n  name: a\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\nnote: \"first\nkind: Secret\"\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {a: b,\n  namespace: x}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\nspec:\n  template: {a: [\nkind: X]}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: 'it''s\nkind: Secret'\n",
    // A block scalar whose text looks like keys and quotes.
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  s: |\n    \"open\n    kind: Secret\n  t: >-\n    [unclosed\n",
    // Non-breaking space after a value.
    "apiVersion: v1\nkind: ConfigMap\u{a0}\nmetadata:\n  name: a\n",
    // A byte-order mark before the first key, and before the first separator.
    "\u{feff}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    "\u{feff}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
];

#[test]
fn scan_regressions_agree_with_the_parser() {
    for src in SCAN_REGRESSIONS {
        // Each is valid YAML: a regression that stopped splitting would check nothing.
        assert!(scan_agrees(src) > 0, "nothing compared for {src:?}");
    }
    // An indented mapping was once taken for an empty document and passed through; it
    // is a document without `kind`.
    let indented = "---\n  publishNotReadyAddresses: true\n  ports:\n    - port: 5432\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
    let err = format!("{:#}", lockstep::stream::split(indented).unwrap_err());
    assert!(err.contains("no `kind`"), "{err}");
}

#[test]
fn corpus_files_scan_like_the_parser() {
    let mut compared = 0;
    for dir in ["tests/bad", "tests/odd"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    compared += scan_agrees(&text);
                }
            }
        }
    }
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            compared += scan_agrees(&std::fs::read_to_string(&path).unwrap());
        }
    }
    // The fixtures alone hold hundreds of documents.
    assert!(compared > 300, "only {compared} heads compared");
}

/// The fuzz crate stays out of the root build: its own workspace, its own lock.
#[test]
fn fuzz_crate_is_separate() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[workspace]"),
        "fuzz/Cargo.toml must declare its own workspace"
    );
    let root = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    // Neither a dependency, a member nor an excluded path may name it (the `fuzzing` cfg
    // that cargo-fuzz sets may be declared).
    for line in root.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(
            !line.contains("\"fuzz") && !line.contains("lockstep-fuzz"),
            "the root manifest must not name the fuzz crate: {line}"
        );
    }
}
