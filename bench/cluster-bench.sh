#!/usr/bin/env bash
# Broker nodes apart from the hub, measured beside the hub's own broker in
# the same run, on loopback. Prints every figure under the command that
# produced it; copy the output into docs/benchmarks.md.
#
#   bench/cluster-bench.sh [BUILD_DIR]      (M=2000 devices, REVOKE_N=100)
#
# 1. hub restart with M devices connected (mamori-sim): the hub's own
#    broker (every device drops and comes back) against two broker nodes
#    behind HAProxy (none should drop): reconnections, time until all are
#    back;
# 2. connect storm: M devices over two nodes, one node killed (kill -9):
#    time until all are connected again through HAProxy, the surviving
#    node's mosquitto RSS before and at its peak;
# 3. revocation through the API to the device's socket closing, the
#    device on either node (mqtt-bench revoke, through HAProxy).
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/$BUILD/bin
M=${M:-2000}; REVOKE_N=${REVOKE_N:-100}
W=$(mktemp -d /tmp/mamori-cbench.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. bench/lib.sh
say() { printf '\n$ %s\n' "$*"; "$@"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ms() { date +%s%3N; }
# wait_until SECONDS CMD...: polls CMD every 0.1 s; false at the deadline
wait_until() { local end=$(( $(now_ms) + $1 * 1000 )); shift
    while ! "$@"; do [ "$(now_ms)" -ge "$end" ] && return 1; sleep 0.1; done; }
free_port() { python3 scripts/free_port.py; }
simget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/sim.json" "$1" 2>/dev/null || echo 0; }
sim_all() { [ "$(simget connected)" = "$M" ]; }
synced() { curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["plugin_synced"] else 1)' 2>/dev/null; }
per_node() { curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys
print(", ".join("%s %d" % (n["name"], n["devices"]) for n in json.load(sys.stdin)["nodes"]))'; }
LIMITS=(--max-connections 20000 --rate 100000 --burst 100000)
hub_up() { # hub_up [options]: starts the hub on W/data, waits for its endpoints
    rm -f "$W/data/run/endpoints.json"
    "$BIN/mamorid" --data "$W/data" --heartbeat 30 "${LIMITS[@]}" "$@" >>"$W/hub.log" 2>&1 &
    HUB=$!; PIDS+=($HUB)
    wait_until 30 test -f "$W/data/run/endpoints.json" || { echo "hub did not start"; exit 1; }
    API=$(ep api); CA=$W/data/pki/root.crt
}
hub_down() { kill "$HUB"; wait "$HUB" 2>/dev/null; }
sim_up() { # sim_up PORT
    rm -f "$W/sim.json"
    "$BIN/mamori-sim" --identities "$W/fleet" --heartbeat 30 --broker-port "$1" --status "$W/sim.json" \
        >"$W/sim.log" 2>&1 &
    SIM=$!; PIDS+=($SIM)
}
sim_down() { kill "$SIM"; wait "$SIM" 2>/dev/null; }
# restart_hub LABEL [options]: restarts the hub with M devices connected;
# prints reconnections and the time until every device is connected again
restart_hub() {
    local label=$1; shift
    wait_until 600 sim_all || { echo "fleet did not connect"; return 1; }
    local c0 d0 t0
    c0=$(simget connects); d0=$(simget disconnects); t0=$(now_ms)
    echo "\$ kill -TERM <hub>; mamorid --data DIR $*   # $label, $M devices connected"
    hub_down; hub_up "$@"
    wait_until 120 synced
    # the devices' side: a dropped device shows in disconnects within its
    # keepalive; wait until every device is connected and no count moves
    local prev=-1 cur
    while :; do
        cur="$(simget connects)/$(simget disconnects)/$(simget connected)"
        [ "$cur" = "$prev" ] && sim_all && break
        prev=$cur; sleep 2
        [ $(( $(now_ms) - t0 )) -gt 600000 ] && break
    done
    echo "$label: reconnections $(( $(simget connects) - c0 )), disconnects $(( $(simget disconnects) - d0 )), all $M connected again $(( $(now_ms) - t0 )) ms after the stop began (sampled every 2 s)"
}

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); $(haproxy -v | head -1 | awk '{print "HAProxy", $3}')"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), build $BUILD, commit $(git rev-parse --short HEAD 2>/dev/null), M=$M"

# --- the hub with its own broker; the fleet provisioned through it
hub_up
OWN_PORT=$(ep mqtt_port)
bench_accounts
echo "# provisioning $M device identities..."
t0=$(date +%s)
$C factory batch --model bench --count "$M" --out "$W/fleet" >/dev/null
python3 scripts/claim_all.py "$API" "$CA" "$(cat "$W/s-owner")" "$W/fleet" || exit 1
echo "# provisioned in $(( $(date +%s) - t0 )) s"

echo; echo "## hub restart, the hub's own broker"
sim_up "$OWN_PORT"
restart_hub "own broker"
sim_down; hub_down

# --- two broker nodes behind HAProxy
P1=$(free_port); P2=$(free_port); PUB=$(free_port)
for n in 1 2; do
    p=$([ $n = 1 ] && echo "$P1" || echo "$P2")
    "$BIN/mamorid" broker-init --from "$W/data" --data "$W/n$n" --node "n$n" --mqtt-port "$p" \
        --max-connections 20000 --rate 100000 --burst 100000 >/dev/null
done
node_up() { "$BIN/mamorid" broker --data "$W/n$1" >>"$W/node$1.log" 2>&1 & eval "N$1=\$!"; PIDS+=($!); }
node_up 1; node_up 2
HAPROXY_MAXCONN=$((M + 1000)) scripts/cluster.sh haproxy-conf "$PUB" "127.0.0.1:$P1" "127.0.0.1:$P2" >"$W/haproxy.cfg"
haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 &
PIDS+=($!)
NODES=(--broker "127.0.0.1:$P1,127.0.0.1:$P2" --mqtt-public "127.0.0.1:$PUB")
hub_up "${NODES[@]}"
wait_until 60 synced || { echo "nodes not synchronised"; exit 1; }

echo; echo "## hub restart, two broker nodes behind HAProxy"
sim_up "$PUB"
restart_hub "broker nodes" "${NODES[@]}"

echo "devices per node known to the restarted hub 5 s after it synchronised the nodes: $(sleep 5; per_node)"

echo; echo "## connect storm: node 1 killed with $M devices over two nodes"
wait_until 600 sim_all
echo "devices per node before: $(per_node)"
on1=$(curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys
print([n["devices"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="n1"][0])')
B2=$(cat "$W/n2/run/broker.pid")
rss0=$(rss_kb "$B2"); peak=$rss0
c0=$(simget connects); d0=$(simget disconnects)
echo "\$ kill -9 <node 1>   # $on1 devices on it; its mosquitto goes with it"
t0=$(now_ms)
kill -9 "$N1"; wait "$N1" 2>/dev/null
# over when the simulator has seen node 1's devices drop and come back
storm_over() { [ $(( $(simget disconnects) - d0 )) -ge "$on1" ] && [ $(( $(simget connects) - c0 )) -ge "$on1" ] && sim_all; }
while ! storm_over; do
    r=$(rss_kb "$B2"); [ "$r" -gt "$peak" ] && peak=$r
    [ $(( $(now_ms) - t0 )) -gt 600000 ] && { echo "not all back within 600 s"; break; }
    sleep 0.2
done
echo "$on1 devices of node 1 reconnected through HAProxy, all $M connected again $(( $(now_ms) - t0 )) ms after the kill (the simulator writes its status each second); reconnections $(( $(simget connects) - c0 ))"
echo "node 2 mosquitto RSS: $rss0 kB before, $peak kB at the peak; hub RSS $(rss_kb "$HUB") kB"
echo "devices per node after: $(per_node)"
sim_down

echo; echo "## revocation to disconnect, through HAProxy, node 1 back"
node_up 1
wait_until 60 synced
say "$BIN/mqtt-bench" revoke "$W/fleet" "$REVOKE_N" "$PUB" "$API" "$CA" "$(cat "$W/s-admin")"
