#!/usr/bin/env bash
# A Mamori cluster on loopback, in one directory: PostgreSQL (initdb in
# DIR/pg as an unprivileged user, scripts/pg.sh), two broker nodes
# (mamorid broker), HAProxy in front of them (TCP, TLS passed through) and
# the hub over PostgreSQL connected to both nodes.
#
#   scripts/cluster.sh up DIR [BUILD]   starts it; addresses in DIR/cluster.json
#   scripts/cluster.sh down DIR         stops everything it started
#   scripts/cluster.sh haproxy-conf PORT NODE_ADDR...   the HAProxy configuration it uses
#
# MAMORI_BIN (the binaries) and MAMORI_PLUGIN (the broker plugin) override
# the build directory's. Every port is a free one; every process's pid is in DIR/*.pid, its log in
# DIR/*.log. The hub's restart (kill it, run the command in DIR/hub.cmd
# again) drops no device: the nodes keep them.
set -euo pipefail
cmd=${1:-}; DIR=${2:-}; BUILD=${3:-build}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 up|down DIR [BUILD]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MAMORI_BIN:-$ROOT/$BUILD/bin}
NODES=2

now_ms() { date +%s%3N; }
wait_until() { local end=$(( $(now_ms) + $1 * 1000 )); shift
    while ! "$@" 2>/dev/null; do [ "$(now_ms)" -ge "$end" ] && return 1; sleep 0.1; done; }
free_port() { python3 "$ROOT/scripts/free_port.py"; }
# start NAME CMD...: runs CMD in its own session, detached; DIR/NAME.pid, DIR/NAME.log
start() { local name=$1; shift
    setsid "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name.pid"; }
alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
jfield() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
synced() { curl -sf --cacert "$DIR/hub/pki/root.crt" "$(jfield "$DIR/hub/run/endpoints.json" api)/api/v1/health" |
    python3 -c 'import json,sys; h=json.load(sys.stdin); sys.exit(0 if h["plugin_synced"] and len(h["nodes"])==int(sys.argv[1]) else 1)' "$NODES"; }

# haproxy_conf PUBLIC_PORT NODE_ADDR...: HAProxy in front of the nodes, TCP
# mode, TLS passed through (docs/operations.md)
haproxy_conf() { local pub=$1 i=0 a; shift
    printf 'global\n    maxconn %s\n' "${HAPROXY_MAXCONN:-2000}"
    printf 'defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10m\n'
    printf '    timeout server 10m\n    retries 2\n    option redispatch\n'
    printf 'frontend mqtt\n    bind 127.0.0.1:%s\n    default_backend nodes\n' "$pub"
    printf 'backend nodes\n    balance leastconn\n    default-server inter 300ms fall 2 rise 2\n'
    for a in "$@"; do i=$((i + 1)); printf '    server n%d %s check\n' "$i" "$a"; done
}

up() {
    [ -x "$BIN/mamorid" ] || { echo "$BIN/mamorid not built (make build)" >&2; exit 1; }
    command -v haproxy >/dev/null || { echo "haproxy is not installed (scripts/install-deps.sh --test)" >&2; exit 1; }
    [ -e "$DIR/cluster.json" ] && { echo "$DIR already holds a cluster ($0 down $DIR first)" >&2; exit 1; }
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    chmod 711 "$DIR" # the database server's own user reaches DIR/pg, lists nothing
    local url p pub nodes=()
    url=$("$ROOT/scripts/pg.sh" start "$DIR/pg")
    # ports: chosen once and kept (devices are given the public one), so a
    # cluster stopped with `down` comes back on the same addresses
    for i in $(seq 1 $NODES); do
        if [ -f "$DIR/n$i/node.json" ]; then
            p=$(jfield "$DIR/n$i/node.json" port)
        else
            p=$(free_port)
            while printf '%s\n' "${nodes[@]}" | grep -qx "127.0.0.1:$p"; do p=$(free_port); done
        fi
        nodes+=("127.0.0.1:$p")
    done
    rm -f "$DIR/hub/run/endpoints.json"
    if [ -f "$DIR/mqtt.port" ]; then
        pub=$(cat "$DIR/mqtt.port")
    else
        pub=$(free_port)
        while printf '%s\n' "${nodes[@]}" | grep -qx "127.0.0.1:$pub"; do pub=$(free_port); done
        echo "$pub" >"$DIR/mqtt.port"
    fi
    [ -f "$DIR/api.port" ] || free_port >"$DIR/api.port"
    mkdir -p "$DIR/hub"; chmod 700 "$DIR/hub"
    local hubcmd=("$BIN/mamorid" --data "$DIR/hub" --store "$url" --api-port "$(cat "$DIR/api.port")"
        --broker "$(IFS=,; echo "${nodes[*]}")" --mqtt-public "127.0.0.1:$pub")
    printf '%q ' "${hubcmd[@]}" >"$DIR/hub.cmd"; echo >>"$DIR/hub.cmd"
    start hub "${hubcmd[@]}"
    wait_until 60 test -f "$DIR/hub/run/endpoints.json" ||
        { echo "the hub did not start:" >&2; tail -20 "$DIR/hub.log" >&2; exit 1; }
    for i in $(seq 1 $NODES); do
        "$BIN/mamorid" broker-init --from "$DIR/hub" --data "$DIR/n$i" --node "n$i" \
            --mqtt-port "${nodes[i - 1]##*:}" >/dev/null
        start "n$i" "$BIN/mamorid" broker --data "$DIR/n$i" ${MAMORI_PLUGIN:+--plugin "$MAMORI_PLUGIN"}
    done
    haproxy_conf "$pub" "${nodes[@]}" >"$DIR/haproxy.cfg"
    start haproxy haproxy -f "$DIR/haproxy.cfg" -db
    wait_until 60 synced || { echo "the broker nodes did not synchronise:" >&2; tail -5 "$DIR"/*.log >&2; exit 1; }
    local api
    api=$(jfield "$DIR/hub/run/endpoints.json" api)
    python3 - "$DIR" "$url" "$api" "127.0.0.1:$pub" "${nodes[@]}" <<'PY'
import json, os, sys
d, url, api, pub, nodes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
pid = lambda n: int(open(os.path.join(d, n + ".pid")).read())
c = {"postgresql": url,
     "mqtt": pub,
     "ca": os.path.join(d, "hub/pki/root.crt"),
     "haproxy": {"pid": pid("haproxy"), "config": os.path.join(d, "haproxy.cfg")},
     "brokers": [{"node": "n%d" % (i + 1), "address": a, "data": os.path.join(d, "n%d" % (i + 1)),
                  "pid": pid("n%d" % (i + 1))} for i, a in enumerate(nodes)],
     "hubs": [{"api": api, "data": os.path.join(d, "hub"), "pid": pid("hub"),
               "command": open(os.path.join(d, "hub.cmd")).read().strip()}]}
open(os.path.join(d, "cluster.json"), "w").write(json.dumps(c, indent=1) + "\n")
PY
    cat <<TXT
Mamori cluster up in $DIR (cluster.json):
  API           $api    (CA: $DIR/hub/pki/root.crt)
  devices dial  mqtts://127.0.0.1:$pub   (HAProxy -> ${nodes[*]})
  registry      PostgreSQL, $url
  administrator mamorictl --data $DIR/hub bootstrap --user admin   (token: $DIR/hub/bootstrap-token)
Stop it with: $0 down $DIR
TXT
}

down() {
    [ -d "$DIR" ] || return 0
    local name pid
    for name in hub haproxy $(cd "$DIR" && ls -d n[0-9]* 2>/dev/null); do
        [ -f "$DIR/$name.pid" ] || continue
        pid=$(cat "$DIR/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        wait_until 30 eval "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
        rm -f "$DIR/$name.pid"
    done
    [ -d "$DIR/pg" ] && "$ROOT/scripts/pg.sh" stop "$DIR/pg"
    rm -f "$DIR/cluster.json"
    echo "Mamori cluster in $DIR stopped (its data is kept: up starts it again; delete $DIR to start afresh)"
}

case "$cmd" in
up) up ;;
down) down ;;
haproxy-conf) shift; haproxy_conf "$@" ;;
*) echo "usage: $0 up|down DIR [BUILD]" >&2; exit 2 ;;
esac
