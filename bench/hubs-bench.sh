#!/usr/bin/env bash
# One hub and one broker node against two of each, in one run on loopback
# (scripts/cluster.sh: PostgreSQL registry, HAProxy in front of the nodes
# and the API). Prints every figure under the command that produced it;
# copy the output into docs/benchmarks.md.
#
#   bench/hubs-bench.sh [BUILD_DIR] [N=1000] [RATE=8000] [WINDOW_S=20]
#   STORM=8000 (the default; 0 skips the storm; N=0 skips the ingest)
#
# HAProxy holds two descriptors per device connection: the storm's size is
# bounded by the open-file limit (8,000 under a hard limit of 20,000).
#
# 1. ingest, once per layout, the same fleet size and offered load: N
#    devices stream protocol telemetry through HAProxy (mqtt-bench stream,
#    as bench/ingest-mqtt.sh), recorded = telemetry rows committed per
#    second (PostgreSQL's count over the span of the hubs' receive times);
#    CPU of the hubs, the nodes' mosquitto, HAProxy and PostgreSQL;
# 2. connect storm, two of each: STORM mamori-sim devices (split over
#    processes, each under this shell's open-file limit) over two nodes;
#    node 1 killed (kill -9): time until every device is connected again
#    through HAProxy, the surviving node's mosquitto RSS before and at its
#    peak.
set -uo pipefail
BUILD=${1:-build}
N=${2:-1000}; RATE=${3:-8000}; WINDOW=${4:-20}; STORM=${STORM:-8000}
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
W=$(mktemp -d /tmp/mamori-hbench.XXXXXX)
chmod 711 "$W" # the database server's own user reaches W/*/pg
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. bench/lib.sh
trap 'for d in "$W"/c*; do [ -d "$d" ] && scripts/cluster.sh down "$d" >/dev/null 2>&1; done; cleanup' EXIT
now_ms() { date +%s%3N; }
wait_until() { local end=$(( $(now_ms) + $1 * 1000 )); shift
    while ! "$@"; do [ "$(now_ms)" -ge "$end" ] && return 1; sleep 0.2; done; }
cj() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print(d)' "$D/cluster.json" "$1"; }
sql() { scripts/pg.sh psql "$D/pg" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
# the processes of a layout, by role: pids
hubs() { cat "$D"/hub[0-9]*.pid; }
nodes() { local n; for n in "$D"/n[0-9]*/run/broker.pid; do cat "$n"; done; }
pgs() { local pm; pm=$(head -1 "$D/pg/pgdata/postmaster.pid"); echo "$pm"; ps --ppid "$pm" -o pid= ; }
cpu_of() { local t=0 p; for p in $("$@"); do t=$((t + $(cpu_ms "$p" 2>/dev/null || echo 0))); done; echo $t; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
LIMITS="--rate 1000 --burst 2000"
# layout HUBS NODES DEVICES [NAME]: a cluster in W/cNAME (W/cHN), an
# administrator, DEVICES claimed devices
layout() {
    D=$W/c${4:-$1$2}
    CLUSTER_HUBS=$1 CLUSTER_NODES=$2 HAPROXY_MAXCONN=$(( $3 + 1000 )) \
        MAMORI_HUB_OPTS="$LIMITS --heartbeat 300 --challenge-interval 0" \
        CLUSTER_NODE_OPTS="$LIMITS --max-connections $(( $3 + 1000 ))" \
        scripts/cluster.sh up "$D" "$BUILD" >/dev/null || { echo "cluster $1x$2 did not start"; exit 1; }
    rm -f "$W/data"; ln -s "$D/hub1" "$W/data"
    rm -f "$W/s-admin" "$W/s-owner"
    bench_accounts
    echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$W/schema.json"
    $C schema set bench --file "$W/schema.json" >/dev/null
    rm -rf "$W/fleet"
    $C factory batch --model bench --count "$3" --out "$W/fleet" >/dev/null
    scripts/claim_all.py "$(cj api)" "$(cj ca)" "$(cat "$W/s-owner")" "$W/fleet" || exit 1
    PUB=$(cj mqtt); PUB=${PUB##*:}
}

echo "# hubs-bench $BUILD: $N devices, $RATE msgs/s offered, $WINDOW s; storm $STORM" \
    "(commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, loopback, $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'))"
FILES=$(ulimit -n)
PER=$(( (FILES - 256) / 3 )); NPROC=$(( (N + PER - 1) / PER )); PER=$(( (N + NPROC - 1) / (NPROC > 0 ? NPROC : 1) ))
for L in "1 1" "2 2"; do
    [ "$N" -gt 0 ] || break
    set -- $L
    layout "$1" "$2" "$N"
    r0=$(sql "SELECT coalesce(max(id),0) FROM telemetry")
    SPS=()
    for ((k = 0; k < NPROC; k++)); do
        first=$((k * PER)); cnt=$((N - first < PER ? N - first : PER))
        echo "\$ mqtt-bench stream FLEET $cnt $((RATE * cnt / N)) $WINDOW <HAProxy> $first   # $1 hub(s), $2 node(s)"
        MQTT_BENCH_START_FILE=$W/go$1 "$BIN/mqtt-bench" stream "$W/fleet" "$cnt" "$((RATE * cnt / N))" \
            "$WINDOW" "$PUB" "$first" >"$W/stream$1-$k.txt" &
        SPS+=($!)
    done
    for ((k = 0; k < NPROC; k++)); do
        wait_until 600 grep -q "clients connected" "$W/stream$1-$k.txt" || { echo "stream did not connect"; exit 1; }
    done
    touch "$W/go$1"
    h0=$(cpu_of hubs); b0=$(cpu_of nodes); x0=$(cpu_ms "$(cat "$D/haproxy.pid")"); p0=$(cpu_of pgs); t0=$(now_ms)
    sleep "$WINDOW"
    h1=$(cpu_of hubs); b1=$(cpu_of nodes); x1=$(cpu_ms "$(cat "$D/haproxy.pid")"); p1=$(cpu_of pgs); t1=$(now_ms)
    wait "${SPS[@]}"
    off=0; ack=0
    for f in "$W/stream$1-"*.txt; do
        o=$(sed -nE 's/.*= ([0-9]+) msgs\/s; acknowledged.*/\1/p' "$f"); a=$(sed -nE 's/.*within the window [0-9]+ = ([0-9]+).*/\1/p' "$f")
        off=$((off + ${o:-0})); ack=$((ack + ${a:-0}))
    done
    read -r rows span <<<"$(sql "SELECT count(*) || ' ' || coalesce(max(recv_at) - min(recv_at), 0) FROM telemetry WHERE id > $r0")"
    s=$(( t1 - t0 ))
    echo "$1 hub(s), $2 node(s): offered $off msgs/s; recorded $(( rows * 1000 / (span > 0 ? span : 1) )) msgs/s ($rows rows), acknowledged $ack msgs/s;" \
        "CPU % of one core: hubs $(( (h1 - h0) * 100 / s )), nodes $(( (b1 - b0) * 100 / s )), HAProxy $(( (x1 - x0) * 100 / s )), PostgreSQL $(( (p1 - p0) * 100 / s ))"
    for h in $(seq 1 "$1"); do
        echo "  hub$h: $(curl -s --cacert "$(cj ca)" "$(cj hubs.$((h - 1)).api)/api/v1/health" | python3 -c 'import json,sys
h=json.load(sys.stdin); print("partitions %d, leader %s, ingest batches %d, messages %d" % (h["hub"]["partitions"], h["hub"]["leader"], h["ingest"]["batches"], h["ingest"]["messages"]))')"
    done
    scripts/cluster.sh down "$D" >/dev/null
done

[ "$STORM" -gt 0 ] || exit 0
echo; echo "## connect storm: $STORM devices over two nodes, node 1 killed"
layout 2 2 "$STORM" storm
SPER=$(( (FILES - 256) / 3 )); SN=$(( (STORM + SPER - 1) / SPER )); SPER=$(( (STORM + SN - 1) / SN ))
for ((k = 0; k < SN; k++)); do
    "$BIN/mamori-sim" --identities "$W/fleet" --first $((k * SPER)) --devices "$SPER" --heartbeat 300 \
        --broker-port "$PUB" --status "$W/sim$k.json" >"$W/sim$k.log" 2>&1 &
    PIDS+=($!)
done
echo "# $SN mamori-sim processes of $SPER devices"
simsum() { local t=0 k v; for ((k = 0; k < SN; k++)); do
    v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/sim$k.json" "$1" 2>/dev/null || echo 0)
    t=$((t + v)); done; echo $t; }
all_in() { [ "$(simsum connected)" -ge "$STORM" ]; }
t0=$(now_ms)
wait_until 900 all_in || echo "only $(simsum connected) of $STORM connected after 900 s"
echo "all $STORM connected through HAProxy $(( $(now_ms) - t0 )) ms after the simulators started"
B2=$(cat "$D/n2/run/broker.pid"); N1=$(cat "$D/n1.pid")
rss0=$(rss_kb "$B2"); peak=$rss0
c0=$(simsum connects)
echo "\$ kill -9 <node 1>"
t0=$(now_ms)
kill -9 "$N1"
back() { [ "$(simsum connected)" -ge "$STORM" ] && [ "$(simsum connects)" -gt "$c0" ]; }
while ! back; do
    r=$(rss_kb "$B2"); [ "$r" -gt "$peak" ] && peak=$r
    [ $(( $(now_ms) - t0 )) -gt 900000 ] && { echo "not all back within 900 s"; break; }
    sleep 0.2
done
echo "all $STORM connected again $(( $(now_ms) - t0 )) ms after the kill (each simulator writes its status every second); reconnections $(( $(simsum connects) - c0 ))"
echo "node 2 mosquitto RSS: $rss0 kB before, $peak kB at the peak; hub RSS $(rss_kb "$(cat "$D/hub1.pid")") + $(rss_kb "$(cat "$D/hub2.pid")") kB"
