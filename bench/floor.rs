//! The floor of (a): a wrapper that does nothing but run helm and copy what it prints.
//! Any program that runs `helm template` and passes its output on pays what this pays
//! (a process of its own, helm's start from it, a pipe); lockstep is measured against
//! it as well as against helm alone. Built by bench/run.sh with `rustc -O`.
use std::io::Write;
use std::process::{Command, Stdio};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let helm = args.next().expect("usage: floor HELM ARGS...");
    let out = Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm failed");
    std::io::stdout().write_all(&out.stdout).expect("stdout");
}
