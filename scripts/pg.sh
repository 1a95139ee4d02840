#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks (never for real runs).
#
#   scripts/pg.sh start DIR [PORT]   create a cluster in DIR (if new), start it, print its URL
#   scripts/pg.sh stop DIR           stop it (fast shutdown); DIR is kept
#   scripts/pg.sh url DIR            print the URL of a running cluster in DIR
#
# Uses the Debian `postgresql` package's binaries (/usr/lib/postgresql/*/bin) or any initdb on
# PATH. initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user.
# Trust authentication on 127.0.0.1 only, database user `m2i`, database `m2i`.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return
    fi
  done
  return 1
}

as_owner() {
  # Run a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: scripts/pg.sh start|stop|url DIR [PORT]"

case "$cmd" in
  start)
    bin=$(find_bin) || die "PostgreSQL is not installed; install it with: sudo apt-get install postgresql"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || die "run as root but there is no 'postgres' OS user to own the cluster"
      chown postgres "$dir"
      chmod 700 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U m2i --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || die "initdb failed; see $dir/initdb.log"
    fi
    if [ -f "$dir/port" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      echo "postgresql+psycopg://m2i@127.0.0.1:$(cat "$dir/port")/m2i"
      exit 0
    fi
    port=${3:-$(free_port)}
    mkdir -p "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$dir/sock"
    fi
    # Test settings: no fsync by default (PG_FSYNC=on to measure with durable commits).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} \
          -c synchronous_commit=${PG_FSYNC:-off} -c full_page_writes=${PG_FSYNC:-off} -c max_connections=300" \
      start >/dev/null || die "the server did not start; see $dir/server.log"
    echo "$port" >"$dir/port"
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U m2i -d postgres -qAtc \
      "SELECT 1 FROM pg_database WHERE datname='m2i'" | grep -q 1 \
      || as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U m2i m2i
    echo "postgresql+psycopg://m2i@127.0.0.1:$port/m2i"
    ;;
  stop)
    bin=$(find_bin) || die "PostgreSQL is not installed"
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  url)
    [ -f "$dir/port" ] || die "no cluster started in $dir"
    echo "postgresql+psycopg://m2i@127.0.0.1:$(cat "$dir/port")/m2i"
    ;;
  *)
    die "unknown command $cmd; use start, stop or url"
    ;;
esac
