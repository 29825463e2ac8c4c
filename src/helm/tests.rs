//! Unit tests of the helm runner, with `sh`, `sleep` and friends standing in for helm.
use super::*;

#[test]
fn an_unfinished_run_is_killed_and_reaped() {
    let sleep = which(std::ffi::OsStr::new("sleep")).expect("sleep on PATH");
    let running = start(&sleep, &["30".into()], "sleep").unwrap();
    let pid = running.child.as_ref().unwrap().id();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let t = std::time::Instant::now();
    drop(running);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
}

/// `sh -c SCRIPT` started as helm would be (the test's stand-in for helm).
fn sh(script: &str) -> Running {
    let sh = which(std::ffi::OsStr::new("sh")).expect("sh on PATH");
    start(&sh, &["-c".into(), script.into()], "sh").unwrap()
}

#[test]
fn helm_messages_are_cut_and_carry_no_value_set() {
    let long = "x".repeat(RELAYED_BYTES * 3);
    let r = relayed(long.as_bytes());
    assert!(
        r.len() < RELAYED_BYTES + 100 && r.contains("more bytes"),
        "{}",
        r.len()
    );
    let secrets = vec!["hunter2-pw".to_owned(), "a\"b".to_owned()];
    let msg = redact("bad value hunter2-pw and \"a\\\"b\"", &secrets);
    assert!(!msg.contains("hunter2") && !msg.contains("a\\\"b"), "{msg}");
    assert_eq!(parse_timeout("50"), Ok(std::time::Duration::from_secs(50)));
    assert_eq!(parse_timeout("2m"), Ok(std::time::Duration::from_secs(120)));
    assert!(parse_timeout("0").is_err() && parse_timeout("1h").is_err());
}

#[test]
fn a_render_holds_back_the_collector_unless_the_user_tuned_it() {
    let some = Some(std::ffi::OsStr::new("200"));
    assert_eq!(
        go_gc_env(None, None),
        &[("GOGC", "off"), ("GOMEMLIMIT", "128MiB")]
    );
    assert!(go_gc_env(some, None).is_empty());
    assert!(go_gc_env(None, some).is_empty());
    assert!(go_gc_env(some, some).is_empty());
}

#[test]
fn the_render_variables_reach_helm() {
    let sh = which(std::ffi::OsStr::new("sh")).expect("sh on PATH");
    let script = r#"printf '%s/%s' "${GOGC-unset}" "${GOMEMLIMIT-unset}""#;
    let seen = start_render(&sh, &["-c".into(), script.into()], "sh")
        .unwrap()
        .finish()
        .unwrap();
    // The user's own values, when set, pass through as they are.
    let (gogc, limit) = (std::env::var("GOGC").ok(), std::env::var("GOMEMLIMIT").ok());
    let as_is = format!(
        "{}/{}",
        gogc.as_deref().unwrap_or("unset"),
        limit.as_deref().unwrap_or("unset")
    );
    let tuned = gogc.is_none() && limit.is_none();
    assert_eq!(seen, if tuned { "off/128MiB" } else { &as_is });
    // Other helm runs (history, show, upgrade) get the environment as it is.
    let plain = start(&sh, &["-c".into(), script.into()], "sh")
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(plain, as_is);
}

/// `sh -c SCRIPT sh MARKER`: the script can wait for `MARKER`, a file the test's early
/// work creates, so what helm "prints" after the early work is ordered by the test, not
/// by the machine's load.
fn sh_waiting(script: &str, name: &str) -> (Running, PathBuf) {
    let marker =
        std::env::temp_dir().join(format!("lockstep-helm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let sh = which(std::ffi::OsStr::new("sh")).expect("sh on PATH");
    let args = [
        "-c".into(),
        script.into(),
        "sh".into(),
        marker.clone().into_os_string(),
    ];
    (start(&sh, &args, "sh").unwrap(), marker)
}

/// Waits for the marker, up to 5 s (past that the test fails on the output).
const WAIT: &str = r#"i=0; while [ ! -e "$1" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done"#;

#[test]
fn early_work_on_output_that_grew_later_is_done_again() {
    let (run, marker) = sh_waiting(&format!("printf 'first'; {WAIT}; printf ' second'"), "grew");
    let mut seen = Vec::new();
    let (text, len) = run
        .finish_with(|t| {
            seen.push(t.to_owned());
            std::fs::write(&marker, "").unwrap();
            t.len()
        })
        .unwrap();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(text, "first second");
    assert_eq!(len, text.len(), "the result is the final text's");
    assert_eq!(
        seen,
        ["first", "first second"],
        "worked on early, then again"
    );
}

#[test]
fn early_work_on_the_final_output_is_used_without_a_second_run() {
    // The script exits only after the early work ran: that work was done while the
    // process still ran, and its result is used as it is.
    let (run, marker) = sh_waiting(
        &format!("printf 'all of it'; {WAIT}; [ -e \"$1\" ] || printf ', late'"),
        "final",
    );
    let mut seen = Vec::new();
    let (text, upper) = run
        .finish_with(|t| {
            seen.push(t.to_owned());
            std::fs::write(&marker, "").unwrap();
            t.to_uppercase()
        })
        .unwrap();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!((text.as_str(), upper.as_str()), ("all of it", "ALL OF IT"));
    assert_eq!(seen, ["all of it"], "once, on the output before the exit");
}

#[test]
fn a_failure_after_the_output_wins_over_early_work() {
    let (run, marker) = sh_waiting(
        &format!("printf 'looks fine'; {WAIT}; echo 'Error: it was not' >&2; exit 1"),
        "failure",
    );
    let mut ran = 0;
    let err = run
        .finish_with(|_| {
            ran += 1;
            std::fs::write(&marker, "").unwrap();
        })
        .unwrap_err();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        format!("{err:#}"),
        "sh failed (exit status: 1): Error: it was not\n  fix: correct the chart or values helm names above, and check it with `helm template`"
    );
    assert_eq!(ran, 1, "the early work ran, and its result was not used");
}

#[test]
fn a_snapshot_that_cuts_a_character_is_not_worked_on() {
    let mut seen = Vec::new();
    let (text, ()) = sh("printf 'caf\\303'; sleep 0.3; printf '\\251'")
        .finish_with(|t| seen.push(t.to_owned()))
        .unwrap();
    assert_eq!(text, "café");
    assert_eq!(seen, ["café"]);
}

#[test]
fn output_larger_than_a_pipe_arrives_whole() {
    // 1 MiB in one write: the reader sees it in pipe-sized pieces.
    let (text, len) = sh("head -c 1048576 /dev/zero | tr '\\0' x")
        .finish_with(str::len)
        .unwrap();
    assert_eq!((text.len(), len), (1 << 20, 1 << 20));
}

#[test]
fn a_finished_run_gives_stdout_or_its_failure_with_stderr() {
    let echo = which(std::ffi::OsStr::new("echo")).expect("echo on PATH");
    let out = start(&echo, &["hello".into()], "echo").unwrap().finish();
    assert_eq!(out.unwrap(), "hello\n");
    let ls = which(std::ffi::OsStr::new("ls")).expect("ls on PATH");
    let err = start(&ls, &["/no/such/path".into()], "ls")
        .unwrap()
        .finish();
    let msg = format!("{:#}", err.unwrap_err());
    assert!(
        msg.contains("ls failed") && msg.contains("/no/such/path"),
        "{msg}"
    );
}
