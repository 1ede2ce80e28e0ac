#!/usr/bin/env bash
# A staged update campaign over N simulated devices (mamori-sim --updates:
# each device with its own state, A/B slots, real mTLS connection and HTTPS
# downloads), beside the same fleet updated in one unstaged wave. Prints
# time to complete and the CPU of the hub, the broker and the simulator.
# Loopback only; every wait is bounded.
#
#   bench/campaign-bench.sh [BUILD_DIR] [N=1000] [IMAGE_KB=64]
set -uo pipefail
BUILD=${1:-build}
N=${2:-1000}
KB=${3:-64}
cd "$(dirname "$0")/.."
BIN=$PWD/$BUILD/bin
W=$(mktemp -d /tmp/mamori-campaign-bench.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. bench/lib.sh  # PIDS, cleanup, ep, cpu_ms, jget, bench_accounts

"$BIN/mamorid" --data "$W/data" --max-connections $((N + 100)) \
    --api-connections $((N + 100)) --api-per-address $((N + 100)) --rate 100000 --burst 100000 \
    --heartbeat 300 >"$W/hub.log" 2>&1 &
HUB=$!; PIDS+=($HUB)
for _ in $(seq 1 100); do [ -f "$W/data/run/endpoints.json" ] && break; sleep 0.1; done
API=$(ep api); CA=$W/data/pki/root.crt
bench_accounts
echo "# campaign-bench $BUILD $N $KB   (commit $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores)"
echo "# provisioning $N devices (keygen, enroll, claim) and the release keys..."
$C factory batch --model bench --count "$N" --out "$W/fleet" >/dev/null
for d in "$W"/fleet/dev-*; do echo "{\"claim_code\":\"$(cat "$d/claim-code")\"}"; done |
    while read -r body; do curl -s -o /dev/null --cacert "$CA" \
        -H "Authorization: Bearer $(cat "$W/s-owner")" -d "$body" "$API/api/v1/claims"; done
R() { (cd "$W" && "$BIN/mamorictl" release "$@" >/dev/null); }
R keygen --out root1; R keygen --out rel1
R root --version 1 --root-keys root1.pub --root-threshold 1 --release-keys rel1.pub \
    --release-threshold 1 --out root-1.json
R sign --file root-1.json --key root1.key
$C firmware root add --file "$W/root-1.json" >/dev/null
for d in "$W"/fleet/dev-*; do cp "$W/root-1.json" "$d/update-root.json"; done
publish() { # VERSION -> prints the image's sha256
    head -c $((KB * 1024)) /dev/urandom >"$W/fw-$1.img"
    R manifest --model bench --fw-version "$1" --security-version 1 --image "fw-$1.img" \
        --out "rel-$1.json"
    R sign --file "rel-$1.json" --key rel1.key
    $C firmware add --file "$W/rel-$1.json" --image "$W/fw-$1.img" >/dev/null
    sha256sum "$W/fw-$1.img" | cut -d' ' -f1
}

mkdir -p "$W/upd"
"$BIN/mamori-sim" --identities "$W/fleet" --heartbeat 300 --updates "$W/upd" \
    --status "$W/sim.json" >"$W/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
for _ in $(seq 1 600); do
    [ -f "$W/sim.json" ] && [ "$(jget connected <"$W/sim.json")" = "$N" ] && break; sleep 0.5
done
echo "# $(jget connected <"$W/sim.json") of $N devices connected"
BROKER=$(cat "$W/data/run/broker.pid")

run() { # run NAME VERSION CAMPAIGN-OPTIONS...
    local name=$1 ver=$2; shift 2
    local sha; sha=$(publish "$ver")
    local h0 b0 s0 t0 id state
    h0=$(cpu_ms "$HUB"); b0=$(cpu_ms "$BROKER"); s0=$(cpu_ms "$SIM"); t0=$(date +%s.%N)
    echo "\$ mamorictl campaign create <sha of $ver> --reason bench $*"
    id=$($C campaign create "$sha" --reason bench "$@" | jget id)
    for _ in $(seq 1 "${WAIT_POLLS:-600}"); do
        state=$($C campaign show "$id" 2>/dev/null | jget state 2>/dev/null)
        [ "$state" = done ] || [ "$state" = paused ] && break
        sleep 0.5
    done
    local t1; t1=$(date +%s.%N)
    sleep 1
    $C campaign show "$id" | python3 -c 'import json,sys
c=json.load(sys.stdin); d=c["devices"]
print("  %-28s %s in %.1f s: %d committed, %d failed, %d skipped, %d pending" % (sys.argv[1], c["state"],
      float(sys.argv[3]) - float(sys.argv[2]), d["committed"], d["failed"], d["skipped"], d["pending"]))' \
        "$name" "$t0" "$t1"
    echo "  CPU: hub $(( $(cpu_ms "$HUB") - h0 )) ms, broker $(( $(cpu_ms "$BROKER") - b0 )) ms," \
        "simulator (all $N devices) $(( $(cpu_ms "$SIM") - s0 )) ms"
}

echo
echo "## staged: 10 canaries, then waves of 50 every 2 s"
run "staged" 1.2 --canary 10 --wave 50 --interval 2 --max-fail 5
if [ "${BASELINE:-1}" = 1 ]; then
    echo
    echo "## the baseline: the same fleet in one unstaged wave, never paused"
    run "unstaged" 1.3 --canary 0 --wave 1000 --interval 1 --max-fail 100
fi
echo
echo "# hub RSS $(awk '/VmRSS/ {print $2}' "/proc/$HUB/status") kB, simulator RSS $(awk '/VmRSS/ {print $2}' "/proc/$SIM/status") kB"
