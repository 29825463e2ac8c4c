#!/bin/sh
# Stand-in for the Prefect image's /opt/prefect/entrypoint.sh (the pod runner maps that path
# here). The real one runs `uv pip install --system $EXTRA_PIP_PACKAGES` and then
# `exec "$@"`. Nothing is installed at run time here: each package named must already be in
# the test venv (scripts/install-e2e.sh installs prefect[redis], so prefect-redis is), else
# this fails as a pod whose package install failed would.
set -e
if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
  echo "+pip install $EXTRA_PIP_PACKAGES (stand-in: checked present in the test venv)"
  for p in $EXTRA_PIP_PACKAGES; do
    python -m pip show -q "${p%%[<>=!~]*}" >/dev/null 2>&1 ||
      { echo "entrypoint stand-in: $p is not installed in the test venv" >&2; exit 1; }
  done
fi
[ $# -gt 0 ] || { echo "entrypoint stand-in: no command" >&2; exit 2; }
exec "$@"
