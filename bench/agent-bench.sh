#!/usr/bin/env bash
# mamori-agent's footprint against a real hub on loopback: stripped size,
# RSS and CPU idle (heartbeats only) and at 10 msg/s for 30 s.
#   bench/agent-bench.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
export MAMORI_BIN=$PWD/${1:-build}/bin
. tests/integration/lib.sh
hub_start "$T/data" >/dev/null
fleet_setup 1 >/dev/null
claim alice 0
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0
sed -i 's/"heartbeat_s": 2/"heartbeat_s": 30/' "$T/agent0.json"
"$BIN/mamori-agent" --config "$T/agent0.json" >"$T/agent.log" 2>&1 &
A=$!; PIDS+=("$A")
wait_for 20 test -S "$T/state0/agent.sock"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, clock ticks
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
mem() { awk '/^(Rss|Pss|Private_Dirty|Shared_Clean):/ {printf "%s %s kB  ", $1, $2}' "/proc/$1/smaps_rollup"; }
hz=$(getconf CLK_TCK)
cp "$BIN/mamori-agent" "$T/agent-stripped"; strip "$T/agent-stripped"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
echo "stripped size: $(stat -c %s "$T/agent-stripped") bytes (dynamically linked: libssl, libcrypto, libmosquitto, libsqlite3, libjansson)"
sleep 5
c0=$(cpu "$A"); sleep ${IDLE_S:-30}; c1=$(cpu "$A")
echo "idle (heartbeat 30 s), ${IDLE_S:-30} s: RSS $(rss "$A") kB, CPU $(( (c1 - c0) * 1000 / hz )) ms"
echo "  $(mem "$A")"
c0=$(cpu "$A")
for i in $(seq 1 ${MSGS:-300}); do "$BIN/mamori-agent" send --socket "$T/state0/agent.sock" "{\"temp_c\": $((i % 50))}" >/dev/null; sleep 0.1; done
c1=$(cpu "$A")
echo "10 msg/s, ${MSGS:-300} messages (each on disk before the reply): RSS $(rss "$A") kB, CPU $(( (c1 - c0) * 1000 / hz )) ms of the agent"
echo "  $(mem "$A")"
echo "stored at the hub: $(stored "$(dev_id 0)")"
echo "alerts raised: $(events_json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["severity"]=="alert"))')"

# Side by side: mender-client (Debian's package) idle, same machine, same
# run. Its server is an unreachable loopback port, as ours would be when
# the hub is away; it keeps retrying, as the agent does.
command -v mender >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q mender-client >/dev/null
M=$T/mender; mkdir -p "$M"
echo '{"ServerURL": "https://127.0.0.1:9", "DeviceType": "bench", "UpdatePollIntervalSeconds": 1800, "InventoryPollIntervalSeconds": 28800, "RetryPollIntervalSeconds": 300}' >"$M/mender.conf"
mender --no-syslog --config "$M/mender.conf" --data "$M" daemon >"$M/log" 2>&1 &
MP=$!; PIDS+=("$MP")
sleep "${IDLE_S:-30}"
echo "mender-client $(mender --version 2>/dev/null | awk '{print $1}') idle, ${IDLE_S:-30} s: RSS $(rss "$MP") kB"
echo "  $(mem "$MP")"
echo "mamori-agent at the same time:  RSS $(rss "$A") kB"
echo "  $(mem "$A")"
