#!/usr/bin/env bash
# Benchmarks, side by side in one run: the Mamori platform (mamorid +
# mosquitto + mamori plugin) against plain mosquitto with the same TLS
# listener configuration and no plugin. Loopback only. Prints every figure
# with the command that produced it; copy the output into docs/benchmarks.md.
#
#   bench/run-all.sh [BUILD_DIR]      (make bench)
#
# Sizes (environment): CONNECT_N=2000 PUB_N=1000 PUB_MSGS=100 HOLD_N=5000 REVOKE_N=100
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/$BUILD/bin
CONNECT_N=${CONNECT_N:-2000}; PUB_N=${PUB_N:-1000}; PUB_MSGS=${PUB_MSGS:-100}
HOLD_N=${HOLD_N:-5000}; REVOKE_N=${REVOKE_N:-100}; THREADS=${THREADS:-4}
NEED=$(( HOLD_N > CONNECT_N ? HOLD_N : CONNECT_N ))
W=$(mktemp -d /tmp/mamori-bench.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
say() { printf '\n$ %s\n' "$*"; "$@"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ep() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/data/run/endpoints.json" "$1"; }

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); mosquitto $(mosquitto -h | head -1 | awk '{print $3}')"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), build $BUILD, commit $(git rev-parse --short HEAD 2>/dev/null)"

echo; echo "## the plugin's per-message decision, in process, against a no-op baseline"
say "$BIN/acl-bench" 5000 20000000
echo; echo "## the hub's ingest worker, in process: batches committed as they come, and left to fill"
say "$BIN/ingest-bench" "$W" 1000 15000 5
echo; echo "## the same worker on SQLite and on PostgreSQL (a private server, scripts/pg.sh), alternated"
chmod 711 "$W" # the database server's own user reaches its directory
if PGURL=$(scripts/pg.sh start "$W/pg"); then
    say "$BIN/ingest-bench" "$W" 1000 60000 5 10 "$PGURL"
    say "$BIN/ingest-bench" "$W" 1000 15000 5 10 "$PGURL"
    scripts/pg.sh stop "$W/pg"
fi

# --- the platform, with rate limits lifted so the plugin's cost, not the
# policy, is what is measured
"$BIN/mamorid" --data "$W/data" --max-connections 20000 --rate 100000 --burst 100000 \
    --heartbeat 300 >"$W/hub.log" 2>&1 &
HUB=$!; PIDS+=($HUB)
for _ in $(seq 1 100); do [ -f "$W/data/run/endpoints.json" ] && break; sleep 0.1; done
API=$(ep api); PORT=$(ep mqtt_port); CA=$W/data/pki/root.crt
C="$BIN/mamorictl --data $W/data --session $W/s-admin"
export MAMORI_PASSWORD="bench admin passphrase"
$C bootstrap --user admin >/dev/null && $C login --user admin >/dev/null
MAMORI_NEW_PASSWORD="bench owner passphrase" $C user add owner --role owner >/dev/null
MAMORI_PASSWORD="bench owner passphrase" $BIN/mamorictl --data "$W/data" --session "$W/s-owner" login --user owner >/dev/null
echo "# provisioning $NEED device identities (keygen + CSR + enroll + claim each)..."
t0=$(date +%s)
$C factory batch --model bench --count "$NEED" --out "$W/fleet" >/dev/null
for d in "$W"/fleet/dev-*; do echo "{\"claim_code\":\"$(cat "$d/claim-code")\"}"; done |
    while read -r body; do curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer $(cat "$W/s-owner")" \
        -d "$body" "$API/api/v1/claims"; done
echo "# provisioned in $(( $(date +%s) - t0 )) s"

# --- plain mosquitto: same listener and TLS lines, no plugin, same certs
PLAIN_PORT=$(( PORT + 1 ))
cat >"$W/plain.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
max_packet_size 17408
max_inflight_messages 20
max_queued_messages 100
listener $PLAIN_PORT 127.0.0.1
max_connections 20000
set_tcp_nodelay true
cafile $W/data/pki/device-trust.pem
certfile $W/data/pki/broker.crt
keyfile $W/data/pki/broker.key
require_certificate true
tls_version tlsv1.2
ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305
ciphers_tls1.3 TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
user root
CONF
mosquitto -c "$W/plain.conf" 2>"$W/plain.log" &
PLAIN=$!; PIDS+=($PLAIN)
sleep 0.5
# one consumer on each side: the hub on the platform; on plain a subscriber
# with the hub's own subscriptions and QoS
mosquitto_sub -h 127.0.0.1 -p "$PLAIN_PORT" --cafile "$CA" --cert "$W/data/pki/hub-client.crt" \
    --key "$W/data/pki/hub-client.key" -q 1 -t 'mamori/v1/d/+/hb' -t 'mamori/v1/d/+/tm' \
    -t 'mamori/v1/d/+/ev' -t 'mamori/v1/d/+/res' >"$W/plain-consumer.txt" 2>/dev/null &
PIDS+=($!)
BROKER=$(cat "$W/data/run/broker.pid")
B="$BIN/mqtt-bench"

# Both sides share 2 cores with the load generator and the consumer, so
# each measurement runs ROUNDS times, alternating which side goes first;
# compare medians.
ROUNDS=${ROUNDS:-3}
order() { if [ $(( $1 % 2 )) -eq 1 ]; then echo "plain platform"; else echo "platform plain"; fi; }
portof() { [ "$1" = plain ] && echo "$PLAIN_PORT" || echo "$PORT"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# messages the consumer of each side has received so far
consumed() {
    if [ "$1" = plain ]; then wc -l <"$W/plain-consumer.txt"
    else curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mqtt_received"])'; fi
}

echo; echo "## full-mTLS connect rate, $CONNECT_N devices, $THREADS client threads, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do for side in $(order "$r"); do
    echo "### $side (round $r)"; say "$B" connect "$W/fleet" "$CONNECT_N" "$THREADS" "$(portof $side)" | tee -a "$W/connect-$side.txt"
done; done
for side in plain platform; do
    echo "median connect rate $side: $(grep -o '= [0-9]* connects/s' "$W/connect-$side.txt" | tr -dc '0-9\n' | median) connects/s"
done

echo; echo "## publish throughput, $PUB_N connected devices x $PUB_MSGS messages, $ROUNDS rounds"
for qos in 0 1; do
    for r in $(seq 1 "$ROUNDS"); do for side in $(order "$r"); do
        echo "### $side QoS$qos (round $r)"
        c0=$(consumed $side)
        say "$B" publish "$W/fleet" "$PUB_N" "$qos" "$PUB_MSGS" "$(portof $side)" | tee -a "$W/pub$qos-$side.txt"
        sleep 3 # let the consumer drain
        echo "consumer ($side) received $(( $(consumed $side) - c0 )) of $(( PUB_N * PUB_MSGS )) published (+ barriers)"
    done; done
    for side in plain platform; do
        echo "median QoS$qos throughput $side: $(grep -o '= [0-9]* msgs/s' "$W/pub$qos-$side.txt" | tr -dc '0-9\n' | median) msgs/s"
    done
done

echo; echo "## RSS with $HOLD_N connected devices"
for side in plain platform; do
    port=$([ $side = plain ] && echo "$PLAIN_PORT" || echo "$PORT")
    "$B" hold "$W/fleet" "$HOLD_N" 120 "$port" >"$W/hold-$side.log" 2>&1 &
    HOLD=$!
    for _ in $(seq 1 600); do grep -q "hold:" "$W/hold-$side.log" && break; sleep 0.5; done
    sleep 2
    cat "$W/hold-$side.log"
    if [ $side = plain ]; then
        echo "plain mosquitto RSS: $(rss_kb $PLAIN) kB"
    else
        echo "platform broker (mosquitto + plugin) RSS: $(rss_kb "$BROKER") kB"
        echo "hub (mamorid) RSS: $(rss_kb $HUB) kB"
    fi
    kill $HOLD; wait $HOLD 2>/dev/null
done

echo; echo "## revocation-to-disconnect latency, $REVOKE_N devices (platform only: plain mosquitto has no live revocation)"
say "$B" revoke "$W/fleet" "$REVOKE_N" "$PORT" "$API" "$CA" "$(cat "$W/s-admin")"

echo; echo "## device outbox: persistence rate with nothing lost on power loss, beside fdatasync to a plain file; recovery with 100,000 queued"
mkdir -p "$W/outbox"
say "$BIN/outbox-bench" "$W/outbox" 2000 100000 100

echo; echo "## update verification: 256 MiB image, beside sha256sum of the same file; peak RSS of each job"
say "$BIN/update-bench" "$W" 256
