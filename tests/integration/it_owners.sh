#!/usr/bin/env bash
# Integration: ownership transfer and data rights (docs/owners.md) with the
# real agent, hub, broker and plugin. The owner starts a transfer and gets
# a fresh single-use code; the new owner accepts it; from that moment every
# access of the previous owner to the device ends (same session, every
# endpoint), their pending commands are cancelled, their data leaves the
# device's records (kept for them as an export, or erased, as they chose)
# and the new owner sees only what comes after. Owners export all their
# data as JSON and erase it, and delete their accounts.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data" --heartbeat 2   # the agents beat every 2 s
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0
agent_start 0
check "alice's device is online" wait_for 20 stat_is 0 connected True
for v in 20 21 22; do send 0 "{\"t\": $v}" >/dev/null; done
check "alice's telemetry is stored" wait_for 20 stored_is "$D0" 3
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "alice's device is offline" wait_for 20 eval '[ "$(as admin device show "$D0" | jget online)" = False ]'
as alice device cmd "$D0" self-test --reason "before selling it" >/dev/null
expect_eq "alice's self-test waits for the device" pending "$(as admin device commands "$D0" | jget commands.0.status)"

# --- who may start, and the code
check "an operator cannot start a transfer" fails as op transfer start "$D0"
check "bob cannot transfer alice's device" fails as bob transfer start "$D0"
check "an unknown choice for the data is refused" fails as alice transfer start "$D0" --owner-data keep
OUT=$(as alice transfer start "$D0" --owner-data export)
CODE=$(jget code <<<"$OUT")
check "alice gets a fresh single-use code" test -n "$CODE"
check "the transfer is audited without the code" bash -c "out=\$('$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' audit list --limit 1000); grep -q transfer_started <<<\"\$out\" && ! grep -q '$CODE' <<<\"\$out\""
check "a wrong code is refused" fails as bob transfer accept MMCL-AAAA-BBBB-CCCC-DDDD
check "alice cannot accept her own transfer" fails as alice transfer accept "$CODE"
check "the operator cannot accept it" fails as op transfer accept "$CODE"

# --- bob accepts: alice's access ends everywhere, at once
expect_eq "bob accepts the code" "$D0" "$(as bob transfer accept "$CODE" | jget id)"
check "the code works once" fails as bob transfer accept "$CODE"
for what in "device show $D0" "device telemetry $D0" "device commands $D0" "events --device $D0"; do
    # shellcheck disable=SC2086
    check "alice (same session): $what refused" fails as alice $what
done
check "alice can no longer lock it" fails as alice device lock "$D0" --reason x
check "...nor wipe it" fails as alice device cmd "$D0" wipe --reason x
check "...nor start another transfer" fails as alice transfer start "$D0"
n_selftests() { as admin device commands "$D0" | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin)["commands"] if c["type"]=="self-test"))'; }
expect_eq "alice's pending self-test is withdrawn" 0 "$(n_selftests)"
expect_eq "bob sees none of alice's telemetry" 0 "$(stored "$D0")"
old_events() { as bob events --device "$D0" | python3 -c 'import json,sys
print(" ".join(e["kind"] for e in json.load(sys.stdin)["events"] if e["kind"]!="owner_changed"))'; }
expect_eq "...nor her events" "" "$(old_events)"
check "bob owns it" as bob device show "$D0"
check "alice keeps her other device" as alice device show "$D1"

# --- alice's copy (she chose export)
XID=$(as alice exports | jget exports.0.id)
expect_eq "alice's export holds her three readings" 3 \
    "$(as alice exports "$XID" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["telemetry"]))')"
check "bob cannot read alice's export" fails as bob exports "$XID"

# --- the device goes on for bob
agent_start 0
check "the device reconnects under its new owner" wait_for 20 stat_is 0 connected True
send 0 '{"t": 30}' >/dev/null
check "bob gets its new telemetry" wait_for 20 stored_is "$D0" 1
check "alice still gets nothing" fails as alice device telemetry "$D0"
expect_eq "...and the device never got alice's withdrawn self-test" 0 "$(n_selftests)"

# --- back to alice, erasing bob's data this time; a cancelled code is dead
C2=$(as bob transfer start "$D0" --owner-data erase | jget code)
check "bob cancels his transfer" as bob transfer cancel "$D0"
check "a cancelled code does not work" fails as alice transfer accept "$C2"
C3=$(as bob transfer start "$D0" --owner-data erase | jget code)
check "alice takes it back" as alice transfer accept "$C3"
expect_eq "bob chose erase: no export for him" 0 "$(as bob exports | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["exports"]))')"
expect_eq "alice sees none of bob's telemetry" 0 "$(stored "$D0")"

# --- data rights: export everything, erase everything
send 0 '{"t": 31.4159265}' >/dev/null # a value no other row holds
check "alice's new reading is stored" wait_for 20 stored_is "$D0" 1
as alice me export >"$T/me.json"
check "alice's export names her account, devices and their telemetry" python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
assert d["account"]["name"]=="alice" and d["account"]["role"]=="owner"
ids=sorted(x["device"]["id"] for x in d["devices"])
assert ids==sorted([sys.argv[2], sys.argv[3]]), ids
assert sum(len(x["telemetry"]) for x in d["devices"])==1
assert len(d["exports"])==1' "$T/me.json" "$D0" "$D1"
check "erasing needs the user name as confirmation" fails as alice me erase --confirm bob
check "alice erases her data" as alice me erase --confirm alice
expect_eq "her telemetry is gone" 0 "$(stored "$D0")"
# secure_delete zeroes it in the database; the WAL kept earlier page images
check "...from every file of the store, WAL included" bash -c "! grep -a -q -F 31.41592 '$DATA'/mamori.db*"
expect_eq "...and her exports" 0 "$(as alice exports | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["exports"]))')"
check "she still owns her devices" as alice device show "$D0"
check "staff have no owner data to erase" fails as op me erase --confirm op

# --- account deletion: refused while it would orphan devices; with the
# owner's choice to decommission them, the devices are wiped and retired
# first, then the account, its sessions, exports and throttles go; the
# name is never given out again (the audit log keeps it)
refused_with() { local want=$1 err; shift; err=$("$@" 2>&1 >/dev/null) && return 1; grep -q "$want" <<<"$err"; }
check "deleting an account needs the user name as confirmation" fails as alice me delete --confirm bob
check "an unknown choice for the devices is refused" fails as alice me delete --confirm alice --devices keep
check "alice owns devices: her deletion is refused until she chooses" \
    refused_with "transfer them first" as alice me delete --confirm alice
check "...and her account and devices are untouched" as alice device show "$D1"
check "an owner cannot delete other accounts" fails as alice user delete bob --reason x
check "an operator cannot delete accounts" fails as op user delete bob --reason x
check "an administrator does not delete an account that owns devices" \
    refused_with "owns 2 device" as admin user delete alice --reason "asked by mail"
check "the last administrator cannot delete their account" \
    refused_with "last administrator" as admin me delete --confirm admin
agent_start 0
A0=$AGENT_PID
check "alice's device is back online" wait_for 20 stat_is 0 connected True
P0=$(dev_dir 0)
TOK=$(token_of alice)
OUT=$(as alice me delete --confirm alice --devices decommission)
expect_eq "alice deletes her account, decommissioning her 2 devices" 2 "$(jget devices_decommissioned <<<"$OUT")"
check "the online device got the signed wipe: it erases its keys and stops" \
    wait_for 20 bash -c "! kill -0 $A0 2>/dev/null && [ ! -e '$P0/device.key' ]"
expect_eq "both devices are decommissioned" "decommissioned decommissioned" "$(dev_state "$D0") $(dev_state "$D1")"
expect_eq "...and name no owner" "" "$(as admin device show "$D0" | jget owner 2>/dev/null)"
expect_eq "her session ended at once" 401 "$(http GET devices "" "$TOK")"
check "she cannot log in" fails env MAMORI_PASSWORD="$OWNER_PW" "$BIN/mamorictl" --data "$DATA" \
    --session "$T/session-alice2" login --user alice
check "the name alice is not given out again" refused_with "not given out again" \
    env MAMORI_NEW_PASSWORD="$OWNER_PW" "$BIN/mamorictl" --data "$DATA" --session "$T/session-admin" \
    user add alice --role owner
check "users no longer lists her" bash -c "! '$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' user list | grep -q '\"alice\"'"
check "the administrator deletes the operator's account" as admin user delete op --reason "left the team"
check "the operator's session ended" fails as op device list
check "a deleted account is not found again" fails as admin user delete op --reason again
check "bob, who owns nothing now, deletes his own account" as bob me delete --confirm bob
check "his session ended" fails as bob device list
expect_eq "three user_deleted entries, with who and why" 3 "$(as admin audit list --limit 1000 | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["entries"] if e["action"]=="user_deleted"))')"

audited() { local out; out=$(as admin audit list --limit 1000) || return 1
    for a in transfer_started transfer_cancelled device_transferred owner_data_erased user_deleted; do grep -q "\"$a\"" <<<"$out" || return 1; done; }
check "every step is audited" audited
check "audit chain intact" as admin audit verify
finish
