#!/usr/bin/env bash
# lockstep's benchmarks, measured side by side in one run on this machine, release build.
#
#   bash bench/run.sh            # everything below; writes bench/out/* and bench/RESULTS.md
#   QUICK=1 bash bench/run.sh    # fewer runs, streams up to 50 MB (a smoke test of the script)
#   PARTS=a bash bench/run.sh    # (a) for prefect-server only, its directory and its .tgz
#
# (a) `lockstep render` vs `helm template` alone, same chart, same arguments
#     (examples/charts/prefect-server, examples/charts/prefect-cloud-1.2.0, and a generated
#     chart of 500 ConfigMaps + 4 big CRDs + the API Deployment): ratio of wall times, with
#     helm with the garbage-collector settings lockstep gives it and the floor beside
#     them (bench/floor.rs: a wrapper that only runs helm, with those settings, and copies its
#     output).
# (b) `lockstep inject` on generated streams of 1, 10, 50, 200 MB (one API workload among
#     tens of thousands of documents, big CRDs included) vs `cat` (the I/O floor), and the
#     same edit (add a migration Job running the API's image) with yq (Debian's, the jq
#     wrapper) and kustomize (kubectl kustomize, a replacement copying the image): MB/s and
#     peak memory (GNU time's max RSS).
# Tools: hyperfine, jq, yq, time from Debian (installed when missing); helm and kubectl
# from scripts/install-tools.sh. Inputs are deterministic (bench/gen-*.py) and live in
# bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
mkdir -p "$OUT"

apt_need() { # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
apt_need hyperfine hyperfine
apt_need jq jq
apt_need yq yq
[ -x /usr/bin/time ] || apt_need /usr/bin/time time
[ -x .tools/bin/helm ] && [ -x .tools/bin/kubectl ] || bash scripts/install-tools.sh

cargo build --release --locked --quiet
L=$PWD/target/release/lockstep
H=$PWD/.tools/bin/helm
K=$PWD/.tools/bin/kubectl
export HELM_BIN=$H HELM_CACHE_HOME=$PWD/$OUT/helm-cache HELM_CONFIG_HOME=$PWD/$OUT/helm-config HELM_DATA_HOME=$PWD/$OUT/helm-data
unset LOCKSTEP_FROM

if [ -n "${QUICK:-}" ]; then RUNS=5; SIZES="1 10 50"; else RUNS=20; SIZES="1 10 50 200"; fi
# yq and kustomize take seconds per MB: only up to these sizes. kustomize's replacement is
# worse than linear here: one run on the 10 MB stream had not finished after 6 minutes.
OTHERS_MAX=${OTHERS_MAX:-10}
KUSTOMIZE_MAX=${KUSTOMIZE_MAX:-1}

# ---- (a) render vs helm template ---------------------------------------------------------
python3 bench/gen-chart.py "$OUT/big-chart"
# The floor: a wrapper that only runs helm and copies its output (bench/floor.rs).
rustc -O --edition 2021 -o "$OUT/floor" bench/floor.rs
# lockstep runs `helm template` with Go's collector held back (src/helm.rs go_gc_env)
# unless GOGC or GOMEMLIMIT is set: unset here, so lockstep does what it does by default.
# helm is timed both as a user runs it and with those settings; the floor runs with them,
# so lockstep / floor is lockstep's own cost.
unset GOGC GOMEMLIMIT
GC="GOGC=off GOMEMLIMIT=128MiB"
chart_bench() { # NAME CHART RELEASE FROM [helm/lockstep args...]
  local name=$1 chart=$2 release=$3 from=$4; shift 4
  echo "bench: (a) $name" >&2
  # Interleaved rounds (bench/pairs.py), not hyperfine's one-command-then-the-other: on a
  # shared machine a few ms of drift between the blocks is the size of the difference.
  python3 bench/pairs.py "$OUT/render-$name.json" $(( RUNS * 4 )) 3 \
    "helm template" "$H template $release $chart --namespace=prefect $* --include-crds" \
    "helm template, GC held back" "$GC $H template $release $chart --namespace=prefect $* --include-crds" \
    "lockstep render" "$L render $chart --release $release -n prefect --from $from $*" \
    "floor wrapper" "$GC $OUT/floor $H template $release $chart --namespace=prefect $* --include-crds"
}
chart_bench prefect-server examples/charts/prefect-server prefect-server 3.7.8
# The same chart packaged, as Helm-plugin and CI users pass charts after `helm pull`.
"$H" package examples/charts/prefect-server -d "$OUT" >/dev/null
chart_bench prefect-server-tgz "$OUT/prefect-server-2026.8.18172642.tgz" prefect-server 3.7.8
# PARTS=a: these two only (ratios in bench/out/render-prefect-server*.json; no RESULTS.md).
[ "${PARTS:-ab}" = a ] && exit 0
chart_bench prefect-cloud-1.2.0 examples/charts/prefect-cloud-1.2.0 prefect-cloud 0.8.2 \
  --values=examples/values/prefect-cloud/values-1.2.0.yaml
chart_bench big-chart "$OUT/big-chart" big 3.7.8
# ---- (b) inject on large streams ---------------------------------------------------------
JOBPROG='. + [ .[] | select(.kind == "Deployment" and .metadata.labels["app.kubernetes.io/component"] == "server")
  | {apiVersion: "batch/v1", kind: "Job", metadata: {name: "prefect-server-migrate-database", namespace: .metadata.namespace},
     spec: {template: {spec: {restartPolicy: "Never", containers: [{name: "migrate-database",
       image: .spec.template.spec.containers[0].image, command: ["prefect", "server", "database", "upgrade", "-y"],
       env: .spec.template.spec.containers[0].env}]}}}} ] | .[]'
: > "$OUT/memory.tsv"
for size in $SIZES; do
  s=$OUT/stream-$size.yaml
  [ -f "$s" ] || python3 bench/gen-stream.py "$size" "$s"
  k=$OUT/kustomize-$size
  mkdir -p "$k"
  ln -f "$s" "$k/stream.yaml" # kustomize refuses symlinks out of its directory
  cat > "$k/job.yaml" <<'JOB'
apiVersion: batch/v1
kind: Job
metadata:
  name: prefect-server-migrate-database
  namespace: prefect
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate-database
          image: PLACEHOLDER
          command: [prefect, server, database, upgrade, -y]
JOB
  cat > "$k/kustomization.yaml" <<'KUST'
resources: [stream.yaml, job.yaml]
replacements:
  - source: {kind: Deployment, name: prefect-server, fieldPath: spec.template.spec.containers.0.image}
    targets:
      - select: {kind: Job, name: prefect-server-migrate-database}
        fieldPaths: [spec.template.spec.containers.0.image]
KUST
  runs=$RUNS
  [ "$size" -ge 200 ] && runs=$(( RUNS / 2 ))
  echo "bench: (b) $size MB" >&2
  hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$OUT/inject-$size.json" \
    -n cat "cat $s" -n "lockstep inject" "$L inject --profile prefect-server < $s" >&2
  if [ "$size" -le "$OTHERS_MAX" ]; then
    # Seconds per run: fewer runs.
    others=(-n "yq (jq wrapper)" "yq -y -s '$JOBPROG' $s")
    if [ "$size" -le "$KUSTOMIZE_MAX" ]; then others+=(-n "kustomize" "$K kustomize $k"); fi
    hyperfine --style basic --runs 3 --export-json "$OUT/others-$size.json" "${others[@]}" >&2
  fi
  # Peak memory, one run each.
  mem() { # TOOL COMMAND...
    local t=$1; shift
    /usr/bin/time -f "%M" -o "$OUT/time.tmp" "$@" > /dev/null 2>/dev/null < "$s" || true
    printf '%s\t%s\t%s\n' "$size" "$t" "$(tail -1 "$OUT/time.tmp")" >> "$OUT/memory.tsv"
  }
  mem "cat" cat
  mem "lockstep inject" "$L" inject --profile prefect-server
  if [ "$size" -le "$OTHERS_MAX" ]; then mem "yq (jq wrapper)" yq -y -s "$JOBPROG"; fi
  if [ "$size" -le "$KUSTOMIZE_MAX" ]; then mem "kustomize" "$K" kustomize "$k"; fi
done

# ---- results -----------------------------------------------------------------------------
{
  echo "lockstep	$($L --version)"
  echo "helm	$($H version --short)"
  echo "hyperfine	$(hyperfine --version)"
  echo "yq	$(dpkg-query -W -f '${Version}' yq) (Debian yq, jq $(jq --version))"
  echo "kustomize	$($K version --client 2>/dev/null | sed -n 's/Kustomize Version: //p') (kubectl $($K version --client 2>/dev/null | sed -n 's/Client Version: //p'))"
  echo "rustc	$(rustc --version)"
  echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores)"
  echo "memory	$(free -g | awk '/Mem:/ {print $2 " GiB"}')"
  echo "kernel	$(uname -sr)"
  echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "load	$(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at the end of the run)"
} > "$OUT/env.tsv"
python3 bench/report.py "$OUT" > bench/RESULTS.md
echo "bench: wrote bench/RESULTS.md" >&2
