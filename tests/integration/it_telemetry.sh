#!/usr/bin/env bash
# Integration: trustworthy telemetry and store-and-forward, end to end with
# the real agent, hub, broker and plugin. Schema checks on the device and on
# the hub (range, type, unknown field, rate), replay and timestamp checks,
# storage and query by device and time, owner isolation, and delivery in
# order and exactly once across a hub outage, an agent kill -9 and a full
# outbox (drop of the oldest telemetry, reported).
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 3
claim alice 0; claim alice 1; claim alice 2
D0=$(dev_id 0); D1=$(dev_id 1); D2=$(dev_id 2)

cat >"$T/schema.json" <<'J'
{"fields": [
  {"name": "temp_c", "type": "number", "unit": "degC", "min": -40, "max": 85},
  {"name": "door_open", "type": "boolean"},
  {"name": "count", "type": "integer", "min": 0, "max": 1000, "max_rate_hz": 1}
]}
J
# --- schemas
check "operator declares the model's telemetry schema" as op schema set sensor-v1 --file "$T/schema.json"
expect_eq "schema reads back" "3" "$(as alice schema show sensor-v1 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["fields"]))')"
echo '{"fields":[{"name":"x","type":"number","min":5,"max":1}]}' >"$T/bad-schema.json"
check "schema with min above max: refused" fails as op schema set sensor-v1 --file "$T/bad-schema.json"
echo '{"fields":[{"name":"x","type":"number"}]}' >"$T/bad-schema.json"
check "schema without a range: refused" fails as op schema set sensor-v1 --file "$T/bad-schema.json"
check "an owner cannot set a schema" fails as alice schema set sensor-v1 --file "$T/schema.json"

agent_conf 0
agent_start 0
check "agent connects" wait_for 20 stat_is 0 connected True
check "agent accepts telemetry within the schema" send 0 '{"temp_c": 21.5, "door_open": false}'
check "agent refuses an out-of-range value locally" fails send 0 '{"temp_c": 400}'
check "agent refuses an unknown field locally" fails send 0 '{"humidity": 40}'
check "agent refuses a wrong type locally" fails send 0 '{"door_open": 1}'
check "agent refuses a line that is not JSON" fails send 0 'not json'
check "accepted telemetry is stored and acknowledged" wait_for 20 stat_is 0 acked 1
# (the signed status the device publishes a second after connecting may
# be in flight at this moment: the outbox empties once it is acknowledged)
check "and leaves the outbox" wait_for 20 stat_is 0 outbox_queued 0
QUIET=$(date +%s%3N)   # the device's last acknowledgement came before this
expect_eq "one row stored for the device" 1 "$(stored "$D0")"
expect_eq "stored body is what was sent" "21.5" "$(as admin device telemetry "$D0" | jget items.0.body.temp_c)"
check "the owner reads her device's telemetry" as alice device telemetry "$D0"
check "another owner gets 404 for it" fails as bob device telemetry "$D0"
NOW=$(date +%s%3N)
expect_eq "time range before the data is empty" 0 "$(as admin device telemetry "$D0" --to $((NOW - 3600000)) | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
# steady traffic after a silence longer than the device's ack timeout
# (10 s): each message acknowledged before the next; the sender's cursor
# must never skip a row, and nothing is sent twice
check "the device has been quiet longer than its ack timeout" wait_for 30 clock_past $((QUIET + 11000))
for i in $(seq 1 10); do send 0 "{\"temp_c\": $i}" >/dev/null; wait_for 10 stat_is 0 acked $((i + 1)) || break; done
check "steady sending, acknowledged in between: every message stored" wait_for 10 stored_is "$D0" 11
expect_eq "steady sending: in order, with no gap" "$(seq -s, 1 11)" "$(seqs "$D0")"
check "normal traffic raises no replay alert" fails has_event telemetry_replay "$D0"
expect_eq "and nothing was sent twice" 0 "$(curl -s --cacert "$CA" "$API/api/v1/health" | jget streams.duplicates)"

# --- the hub checks what a device might send without the SDK
rejected() { curl -s --cacert "$CA" "$API/api/v1/health" | jget streams.rejected; }
duplicates() { curl -s --cacert "$CA" "$API/api/v1/health" | jget streams.duplicates; }
P1=$(dev_dir 1)
tm() { printf '{"v":1,"seq":%d,"ts":%d,"body":%s}' "$1" "${3:-$(date +%s%3N)}" "$2"; }
pub1() { mqtt_pub "$P1" "mamori/v1/d/$D1/tm" "$1" >/dev/null 2>&1; }
pub1 "$(tm 1 '{"temp_c": 20}')"
check "a good message from a raw client is stored" wait_for 10 stored_is "$D1" 1
r0=$(rejected)
pub1 "$(tm 2 '{"temp_c": 1000}')"
check "hub refuses an out-of-range value" wait_for 10 health_is streams.rejected $((r0 + 1))
check "and raises an alert naming the field" wait_for 10 has_event telemetry_rejected "$D1" "temp_c=1000"
pub1 "$(tm 3 '{"humidity": 10}')"
pub1 "$(tm 4 '{"door_open": "yes"}')"
pub1 "$(tm 5 '{"temp_c": 20}' $(( $(date +%s%3N) + 3600000 )))"
pub1 "$(tm 6 '{"temp_c": 20}' $(( $(date +%s%3N) - 8 * 86400000 )))"
check "hub refuses unknown field, wrong type, future and stale timestamps" wait_for 10 health_is streams.rejected $((r0 + 5))
# the device's own clock says 100 ms apart, however long each publish takes here
T7=$(date +%s%3N)
pub1 "$(tm 7 '{"count": 1}' "$T7")"
pub1 "$(tm 8 '{"count": 2}' $((T7 + 100)))"
check "hub refuses a field sent faster than its max_rate_hz" wait_for 10 health_is streams.rejected $((r0 + 6))
expect_eq "only the good messages are stored" 2 "$(stored "$D1")"
# replay: an old sequence number with other content
pub1 "$(tm 1 '{"temp_c": -5}')"
check "a replayed sequence number with other content: refused" wait_for 10 health_is streams.rejected $((r0 + 7))
P2=$(dev_dir 2)
pub2() { mqtt_pub "$P2" "mamori/v1/d/$D2/tm" "$1" >/dev/null 2>&1; }
pub2 "$(tm 5 '{"temp_c": 1}' "$NOW")"
pub2 "$(tm 3 '{"temp_c": 2}' "$NOW")"
# a number below the highest that the hub never had (lost on the way, sent
# again) fills its gap: refusing it would lose what the device was told was
# kept (docs/protocol.md)
check "an out-of-order sequence number the hub never had fills its gap" wait_for 10 stored_is "$D2" 2
check "...without a replay alert" fails has_event telemetry_replay "$D2"
pub2 "$(tm 3 '{"temp_c": 9}' "$NOW")"
check "the same number again with other content raises a replay alert" wait_for 10 has_event telemetry_replay "$D2" "at or below"
d0=$(duplicates)
pub2 "$(tm 5 '{"temp_c": 1}' "$NOW")"
check "an exact resend is recognised as a duplicate" wait_for 10 health_is streams.duplicates $((d0 + 1))
expect_eq "and is not stored twice" 2 "$(stored "$D2")"
# a rate-limited field's gap filler comes after the reading it preceded:
# not "too fast" (its time is before the newest reading's). (Within a
# minute of the replay alert above, a refusal is counted, not reported.)
pub2 "$(tm 8 '{"count": 2}' "$NOW")"
pub2 "$(tm 7 '{"count": 1}' $((NOW - 100)))"
check "a rate-limited field filling its gap is stored" wait_for 10 stored_is "$D2" 4
r1=$(rejected)
pub2 "$(tm 9 '{"count": 3}' $((NOW + 100)))"
check "...and the next reading is still held to the rate" wait_for 10 health_is streams.rejected $((r1 + 1))
expect_eq "...so it is not stored" 4 "$(stored "$D2")"

# --- store-and-forward across a hub (and broker) outage
hub_stop
check "agent notices the broker is gone" wait_for 20 stat_is 0 connected False
ok_all=1
for i in $(seq 1 20); do send 0 "{\"temp_c\": $i}" >/dev/null || ok_all=0; done
expect_eq "agent accepts 20 messages while the hub is down" 1 "$ok_all"
check "they wait in the outbox" wait_for 5 stat_is 0 outbox_queued 20
# kill -9 with messages queued, then come back
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_start 0
hub_start "$DATA"
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "after the hub returns and an agent kill -9, the outbox drains" wait_for 30 stat_is 0 outbox_queued 0
expect_eq "every message stored exactly once" 31 "$(stored "$D0")"
expect_eq "in order, with no gap" "$(seq -s, 1 31)" "$(seqs "$D0")"

# --- a full outbox drops the oldest telemetry and says so
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_conf 0 16
hub_stop
agent_start 0
for i in $(seq 1 30); do send 0 "{\"temp_c\": $i}" >/dev/null; done
check "the outbox stays within its bound" wait_for 5 stat_is 0 outbox_queued 16
# records that are never dropped (the agent's boot and configuration-change
# records: device log and events) keep their places; telemetry gets the rest.
# The agent queues those before it serves its socket, and each send above
# returned once its reading was queued: K is final once all 30 are taken.
check "the agent took the 30 readings" wait_for 5 stat_is 0 telemetry_sent 30
K=$(sqlite3 "$T/state0/outbox.db" "SELECT count(*) FROM msg WHERE stream != 0")
check "the oldest telemetry was dropped to make room, never a security record" wait_for 5 stat_is 0 outbox_dropped $((30 - (16 - K)))
expect_eq "16 remain queued" 16 "$(astat 0 outbox_queued)"
hub_start "$DATA"
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "after reconnect the drop is reported to the hub" wait_for 30 has_event device_event "$D0" "outbox_dropped"
check "and the newest telemetry is stored" wait_for 30 stored_is "$D0" $((31 + 16 - K))
check "the hub notes the sequence gap" has_event sequence_gap "$D0" '"from": 31'

# --- configuration errors are clear
echo '{"identity_dir": "rel/path", "state_dir": "/tmp/x"}' >"$T/bad.json"
check "agent refuses a relative path in its config" fails "$BIN/mamori-agent" --config "$T/bad.json"
echo '{"identity_dir": "/a", "state_dir": "/b", "typo_key": 1}' >"$T/bad.json"
"$BIN/mamori-agent" --config "$T/bad.json" 2>"$T/err" ; grep -q "unknown key 'typo_key'" "$T/err" && ok "agent names an unknown config key" || bad "agent names an unknown config key"

finish
