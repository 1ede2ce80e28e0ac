#!/usr/bin/env bash
# Rule evaluation on the hub under a fleet over MQTT: N mamori-sim devices
# (each its own identity and real mTLS connection through mosquitto and the
# plugin) send device events at a steady pace; the hub records each one and
# runs its rules on it. The same fleet and load with the hub restarted
# between --rules off and --rules on (off, on, off, on: each twice, side by
# side), the simulator running throughout (it reconnects; its sequence
# numbers go on, so nothing is taken for a replay). Prints, for each
# window, the events the hub recorded per second, the hub's CPU per event,
# the broker's and the simulator's CPU, and the alerts.
#
# The mix: 9 of 10 devices send {"type":"sim_tick"} (no rule matches: the
# common case), 1 in 10 sends config_changed with a previous digest (it
# matches config_drift: the first opens an alert for the device, the rest
# count on it).
#
#   bench/rules-mqtt.sh [BUILD_DIR] [N=10000] [PERIOD_MS=5000] [WINDOW_S=60]
#
# Loopback only; every wait is bounded.
set -uo pipefail
BUILD=${1:-build}
N=${2:-10000}
PERIOD=${3:-5000}
WINDOW=${4:-60}
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
W=$(mktemp -d /tmp/mamori-rules-mqtt.XXXXXX)
# Open files: the broker needs one per device; a simulator three (its
# socket and libmosquitto's wake-up pair), so the fleet is split over as
# many simulator processes as the limit asks.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FILES=$(ulimit -n)
[ "$FILES" -ge $((N + 256)) ] || { echo "need $((N + 256)) open files, have $FILES" >&2; exit 1; }
PER=$(( (FILES - 256) / 3 ))
NSIM=$(( (N + PER - 1) / PER ))
PER=$(( (N + NSIM - 1) / NSIM ))
. bench/lib.sh  # PIDS, cleanup, ep, cpu_ms, jget, bench_accounts
sql() { python3 -c 'import sqlite3,sys
c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True, timeout=30)
print(c.execute(sys.argv[2]).fetchone()[0])' "$W/data/mamori.db" "$1"; }

PORT=$(python3 -c 'import socket,random
lo,hi=map(int,open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
for _ in range(200):
    p=random.randint(10000,60000)
    if lo<=p<=hi: continue
    s=socket.socket()
    try: s.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass
    finally: s.close()')
HUB=
start_hub() { # start_hub on|off
    rm -f "$W/data/run/endpoints.json"
    "$BIN/mamorid" --data "$W/data" --rules "$1" --mqtt-port "$PORT" \
        --max-connections $((N + 100)) --api-connections 256 --rate 100000 --burst 100000 \
        --heartbeat 300 --challenge-interval 0 >>"$W/hub.log" 2>&1 &
    HUB=$!; PIDS+=($HUB)
    for _ in $(seq 1 300); do [ -f "$W/data/run/endpoints.json" ] && break; sleep 0.1; done
}
stop() { kill "$1" 2>/dev/null; for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; }

echo "# rules-mqtt $BUILD $N devices, one event each every $PERIOD ms, $WINDOW s windows" \
    "(commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, loopback)"
start_hub on
API=$(ep api); CA=$W/data/pki/root.crt
bench_accounts
t0=$(date +%s)
$C factory batch --model bench --count "$N" --out "$W/fleet" >/dev/null
# the claims over one kept-alive HTTPS connection
scripts/claim_all.py "$API" "$CA" "$(cat "$W/s-owner")" "$W/fleet"
echo "# provisioned $N devices (keygen, enrolment, claim) in $(( $(date +%s) - t0 )) s"
stop "$HUB"

BENIGN='{"type":"sim_tick"}'
MATCH='{"type":"config_changed","path":"/etc/app.conf","old":"0a1b2c3d","new":"4e5f6a7b"}'
echo "\$ mamori-sim --identities FLEET --events $PERIOD --event-body '$BENIGN' --alt-every 10 --alt-body '$MATCH'"
echo "\$ mamorid --rules off|on --mqtt-port $PORT ...   (restarted between windows)"
SIMS=()
for k in $(seq 0 $((NSIM - 1))); do
    "$BIN/mamori-sim" --identities "$W/fleet" --first $((k * PER)) --devices "$PER" \
        --heartbeat 300 --broker-port "$PORT" --events "$PERIOD" --event-body "$BENIGN" \
        --alt-every 10 --alt-body "$MATCH" --status "$W/sim$k.json" >"$W/sim$k.log" 2>&1 &
    SIMS+=($!); PIDS+=($!)
done
echo "# $NSIM simulator processes of up to $PER devices (open-file limit $FILES)"
simsum() { # simsum KEY: over every simulator's status
    python3 -c 'import json,sys,glob
t=0
for f in glob.glob(sys.argv[1]+"/sim*.json"):
    try: t+=json.load(open(f))[sys.argv[2]]
    except (OSError, ValueError, KeyError): pass
print(t)' "$W" "$1"; }
simcpu() { local t=0 p; for p in "${SIMS[@]}"; do t=$((t + $(cpu_ms "$p"))); done; echo $t; }
simrss() { local t=0 p; for p in "${SIMS[@]}"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }

run() { # run on|off
    local mode=$1
    local c0; c0=$(simsum connects)
    start_hub "$mode"
    local broker; broker=$(cat "$W/data/run/broker.pid")
    local t=$(date +%s)
    for _ in $(seq 1 1200); do # every device connected again to this hub
        [ "$(simsum connects)" -ge $((c0 + N)) ] && [ "$(simsum connected)" = "$N" ] && break
        sleep 0.5
    done
    local up; up=$(simsum connected)
    sleep 15 # the reconnect storm's events drain, the pace settles
    local e0 h0 b0 s0 t0 e1 h1 b1 s1 t1 a0 a1
    e0=$(sql "SELECT max(id) FROM events"); a0=$(sql "SELECT coalesce(sum(count),0) FROM alerts")
    h0=$(cpu_ms "$HUB"); b0=$(cpu_ms "$broker"); s0=$(simcpu); t0=$(date +%s.%N)
    sleep "$WINDOW"
    e1=$(sql "SELECT max(id) FROM events"); a1=$(sql "SELECT coalesce(sum(count),0) FROM alerts")
    h1=$(cpu_ms "$HUB"); b1=$(cpu_ms "$broker"); s1=$(simcpu); t1=$(date +%s.%N)
    local open; open=$(sql "SELECT count(*) FROM alerts WHERE state<>'resolved'")
    python3 - "$mode" "$up" "$(( $(date +%s) - t ))" "$t0" "$t1" "$((e1 - e0))" \
        "$((h1 - h0))" "$((b1 - b0))" "$((s1 - s0))" "$((a1 - a0))" "$open" "$N" "$PERIOD" <<'PY'
import sys
mode, up, took = sys.argv[1:4]
t0, t1 = float(sys.argv[4]), float(sys.argv[5])
ev, hub, broker, sim, counted, open_, n, period = map(int, sys.argv[6:14])
s = t1 - t0
print("  rules %-3s %s devices up (%s s); offered %5.0f ev/s, recorded %5.0f ev/s; hub CPU %3.0f %%"
      " = %4.0f us/event; broker %3.0f %%, simulator %3.0f %%; alert counts +%d (%d open)" %
      (mode, up, took, n * 1000.0 / period, ev / s, hub / 10.0 / s, hub * 1000.0 / max(ev, 1),
       broker / 10.0 / s, sim / 10.0 / s, counted, open_))
PY
    echo "    RSS: hub $(awk '/VmRSS/ {print $2}' "/proc/$HUB/status") kB, broker" \
        "$(awk '/VmRSS/ {print $2}' "/proc/$broker/status") kB, simulators $(simrss) kB"
    stop "$HUB"
}

for mode in off on off on; do run "$mode"; done
echo "# alerts by rule: $(python3 -c 'import sqlite3,sys
c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True)
print(", ".join("%s %d (counted %d)" % r for r in c.execute("SELECT rule, count(*), sum(count) FROM alerts GROUP BY rule")))' "$W/data/mamori.db")"
