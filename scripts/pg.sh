#!/usr/bin/env bash
# A private PostgreSQL server for tests, benchmarks and the local cluster:
# initdb in DIR as an unprivileged user, listening on 127.0.0.1 only, on a
# free port and a socket in DIR; one role "mamori" with its own random
# password (scram-sha-256), kept in a 0600 passfile; one database "mamori"
# (UTF8, C collation: text sorts byte by byte, as with SQLite).
#
#   scripts/pg.sh start DIR   prints the store URI (also in DIR/store.url);
#                             a server made before in DIR starts again
#   scripts/pg.sh stop DIR
#   scripts/pg.sh psql DIR [ARGS...]   psql on that database, as the owner
#
# The URI names the passfile, never the password: it can be given on a
# command line (mamorid --store "$(cat DIR/store.url)").
set -euo pipefail
cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|psql DIR" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "postgresql is not installed (scripts/install-deps.sh --test)" >&2; exit 1; }
# the server never runs as root: as the Debian package's "postgres" user
# when this runs as root, else as the caller
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); else AS=(); fi
DATA=$DIR/pgdata

free_port() { python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# a server made earlier in DIR, started again on its own port
restart() {
    local port
    port=$(cat "$DIR/port")
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=on -c synchronous_commit=on" \
        start >/dev/null
    cat "$DIR/store.url"
}

start() {
    if [ -f "$DATA/PG_VERSION" ] && [ -f "$DIR/store.url" ]; then
        restart
        return
    fi
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    "${AS[@]}" test -x "$DIR" ||
        { echo "$DIR: the server's user cannot reach it (a parent directory is closed)" >&2; return 1; }
    local pw port
    pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    umask 077
    "${AS[@]}" "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1
    port=$(free_port)
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=on -c synchronous_commit=on" \
        start >/dev/null
    # the password on standard input, never on a command line
    "${AS[@]}" "$PGBIN/psql" -h "$DIR" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
        <<SQL >/dev/null
CREATE ROLE mamori LOGIN PASSWORD '$pw';
CREATE DATABASE mamori OWNER mamori ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL
    # the hub's passfile: readable by the caller only
    printf '127.0.0.1:%s:mamori:mamori:%s\n' "$port" "$pw" >"$DIR/passfile"
    chmod 600 "$DIR/passfile"
    [ "$(id -u)" = 0 ] && chown root: "$DIR/passfile"
    echo "$port" >"$DIR/port"
    echo "postgresql://mamori@127.0.0.1:$port/mamori?passfile=$DIR/passfile&connect_timeout=10" \
        >"$DIR/store.url"
    umask 022
    cat "$DIR/store.url"
}

stop() {
    [ -f "$DATA/postmaster.pid" ] || return 0
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
}

case "$cmd" in
start) start ;;
stop) stop ;;
psql)
    shift 2
    exec "${AS[@]}" "$PGBIN/psql" -h "$DIR" -p "$(cat "$DIR/port")" -U postgres -d mamori "$@"
    ;;
*) echo "usage: $0 start|stop|psql DIR" >&2; exit 2 ;;
esac
