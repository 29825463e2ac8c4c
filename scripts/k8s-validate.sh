#!/usr/bin/env bash
# k8s-validate.sh [-k KUBE_VERSION] FILE...
# Validates Kubernetes manifests (multi-document YAML; "-" = stdin) in strict mode (unknown
# fields are errors) against the Kubernetes schemas of KUBE_VERSION (default 1.33.0, or
# $K8S_VALIDATE_VERSION), with .tools/bin/kubernetes-validate (scripts/install-tools.sh).
#
# - All files go to ONE kubernetes-validate call (~0.3 s start-up, ~0.1 s per 35 KB file).
# - Documents of kinds with no schema (CRDs: group has a dot and is not a built-in
#   *.k8s.io group) are skipped with a note on stderr; they do not fail.
# - A built-in group/version with no schema (e.g. extensions/v1beta1 Ingress, removed
#   before 1.33) fails: kubernetes-validate itself only warns about it.
# Exit 0 when every document is valid; 1 otherwise. Failures go to stdout as
#   ERROR <file>: <kind>/<name>: <path>: <reason>
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
KV="$ROOT/.tools/bin/kubernetes-validate"
KUBE_VERSION="${K8S_VALIDATE_VERSION:-1.33.0}"

usage() { echo "usage: $0 [-k KUBE_VERSION] FILE..." >&2; exit 2; }
while (($#)); do
  case "$1" in
    -k|--kubernetes-version) (($# >= 2)) || usage; KUBE_VERSION="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -?*) echo "k8s-validate: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($#)) || usage

[[ -x "$KV" ]] || { echo "k8s-validate: $KV missing: run scripts/install-tools.sh" >&2; exit 2; }

# kubernetes-validate aborts the whole run at the first unreadable file: check them first.
# It has no "--" (it would take "--" as a file name): make names starting with "-" "./-...".
files=()
for f in "$@"; do
  [[ "$f" == "-" || -r "$f" ]] || { echo "k8s-validate: ERROR: cannot read $f" >&2; exit 1; }
  [[ "$f" == -?* ]] && f="./$f"
  files+=("$f")
done

out="$(mktemp)"; err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT
# Options must precede the file names (its positional arg is argparse.REMAINDER).
set +e
"$KV" -k "$KUBE_VERSION" --strict --quiet "${files[@]}" >"$out" 2>"$err"
rc=$?
set -e

# Lines it prints (stdout):
#   ERROR <file> did not validate for resource <kind>/<name> against version <v>: <path>: <msg>
#   ERROR <file> could not be validated: <msg>
#   WARN <file> Couldn't find schema for kind <K> with api version <A> for kubernetes version <v>
#   FATAL kubernetes-validate <x> does not support kubernetes version <v>
# YAML parse errors / crashes go to stderr with a non-zero exit.
failed=0 fatal=0
while IFS= read -r line; do
  case "$line" in
    "ERROR "*" did not validate for resource "*)
      file="${line#ERROR }"; file="${file%% did not validate for resource *}"
      rest="${line#* did not validate for resource }"
      res="${rest%% against version *}"
      reason="${rest#* against version *: }"
      echo "ERROR $file: $res: ${reason/#: /(root): }"
      failed=1 ;;
    "WARN "*"Couldn't find schema for kind "*)
      kind="${line#*Couldn\'t find schema for kind }"; kind="${kind%% with api version *}"
      api="${line#* with api version }"; api="${api%% for kubernetes version *}"
      file="${line#WARN }"; file="${file%% Couldn\'t find schema*}"
      group=""; [[ "$api" == */* ]] && group="${api%/*}"
      case "$group" in
        *.*.k8s.io|*.k8s.io)
          case "$group" in
            admissionregistration.k8s.io|apiextensions.k8s.io|apiregistration.k8s.io|\
            authentication.k8s.io|authorization.k8s.io|certificates.k8s.io|coordination.k8s.io|\
            discovery.k8s.io|events.k8s.io|flowcontrol.apiserver.k8s.io|internal.apiserver.k8s.io|\
            networking.k8s.io|node.k8s.io|rbac.authorization.k8s.io|resource.k8s.io|\
            scheduling.k8s.io|storage.k8s.io|storagemigration.k8s.io) builtin=1 ;;
            *) builtin=0 ;;
          esac ;;
        *.*) builtin=0 ;;
        *) builtin=1 ;;   # core ("v1") and dot-less groups (apps, batch, policy, ...) are built in
      esac
      if ((builtin)); then
        echo "ERROR $file: $kind ($api): no such built-in API in Kubernetes $KUBE_VERSION"
        failed=1
      else
        echo "k8s-validate: note: $file: $kind ($api) not validated (no schema; custom resource?)" >&2
      fi ;;
    "WARN "*) echo "k8s-validate: $line" >&2 ;;
    "FATAL "*) ((fatal)) || echo "$line"; fatal=1; failed=1 ;;   # repeated per document
    "ERROR "*) echo "$line"; failed=1 ;;
    "INFO "*|"") ;;
    *) echo "$line" ;;
  esac
done <"$out"

if ((rc != 0 && failed == 0)); then
  # e.g. YAML that does not parse, or a crash inside kubernetes-validate.
  echo "ERROR kubernetes-validate exited $rc:" >&2
  cat "$err" >&2
  exit 1
fi
[[ -s "$err" && $failed -ne 0 ]] && cat "$err" >&2
exit "$failed"
