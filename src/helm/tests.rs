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

#[test]
fn output_in_pieces_arrives_whole() {
    // A character cut between two writes, and 1 MiB in one write (the reader sees it in
    // pipe-sized pieces).
    assert_eq!(
        sh("printf 'caf\\303'; sleep 0.1; printf '\\251'")
            .finish()
            .unwrap(),
        "café"
    );
    let text = sh("head -c 1048576 /dev/zero | tr '\\0' x")
        .finish()
        .unwrap();
    assert_eq!(text.len(), 1 << 20);
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
