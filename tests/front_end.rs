//! The README's claim that a new front-end is one file that gathers inputs, checked:
//! examples/front_end.rs (a hypothetical GitLab CI front-end) builds its request from
//! lockstep.yaml and lockstep.lock with `settings::resolve`, and its output is byte for
//! byte what `lockstep render` prints in the same app directory. The README shows the
//! example's function as it is.

mod common;

#[path = "../examples/front_end.rs"]
mod front_end;

use common::{repo, tool, Test};

/// The example's output for the app in `dir`, the pipeline run in this process.
fn example_output(dir: &str) -> String {
    // The only test in this binary that runs helm; nothing else reads the environment.
    std::env::set_var("HELM_BIN", tool("helm4"));
    std::env::remove_var("CI_ENVIRONMENT_NAME");
    let request = front_end::build_request(&repo().join(dir)).expect("the request");
    let mut out = Vec::new();
    lockstep::run(&request, &mut out, &mut Vec::new()).expect("the render");
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn the_example_front_end_renders_what_the_cli_renders() {
    for dir in [
        "examples/apps/prefect-server",
        "examples/apps/prefect-cloud",
    ] {
        let cli = Test::new()
            .arg("render")
            .current_dir(repo().join(dir))
            .run();
        assert!(
            cli.stdout.contains("kind: Job"),
            "{dir}: the CLI injected no Job"
        );
        assert!(
            example_output(dir) == cli.stdout,
            "{dir}: the example front-end's output differs from `lockstep render`"
        );
    }
}

#[test]
fn the_readme_shows_the_example_as_it_is() {
    let example = std::fs::read_to_string(repo().join("examples/front_end.rs")).unwrap();
    let function = example
        .split("// front-end: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("// front-end: end").next())
        .expect("examples/front_end.rs marks its function");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{function}```")),
        "README.md must show examples/front_end.rs's build_request as it is:\n{function}"
    );
}
