#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real tools (helm 3.19.0 and 4.3.1,
# kubectl, kubernetes-validate; cached in .tools/), checks formatting and lints, then runs
# every unit and end-to-end test against real helm.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-tools.sh
export PATH="$PWD/.tools/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
