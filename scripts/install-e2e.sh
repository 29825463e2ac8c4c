#!/usr/bin/env bash
# Installs what the end-to-end tests on a real control plane (tests/cluster.rs) need besides
# the kube binaries (LOCKSTEP_KUBE_BIN) and the tools of install-tools.sh:
#   PostgreSQL and Redis servers    Debian's `postgresql` and `redis-server` (apt-get, only
#                                   when missing and only as root; nothing is started here)
#   .tools/prefect-3.7.8/           a venv with prefect[redis]==3.7.8, fastapi==0.154.0
#   .tools/prefect-3.8.3/           a venv with prefect[redis]==3.8.3, fastapi==0.154.0
# fastapi is pinned because fastapi >= 0.155 breaks Prefect 3.8.3's server import.
# Idempotent: a venv whose `prefect version` reports its version is left alone. PyPI and
# Debian's archive are the only sources. Prints the seconds each part took.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$ROOT/.tools"
PYTHON="${PYTHON:-python3}"
PREFECT_VERSIONS=(3.7.8 3.8.3)
FASTAPI="fastapi==0.154.0"
say() { echo "install-e2e: $*" >&2; }
die() { echo "install-e2e: ERROR: $*" >&2; exit 1; }
mkdir -p "$TOOLS"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/.install-e2e.lock"
  flock 9
fi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
t0=$SECONDS
missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install -y ${missing[*]}) or run this as root"
  say "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
  # Debian's packages start their own default instances; the tests run their own.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || :; done
  fi
  if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || :; fi
fi
say "postgresql $("$(pg_bin)/postgres" --version | awk '{print $3}'), redis $(redis-server --version | sed "s/.*v=\([^ ]*\).*/\1/") ($((SECONDS - t0)) s)"

for v in "${PREFECT_VERSIONS[@]}"; do
  t1=$SECONDS
  venv="$TOOLS/prefect-$v"
  # Present: installed by this script (the import check ran then); the dist-info says which.
  if [ -x "$venv/bin/prefect" ] && compgen -G "$venv/lib/python3*/site-packages/prefect-$v.dist-info" >/dev/null \
     && compgen -G "$venv/lib/python3*/site-packages/prefect_redis-*.dist-info" >/dev/null; then
    say "prefect $v: present"
    continue
  fi
  rm -rf "$venv.tmp"
  "$PYTHON" -m venv "$venv.tmp" || die "python3 -m venv failed"
  "$venv.tmp/bin/python" -m pip install --no-input --disable-pip-version-check -q \
    "prefect[redis]==$v" "$FASTAPI" </dev/null >&2 || die "pip install prefect[redis]==$v failed"
  "$venv.tmp/bin/python" -c 'import prefect_redis, prefect.server.api.server' \
    || die "prefect $v does not import its server and prefect_redis"
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
  # A venv's scripts name their interpreter by absolute path: fix them after the move.
  grep -rl --null "$venv.tmp" "$venv/bin" | xargs -0 -r sed -i "s#$venv.tmp#$venv#g"
  say "prefect $v: installed ($((SECONDS - t1)) s)"
done
