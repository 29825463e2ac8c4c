#!/usr/bin/env bash
# Throw-away PostgreSQL and Redis servers on 127.0.0.1 for lockstep's end-to-end tests
# (the "external" database and Redis of the charts under test). Debian's packages, installed
# by scripts/install-e2e.sh; nothing of the system's own instances is touched.
#
#   e2e-db.sh start DIR   initdb into DIR/pg (as the postgres user when run as root), start
#                         postgres and redis-server on free loopback ports; writes DIR/db.env
#                         (PG_PORT, PG_SUPERUSER, REDIS_PORT, REDIS_PASSWORD) and DIR/pids
#   e2e-db.sh stop DIR    stop both by PID (TERM, then KILL after 5 s)
#
# PostgreSQL trusts loopback connections (test data only); Redis requires REDIS_PASSWORD.
set -euo pipefail
cmd=${1:-}; D=${2:-}
[ -n "$cmd" ] && [ -n "$D" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "e2e-db: PostgreSQL is not installed: run scripts/install-e2e.sh" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "e2e-db: redis-server is not installed: run scripts/install-e2e.sh" >&2; exit 1; }
  mkdir -p "$D/logs"; D=$(cd "$D" && pwd)
  : > "$D/pids"
  trap 'stop; exit 1' ERR INT TERM
  local as=() user; user=$(id -un)
  # setpriv execs (runuser would fork): the PID recorded is the server's own.
  if [ "$(id -u)" = 0 ]; then as=(setpriv --reuid=postgres --regid=postgres --init-groups); user=postgres; fi
  local pg_port redis_port password
  pg_port=$(free_port); redis_port=$(free_port)
  password=e2e-redis-$RANDOM$RANDOM
  rm -rf "$D/pg"; mkdir -p "$D/pg" "$D/pg-run"
  [ "$(id -u)" = 0 ] && chown postgres "$D/pg" "$D/pg-run" "$D/logs" && chmod 755 "$D"
  "${as[@]}" "$bin/initdb" -D "$D/pg/data" -U "$user" --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 \
    > "$D/logs/initdb.log" 2>&1 || { cat "$D/logs/initdb.log" >&2; exit 1; }
  # setsid: its own session, so a signal to the test's process group does not reach it.
  setsid "${as[@]}" "$bin/postgres" -D "$D/pg/data" -h 127.0.0.1 -p "$pg_port" -k "$D/pg-run" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
    > "$D/logs/postgres.log" 2>&1 < /dev/null &
  echo "postgres $!" >> "$D/pids"
  setsid redis-server --bind 127.0.0.1 --port "$redis_port" --requirepass "$password" \
    --save '' --appendonly no --dir "$D" --databases 64 > "$D/logs/redis.log" 2>&1 < /dev/null &
  echo "redis $!" >> "$D/pids"
  local ok=
  for _ in $(seq 1 300); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && redis-cli -p "$redis_port" -a "$password" --no-auth-warning ping 2>/dev/null | grep -q PONG; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "e2e-db: postgres or redis not ready after 30 s (logs in $D/logs)" >&2; false; }
  printf 'PG_PORT=%s\nPG_SUPERUSER=%s\nREDIS_PORT=%s\nREDIS_PASSWORD=%s\n' "$pg_port" "$user" "$redis_port" "$password" > "$D/db.env"
  trap - ERR INT TERM
  echo "$D/db.env"
}

# The same PID file as e2e-cluster.sh's: stopped the same way.
stop() { bash "$(dirname "${BASH_SOURCE[0]}")/e2e-cluster.sh" stop "$D"; }

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
