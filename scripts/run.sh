#!/usr/bin/env bash
# `make run`: the platform on loopback with its embedded defaults plus a
# small simulated fleet. Ctrl-C stops everything.
set -euo pipefail
BUILD=${1:-build}; DATA=${2:-run-data}; N=${3:-5}
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
mkdir -p "$DATA"; chmod 700 "$DATA"
DATA=$(cd "$DATA" && pwd)
rm -f "$DATA/run/endpoints.json"

"$BIN/mamorid" --data "$DATA" --heartbeat 10 --demo-fleet "$N" >"$DATA/mamorid.log" 2>&1 &
HUB=$!
SIM=""
stop() {
    trap - INT TERM
    echo; echo "stopping..."
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
    kill -TERM "$HUB" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "stopped. State is kept in $DATA (delete it to start from scratch)."
    exit 0
}
trap stop INT TERM

for _ in $(seq 1 100); do
    if [ -f "$DATA/run/endpoints.json" ] && [ -d "$DATA/demo-fleet" ]; then break; fi
    kill -0 "$HUB" 2>/dev/null || { echo "mamorid failed to start:"; cat "$DATA/mamorid.log"; exit 1; }
    sleep 0.2
done
ep() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DATA/run/endpoints.json" "$1"; }
API=$(ep api); MQTT_PORT=$(ep mqtt_port)
"$BIN/mamori-sim" --identities "$DATA/demo-fleet" --heartbeat 10 --telemetry 30 \
    --broker-port "$MQTT_PORT" >"$DATA/sim.log" 2>&1 &
SIM=$!

CTL="$BIN/mamorictl --data $DATA"
cat <<TXT

  Mamori is running (data in $DATA)

  API        $API/api/v1         (TLS; trust $DATA/pki/root.crt)
  MQTT       mqtts://127.0.0.1:$MQTT_PORT   (mutual TLS; devices only)
  Fleet      $N simulated devices (mamori-sim), log: $DATA/sim.log
  Hub log    $DATA/mamorid.log    broker log: $DATA/log/broker.log

TXT
if [ -f "$DATA/bootstrap-token" ]; then
cat <<TXT
  There is no default account. The one-time admin bootstrap token is in
    $DATA/bootstrap-token
  Create the first administrator with it (you choose the password):
    $CTL bootstrap --user admin
    $CTL login --user admin

TXT
else
cat <<TXT
  Bootstrap is done; log in with the administrator you created:
    $CTL login --user admin

TXT
fi
cat <<TXT
  Then:
    $CTL device list
    $CTL device lock <DEVICE> --reason "reported stolen"     (its telemetry stops at once; it keeps only its management channel)
    $CTL events
    $CTL audit verify

  Stop: press Ctrl-C.
TXT
wait "$HUB"
