#!/usr/bin/env bash
# Integration: remote settings (T01-L3c, T08-*) end to end with the real
# agent, hub, broker and plugin. Settings come only from the hub (signed,
# staff only, checked on both sides), are applied atomically, and stay on
# probation until the device proves them (an event sent under them is
# acknowledged by the hub); settings that cut the device off are rolled
# back to the known-good version on their own, and an operator can roll
# back on command. The crash safety of the store is test_cfgstore's.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
claim alice 0
D0=$(dev_id 0)
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 1000}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0
agent_start 0
check "agent connects" wait_for 20 stat_is 0 connected True
expect_eq "no remote settings yet" 0 "$(astat 0 config_version)"
capture_cmds 0 "$T/captured"

# --- v1: a shorter heartbeat and a schema with a new field
cat >"$T/v1.json" <<'J'
{"heartbeat_s": 3, "health_s": 10,
 "schema": {"fields": [{"name": "i", "type": "integer", "min": 0, "max": 1000},
                       {"name": "rpm", "type": "integer", "min": 0, "max": 9000}]}}
J
check "an owner cannot push settings" fails as alice device config "$D0" --file "$T/v1.json" --reason x
echo '{"heartbeat_s": 3, "shell": "rm -rf /"}' >"$T/bad.json"
check "an unknown setting is refused by the hub" fails as op device config "$D0" --file "$T/bad.json" --reason x
echo '{"heartbeat_s": 0}' >"$T/bad.json"
check "an out-of-range setting is refused by the hub" fails as op device config "$D0" --file "$T/bad.json" --reason x
check "'config' without its document cannot be sent" fails as op device cmd "$D0" config --reason x
check "operator pushes settings v1" as op device config "$D0" --file "$T/v1.json" --reason "tuning"
check "the device applies v1" wait_for 20 stat_is 0 config_version 1
check "v1 proves itself and is committed" wait_for 20 has_event device_event "$D0" "config_committed"
check "the new schema field is accepted on the device" send 0 '{"rpm": 1200}'
check "the change is in the device's signed log" wait_for 20 has_event device_log "$D0" "config_applied"
check "the push is audited" bash -c "'$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' audit list | grep -q command_config"

# --- v2 cuts the device off (a broker port where nothing listens)
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "{\"broker_port\": $DEAD, \"health_s\": 6}" >"$T/v2.json"
check "operator pushes settings v2" as op device config "$D0" --file "$T/v2.json" --reason "move broker"
check "the device applies v2" wait_for 20 stat_is 0 config_version 2
check "and loses the broker" wait_for 10 stat_is 0 connected False
check "v2 fails its health check and goes back to v1" wait_for 30 stat_is 0 config_version 1
expect_eq "one rollback" 1 "$(astat 0 config_rollbacks)"
check "the device is back online" wait_for 30 stat_is 0 connected True
check "the rollback reaches the hub" wait_for 20 has_event device_event "$D0" "config_rolled_back"
check "...with its reason" has_event device_event "$D0" "health check failed"

# --- rollback on command
echo '{"heartbeat_s": 4, "health_s": 10}' >"$T/v3.json"
as op device config "$D0" --file "$T/v3.json" --reason "tuning again" >/dev/null
check "the device applies v3" wait_for 20 stat_is 0 config_version 3
committed_v3() { events_json | python3 -c 'import json,sys
sys.exit(0 if any(e["kind"]=="device_event" and "config_committed" in json.dumps(e["detail"]) and "\"version\": 3" in json.dumps(e["detail"]) for e in json.load(sys.stdin)["events"]) else 1)'; }
check "v3 is committed" wait_for 20 committed_v3
check "operator rolls back on command" as op device cmd "$D0" config-rollback --reason "undo v3"
check "the device is back on the known-good settings (v2 failed, so v1)" wait_for 20 stat_is 0 config_version 1
as op device cmd "$D0" config-rollback --reason "undo again" >/dev/null
last_cmd_is() { [ "$(as admin device commands "$D0" | jget commands.0.status)" = "$1" ]; }
check "a second rollback has nothing older to go to: it fails" wait_for 20 last_cmd_is failed
expect_eq "...and changes nothing" 1 "$(astat 0 config_version)"

# --- replay: every settings document and rollback sent so far, again, once
# v4 is in force with v1 as known-good (so a replayed rollback, even the
# one that failed, would have something to go back to)
echo '{"heartbeat_s": 5, "health_s": 10}' >"$T/v4.json"
as op device config "$D0" --file "$T/v4.json" --reason "v4" >/dev/null
check "the device applies v4" wait_for 20 stat_is 0 config_version 4
committed_v4() { events_json | python3 -c 'import json,sys
sys.exit(0 if any(e["kind"]=="device_event" and "config_committed" in json.dumps(e["detail"]) and "\"version\": 4" in json.dumps(e["detail"]) for e in json.load(sys.stdin)["events"]) else 1)'; }
check "v4 is committed" wait_for 20 committed_v4
grep '^{.*"cmd"' "$T/captured" >"$T/replay"
n_cap=$(wc -l <"$T/replay")
check "the capture holds the settings and rollbacks sent (4 + 2)" test "$n_cap" -eq 6
r0=$(astat 0 commands_refused); before="$(astat 0 config_version) $(astat 0 config_rollbacks)"
replay_cmds "$D0" "$T/replay"
check "every replayed settings command is refused" wait_for 20 stat_is 0 commands_refused $((r0 + n_cap))
# (the device handles a command in full before it counts the refusal, and
# writes its status whole: the settings read next are those after the last)
expect_eq "...and the settings in force are unchanged (v4, no rollback)" "$before" \
    "$(astat 0 config_version) $(astat 0 config_rollbacks)"

# --- the settings in force survive an agent restart
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_start 0
check "after a restart the agent is online" wait_for 20 stat_is 0 connected True
expect_eq "and keeps the settings in force" 4 "$(astat 0 config_version)"
check "audit chain intact" as admin audit verify
[ "$FAIL" -gt 0 ] && tail -30 "$T/agent0.log"
finish
