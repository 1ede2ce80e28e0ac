#!/usr/bin/env bash
# with_pg.sh CMD [ARGS...]: runs CMD with MAMORI_TEST_STORE set to a
# PostgreSQL database of its own (scripts/pg.sh: initdb in a temporary
# directory, loopback only), stopped and removed afterwards. CMD's status.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d /tmp/mamori-pg.XXXXXX)
cleanup() { "$ROOT/scripts/pg.sh" stop "$D" >/dev/null 2>&1; rm -rf "$D"; }
trap cleanup EXIT
URL=$("$ROOT/scripts/pg.sh" start "$D") || { cat "$D"/*.log >&2; exit 1; }
MAMORI_TEST_STORE=$URL "$@"
