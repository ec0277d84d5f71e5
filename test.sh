#!/usr/bin/env bash
# The whole test suite: vet, then every test with the race detector, fuzz
# seed corpora included. Needs Go, git, a POSIX sh and PostgreSQL's server
# binaries (Debian's postgresql package); .ci/run installs what a fresh
# machine lacks and then runs exactly this script.
#
# The PostgreSQL tests use the server GANTRY_TEST_POSTGRES names when it is
# set. Otherwise this script starts a private, throwaway cluster (in a temp
# dir, on a unix socket only, fsync off) for the run and removes it on exit.
set -euo pipefail
cd "$(dirname "$0")"

go vet ./...

if [ -z "${GANTRY_TEST_POSTGRES:-}" ]; then
  bindir=""
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    bindir="$(dirname "$(command -v initdb)")"
  else
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
      if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir="$d"; break; fi
    done
  fi
  if [ -z "$bindir" ]; then
    echo "test.sh: PostgreSQL's initdb and pg_ctl not found: install postgresql (.ci/run does), or set GANTRY_TEST_POSTGRES" >&2
    exit 1
  fi

  pgdir="$(mktemp -d "${TMPDIR:-/tmp}/gantry-pg.XXXXXX")"
  # PostgreSQL refuses to run as root: as root, the cluster belongs to the
  # postgres user, and root's tests connect as that role over the socket.
  as=()
  pguser="$(id -un)"
  if [ "$(id -u)" = 0 ]; then
    pguser=postgres
    id "$pguser" >/dev/null 2>&1 || { echo "test.sh: running as root needs a postgres user" >&2; exit 1; }
    chown "$pguser" "$pgdir"
    as=(runuser -u "$pguser" --)
  fi
  chmod 700 "$pgdir"
  stop_pg() {
    "${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pgdir"
  }
  trap stop_pg EXIT
  trap 'exit 130' INT TERM

  "${as[@]}" "$bindir/initdb" -D "$pgdir/data" -U "$pguser" --auth=trust --no-sync \
    -E UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 ||
    { cat "$pgdir/initdb.log" >&2; exit 1; }
  # No TCP at all: one socket in the private dir. fsync and friends off,
  # since the cluster dies with the run.
  "${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$pgdir' -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=500" \
    start >/dev/null || { cat "$pgdir/server.log" >&2; exit 1; }
  export GANTRY_TEST_POSTGRES="postgres:///postgres?host=$pgdir&user=$pguser&sslmode=disable"
fi

go test -race -count=1 -timeout 20m ./...
# The flood of 10,000 jobs through 20 agents, without the race detector
# (which makes the pure-Go SQLite too slow for it); see flood_test.go.
go test -count=1 -timeout 10m -run '^TestAgentFlood$' ./internal/api
