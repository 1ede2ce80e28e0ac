#!/usr/bin/env bash
# Integration: device messages recorded in batches (hub/device/ingest.h).
#
# 1. 100 simulated devices (each its own identity, mutual-TLS connection
#    and the SDK's outbox) stream telemetry; the hub is killed with SIGKILL
#    in the middle of the stream and started again. Once every outbox is
#    empty, the store holds every reading exactly once: per device the
#    sequence numbers 1..K, no gap, no duplicate. Nothing acknowledged was
#    lost, nothing was recorded twice.
# 2. A QoS 1 telemetry flood beyond what the hub records as fast as it
#    comes: the devices keep their heartbeats (every 2 s), and none of them
#    is reported offline while the hub works through the backlog.
. "$(dirname "$0")/lib.sh"

N=100
K=40 # readings per device in part 1
HUBOPTS=(--heartbeat 2 --rate 1000 --burst 1000 --challenge-interval 0)
hub_start "$T/data" "${HUBOPTS[@]}"
fleet_setup $N
# the claims over one kept-alive HTTPS connection
"$(dirname "$0")/../../scripts/claim_all.py" "$API" "$CA" "$(token_of alice)" "$T/fleet" || bad "the fleet is claimed"
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

sql() { hubsql "$DATA" "$1"; }

# --- 1. kill -9 in the middle of a stream
# each device keeps its outbox in a state directory, as a real one does
mkdir -p "$T/state"
"$BIN/mamori-sim" --identities "$T/fleet" --state "$T/state" --heartbeat 2 --telemetry-ms 250 \
    --telemetry-count $K --status "$T/sim.json" >"$T/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
check "the fleet is connected" wait_for 60 sim_is connected $N
check "the stream is under way" wait_for 60 sim_at_least telemetry $((N * K / 3))
check "...and the hub records it" wait_for 20 eval '[ "$(health_of ingest.messages)" -gt 0 ]'
kill -9 "$HUB_PID"; wait "$HUB_PID" 2>/dev/null; HUB_PID=""
rm -f "$DATA/run/endpoints.json"
cut=$(simget telemetry)
hub_start "$DATA" "${HUBOPTS[@]}"
echo "# killed after $cut of $((N * K)) readings were taken"
check "every reading is taken" wait_for 120 sim_is telemetry $((N * K))
check "every outbox empties: all acknowledged" wait_for 180 sim_is outbox_queued 0
expect_eq "no device dropped a reading" 0 "$(simget outbox_dropped)"
expect_eq "the store holds every reading" $((N * K)) "$(sql 'SELECT count(*) FROM telemetry')"
expect_eq "...each once (device, sequence number)" $((N * K)) \
    "$(sql 'SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) AS d')"
# what to look at when a reading is missing
sql "SELECT device_id, min(seq), max(seq), count(*) FROM telemetry GROUP BY device_id HAVING count(*) <> $K" >&2
sql "SELECT kind, count(*) FROM events WHERE kind LIKE 'telemetry%' OR kind LIKE 'sequence%' GROUP BY kind" >&2
# (the SDK numbers a device's readings from where its clock stood when it
# started: K in a row from there)
expect_eq "...$K consecutive numbers for every device: no gap" "$N" \
    "$(sql "SELECT count(*) FROM (SELECT device_id FROM telemetry GROUP BY device_id
                                   HAVING max(seq) - min(seq) + 1 = $K AND count(*) = $K) AS d")"
check "the restarted hub recorded in batches" eval '[ "$(health_of ingest.largest_batch)" -gt 1 ]'
kill "$SIM"; wait "$SIM" 2>/dev/null

# --- 2. a flood: heartbeats are not starved
FLOOD_S=20
rm -f "$T/sim.json"
"$BIN/mamori-sim" --identities "$T/fleet" --state "$T/state" --heartbeat 2 --telemetry-ms 50 \
    --duration $((FLOOD_S + 40)) --status "$T/sim.json" >"$T/sim2.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
check "the fleet is back" wait_for 60 sim_is connected $N
all_online() { [ "$(sql 'SELECT count(*) FROM devices WHERE online = 1')" = "$N" ]; }
check "...online at the hub" wait_for 30 all_online
offline0=$(sql "SELECT count(*) FROM events WHERE kind = 'offline'")
hb0=$(simget heartbeats); t0=$(date +%s)
check "the flood runs for $FLOOD_S s" wait_for $((FLOOD_S + 10)) clock_past $(( (t0 + FLOOD_S) * 1000 ))
hb1=$(simget heartbeats); t1=$(date +%s)
taken=$(simget telemetry); recorded=$(health_of ingest.messages)
echo "# flood: $taken readings taken by the devices, $recorded messages recorded by the hub," \
    "largest batch $(health_of ingest.largest_batch), queued $(health_of ingest.queued)"
# each device beats every 2 s: the fleet kept its heartbeats if most of them went out
check "the devices kept their heartbeats" test $((hb1 - hb0)) -ge $(( N * (t1 - t0) / 2 * 3 / 4 ))
check "the hub was behind the flood (messages queued or in batches)" \
    eval '[ "$(health_of ingest.largest_batch)" -gt 8 ]'
expect_eq "no device was reported offline" "$offline0" "$(sql "SELECT count(*) FROM events WHERE kind = 'offline'")"
expect_eq "...and every device is online" "$N" "$(sql 'SELECT count(*) FROM devices WHERE online = 1')"
[ "$(sql "SELECT count(*) FROM events WHERE kind = 'offline'")" = "$offline0" ] ||
    sql "SELECT ts, device_id, detail FROM events WHERE kind = 'offline' ORDER BY id DESC LIMIT 3" >&2
kill "$SIM"; wait "$SIM" 2>/dev/null
finish
