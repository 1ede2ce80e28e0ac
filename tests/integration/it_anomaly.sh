#!/usr/bin/env bash
# Integration: the rate_spike rule (docs/alerts.md) with the real agent,
# broker and hub. The hub learns each device's own message rate (windows of
# --rate-window s, here 2); steady traffic raises nothing, a burst far above
# the device's baseline raises rate_spike for that device only.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data" --rate-window 2
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0; agent_start 0; A0=$AGENT_PID
agent_conf 1; agent_start 1
check "two devices online" wait_for 20 eval 'stat_is 0 connected True && stat_is 1 connected True'
# steady: one reading a second each, for 7 windows
for i in $(seq 1 14); do send 0 "{\"t\": $((i % 30))}" >/dev/null; send 1 "{\"t\": $((i % 30))}" >/dev/null; sleep 1; done
spikes() { as admin alert list | python3 -c 'import json,sys
print(",".join(sorted(a["device_id"] for a in json.load(sys.stdin)["alerts"] if a["rule"]=="rate_spike")))'; }
expect_eq "steady traffic raises no rate_spike" "" "$(spikes)"
# a burst of 60 readings from device 0 in one batch
items=$(python3 -c 'import json; print(json.dumps([{"t": i % 80} for i in range(60)]))')
check "the agent takes the burst" send 0 "$items"
check "device 0's burst raises rate_spike" wait_for 20 eval '[ "$(spikes)" = "$D0" ]'
detail_ok() { as admin alert list --device "$D0" | python3 -c 'import json,sys
d=next((x["detail"] for x in json.load(sys.stdin)["alerts"] if x["rule"]=="rate_spike"), None)
# raised by the first message over the rule threshold (3 x baseline + 10;
# the baseline is shown to 0.1)
ok = d and d["messages"] > 3 * (d["baseline"] - 0.05) + 10 and d["baseline"] < 6 and d["window_s"] == 2
sys.exit(0 if ok else "rate_spike detail: %s" % d)'; }
check "...with the count against its own baseline" detail_ok
# the rate is counted as a message is taken in, so once device 1's next
# reading is stored, a spike of its own would already be an event
n1=$(stored "$D1")
send 1 '{"t": 1}' >/dev/null
check "device 1's next reading is stored" wait_for 20 stored_is "$D1" $((n1 + 1))
check "device 1, still steady, raised nothing" fails has_event rate_spike "$D1"
expect_eq "...and the only rate_spike alert is device 0's" "$D0" "$(spikes)"

# --- relay detection: device 1 through a relay that turns slow
kill "$A0" 2>/dev/null; wait "$A0" 2>/dev/null
hub_stop
hub_start "$DATA" --challenge-interval 1
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
python3 "$(dirname "$0")/tcpproxy.py" "$MQTT_PORT" 1000 >"$T/proxy.port" 2>>"$T/proxy.log" &
PROXY=$!; PIDS+=($PROXY)
wait_for 10 test -s "$T/proxy.port"
agent_conf 0 "" "\"broker_host\": \"127.0.0.1\", \"broker_port\": $(cat "$T/proxy.port")"
agent_start 0
check "device 0 connects through the relay" wait_for 20 stat_is 0 connected True
relay_alerts() { as admin alert list --device "$D0" | python3 -c 'import json,sys
print(sum(1 for a in json.load(sys.stdin)["alerts"] if a["rule"]=="relay_latency"))'; }
# challenges every second: the device's own round trip is learned
learned() { as admin device show "$D0" | python3 -c 'import json,sys
r=json.load(sys.stdin).get("round_trip") or {}; sys.exit(0 if r.get("learned") else 1)'; }
check "the hub learns the device's own round trip" wait_for 60 learned
# a challenge sent while the device was away is not timed (it would count
# the time away): the baseline stays well below what the relay will add
check "...and it is the device's own, not the time it was away" python3 -c 'import json,sys
r=json.loads(sys.argv[1])["round_trip"]; sys.exit(0 if r["baseline_ms"] < 1000 else "baseline %s" % r)' "$(as admin device show "$D0")"
expect_eq "a fast relay raises nothing (the round trip is the device's own)" 0 "$(relay_alerts)"
check "the challenges leave no command records" bash -c "[ \"\$('$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' device commands '$D0' | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin)[\"commands\"] if c[\"issued_by\"]==\"challenge\"))')\" -le 1 ]"
kill -USR2 "$PROXY"   # from now on 1 s each way
check "a slow relay in between raises relay_latency" wait_for 20 eval '[ "$(relay_alerts)" = 1 ]'
detail_relay() { as admin alert list --device "$D0" | python3 -c 'import json,sys
a=next((x["detail"] for x in json.load(sys.stdin)["alerts"] if x["rule"]=="relay_latency"), None)
sys.exit(0 if a and a["rtt_ms"] > 800 and a["rtt_ms"] > 3 * a["baseline_ms"] else "relay_latency detail: %s" % a)'; }
check "...with the round trip against the device's baseline" detail_relay
check "audit chain intact" as admin audit verify
finish
