#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL cluster on 127.0.0.1 for the server's tests,
# and print its URL on stdout (the only thing printed there):
#
#   export VIBESDK_TEST_POSTGRES_URL="$(.ci/postgres.sh)"
#
# Idempotent: a second run finds the running cluster and prints the same URL.
# `.ci/postgres.sh stop` stops it and removes its data directory.
# Needs Debian's postgresql package (apt-get install -y postgresql); trust auth on
# loopback only, so never point anything but tests at it.
set -euo pipefail

DATA_ROOT="${VIBESDK_PG_DIR:-/tmp/vibesdk-pg}"
DATA="$DATA_ROOT/data"
DB="${VIBESDK_PG_DB:-vibesdk_test}"
PG_USER=postgres

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  echo "postgres.sh: PostgreSQL is not installed; run: apt-get install -y postgresql" >&2
  exit 1
}
BIN="$(bindir)"

as_pg() {
  if [ "$(id -un)" = "$PG_USER" ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"
  else "$@"; fi
}

if [ "${1:-}" = "stop" ]; then
  if [ -f "$DATA/PG_VERSION" ]; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >&2 || true; fi
  rm -rf "$DATA_ROOT"
  exit 0
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$DATA_ROOT"
if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$DATA_ROOT"; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DATA" -U "$PG_USER" --auth=trust -E UTF8 --no-locale >&2
  free_port > "$DATA_ROOT/port"
fi
PORT="$(cat "$DATA_ROOT/port")"

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA_ROOT/server.log" -w -t 60 \
    -o "-k /tmp -h 127.0.0.1 -p $PORT -c max_connections=300 -c fsync=on" start >&2
fi

if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$PG_USER" "$DB" >&2
fi

echo "postgresql://$PG_USER@127.0.0.1:$PORT/$DB"
