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
hz=$(getconf CLK_TCK)
cp "$BIN/mamori-agent" "$T/agent-stripped"; strip "$T/agent-stripped"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
echo "stripped size: $(stat -c %s "$T/agent-stripped") bytes (dynamically linked: libssl, libcrypto, libmosquitto, libsqlite3, libjansson)"
sleep 5
c0=$(cpu "$A"); sleep ${IDLE_S:-30}; c1=$(cpu "$A")
echo "idle (heartbeat 30 s), 30 s: RSS $(rss "$A") kB, CPU $(( (c1 - c0) * 1000 / hz )) ms"
c0=$(cpu "$A")
for i in $(seq 1 ${MSGS:-300}); do "$BIN/mamori-agent" send --socket "$T/state0/agent.sock" "{\"temp_c\": $((i % 50))}" >/dev/null; sleep 0.1; done
c1=$(cpu "$A")
echo "10 msg/s for 30 s (each on disk before the reply): RSS $(rss "$A") kB, CPU $(( (c1 - c0) * 1000 / hz )) ms of the agent"
echo "stored at the hub: $(stored "$(dev_id 0)")"
sleep 3; echo "stored at the hub after 3 s: $(stored "$(dev_id 0)")"
events_json | python3 -c 'import json,sys
from collections import Counter
print(Counter(e["kind"] for e in json.load(sys.stdin)["events"]))'
cat "$T/agent.log" | tail -5
