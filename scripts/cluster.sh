#!/usr/bin/env bash
# A Mamori cluster on loopback, in one directory: PostgreSQL (initdb in
# DIR/pg as an unprivileged user, scripts/pg.sh), two broker nodes
# (mamorid broker), two hubs over PostgreSQL, each connected to both nodes
# (hub1, hub2: hub2's directory made with `mamorid hub-init`), and HAProxy
# in front of the nodes and of the hubs' API (TCP, TLS passed through).
#
#   scripts/cluster.sh up DIR [BUILD]   starts it; addresses in DIR/cluster.json
#   scripts/cluster.sh down DIR         stops everything it started
#   scripts/cluster.sh haproxy-conf PORT NODE_ADDR... [-- API_PORT HUB_ADDR...]
#                                       the HAProxy configuration it uses
#
# MAMORI_BIN (the binaries) and MAMORI_PLUGIN (the broker plugin) override
# the build directory's; CLUSTER_HUBS and CLUSTER_NODES (1-16, 2 each by
# default) the number of hubs and broker nodes. MAMORI_HUB_OPTS adds options
# to every hub's command line, CLUSTER_NODE_OPTS to every broker-init's. Every port is a free one; every process's pid is in DIR/*.pid, its log in
# DIR/*.log. A hub's restart (kill it, run the command in DIR/hubN.cmd
# again) drops no device: the nodes keep them, and the other hub takes
# over its share of the work meanwhile (hub/core/cluster.h).
set -euo pipefail
cmd=${1:-}; DIR=${2:-}; BUILD=${3:-build}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 up|down DIR [BUILD]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MAMORI_BIN:-$ROOT/$BUILD/bin}
NODES=${CLUSTER_NODES:-2} # benchmarks compare one of each with two of each
HUBS=${CLUSTER_HUBS:-2}

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
health() { curl -sf --cacert "$DIR/hub1/pki/root.crt" "$(jfield "$DIR/hub$1/run/endpoints.json" api)/api/v1/health"; }
# every hub holds sessions with every node, and the partitions are shared out
synced() { local i out=""
    for i in $(seq 1 $HUBS); do out="$out$(health "$i")"$'\n' || return 1; done
    printf '%s' "$out" | python3 -c 'import json,sys
hs=[json.loads(l) for l in sys.stdin if l.strip()]
ok=all(h["plugin_synced"] and len(h["nodes"])==int(sys.argv[1]) and h["hub"]["hubs"]==len(hs) for h in hs)
sys.exit(0 if ok and sum(h["hub"]["partitions"] for h in hs)==hs[0]["hub"]["partitions_of"] else 1)' "$NODES"; }

# haproxy_conf PUBLIC_PORT NODE_ADDR... [-- API_PORT HUB_ADDR...]: HAProxy in
# front of the nodes (and the hubs' API), TCP mode, TLS passed through
# (docs/operations.md)
haproxy_conf() { local pub=$1 i=0 a; shift
    printf 'global\n    maxconn %s\n' "${HAPROXY_MAXCONN:-2000}"
    printf 'defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10m\n'
    printf '    timeout server 10m\n    retries 2\n    option redispatch\n'
    printf 'frontend mqtt\n    bind 127.0.0.1:%s\n    default_backend nodes\n' "$pub"
    printf 'backend nodes\n    balance leastconn\n    default-server inter 300ms fall 2 rise 2\n'
    while [ $# -gt 0 ] && [ "$1" != -- ]; do i=$((i + 1)); printf '    server n%d %s check\n' "$i" "$1"; shift; done
    [ $# -gt 2 ] || return 0
    shift; i=0
    printf 'frontend api\n    bind 127.0.0.1:%s\n    timeout client 1m\n    default_backend hubs\n' "$1"
    printf 'backend hubs\n    balance roundrobin\n    timeout server 1m\n'
    printf '    default-server inter 300ms fall 2 rise 2\n'
    shift
    for a in "$@"; do i=$((i + 1)); printf '    server h%d %s check\n' "$i" "$a"; done
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
    for i in $(seq 1 $HUBS); do rm -f "$DIR/hub$i/run/endpoints.json"; done
    if [ -f "$DIR/mqtt.port" ]; then
        pub=$(cat "$DIR/mqtt.port")
    else
        pub=$(free_port)
        while printf '%s\n' "${nodes[@]}" | grep -qx "127.0.0.1:$pub"; do pub=$(free_port); done
        echo "$pub" >"$DIR/mqtt.port"
    fi
    for f in api $(seq -f 'api%g' 1 $HUBS); do [ -f "$DIR/$f.port" ] || free_port >"$DIR/$f.port"; done
    local hubs=() api
    for i in $(seq 1 $HUBS); do
        if [ "$i" -gt 1 ] && [ ! -d "$DIR/hub$i/pki" ]; then # the same platform: keys from hub1
            "$BIN/mamorid" hub-init --from "$DIR/hub1" --data "$DIR/hub$i" >/dev/null
        fi
        mkdir -p "$DIR/hub$i"; chmod 700 "$DIR/hub$i"
        local hubcmd=("$BIN/mamorid" --data "$DIR/hub$i" --name "hub$i" --store "$url"
            --api-port "$(cat "$DIR/api$i.port")"
            --broker "$(IFS=,; echo "${nodes[*]}")" --mqtt-public "127.0.0.1:$pub" ${MAMORI_HUB_OPTS:-})
        printf '%q ' "${hubcmd[@]}" >"$DIR/hub$i.cmd"; echo >>"$DIR/hub$i.cmd"
        start "hub$i" "${hubcmd[@]}"
        wait_until 60 test -f "$DIR/hub$i/run/endpoints.json" ||
            { echo "hub $i did not start:" >&2; tail -20 "$DIR/hub$i.log" >&2; exit 1; }
        hubs+=("127.0.0.1:$(cat "$DIR/api$i.port")")
    done
    for i in $(seq 1 $NODES); do
        "$BIN/mamorid" broker-init --from "$DIR/hub1" --data "$DIR/n$i" --node "n$i" \
            --mqtt-port "${nodes[i - 1]##*:}" ${CLUSTER_NODE_OPTS:-} >/dev/null
        start "n$i" "$BIN/mamorid" broker --data "$DIR/n$i" ${MAMORI_PLUGIN:+--plugin "$MAMORI_PLUGIN"}
    done
    api=$(cat "$DIR/api.port")
    haproxy_conf "$pub" "${nodes[@]}" -- "$api" "${hubs[@]}" >"$DIR/haproxy.cfg"
    start haproxy haproxy -f "$DIR/haproxy.cfg" -db
    wait_until 60 synced || { echo "the hubs and broker nodes did not come together:" >&2; tail -5 "$DIR"/*.log >&2; exit 1; }
    api="https://127.0.0.1:$api"
    python3 - "$DIR" "$url" "$api" "127.0.0.1:$pub" "$HUBS" "${nodes[@]}" <<'PY'
import json, os, sys
d, url, api, pub, nhubs, nodes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
pid = lambda n: int(open(os.path.join(d, n + ".pid")).read())
hub = lambda i: json.load(open(os.path.join(d, "hub%d/run/endpoints.json" % i)))["api"]
c = {"postgresql": url,
     "mqtt": pub,
     "api": api,
     "ca": os.path.join(d, "hub1/pki/root.crt"),
     "haproxy": {"pid": pid("haproxy"), "config": os.path.join(d, "haproxy.cfg")},
     "brokers": [{"node": "n%d" % (i + 1), "address": a, "data": os.path.join(d, "n%d" % (i + 1)),
                  "pid": pid("n%d" % (i + 1))} for i, a in enumerate(nodes)],
     "hubs": [{"name": "hub%d" % i, "api": hub(i), "data": os.path.join(d, "hub%d" % i),
               "pid": pid("hub%d" % i),
               "command": open(os.path.join(d, "hub%d.cmd" % i)).read().strip()}
              for i in range(1, nhubs + 1)]}
open(os.path.join(d, "cluster.json"), "w").write(json.dumps(c, indent=1) + "\n")
PY
    cat <<TXT
Mamori cluster up in $DIR (cluster.json):
  API           $api    (HAProxy -> ${hubs[*]}; CA: $DIR/hub1/pki/root.crt)
  devices dial  mqtts://127.0.0.1:$pub   (HAProxy -> ${nodes[*]})
  registry      PostgreSQL, $url
  administrator mamorictl --data $DIR/hub1 bootstrap --user admin   (token: $DIR/hub1/bootstrap-token)
Stop it with: $0 down $DIR
TXT
}

down() {
    [ -d "$DIR" ] || return 0
    local name pid
    for name in $(cd "$DIR" && ls hub[0-9]*.pid 2>/dev/null | sed 's/\.pid$//') haproxy \
        $(cd "$DIR" && ls -d n[0-9]* 2>/dev/null); do
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
