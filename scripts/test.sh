#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real tools (helm 3.19.0 and 4.3.1,
# kubectl, kubernetes-validate; cached in .tools/), checks formatting and lints, then runs
# every unit and end-to-end test against real helm (and, when a cluster is given, a real
# control plane).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-tools.sh
# The end-to-end tests on a real control plane (tests/cluster.rs) run when a cluster is
# given (LOCKSTEP_KUBE_BIN, set by .ci/run; or LOCKSTEP_E2E_KUBECONFIG): PostgreSQL, Redis
# and the Prefect venvs are installed then. Without one they print one line and skip.
if [ -n "${LOCKSTEP_KUBE_BIN:-}${LOCKSTEP_E2E_KUBECONFIG:-}" ]; then
  bash scripts/install-e2e.sh
fi
export PATH="$PWD/.tools/bin:$PATH"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
if [ -n "${LOCKSTEP_KUBE_BIN:-}${LOCKSTEP_E2E_KUBECONFIG:-}" ]; then
  # Every target with the control-plane scenarios skipped (tests/cluster.rs says so in one
  # line), then those alone, 5 at a time: they mostly wait (helm, the Job controller,
  # PostgreSQL, a 310 s migration stand-in), so 5 fit 2 cores; the two 310 s scenarios
  # sort first, so they run beside the rest.
  env -u LOCKSTEP_KUBE_BIN -u LOCKSTEP_E2E_KUBECONFIG cargo test --locked --all-targets
  cargo test --locked --test cluster -- --test-threads 5
else
  cargo test --locked --all-targets
fi
