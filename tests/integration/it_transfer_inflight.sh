#!/usr/bin/env bash
# Integration: messages in flight at an ownership transfer. What a device
# sent before the transfer belongs to the previous owner, even when the hub
# takes it in only afterwards (queued at the broker, a slow hub, a device's
# outbox draining late): it is acknowledged (the device does not send it
# again), counted, and never enters the records the new owner sees. What
# the device sends after the transfer is the new owner's.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
claim alice 0
D0=$(dev_id 0); DEV=$(dev_dir 0)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
now_ms() { date +%s%3N; }
# pub STREAM SEQ TS BODY: one message as the device itself (its own key)
pub() { mqtt_pub "$DEV" "mamori/v1/d/$D0/$1" "{\"v\":1,\"seq\":$2,\"ts\":$3,\"body\":$4}"; }
before_owner() { curl -s --cacert "$CA" "$API/api/v1/health" | jget streams.before_owner; }
rejected() { curl -s --cacert "$CA" "$API/api/v1/health" | jget streams.rejected; }
bob_events() { as bob events --device "$D0" | python3 -c 'import json,sys
print(" ".join(e["kind"] for e in json.load(sys.stdin)["events"] if e["kind"]!="owner_changed"))'; }

check "alice's reading is sent" pub tm 1 "$(now_ms)" '{"t": 20}'
check "...and stored for her" wait_for 20 stored_is "$D0" 1
# sent now, delivered only after the transfer below
SENT=$(( $(now_ms) - 1 ))
CODE=$(as alice transfer start "$D0" --owner-data export | jget code)
expect_eq "bob accepts the transfer" "$D0" "$(as bob transfer accept "$CODE" | jget id)"
n0=$(before_owner); r0=$(rejected)
check "a reading sent before the transfer arrives after it" pub tm 2 "$SENT" '{"t": 21}'
check "...and an event" pub ev 1 "$SENT" '{"type": "note", "text": "before"}'
check "the hub takes both in as sent before the transfer" wait_for 20 eval '[ "$(before_owner)" -ge $((n0 + 2)) ]'
expect_eq "bob sees none of the reading alice's device sent before" 0 "$(stored "$D0")"
expect_eq "...nor its event" "" "$(bob_events)"
expect_eq "...and they are not refused as bad messages (no alert)" "$r0" "$(rejected)"
check "alice's access ended with the transfer" fails as alice device telemetry "$D0"
XID=$(as alice exports | jget exports.0.id)
expect_eq "alice's export holds the reading she had" 1 \
    "$(as alice exports "$XID" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["telemetry"]))')"
# after the transfer: bob's
check "the device's next reading" pub tm 3 "$(now_ms)" '{"t": 22}'
check "...is bob's" wait_for 20 stored_is "$D0" 1
expect_eq "...it is the one sent after the transfer" 22 \
    "$(as bob device telemetry "$D0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["body"]["t"])')"
check "the device's next event" pub ev 2 "$(now_ms)" '{"type": "note", "text": "after"}'
check "...is bob's too" wait_for 20 eval '[ "$(bob_events)" = device_event ]'
finish
