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
check "...and raises the log_chain_break alert" wait_for 10 has_alert log_chain_break "$D0"
# One agent per state directory: a second one would fork the chain.
second_agent_refused() { local out; out=$(timeout 10 "$BIN/mamori-agent" --config "$T/agent0.json" 2>&1)
    [ $? -eq 1 ] && [[ $out == *"cannot start the device: in use by another process"* ]]; }
check "a second agent on the same state directory is refused" second_agent_refused
check "and the first one still runs" kill -0 "$AGENT_PID"
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null

# --- a log cut back and started again (truncation + reset): device 1
agent_start 1; A1=$AGENT_PID
check "device 1's boot record verifies" wait_for 20 has_event device_log "$D1" '"type": "boot"'
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
check "the first digests raise no config_drift" fails has_alert config_drift "$D0"
n0=$(events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and "config_changed" in json.dumps(e["detail"]) and e.get("device_id")==sys.argv[1]))' "$D0")
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 150}]}' >"$T/schema.json"
cfg_events() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and "config_changed" in json.dumps(e["detail"]) and sys.argv[2] in json.dumps(e["detail"]) and e.get("device_id")==sys.argv[1]))' "$D0" "$1"; }
cfg_reported() { [ "$(cfg_events schema.json)" -ge 1 ] && [ "$(cfg_events "")" -gt "$n0" ]; }
check "a local change of the schema while running is reported" wait_for 20 cfg_reported
check "...and raises the config_drift alert" wait_for 10 has_alert config_drift "$D0"
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
sed -i 's/"heartbeat_s": 2/"heartbeat_s": 3/' "$T/agent0.json"
n1=$(cfg_events agent0.json)
agent_start 0
cfg_changed_offline() { [ "$(cfg_events agent0.json)" -gt "$n1" ]; }
check "a change made while the agent was stopped is reported at start" wait_for 20 cfg_changed_offline
# --- T12-L2a: access to the log files by anyone but the SDK is recorded
# (in the device log itself) and raised at the hub. The SDK's own writes,
# a rotation among them, are not.
acc_json() { events_json | python3 -c 'import json,sys
ev=[e for e in json.load(sys.stdin)["events"] if e["kind"]=="device_log_access" and e.get("device_id")==sys.argv[1]]
print(len(ev), sum(f["events"] for e in ev for f in e["detail"]["files"]))' "$D0"; }
n_acc() { acc_json | cut -d" " -f1; }
acc_more_than() { [ "$(n_acc)" -gt "$1" ]; }
# a read by this test (not the SDK), while the agent watches: reported
# within the agent's report interval (10 s), whatever came before it
a_before=$(n_acc)
wc -l <"$T/state0/log/current.log" >/dev/null
check "a read of the log by this test is reported" wait_for 30 acc_more_than "$a_before"
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
head -c 70000 /dev/zero | tr '\0' 'x' >>"$T/state0/log/current.log"; echo >>"$T/state0/log/current.log"
b0=$(log_events "$D0")
acc0=$(n_acc)
agent_start 0
check "the boot record after the padded log verifies" wait_for 20 log_events_at_least "$D0" $((b0 + 1))
check "the SDK rotated its log (log.1 holds the old file)" test "$(stat -c %s "$T/state0/log/log.1")" -gt 65536
as alice device cmd "$D0" self-test --reason "log watch" >/dev/null
check "the command after the rotation is recorded" wait_for 20 log_events_at_least "$D0" $((b0 + 2))
# The agent looks at its log directory at the start of each of its steps,
# then sends what it queued. A reading it takes after the command's record
# reached the hub is sent after that look: once the reading is stored, any
# report of the SDK's own writes would have gone out before it.
n_tm=$(stored "$D0")
send 0 '{"temp_c": 20}' >/dev/null
check "a reading after the command is stored" wait_for 20 stored_is "$D0" $((n_tm + 1))
check "the SDK's own writes and rotation raised no access alert" test "$(n_acc)" = "$acc0"
cat "$T/state0/log/current.log" >/dev/null
check "reading the log is raised at the hub" wait_for 20 has_event device_log_access "$D0" '"ops": "open,read,close"'
check "...as the log_access alert" wait_for 10 has_alert log_access "$D0"
check "and recorded in the device log itself" wait_for 20 has_event device_log "$D0" '"type": "log_access"'
check "the agent counts the report" wait_for 20 stat_is 0 log_access 1
echo "forged" >>"$T/state0/log/log.1"
check "a write to the rotated file is raised (after the 10 s report interval)" \
    wait_for 40 has_event device_log_access "$D0" '"file": "log.1", "ops": "open,write,close-write"'
read -r a1 e1 <<<"$(acc_json)"
for _ in $(seq 50); do cat "$T/state0/log/current.log" >/dev/null; done
check "50 reads are reported" wait_for 40 acc_more_than "$a1"
# reads after the first report are in the next one, 10 s later
all_counted() { read -r a2 e2 <<<"$(acc_json)"; [ $((e2 - e1)) -ge 150 ]; }
check "that count every event (150 or more)" wait_for 40 all_counted
check "in at most two reports (no flood)" test $((a2 - a1)) -le 2
rm -rf "$T/state0/log"
check "removing the log directory is raised" wait_for 40 has_event device_log_access "$D0" '"ops": "dir-gone"'
check "the SDK made the directory again and goes on" wait_for 20 test -s "$T/state0/log/current.log"
b1=$(log_events "$D0")
as alice device cmd "$D0" self-test --reason "after removal" >/dev/null
check "the chain goes on in the new directory" wait_for 20 log_events_at_least "$D0" $((b1 + 1))
check "no chain alert for device 0 after all this" fails has_event device_log_chain_broken "$D0"
finish
