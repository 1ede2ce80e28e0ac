#!/usr/bin/env bash
# Integration: the device's tamper-evident log, end to end. Records are
# signed with the device key and hash-chained; the hub verifies each one
# and raises an alert on an edit, a gap, a reordering or a log cut back and
# started again. Tampering is done where an attacker on the device would do
# it: in the queued records, while the hub is away.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1)
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0; agent_conf 1
log_events() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_log" and e.get("device_id")==sys.argv[1]))' "$1"; }
log_events_at_least() { [ "$(log_events "$1")" -ge "$2" ]; }
anomalies() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"] in ("device_log_rewound","device_log_gap") and e.get("device_id")==sys.argv[1]))' "$D1"; }
reordered() { [ "$(anomalies)" -ge $((a0 + 2)) ]; }
restart() { kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; agent_start "$1"; }
sq() { sqlite3 "$T/state$1/outbox.db" "$2"; }

agent_start 0
check "boot record reaches the hub and verifies" wait_for 20 has_event device_log "$D0" '"type": "boot"'
as alice device cmd "$D0" self-test --reason "check" >/dev/null
check "a command is recorded in the device log" wait_for 20 has_event device_log "$D0" '"type": "command"'
check "the local log holds the signed records" test "$(wc -l <"$T/state0/log/current.log")" -ge 2
restart 0
check "after a restart the chain goes on (no alert)" wait_for 20 log_events_at_least "$D0" 3
check "no log alert so far" fails has_event device_log_chain_broken "$D0"

# --- an edited record: forged signature
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
hub_stop
agent_start 0       # queues a boot record the hub has not seen
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
sq 0 "UPDATE msg SET payload = CAST(replace(CAST(payload AS TEXT), 'boot', 'bolt') AS BLOB) WHERE stream=2"
agent_start 0
hub_start "$DATA"; MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "an edited record is reported (signature)" wait_for 20 has_event device_log_forged "$D0"

# --- a removed record: gap
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
hub_stop
agent_start 0; restart 0; kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null   # two boot records queued
sq 0 "DELETE FROM msg WHERE id = (SELECT min(id) FROM msg WHERE stream=2)"
agent_start 0
hub_start "$DATA"; MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "a removed record is reported (gap)" wait_for 20 has_event device_log_gap "$D0"

# --- a log cut back and started again (truncation + reset): device 1
agent_start 1; A1=$AGENT_PID
wait_for 20 has_event device_log "$D1" '"type": "boot"'
restart 1
check "device 1's second boot record verifies" wait_for 20 log_events_at_least "$D1" 2
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
rm -f "$T/state1/log/current.log" "$T/state1/log/log.1"
agent_start 1
check "a log wiped and begun again is reported" wait_for 20 has_event device_log_rewound "$D1"

# --- reordering: two queued records swapped (device 1)
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
hub_stop
agent_start 1; restart 1; kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
a0=$(anomalies)
ids=$(sq 1 "SELECT id FROM msg WHERE stream=2 ORDER BY id" | tr '\n' ' ')
set -- $ids
if [ $# -ge 2 ]; then
    sq 1 "CREATE TEMP TABLE t AS SELECT id, payload FROM msg WHERE id IN ($1, $2);
          UPDATE msg SET payload=(SELECT payload FROM t WHERE id=$2) WHERE id=$1;
          UPDATE msg SET payload=(SELECT payload FROM t WHERE id=$1) WHERE id=$2;" >/dev/null
fi
agent_start 1
hub_start "$DATA"; MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "swapped records are reported" wait_for 20 reordered
# --- configuration integrity: a change to the agent's files is reported
agent_start 0
check "first start records the configuration digests" wait_for 20 has_event device_log "$D0" '"type": "config_changed"'
n0=$(events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and "config_changed" in json.dumps(e["detail"]) and e.get("device_id")==sys.argv[1]))' "$D0")
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 150}]}' >"$T/schema.json"
cfg_events() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and "config_changed" in json.dumps(e["detail"]) and sys.argv[2] in json.dumps(e["detail"]) and e.get("device_id")==sys.argv[1]))' "$D0" "$1"; }
cfg_reported() { [ "$(cfg_events schema.json)" -ge 1 ] && [ "$(cfg_events "")" -gt "$n0" ]; }
check "a local change of the schema while running is reported" wait_for 20 cfg_reported
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
sed -i 's/"heartbeat_s": 2/"heartbeat_s": 3/' "$T/agent0.json"
n1=$(cfg_events agent0.json)
agent_start 0
cfg_changed_offline() { [ "$(cfg_events agent0.json)" -gt "$n1" ]; }
check "a change made while the agent was stopped is reported at start" wait_for 20 cfg_changed_offline
finish
