#!/usr/bin/env bash
# Integration: a staged update campaign (docs/updates.md) over four real
# agents: the canary first, the waves only after the canary committed, all
# devices on the new release at the end; then a release whose canary fails
# pauses the campaign by itself (alert), and no other device gets it.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 4
for i in 0 1 2 3; do claim alice $i; done
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 9}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
update_root_setup
AP=()
for i in 0 1 2 3; do
    cp "$T/root-1.json" "$(dev_dir $i)/update-root.json"
    agent_conf $i "" "\"update_slots_dir\": \"$T/slots$i\", \"update_trial_s\": 30"
    agent_start $i; AP[$i]=$AGENT_PID
done
online() { for i in 0 1 2 3; do stat_is $i connected True || return 1; done; }
check "four agents online" wait_for 30 online
# a reboot is the agent stopping (no reboot_command): start it again
revive() { for i in 0 1 2 3; do kill -0 "${AP[$i]}" 2>/dev/null || { agent_start $i; AP[$i]=$AGENT_PID; }; done; }
cstate() { as op campaign show "$1" | jget "$2"; }
state_is() { revive; [ "$(cstate "$1" state)" = "$2" ]; }

publish 2.0 2 0 100000
SHA=$(sha_of "$T/fw-2.0.img")
check "an owner cannot start a campaign" fails as alice campaign create "$SHA" --reason x
check "a wave of 0 is refused" fails as op campaign create "$SHA" --reason x --wave 0
C1=$(as op campaign create "$SHA" --reason "2.0 for all" --canary 1 --wave 2 --interval 1 --max-fail 25 | jget id)
check "campaign 1 started with the four devices" test "$(cstate "$C1" devices.pending)" -ge 3
check "campaign 1 completes" wait_for 120 state_is "$C1" done
expect_eq "all four committed" "4 0" "$(cstate "$C1" devices.committed) $(cstate "$C1" devices.failed)"
waves=$(as op campaign show "$C1" | python3 -c 'import json,sys
print(" ".join(str(d["wave"]) for d in sorted(json.load(sys.stdin)["device_status"], key=lambda d: d["wave"])))')
expect_eq "one canary, then waves of two and one" "0 1 1 2" "$waves"
order_ok() { events_json | python3 -c 'import json,sys
ev=json.load(sys.stdin)["events"]
c=json.load(open(sys.argv[1]))
canary=next((d["device"] for d in c["device_status"] if d["wave"]==0), None)
committed=[e["id"] for e in ev if e["kind"]=="device_event" and e.get("device_id")==canary and "update_committed" in json.dumps(e["detail"])]
sent=[e["id"] for e in ev if e["kind"]=="update_sent" and e.get("device_id")!=canary]
sys.exit(0 if canary and committed and sent and min(sent) > min(committed) else 1)' "$T/c1.json"; }
as op campaign show "$C1" >"$T/c1.json"
check "the waves went out only after the canary committed" order_ok
for i in 0 1 2 3; do revive; done
all_on() { revive; for i in 0 1 2 3; do [ "$(astat $i fw_version)" = 2.0 ] || return 1; done; }
check "every agent runs 2.0" wait_for 30 all_on
check "owners were told (update_sent on their devices)" has_event update_sent "$(dev_id 0)" '"fw_version": "2.0"'

# --- a campaign for one group only
D2=$(dev_id 2); D3=$(dev_id 3)
check "an owner cannot group devices" fails as alice group add pilot --device "$D2"
as op group add pilot --device "$D2" >/dev/null; as op group add pilot --device "$D3" >/dev/null
expect_eq "the pilot group (in id order)" "$(printf '%s\n' "$D2" "$D3" | LC_ALL=C sort | tr '\n' ' ')" \
    "$(as op group show pilot | python3 -c 'import json,sys; print(*json.load(sys.stdin)["devices"], end=" ")')"
publish 2.1 2 0 100000
C3=$(as op campaign create "$(sha_of "$T/fw-2.1.img")" --reason "2.1 pilot" --group pilot --canary 0 --wave 2 --interval 1 | jget id)
# (counted over every status: the first wave may already be out)
expect_eq "campaign 3 takes the two pilot devices only" 2 \
    "$(as op campaign show "$C3" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["device_status"]))')"
check "campaign 3 completes" wait_for 120 state_is "$C3" done
pilot_on() { revive; [ "$(astat 2 fw_version) $(astat 3 fw_version) $(astat 0 fw_version)" = "2.1 2.1 2.0" ]; }
check "the pilot devices run 2.1, the others still 2.0" wait_for 30 pilot_on

# --- a bad release: the canary fails, the campaign pauses itself
publish 3.0 3 0 100000
SHA3=$(sha_of "$T/fw-3.0.img")
head -c 100000 /dev/urandom >"$DATA/firmware/$SHA3"      # the hub's copy altered
C2=$(as op campaign create "$SHA3" --reason "3.0" --canary 1 --wave 3 --interval 1 --max-fail 0 | jget id)
check "campaign 2 pauses itself after its canary fails" wait_for 60 state_is "$C2" paused
check "...with an alert" has_event campaign_paused "" "failure rate"
# --- a device whose update_committed was lost on the way: its next
# update_status (idle, running the release) settles it. Device X runs no
# agent; its messages are published with its own certificate.
as op factory batch --model sensor-v1 --count 1 --out "$T/extra" >/dev/null
PX=$T/extra/dev-00000; DX=$(jget device_id <"$PX/device.json")
as alice claim "$(cat "$PX/claim-code")" >/dev/null
as op group add solo --device "$DX" >/dev/null
publish 2.6 2 0 1000
C4=$(as op campaign create "$(sha_of "$T/fw-2.6.img")" --reason "2.6 solo" --group solo --canary 0 --wave 1 --interval 1 | jget id)
xstatus() { as op campaign show "$C4" | jget device_status.0.status; }
check "the campaign sends device X the update" wait_for 30 eval '[ "$(xstatus)" = sent ]'
# Campaigns move on in one step a second, every running one in turn:
# campaign 4's first wave went out in a step that began after campaign 2
# had paused, so a wave of campaign 2 would be out by now.
expect_eq "no other device got 3.0" "1 3" "$(cstate "$C2" devices.failed) $(cstate "$C2" devices.pending)"
check "an operator cancels it" as op campaign cancel "$C2" --reason "bad build"
expect_eq "cancelled" cancelled "$(cstate "$C2" state)"
check "a cancelled campaign cannot resume" fails as op campaign resume "$C2" --reason x
xpub() { # xpub KIND SEQ BODY
    mqtt_pub "$PX" "mamori/v1/d/$DX/$1" "{\"v\":1,\"seq\":$2,\"ts\":$(date +%s%3N),\"body\":$3}" >/dev/null 2>&1; }
CX=$(as admin device commands "$DX" | jget commands.0.id)
xpub res 1 "{\"cmd\":\"$CX\",\"type\":\"update\",\"status\":\"ok\",\"error\":\"\",\"detail\":{}}"
check "its install result arrives" wait_for 20 eval '[ "$(xstatus)" = installed ]'
ust() { echo "{\"type\":\"update_status\",\"update\":{\"slot\":\"b\",\"fw_version\":\"$1\",\"security_version\":2,\"floor\":0,\"phase\":$2,\"last\":\"ok\",\"root_version\":1}}"; }
xpub ev 1 "$(ust 2.0 3)"
# the hub records the device's event in the step that hands it to the campaign
check "the status on trial reaches the hub" wait_for 20 has_event device_event "$DX" '"phase": 3'
expect_eq "a status on trial settles nothing" installed "$(xstatus)"
xpub ev 2 "$(ust 2.6 0)"
check "idle on 2.6: committed, though update_committed never came" wait_for 20 eval '[ "$(xstatus)" = committed ]'
check "...and the campaign is done" wait_for 20 state_is "$C4" done

all_audited() { local out; out=$(as admin audit list --limit 1000) || return 1
    for a in campaign_created campaign_done campaign_paused campaign_cancelled group_added; do grep -q "\"$a\"" <<<"$out" || return 1; done; }
check "every state change is audited" all_audited
check "audit chain intact" as admin audit verify
[ "$FAIL" -gt 0 ] && tail -n 20 "$T"/agent*.log
finish
