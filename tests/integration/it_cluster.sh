#!/usr/bin/env bash
# Integration: scripts/cluster.sh, the cluster in one command on loopback:
# PostgreSQL, two broker nodes, HAProxy and the hub. A device provisioned
# through it connects through the public address and is recorded in
# PostgreSQL; the hub restarted from DIR/hub.cmd costs it no reconnection;
# `down` stops every process it started, and `up` brings the cluster back
# on the same addresses. Its registry is PostgreSQL whatever the run, so the
# run with MAMORI_IT_STORE=postgresql skips it (status 77) rather than
# repeat it.
. "$(dirname "$0")/lib.sh"
if [ "$IT_STORE" = postgresql ]; then
    echo "# skipped: the cluster's registry is always PostgreSQL (run without MAMORI_IT_STORE)"
    exit 77
fi

C=$T/c
mkdir -p "$C"
ON_CLEANUP='"$ROOT_DIR/scripts/cluster.sh" down "$C" >/dev/null 2>&1' # detached: not in PIDS
chmod 711 "$T" # the database server's own user reaches $C/pg
check "cluster.sh up starts the cluster" "$ROOT_DIR/scripts/cluster.sh" up "$C"
check "...and writes cluster.json" test -f "$C/cluster.json"
cj() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print(d)' "$C/cluster.json" "$1"; }
expect_eq "...naming two broker nodes" 2 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["brokers"]))' "$C/cluster.json")"
check "...a PostgreSQL registry" grep -q '"postgresql": "postgresql://' "$C/cluster.json"
DATA=$C/hub; API=$(cj hubs.0.api); CA=$(cj ca); PUB=$(cj mqtt)
check "the hub reports both nodes synchronised" plugin_synced
check "...on the registry in PostgreSQL" grep -q "registry on postgresql" "$C/hub.log"

fleet_setup 1
claim alice 0
D0=$(dev_id 0)
check "the device is given HAProxy's address" test "$(jget mqtt_port <"$(dev_dir 0)/device.json")" = "${PUB##*:}"
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0
agent_start 0
check "a device connects through HAProxy to a node" wait_for 60 stat_is 0 connected True
node_is_set() { [ -n "$(as admin device show "$D0" | jget node)" ]; }
check "...and the hub knows which" wait_for 20 node_is_set
send 0 '{"t": 5}' >/dev/null
check "its reading is recorded in PostgreSQL" wait_for 30 eval \
    '[ "$("$ROOT_DIR/scripts/pg.sh" psql "$C/pg" -qAt -c "SELECT count(*) FROM telemetry WHERE device_id='"'$D0'"'")" = 1 ]'
C0=$(astat 0 connects)

# --- the hub restarted as cluster.json says: the device stays connected
HP=$(cat "$C/hub.pid")
kill "$HP"
check "the hub stops" wait_for 30 fails kill -0 "$HP"
rm -f "$DATA/run/endpoints.json"
setsid bash -c "exec $(cat "$C/hub.cmd")" >>"$C/hub.log" 2>&1 </dev/null &
echo $! >"$C/hub.pid"
check "the hub comes back" wait_for 60 test -f "$DATA/run/endpoints.json"
expect_eq "...on the same API address" "$API" "$(jget api <"$DATA/run/endpoints.json")"
check "...and synchronises both nodes" wait_for 60 plugin_synced
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
expect_eq "...and the device never reconnected" "$C0" "$(astat 0 connects)"

# --- down stops everything; up brings it back on the same addresses
PIDS_C="$(cat "$C"/*.pid | tr '\n' ' ')"
check "cluster.sh down stops the cluster" "$ROOT_DIR/scripts/cluster.sh" down "$C"
gone() { local p; for p in $PIDS_C; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
check "...every process it started" wait_for 30 gone
check "...PostgreSQL too" test ! -f "$C/pg/pgdata/postmaster.pid"
check "up again" "$ROOT_DIR/scripts/cluster.sh" up "$C"
expect_eq "...devices dial the same address" "$PUB" "$(cj mqtt)"
expect_eq "...and the API is where it was" "$API" "$(cj hubs.0.api)"
check "...and the device is back" wait_for 90 stat_is 0 connected True
kill "$AGENT_PID" 2>/dev/null
check "cluster.sh down again" "$ROOT_DIR/scripts/cluster.sh" down "$C"
finish
