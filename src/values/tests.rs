//! Unit tests of `values migrate`: moves, removals, additions, and what the editor
//! refuses or leaves to the user.
use super::*;
use crate::profile::built_in;

fn steps(from: &str, to: &str) -> Vec<Step> {
    let p = built_in("prefect-customer-managed").unwrap();
    gate::steps(
        &p,
        &gate::parse_version(from).unwrap(),
        &gate::parse_version(to).unwrap(),
    )
    .unwrap()
}

#[test]
fn moves_removes_and_adds_keeping_the_rest() {
    let text = "# top\nglobal:\n  image:\n    tag: x # pinned\n  authProvider:\n    type: okta\n    okta:\n      clientID: a\n\n# the UI\nfrontendUrl: https://f\nbackendUrl: https://b\n\ningress:\n  enabled: true\n  className: nginx\n";
    let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
    assert_eq!(
        m.text,
        "# top\nglobal:\n  image:\n    tag: x # pinned\n  authProvider:\n    okta:\n      clientID: a\n  # the UI\n  frontendUrl: https://f\n  backendUrl: https://b\n\ningress:\n  enabled: true\n  name: self-managed-prefect-cloud\n  className: nginx\n"
    );
    assert_eq!(m.changed.len(), 4, "{:?}", m.changed);
    assert!(m.undecided.is_empty(), "{:?}", m.undecided);
}

#[test]
fn nested_move_to_the_top_level_goes_before_its_old_parent() {
    let text = "a: 1\n\ningress:\n  frontend:\n    url: https://f\n    path: /\n  backend:\n    url: https://b\n";
    let m = rewrite(text, &steps("0.4.2", "0.5.2"), "v.yaml").unwrap();
    assert_eq!(
        m.text,
        "a: 1\nfrontendUrl: https://f\nbackendUrl: https://b\n\ningress:\n  frontend:\n    path: /\n  backend: {}\n"
    );
}

#[test]
fn creates_parents_and_fills_empty_maps() {
    let m = rewrite(
        "frontendUrl: https://f\nother: 1\n",
        &steps("0.8.2", "1.2.0"),
        "v.yaml",
    )
    .unwrap();
    assert_eq!(m.text, "other: 1\n\nglobal:\n  frontendUrl: https://f\n");
    let m = rewrite(
        "global: {} # g\nfrontendUrl: https://f\n",
        &steps("0.8.2", "1.2.0"),
        "v.yaml",
    )
    .unwrap();
    assert_eq!(m.text, "global: # g\n  frontendUrl: https://f\n");
    let m = rewrite(
        "global:\n    x: 1\nfrontendUrl: https://f\n",
        &steps("0.8.2", "1.2.0"),
        "v.yaml",
    )
    .unwrap();
    assert_eq!(m.text, "global:\n    x: 1\n    frontendUrl: https://f\n");
}

#[test]
fn moves_blocks_with_their_children() {
    let text = "frontendUrl:\n  # odd but legal\n  - a\n  - b\nglobal:\n  x: 1\n";
    let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
    assert_eq!(
        m.text,
        "global:\n  x: 1\n  frontendUrl:\n    # odd but legal\n    - a\n    - b\n"
    );
}

#[test]
fn refuses_what_it_cannot_edit_safely() {
    // Each layout the editor cannot change safely, and the exact refusal: the line and
    // what to do, or (when the edit itself went through) the result's check.
    let cases = [
        (
            "{frontendUrl: https://f, global: {}}\n",
            "v.yaml line 1: `{frontendUrl: https://f, global: {}}` is not a `key: value` line the editor can read (flow style, a complex key or a multi-line value); make this change by hand",
        ),
        (
            "global: {a: 1}\nfrontendUrl: https://f\n",
            "v.yaml line 1: `global` is not a block mapping the editor can add `frontendUrl` to; make this change by hand",
        ),
        (
            "frontendUrl: &u https://f\nother: *u\n",
            "refusing to rewrite v.yaml: the line editor's result would not be valid YAML (not valid YAML (one document): unknown anchor at line 1 column 8); nothing was written. Make these changes by hand:\n  - [0.8 → 1.2] moved `frontendUrl` (line 1) to `global.frontendUrl`",
        ),
        (
            "global: &g\n  a: 1\nfrontendUrl: https://f\n",
            "v.yaml line 1: `global` is not a block mapping the editor can add `frontendUrl` to; make this change by hand",
        ),
    ];
    for (text, want) in cases {
        let err = format!(
            "{:#}",
            rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap_err()
        );
        assert_eq!(err, want, "{text}");
    }
}

#[test]
fn conflicts_and_forbidden_are_listed_not_guessed() {
    let text = "frontendUrl: a\nglobal:\n  frontendUrl: b\n";
    let m = rewrite(text, &steps("0.8.2", "1.2.0"), "v.yaml").unwrap();
    assert_eq!(m.text, text);
    assert!(
        m.undecided.iter().any(|u| u.contains("both set")),
        "{:?}",
        m.undecided
    );
    let text =
        "orion:\n  cloud2:\n    readinessProbe:\n      exec:\n        command: [sh, -c, ps aux]\n";
    let m = rewrite(text, &steps("0.6.1", "0.7.0"), "v.yaml").unwrap();
    assert_eq!(m.text, text);
    assert!(
        m.undecided
            .iter()
            .any(|u| u.contains("orion.cloud2.readinessProbe")),
        "{:?}",
        m.undecided
    );
    let m = rewrite(
        "ingress:\n  className: x\n",
        &steps("0.8.2", "1.2.0"),
        "v.yaml",
    )
    .unwrap();
    assert!(
        m.undecided
            .iter()
            .any(|u| u.contains("`ingress.enabled` is not set")),
        "{:?}",
        m.undecided
    );
}

#[test]
fn empty_old_keys_are_removed() {
    let m = rewrite(
        "frontendUrl:\nglobal:\n  authProvider:\n    type: ~\n  a: 1\n",
        &steps("0.8.2", "1.2.0"),
        "v.yaml",
    )
    .unwrap();
    assert_eq!(m.text, "global:\n  authProvider: {}\n  a: 1\n");
    assert_eq!(m.changed.len(), 2, "{:?}", m.changed);
}

#[test]
fn keys_and_scalars_are_quoted_when_needed() {
    assert_eq!(fmt_key("frontendUrl"), "frontendUrl");
    assert_eq!(fmt_key("on"), "\"on\"");
    assert_eq!(
        fmt_scalar("self-managed-prefect-cloud"),
        "self-managed-prefect-cloud"
    );
    assert_eq!(fmt_scalar("1.10"), "\"1.10\"");
    assert_eq!(fmt_scalar("a: b"), "\"a: b\"");
}
