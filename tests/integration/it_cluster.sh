#!/usr/bin/env bash
# Integration: scripts/cluster.sh, the cluster in one command on loopback:
# PostgreSQL, two broker nodes, two hubs and HAProxy in front of the nodes
# and of the API. The hubs share the work with no leader chosen by hand
# (hub/core/cluster.h): the device partitions half each, one of them the
# periodic jobs. 200 simulated devices stream telemetry through HAProxy;
# the leading hub is killed (kill -9) in the middle of it: the other takes
# the lead and every partition, runs the jobs from then on, and in the end
# the store holds every reading exactly once while no device lost its
# connection. The killed hub comes back from DIR/hub1.cmd and takes its
# share again; a revocation through the API of the hub that does not lead
# kicks a device connected to node 2 (the leader sends the change on);
# the audit chain both hubs appended to is intact. `down` stops every
# process it started, and `up` brings the cluster back on the same
# addresses. Its registry is PostgreSQL whatever the run, so the run with
# MAMORI_IT_STORE=postgresql skips it (status 77) rather than repeat it.
. "$(dirname "$0")/lib.sh"
if [ "$IT_STORE" = postgresql ]; then
    echo "# skipped: the cluster's registry is always PostgreSQL (run without MAMORI_IT_STORE)"
    exit 77
fi

N=200
K=40 # readings per device, one every 250 ms
C=$T/c
mkdir -p "$C"
ON_CLEANUP='"$ROOT_DIR/scripts/cluster.sh" down "$C" >/dev/null 2>&1' # detached: not in PIDS
chmod 711 "$T" # the database server's own user reaches $C/pg
check "cluster.sh up starts the cluster" "$ROOT_DIR/scripts/cluster.sh" up "$C"
cj() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print(d if not isinstance(d,list) else len(d))' "$C/cluster.json" "$1"; }
expect_eq "cluster.json names two broker nodes" 2 "$(cj brokers)"
expect_eq "...and two hubs" 2 "$(cj hubs)"
check "...a PostgreSQL registry" grep -q '"postgresql": "postgresql://' "$C/cluster.json"
DATA=$C/hub1; CA=$(cj ca); PUB=$(cj mqtt)
API=$(cj api) # HAProxy, in front of both hubs
API1=$(cj hubs.0.api); API2=$(cj hubs.1.api)
check "the API answers through HAProxy" curl -sf --cacert "$CA" "$API/api/v1/health"
# hub2's directory, made by `mamorid hub-init` from hub1's
check "hub-init copied the keys private" test "$(stat -c %a "$C/hub2/pki/issuing.key")" = 600
check "...and not the root key, the database or the bootstrap token" eval \
    '[ ! -e "$C/hub2/pki/offline" ] && [ ! -e "$C/hub2/mamori.db" ] && [ ! -e "$C/hub2/bootstrap-token" ]'
check "hub-init refuses a directory that holds the keys already" fails \
    "$BIN/mamorid" hub-init --from "$C/hub1" --data "$C/hub2"
mkdir -m 755 "$T/open"
check "...and a source others can read" fails "$BIN/mamorid" hub-init --from "$T/open" --data "$T/h3"
for bad in x-data events -x X; do # a name read as another hub's session, or no name
    check "mamorid refuses the hub name '$bad'" fails "$BIN/mamorid" --data "$T/bad" --name "$bad"
done
mkdir -m 700 "$T/empty"
check "...or one that is no hub's directory" fails "$BIN/mamorid" hub-init --from "$T/empty" --data "$T/h4"
check "...leaving nothing half made" test ! -e "$T/h4/pki"
sql() { "$ROOT_DIR/scripts/pg.sh" psql "$C/pg" -qAt -c "$1"; }
hub() { curl -s --cacert "$CA" "$1/api/v1/health" | jget "hub.$2"; } # hub API KEY
parts_shared() { [ $(( $(hub "$API1" partitions) + $(hub "$API2" partitions) )) = 64 ] &&
    [ "$(hub "$API1" hubs)" = 2 ] && [ "$(hub "$API2" hubs)" = 2 ]; }
check "the two hubs share the 64 device partitions" parts_shared
expect_eq "...half each" "32 32" "$(hub "$API1" partitions) $(hub "$API2" partitions)"
expect_eq "hub1 leads, hub2 does not" "True False" "$(hub "$API1" leader) $(hub "$API2" leader)"
expect_eq "...so hub2 has run no job meant to run once" 0 "$(hub "$API2" leader_jobs_run)"

# the fleet, set up through HAProxy: either hub answers
fleet_setup $N
"$ROOT_DIR/scripts/claim_all.py" "$API" "$CA" "$(token_of alice)" "$T/fleet" || bad "the fleet is claimed"
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
check "the device is given HAProxy's address" test "$(jget mqtt_port <"$(dev_dir 0)/device.json")" = "${PUB##*:}"
mkdir -p "$T/state"
"$BIN/mamori-sim" --identities "$T/fleet" --state "$T/state" --heartbeat 5 --telemetry-ms 250 \
    --telemetry-count $K --status "$T/sim.json" >"$T/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
check "the fleet connects through HAProxy" wait_for 90 sim_is connected $N
check "the stream is under way" wait_for 60 sim_at_least telemetry $((N * K / 4))
check "...and both hubs record their share of it" wait_for 30 eval \
    '[ "$(curl -s --cacert "$CA" "$API1/api/v1/health" | jget ingest.messages)" -gt 0 ] &&
     [ "$(curl -s --cacert "$CA" "$API2/api/v1/health" | jget ingest.messages)" -gt 0 ]'
connects=$(simget connects)
expect_eq "...each sent by the nodes only its own partitions' devices (none to drop)" "0 0" \
    "$(hub "$API1" foreign) $(hub "$API2" foreign)"

# --- the leading hub dies in the middle of the stream
kill -9 "$(cat "$C/hub1.pid")"
cut=$(simget telemetry)
echo "# hub1 killed after $cut of $((N * K)) readings were taken"
check "hub2 takes the lead" wait_for 20 eval '[ "$(hub "$API2" leader)" = True ]'
check "...and every partition" wait_for 20 eval '[ "$(hub "$API2" partitions)" = 64 ]'
check "...and runs the periodic jobs from then on" wait_for 20 eval '[ "$(hub "$API2" leader_jobs_run)" -gt 0 ]'
check "every reading is taken" wait_for 120 sim_is telemetry $((N * K))
check "every outbox empties: all acknowledged" wait_for 180 sim_is outbox_queued 0
expect_eq "no device dropped a reading" 0 "$(simget outbox_dropped)"
expect_eq "no device lost its connection" "$connects" "$(simget connects)"
expect_eq "the store holds every reading" $((N * K)) "$(sql 'SELECT count(*) FROM telemetry')"
expect_eq "...each once (device, sequence number)" $((N * K)) \
    "$(sql 'SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) AS d')"

# --- hub1 comes back as cluster.json says, and takes its share again
rm -f "$DATA/run/endpoints.json"
setsid bash -c "exec $(cat "$C/hub1.cmd")" >>"$C/hub1.log" 2>&1 </dev/null &
echo $! >"$C/hub1.pid"
check "hub1 comes back" wait_for 60 test -f "$DATA/run/endpoints.json"
expect_eq "...on the same API address" "$API1" "$(jget api <"$DATA/run/endpoints.json")"
check "...and the hubs share the partitions again" wait_for 30 parts_shared
expect_eq "...while hub2 keeps the lead" "False True" "$(hub "$API1" leader) $(hub "$API2" leader)"
expect_eq "...and still no device reconnected" "$connects" "$(simget connects)"

# --- a revocation through hub1, which does not lead, of a device on node 2
on_n2=""
for i in $(seq 0 $((N - 1))); do
    id=$(dev_id "$i")
    [ "$(as admin device show "$id" | jget node)" = n2 ] && { on_n2=$id; break; }
done
check "a device is connected to node 2" test -n "$on_n2"
"$BIN/mamorictl" --api "$API1" --ca "$CA" --session "$T/session-admin" device revoke "$on_n2" \
    --reason "cluster test" >/dev/null
check "revoked through hub1: kicked from node 2" wait_for 20 sim_is connected $((N - 1))
check "the audit chain both hubs appended to is intact" as admin audit verify

# --- down stops everything; up brings it back on the same addresses
PIDS_C="$(cat "$C"/*.pid | tr '\n' ' ')"
check "cluster.sh down stops the cluster" "$ROOT_DIR/scripts/cluster.sh" down "$C"
gone() { local p; for p in $PIDS_C; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "...every process it started" wait_for 30 gone
check "...PostgreSQL too" test ! -f "$C/pg/pgdata/postmaster.pid"
check "up again" "$ROOT_DIR/scripts/cluster.sh" up "$C"
expect_eq "...devices dial the same address" "$PUB" "$(cj mqtt)"
expect_eq "...and the API is where it was" "$API" "$(cj api)"
check "...and the fleet is back, the revoked device still out" wait_for 120 sim_is connected $((N - 1))
kill "$SIM" 2>/dev/null; wait "$SIM" 2>/dev/null
check "cluster.sh down again" "$ROOT_DIR/scripts/cluster.sh" down "$C"
finish
