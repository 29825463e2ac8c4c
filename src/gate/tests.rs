//! Unit tests of the gate: versions, the path rules, and agreement of the render, the
//! in-cluster gate script and `plan`.
use super::*;
use crate::profile::built_in;

fn v(s: &str) -> Version {
    parse_version(s).unwrap()
}

#[test]
fn versions() {
    assert_eq!(v("3.8.3-python3.11"), Version::new(3, 8, 3));
    assert_eq!(v("v1.2"), Version::new(1, 2, 0));
    assert_eq!(v("2026.8.18172642"), Version::new(2026, 8, 18172642));
    assert_eq!(v("1.2.0-rc.1").pre.as_str(), "rc.1");
    assert!(parse_version("latest").is_none());
}

fn crossed_text(a: &Admission) -> Vec<String> {
    a.steps
        .iter()
        .map(|s| format!("{} → {}", s.from_line, s.to_line))
        .collect()
}

#[test]
fn catalog_order_not_arithmetic() {
    let p = built_in("prefect-customer-managed").unwrap();
    // Admitted: the steps crossed, what the gate script accepts, no downgrade.
    let a = admit(&p, "c", Some(&v("0.8.2")), &v("1.2.0"), false).unwrap();
    assert_eq!(crossed_text(&a), ["0.8 → 1.2"]);
    assert_eq!(a.describe_ranges(), "0.8.x, 1.2.0");
    assert_eq!((a.from, a.downgrade), (Some(v("0.8.2")), false));
    let a = admit(&p, "c", Some(&v("0.8.2")), &v("0.8.5"), false).unwrap();
    assert!(a.steps.is_empty(), "{:?}", a.steps);
    assert_eq!(a.describe_ranges(), "0.7.x, 0.8.0 to 0.8.5");
    let err = admit(&p, "c", Some(&v("0.6.1")), &v("1.2.0"), false)
        .unwrap_err()
        .0;
    assert!(err.contains("0.6.1 → 0.7.x → 0.8.x → 1.2.x"), "{err}");
    assert!(err.contains("lockstep bump --to 0.7.0"), "{err}");
    let err = admit(&p, "c", Some(&v("1.2.0")), &v("0.8.2"), false)
        .unwrap_err()
        .0;
    assert!(err.contains("downgrade"), "{err}");
    let err = admit(&p, "c", Some(&v("0.8.2")), &v("1.3.0"), false)
        .unwrap_err()
        .0;
    assert!(err.contains("not in the"), "{err}");
}

#[test]
fn semver_rule() {
    let p = built_in("prefect-server").unwrap();
    let a = admit(&p, "c", Some(&v("3.7.8")), &v("3.8.3"), false).unwrap();
    assert_eq!(crossed_text(&a), ["3.7 → 3.8"]);
    assert!(!a.downgrade);
    let err = admit(&p, "c", Some(&v("3.6.1")), &v("3.8.3"), false)
        .unwrap_err()
        .0;
    assert!(err.contains("3.6.1 → 3.7.x → 3.8.x"), "{err}");
    let a = admit(&p, "c", None, &v("3.8.3"), false).unwrap();
    assert_eq!(a.describe_ranges(), "3.7.x, 3.8.0 to 3.8.3");
}

fn profile(releases: &str) -> Profile {
    let text = format!(
        "name: t\nworkload: {{matchLabels: {{a: b}}}}\nmigrations: [{{name: m, command: [m]}}]\nreleases:\n{releases}"
    );
    Profile::parse(&text, "table").unwrap()
}

/// What the gate script, run by `sh` with the environment a render gives it,
/// says of `live` (None: no record).
fn script_allows(a: &Admission, live: &str) -> bool {
    let dir = std::env::temp_dir().join(format!(
        "lockstep-gate-table-{}-{}",
        std::process::id(),
        live.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("release"), format!("{live}\n")).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(crate::template::GATE_SCRIPT)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(crate::inject::gate_env(a, "rec"))
        .env("LOCKSTEP_STATE_DIR", &dir)
        .env("LOCKSTEP_TERMINATION_LOG", dir.join("term"))
        .output()
        .expect("sh runs");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().all(|l| l.starts_with("lockstep gate: ")),
        "shell errors: {err}"
    );
    out.status.success()
}

/// Defect 7 of issue 17 and the version rules of issue 15: for each case the
/// render (`admit`), the in-cluster gate script (run by `sh`) and `plan` agree,
/// and say what the table says. Long because the table is the test: one row per case
/// of every rule, checked the same three ways.
#[test]
fn render_gate_script_and_plan_agree_on_every_rule() {
    let plain = profile("  rule: semver");
    let listed = profile("  rule: semver\n  lines: [{line: '2.4'}, {line: '2.5'}, {line: '3.1'}]");
    let catalog = built_in("prefect-customer-managed").unwrap();
    let calver = profile(
        "  rule: calver\n  fromLatestPatch: true\n  lines: [{line: '2025.10'}, {line: '2025.12', latest: 2025.12.4}, {line: '2026.2'}, {line: '2026.4', latest: 2026.4.2}, {line: '2026.6', latest: 2026.6.3}, {line: '2026.8'}]",
    );
    let stops = profile("  rule: anyForward\n  hardStops: [{version: 23.11.0}, {version: 24.8.0}]");
    let lts = profile(
        "  rule: semver\n  jumps: [{from: '3.4', to: '3.10', why: LTS}]\n  lines: [{line: '3.4'}, {line: '3.5'}, {line: '3.6'}, {line: '3.7'}, {line: '3.8'}, {line: '3.9'}, {line: '3.10'}]",
    );
    // (profile, deployed, target, allowed)
    let table: &[(&Profile, &str, &str, bool)] = &[
        // majors: the defect: a .0 follows any line of the previous major
        (&plain, "2.5.3", "3.0.0", true),
        (&plain, "2.0.0", "3.0.2", true),
        (&plain, "2.5.3", "3.1.0", false),
        (&plain, "1.9.0", "3.0.0", false),
        (&plain, "3.0.0", "2.5.3", false),
        // minors and patches
        (&plain, "3.0.5", "3.1.2", true),
        (&plain, "3.0.5", "3.2.0", false),
        (&plain, "3.0.0", "3.0.1", true),
        (&plain, "3.0.1", "3.0.1", true),
        (&plain, "3.0.1", "3.0.0", false),
        // pre-releases and package revisions
        (&plain, "2.1.0", "2.1.0-1", true),
        (&plain, "2.1.0-1", "2.1.0", true),
        (&plain, "2.1.0", "2.1.0-rc.1", false),
        (&plain, "2.1.0-rc.1", "2.1.0", true),
        (&plain, "2.0.3", "2.1.0-rc.1", true),
        (&plain, "2.1.0-rc.1", "2.1.0-rc.2", true),
        (&plain, "2.1.0-beta2", "2.1.0", true),
        (&plain, "2.1.1", "2.1.0-beta2", false),
        (&plain, "3.8.3-python3.11", "3.8.3", true),
        (&plain, "2.1.0+build.7", "2.1.0", true),
        // only the listed lines
        (&listed, "2.5.1", "3.1.0", true),
        (&listed, "2.4.9", "3.1.0", false),
        (&listed, "2.4.0", "2.6.0", false),
        (&listed, "2.3.0", "2.4.0", false),
        // catalog order, whatever the numbers
        (&catalog, "0.8.2", "1.2.0", true),
        (&catalog, "0.6.1", "1.2.0", false),
        (&catalog, "0.8.0", "0.8.2", true),
        // calver: listed lines only, from the latest patch
        (&calver, "2026.6.3", "2026.8.0", true),
        (&calver, "2026.6.4", "2026.8.1", true),
        (&calver, "2026.6.1", "2026.8.0", false),
        (&calver, "2026.4.2", "2026.8.0", false),
        (&calver, "2025.12.4", "2026.2.0", true),
        (&calver, "2025.12.4", "2026.7.0", false),
        (&calver, "2026.8.1", "2026.8.0", false),
        // hard stops
        (&stops, "24.6.0", "24.8.0", true),
        (&stops, "24.6.0", "24.9.0", false),
        (&stops, "24.8.0", "25.1.0", true),
        (&stops, "24.8.1", "24.9.0", true),
        (&stops, "23.6.2", "24.8.0", false),
        (&stops, "24.9.0", "24.8.0", false),
        // LTS to LTS, minor to minor
        (&lts, "3.4.3", "3.10.0", true),
        (&lts, "3.4.3", "3.5.0", true),
        (&lts, "3.4.3", "3.9.0", false),
        (&lts, "3.9.1", "3.10.0", true),
    ];
    for (p, from, to, allowed) in table {
        let (f, t) = (v(from), v(to));
        let render = admit(p, "c", Some(&f), &t, false).is_ok();
        let Ok(a) = admit(p, "c", None, &t, false) else {
            // An unknown line: the render refuses, no gate is emitted.
            assert!(!render && !allowed, "{} {from} → {to}", p.name);
            continue;
        };
        let script = script_allows(&a, from);
        let plan = plan(p, &f, &t);
        let plan_direct = plan.as_ref().is_ok_and(|pl| pl.stops.len() == 1);
        assert_eq!(render, *allowed, "render: {} {from} → {to}", p.name);
        assert_eq!(
            script,
            *allowed,
            "gate script: {} {from} → {to}: {}",
            p.name,
            a.script_ranges()
        );
        if key(&f) <= key(&t) {
            assert_eq!(
                plan_direct, *allowed,
                "plan: {} {from} → {to}: {plan:?}",
                p.name
            );
        }
        // Every stop of a plan is a step both halves allow.
        if let Ok(pl) = plan {
            for s in &pl.stops {
                let (sf, st) = (parse_version(&s.from), parse_version(&s.to));
                if let (Some(sf), Some(st)) = (sf, st) {
                    let a = admit(p, "c", None, &st, false).unwrap();
                    assert!(
                        admit(p, "c", Some(&sf), &st, false).is_ok(),
                        "plan stop {} → {}",
                        s.from,
                        s.to
                    );
                    assert!(
                        script_allows(&a, &s.from),
                        "plan stop {} → {} in the script",
                        s.from,
                        s.to
                    );
                }
            }
        }
    }
}

#[test]
fn floating_tags_never_downgrade_their_line() {
    let p = profile("  rule: semver\n  lines: [{line: '3.8'}, {line: '3.9'}]");
    let (t, floating) = parse_release("3.9").unwrap();
    assert!(floating);
    assert!(!parse_release("3.9.1").unwrap().1);
    for (live, ok) in [
        ("3.9.1", true),
        ("3.9.7", true),
        ("3.8.2", true),
        ("3.10.0", false),
        ("3.7.0", false),
    ] {
        let r = admit_release(&p, "kong", Some(&v(live)), &t, true, false).is_ok();
        let a = admit_release(&p, "kong", None, &t, true, false).unwrap();
        assert_eq!(r, ok, "render: {live} → 3.9");
        assert_eq!(script_allows(&a, live), ok, "script: {live} → 3.9");
    }
    // Pinned, 3.9.0 is a downgrade of 3.9.1.
    assert!(admit(&p, "kong", Some(&v("3.9.1")), &t, false).is_err());
}
