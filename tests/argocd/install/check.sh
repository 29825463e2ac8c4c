#!/usr/bin/env bash
# tests/argocd/install/check.sh: offline test of lockstep's Argo CD install.
#   1. kubectl kustomize tests/argocd/install (the component on a stand-in repo-server);
#   2. strict schema validation of that output and of examples/argocd/*.yaml
#      (scripts/k8s-validate.sh; Applications are custom resources and get a note, not a
#      schema: check.py checks them against plugin.yaml instead);
#   3. check.py: structure of the build, plugin.yaml against the CMP contract, examples.
# Tools: .tools/bin/kubectl and kubernetes-validate from scripts/install-tools.sh, or
# $KUBECTL / kubectl on PATH. Ends with "N passed, M failed"; exit 1 on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../../.." && pwd -P)"

KUBECTL="${KUBECTL:-}"
if [[ -z "$KUBECTL" ]]; then
  if [[ -x "$ROOT/.tools/bin/kubectl" ]]; then KUBECTL="$ROOT/.tools/bin/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then KUBECTL="$(command -v kubectl)"
  else echo "check.sh: no kubectl (run scripts/install-tools.sh)" >&2; exit 1; fi
fi
PYTHON="python3"
[[ -x "$ROOT/.tools/venv/bin/python" ]] && PYTHON="$ROOT/.tools/venv/bin/python"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

pass=0; fail=0
step() { # step NAME CMD...: one counted check
  local name="$1"; shift
  if "$@" >"$out/step.log" 2>&1; then pass=$((pass + 1)); echo "ok   - $name"
  else fail=$((fail + 1)); echo "FAIL - $name"; sed 's/^/       /' "$out/step.log"; fi
}

step "kubectl kustomize tests/argocd/install" \
  bash -c '"$1" kustomize "$2" >"$3"' _ "$KUBECTL" "$HERE" "$out/build.yaml"

if [[ -x "$ROOT/scripts/k8s-validate.sh" ]]; then
  step "strict schema validation of the build (k8s 1.33)" "$ROOT/scripts/k8s-validate.sh" "$out/build.yaml"
  shopt -s nullglob
  examples=("$ROOT"/examples/argocd/*.yaml)
  if ((${#examples[@]})); then
    step "strict schema validation of examples/argocd (built-in kinds; CRDs noted)" \
      "$ROOT/scripts/k8s-validate.sh" "${examples[@]}"
  fi
else
  echo "note - scripts/k8s-validate.sh missing: schema validation skipped"
fi

if [[ -s "$out/build.yaml" ]]; then
  set +e
  "$PYTHON" "$HERE/check.py" "$out/build.yaml" | tee "$out/check.log"
  set -e
  line="$(tail -n 1 "$out/check.log")"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    pass=$((pass + BASH_REMATCH[1])); fail=$((fail + BASH_REMATCH[2]))
  else
    fail=$((fail + 1)); echo "FAIL - check.py did not finish"
  fi
fi

echo "argocd-install: $pass passed, $fail failed"
((fail == 0))
