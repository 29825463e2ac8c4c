//! Exit codes, as documented in the README and `--help`, and the errors that carry one
//! other than [`ERROR`]: the library returns them, only `main` exits.

pub const OK: i32 = 0;
pub(crate) const ERROR: i32 = 1;
pub const USAGE: i32 = 2;
pub(crate) const GATE: i32 = 3;

/// A command line lockstep cannot run (exit 2); the message is shown as it is.
#[derive(Debug)]
pub(crate) struct Usage(pub String);

/// A tool lockstep handed the terminal to (helm install|upgrade) failed: its messages
/// are shown already, and lockstep exits with its code.
#[derive(Debug)]
pub struct Passed(pub i32);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Usage {}
impl std::error::Error for Passed {}

/// The exit code for an error: 3 for a gate refusal, 2 for a usage error, a tool's own
/// code when it was passed through, else 1.
pub fn code(err: &anyhow::Error) -> i32 {
    for e in err.chain() {
        if e.is::<crate::gate::Refusal>() {
            return GATE;
        }
        if e.is::<Usage>() {
            return USAGE;
        }
        if let Some(Passed(code)) = e.downcast_ref::<Passed>() {
            return *code;
        }
    }
    ERROR
}
