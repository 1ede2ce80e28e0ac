#!/usr/bin/env bash
# Telemetry ingest: what the hub records and acknowledges, beside what plain
# mosquitto delivers to one mosquitto_sub, for the same fleet and the same
# offered load, in one run.
#
#   bench/ingest-mqtt.sh [BUILD_DIR] [N=1000] [RATE=20000] [WINDOW_S=30]
#   KIND=ev bench/ingest-mqtt.sh ...   device events instead of telemetry
#   STORE=postgresql bench/ingest-mqtt.sh ...   the hub's registry on
#       PostgreSQL (a private server started for the run, scripts/pg.sh)
#
# KIND=ev: the devices send device events in the mix of bench/rules-mqtt.sh
# (1 in 10 config_changed, which the config_drift rule matches; the rest
# sim_tick), and recorded = events the hub recorded with its rules on, per
# second (over whole seconds: the events' own time stamps), with the
# config_drift alerts they raised and counted.
# N device identities (each its own key, certificate and mutual-TLS
# connection) send protocol telemetry - QoS 1, an envelope with sequence
# numbers, {"t":21.5} - at RATE messages/s in all for WINDOW_S seconds
# (bench/mqtt_bench.c "stream"; at most 1,000 messages/s per device so that
# a later run's sequence numbers stay above the last one's):
#   1. to the platform: mosquitto with the plugin, the hub with its rules on
#      recording each message and acknowledging it on the device's cmd topic
#      after the batch's commit. Recorded = telemetry rows committed per
#      second (the store's count); acknowledged = what the devices were
#      told, per second (their highest acknowledged sequence numbers);
#   2. to plain mosquitto with the same TLS configuration (the hub's own
#      broker configuration without the plugin), one mosquitto_sub
#      subscribed to every device's telemetry as the hub's data session is
#      (MQTT v5, QoS 0: docs/protocol.md; with the hub's client
#      certificate). Delivered = lines mosquitto_sub printed.
# The devices are split over as many mqtt-bench processes as the open-file
# limit asks (3 descriptors per client), started together.
# Also printed: the hub's CPU per recorded message, its RSS, and its batches.
# Events per second with the rules on: bench/rules-mqtt.sh.
# Loopback only; every wait is bounded.
set -uo pipefail
BUILD=${1:-build}
N=${2:-1000}
RATE=${3:-20000}
WINDOW=${4:-30}
KIND=${KIND:-tm}
[ "$KIND" = tm ] || [ "$KIND" = ev ] || { echo "KIND is tm or ev" >&2; exit 2; }
STORE=${STORE:-sqlite}
[ "$STORE" = sqlite ] || [ "$STORE" = postgresql ] || { echo "STORE is sqlite or postgresql" >&2; exit 2; }
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
W=$(mktemp -d /tmp/mamori-ingest.XXXXXX)
chmod 755 "$W"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# the broker holds one descriptor per device (the load generator is split to fit)
[ "$(ulimit -n)" -ge $((N + 512)) ] || { echo "need $((N + 512)) open files" >&2; exit 1; }
. bench/lib.sh # PIDS, cleanup, ep, cpu_ms, jget, bench_accounts
STORE_OPT=()
if [ "$STORE" = postgresql ]; then
    PGURL=$(scripts/pg.sh start "$W/pg") || exit 1
    trap 'scripts/pg.sh stop "$W/pg" >/dev/null 2>&1; cleanup' EXIT
    STORE_OPT=(--store "$PGURL")
    sql() { scripts/pg.sh psql "$W/pg" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
else
    sql() { python3 -c 'import sqlite3,sys
c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True, timeout=30)
print(c.execute(sys.argv[2]).fetchone()[0])' "$W/data/mamori.db" "$1"; }
fi
free_port() { python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
stop() { kill "$1" 2>/dev/null; for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; }

PORT=$(free_port)
"$BIN/mamorid" --data "$W/data" "${STORE_OPT[@]}" --mqtt-port "$PORT" --max-connections $((N + 100)) \
    --rate 1000 --burst 2000 --heartbeat 300 --challenge-interval 0 >"$W/hub.log" 2>&1 &
HUB=$!; PIDS+=($HUB)
for _ in $(seq 1 300); do [ -f "$W/data/run/endpoints.json" ] && break; sleep 0.1; done
API=$(ep api); CA=$W/data/pki/root.crt
echo "# ingest-mqtt $BUILD: $N devices, $RATE msgs/s offered, $WINDOW s, registry on $STORE" \
    "(commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, loopback)"
bench_accounts
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$W/schema.json"
$C schema set bench --file "$W/schema.json" >/dev/null
$C factory batch --model bench --count "$N" --out "$W/fleet" >/dev/null
scripts/claim_all.py "$API" "$CA" "$(cat "$W/s-owner")" "$W/fleet"
echo "# $N devices provisioned and claimed"

# --- 1. the platform
BROKER=$(cat "$W/data/run/broker.pid")
CONF=$(tr '\0' '\n' <"/proc/$BROKER/cmdline" | sed -n '/^-c$/{n;p}')
mkdir -p "$W/plain"
# the same file without the plugin (its listener line is moved to another port below)
grep -v -E '^(plugin|plugin_opt_)' "$CONF" >"$W/plain/mosquitto.conf"
BDIR=$(dirname "$CONF")
cp "$BDIR/broker.crt" "$BDIR/broker.key" "$BDIR/device-trust.pem" "$W/plain/"
chown --reference="$BDIR/broker.key" "$W/plain" "$W/plain"/* 2>/dev/null
TABLE=$([ "$KIND" = ev ] && echo events || echo telemetry)
r0=$(sql "SELECT coalesce(max(id),0) FROM $TABLE")
# A mqtt-bench process holds 3 descriptors per client: a fleet larger than
# this process's limit allows is split over several, started together.
FILES=$(ulimit -n)
PER=$(( (FILES - 256) / 3 )); NPROC=$(( (N + PER - 1) / PER )); PER=$(( (N + NPROC - 1) / NPROC ))
# stream TAG PORT: the fleet streams to PORT; the window starts once every
# process has connected its clients (each prints its own totals)
stream() {
    local tag=$1 port=$2 k first cnt
    for ((k = 0; k < NPROC; k++)); do
        first=$((k * PER)); cnt=$((N - first < PER ? N - first : PER))
        echo "\$ mqtt-bench stream FLEET $cnt $((RATE * cnt / N)) $WINDOW $port $first   # $tag"
        MQTT_BENCH_KIND=$KIND MQTT_BENCH_START_FILE=$W/go-$tag "$BIN/mqtt-bench" stream "$W/fleet" "$cnt" \
            "$((RATE * cnt / N))" "$WINDOW" "$port" "$first" >"$W/stream-$tag-$k.txt" &
        SPS+=($!)
    done
    for ((k = 0; k < NPROC; k++)); do
        for _ in $(seq 1 6000); do grep -q "clients connected" "$W/stream-$tag-$k.txt" 2>/dev/null && break; sleep 0.1; done
    done
    touch "$W/go-$tag"
}
streams_wait() { wait "${SPS[@]}"; cat "$W/stream-$1-"*.txt; SPS=(); }
SPS=()
stream hub "$PORT"
# CPU over the window, from the first message on
h0=$(cpu_ms "$HUB"); b0=$(cpu_ms "$BROKER"); t0=$(date +%s.%N)
sleep "$WINDOW"
h1=$(cpu_ms "$HUB"); b1=$(cpu_ms "$BROKER"); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$HUB/status")
streams_wait hub
# recorded: this run's rows over the span of the hub's own receive times
if [ "$KIND" = ev ]; then
    rec=$(sql "SELECT count(*) || ' ' || coalesce((max(ts) - min(ts) + 1) * 1000, 0) FROM events WHERE id > $r0 AND kind = 'device_event'")
    drift=$(sql "SELECT count(*) || ' alerts, counted ' || coalesce(sum(count), 0) || ' times' FROM alerts WHERE rule = 'config_drift'")
else
    rec=$(sql "SELECT count(*) || ' ' || coalesce(max(recv_at) - min(recv_at), 0) FROM telemetry WHERE id > $r0")
    drift=""
fi
health=$(curl -s --cacert "$CA" "$API/api/v1/health")
stop "$HUB"

# --- 2. plain mosquitto, same TLS configuration, one mosquitto_sub
P2=$(free_port)
# without the plugin, the client certificate itself is the login
sed -i -E -e "s#^listener [0-9]+ #listener $P2 #" \
    -e "s#^use_identity_as_username false#use_identity_as_username true#" "$W/plain/mosquitto.conf"
sed -i "s#$BDIR#$W/plain#g" "$W/plain/mosquitto.conf"
mosquitto -c "$W/plain/mosquitto.conf" >"$W/plain.log" 2>&1 &
PLAIN=$!; PIDS+=($PLAIN)
for _ in $(seq 1 100); do ss -Hltn "sport = :$P2" | grep -q . && break; sleep 0.1; done
mosquitto_sub -h 127.0.0.1 -p "$P2" --cafile "$W/data/pki/root.crt" \
    --cert "$W/data/pki/hub-client.crt" --key "$W/data/pki/hub-client.key" \
    -i bench-sub -V mqttv5 -q 0 -t "mamori/v1/d/+/$KIND" -F '%U' >"$W/sub.out" 2>"$W/sub.err" &
SUB=$!; PIDS+=($SUB)
for _ in $(seq 1 50); do ss -Htn "dport = :$P2" | grep -q . && break; sleep 0.1; done
stream plain "$P2"
m0=$(cpu_ms "$PLAIN"); u0=$(date +%s.%N)
sleep "$WINDOW"
m1=$(cpu_ms "$PLAIN"); u1=$(date +%s.%N)
streams_wait plain
sleep 1
# delivered: the lines mosquitto_sub printed, over the span of their times
dl=$(awk 'NR == 1 {a = $1} {b = $1} END {printf "%d %.0f", NR, (b - a) * 1000}' "$W/sub.out")

python3 - "$t0" "$t1" "$rec" "$((h1 - h0))" "$((b1 - b0))" "$rss" "$u0" "$u1" "$dl" \
    "$((m1 - m0))" "$W/stream-hub" "$W/stream-plain" "$health" "$KIND" "$drift" <<'PY'
import glob, json, re, sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
rows, rspan = map(int, sys.argv[3].split())
hub_ms, broker_ms, rss = map(int, sys.argv[4:7])
u0, u1 = float(sys.argv[7]), float(sys.argv[8])
dl, dspan = map(int, sys.argv[9].split())
plain_ms = int(sys.argv[10])
def offered(prefix):
    # the processes' totals, summed
    off = ack = 0
    for f in glob.glob(prefix + "-*.txt"):
        m = re.search(r"sent (\d+) in ([\d.]+) s = (\d+) msgs/s; acknowledged by the hub within "
                      r"the window (\d+) = (\d+)", open(f).read())
        if m:
            off, ack = off + int(m.group(3)), ack + int(m.group(5))
    return off, ack
off_hub, ack = offered(sys.argv[11])
off_plain, _ = offered(sys.argv[12])
ing = json.loads(sys.argv[13]).get("ingest", {})
s, p = t1 - t0, u1 - u0
r_rate = rows * 1000.0 / max(rspan, 1)
d_rate = dl * 1000.0 / max(dspan, 1)
kind, drift = sys.argv[14], sys.argv[15]
what = "events" if kind == "ev" else "msgs"
print("  platform:        offered %6d %s/s; recorded %6.0f %s/s (%d rows), acknowledged"
      " %6d %s/s; hub CPU %3.0f %% = %5.1f us/%s, RSS %d kB; broker CPU %3.0f %%"
      % (off_hub, what, r_rate, what, rows, ack, what, hub_ms / 10.0 / s,
         hub_ms * 1000.0 / max(r_rate * s, 1), what[:-1] if what == "events" else "msg", rss,
         broker_ms / 10.0 / s))
print("                   batches %s, largest %s, failed %s%s"
      % (ing.get("batches"), ing.get("largest_batch"), ing.get("failed_batches"),
         "; rules on: config_drift " + drift if drift else ""))
print("  plain mosquitto: offered %6d %s/s; delivered %6.0f %s/s to mosquitto_sub (%d);"
      " broker CPU %3.0f %%" % (off_plain, what, d_rate, what, dl, plain_ms / 10.0 / p))
print("  the hub records %.0f %% of what plain mosquitto delivers" % (100.0 * r_rate / max(d_rate, 1)))
PY
