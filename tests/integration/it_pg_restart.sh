#!/usr/bin/env bash
# Integration: the registry's PostgreSQL server restarted under load.
# 50 simulated devices (each with its outbox in a state directory) stream
# telemetry; the server is stopped (fast: every connection cut) and started
# again in the middle of it. The hub reconnects on its own; what it could
# not commit was never acknowledged, so the devices send it again:
# in the end the store holds every reading exactly once, every outbox is
# empty, and no device lost its connection: all they saw was acknowledgements
# arriving late. The registry is PostgreSQL whatever the run, so the run
# with MAMORI_IT_STORE=postgresql skips it (status 77).
. "$(dirname "$0")/lib.sh"
if [ "$IT_STORE" = postgresql ]; then
    echo "# skipped: this test always runs on PostgreSQL (run without MAMORI_IT_STORE)"
    exit 77
fi
IT_STORE=postgresql

N=50
K=60 # readings per device, one every 250 ms
HUBOPTS=(--heartbeat 2 --rate 1000 --burst 1000 --challenge-interval 0)
hub_start "$T/data" "${HUBOPTS[@]}"
fleet_setup $N
"$ROOT_DIR/scripts/claim_all.py" "$API" "$CA" "$(token_of alice)" "$T/fleet" || bad "the fleet is claimed"
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

sql() { hubsql "$DATA" "$1"; }
PG=$(pg_dir "$DATA")

mkdir -p "$T/state"
"$BIN/mamori-sim" --identities "$T/fleet" --state "$T/state" --heartbeat 2 --telemetry-ms 250 \
    --telemetry-count $K --status "$T/sim.json" >"$T/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
check "the fleet is connected" wait_for 60 sim_is connected $N
check "the stream is under way" wait_for 60 sim_at_least telemetry $((N * K / 4))
check "...and the hub records it" wait_for 20 eval '[ "$(health_of ingest.messages)" -gt 0 ]'
connects=$(simget connects)

# --- the server goes away under load, and comes back
check "PostgreSQL stops (fast: the hub's connection is cut)" "$ROOT_DIR/scripts/pg.sh" stop "$PG"
cut=$(simget telemetry)
check "...while the hub keeps running" kill -0 "$HUB_PID"
check "PostgreSQL starts again on its port" "$ROOT_DIR/scripts/pg.sh" start "$PG"
echo "# server restarted after $cut of $((N * K)) readings were taken"
check "every reading is taken" wait_for 120 sim_is telemetry $((N * K))
check "every outbox empties: all acknowledged" wait_for 180 sim_is outbox_queued 0
check "the hub lost its connection to the server" grep -q "postgresql connection lost" "$T/hub.log"
check "...and opened it again by itself" grep -q "postgresql connection back" "$T/hub.log"
expect_eq "no device dropped a reading" 0 "$(simget outbox_dropped)"
expect_eq "no device lost its connection: acknowledgements came late, that is all" \
    "$connects" "$(simget connects)"
expect_eq "the store holds every reading" $((N * K)) "$(sql 'SELECT count(*) FROM telemetry')"
expect_eq "...each once (device, sequence number)" $((N * K)) \
    "$(sql 'SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) AS d')"
check "the API answers from the store again" as admin device list
kill "$SIM"; wait "$SIM" 2>/dev/null
finish
