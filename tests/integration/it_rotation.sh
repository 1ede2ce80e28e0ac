#!/usr/bin/env bash
# Integration: device key and certificate rotation (T05-L2c, T07-L2a), end
# to end with the real agent, hub, broker and plugin. An operator rotates a
# device while it sends telemetry: the device makes its new key in place,
# gets its certificate, switches and reconnects, and no message is lost or
# stored twice. Afterwards the old certificate no longer gets in and the old
# key is nowhere on the device. The rotation policy renews a certificate
# that is close to expiry on its own.
. "$(dirname "$0")/lib.sh"

# Device certificates from the hub last 20 days; renewal starts 10 days
# before expiry; the policy runs every second.
hub_start "$T/data" --cert-days 20 --cert-renew-days 10 --rotation-check 1
fleet_setup 2
claim alice 0
D0=$(dev_id 0); P0=$(dev_dir 0)

# A manufacturer-signed device whose factory certificate expires in 5 days.
as op factory mfr-ca-create --out "$T/mfr" --name "Acme Devices CA" >/dev/null
as admin ca import --model acme-cam --cert "$T/mfr/ca.crt" >/dev/null
as op factory keygen --out "$T/m1" >/dev/null
as op factory mfr-ca-sign --ca "$T/mfr" --csr "$T/m1/device.csr" --out "$T/m1/device.crt" --cn ACME-0001 --days 5 >/dev/null
as op factory register --model acme-cam --identity "$T/m1" >/dev/null
M1=$(jget device_id <"$T/m1/device.json")
http POST claims "{\"claim_code\":\"$(cat "$T/m1/claim-code")\"}" "$(token_of alice)" >/dev/null
wait_for 20 plugin_synced

echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 100000}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

fp_of() { as admin device show "$1" | jget cert_fingerprint; }
audited() { as admin audit list | grep -F -- "$1" >/dev/null; }   # audited TEXT
fp_is_not() { [ "$(fp_of "$1")" != "$2" ]; }
OLD_FP=$(fp_of "$D0")
cp "$P0/device.crt" "$T/old.crt"; cp "$P0/device.key" "$T/old.key"

agent_conf 0
agent_start 0
check "agent connects" wait_for 20 stat_is 0 connected True
capture_cmds 0 "$T/captured"

check "'cert' cannot be issued by hand" fails as op device cmd "$D0" cert --reason x
check "an owner cannot rotate a device" fails as alice device cmd "$D0" rotate --reason x

# --- rotation under load: 150 messages, one every 40 ms, rotation in between
N=150
( for i in $(seq 1 $N); do send 0 "{\"i\": $i}" >/dev/null || echo "send $i failed" >>"$T/load.err"; sleep 0.04; done ) &
LOAD=$!
check "the load is under way (10 messages stored)" wait_for 30 eval '[ "$(stored "$D0")" -ge 10 ]'
check "operator starts a rotation" as op device cmd "$D0" rotate --reason "scheduled key rotation"
check "the device switches to a new certificate" wait_for 30 fp_is_not "$D0" "$OLD_FP"
wait $LOAD
check "the agent took every message" test ! -e "$T/load.err"
check "rotation under load: every message stored" wait_for 30 stored_is "$D0" $N
expect_eq "rotation under load: in order, no gap, none twice" "$(seq -s, 1 $N)" "$(seqs "$D0")"
expect_eq "the agent counts one rotation" 1 "$(astat 0 rotations)"
check "the agent reconnected with the new certificate" wait_for 10 stat_is 0 connected True
expect_eq "...with a full handshake (a session of the old identity is never resumed)" 0 "$(astat 0 tls_resumed)"
expect_eq "no rotation is left under way" "" "$(as admin device show "$D0" | jget cert_next_fingerprint)"
NEW_FP=$(fp_of "$D0")
expect_eq "the device's certificate on disk is the registered one" "$NEW_FP" \
    "$(openssl x509 -in "$P0/device.crt" -outform DER | sha256sum | cut -d' ' -f1)"
expect_eq "the new certificate names the device" "$D0" \
    "$(openssl x509 -in "$P0/device.crt" -noout -subject -nameopt multiline | awk '/commonName/ {print $3}')"
check "the new key is private (0600)" test "$(stat -c %a "$P0/device.key")" = 600
check "no pending key or leftover file" test ! -e "$P0/pending.key" -a ! -e "$P0/device.crt.new" -a ! -e "$P0/device.key.old"
old_key_body=$(grep -v -- '-----' "$T/old.key" | tr -d '\n')
check "the old key is nowhere in the identity or state directory" \
    fails bash -c "cat '$P0'/* '$T/state0'/* 2>/dev/null | tr -d '\n' | grep -F -- '$old_key_body' >/dev/null"
check "the old certificate no longer gets in" fails timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" \
    --cafile "$CA" --cert "$T/old.crt" --key "$T/old.key" -i "$D0" -q 1 -t "mamori/v1/d/$D0/hb" -m "$(env_msg 1)"
check "...and the refusal is reported" wait_for 5 has_event broker_auth_fail "" "certificate not registered"
check "the rotation is recorded" has_event cert_rotated "$D0"
check "the certificate's issue is audited" audited '"cert_issued"'
check "the switch is audited" audited '"cert_rotated"'
check "log records signed before and after the switch verify" fails has_event device_log_forged "$D0"
send 0 '{"i": 9999}' >/dev/null
check "telemetry flows on the new certificate" wait_for 20 stored_is "$D0" $((N + 1))

# --- replay: the captured rotate and cert commands, again
# (the cert command may be there twice: the device reconnects with its new
# certificate before its answer is in, and the hub sends it again)
grep '^{.*"cmd"' "$T/captured" >"$T/replay"
n_copies=$(wc -l <"$T/replay")
check "the capture holds the rotate and cert commands ($n_copies copies)" \
    test "$(captured_ids "$T/replay")" -eq 2
r0=$(astat 0 commands_refused)
replay_cmds "$D0" "$T/replay"
check "every replay is refused" wait_for 20 stat_is 0 commands_refused $((r0 + n_copies))
expect_eq "...no second rotation and no new key" "1 $NEW_FP" "$(astat 0 rotations) $(fp_of "$D0")"
check "...and no pending key" test ! -e "$P0/pending.key"

# --- the policy: the manufacturer certificate (5 days left) is renewed;
# until it is, an alert says so (the cert_expiry rule)
m1_alert() { as admin alert list --device "$M1" | python3 -c 'import json,sys
a=[x for x in json.load(sys.stdin)["alerts"] if x["rule"]=="cert_expiry"]
print(a[-1]["state"] if a else "none")'; }
check "the certificate about to expire raises cert_expiry" wait_for 10 eval '[ "$(m1_alert)" = open ]'

cat >"$T/agentm.json" <<J
{"identity_dir": "$T/m1", "state_dir": "$T/statem", "heartbeat_s": 2}
J
"$BIN/mamori-agent" --config "$T/agentm.json" --status "$T/agentm.status" >>"$T/agentm.log" 2>&1 &
PIDS+=("$!")
M1_OLD=$(fp_of "$M1")
check "a certificate close to expiry is renewed by the policy" wait_for 40 fp_is_not "$M1" "$M1_OLD"
days_left=$(( ( $(as admin device show "$M1" | jget cert_not_after) - $(date +%s) ) / 86400 ))
check "the renewed certificate runs the hub's full term (20 days)" test "$days_left" -ge 19
mstat_is() { [ "$(jget "$1" <"$T/agentm.status" 2>/dev/null)" = "$2" ]; }
check "the device renewed is back online" wait_for 20 mstat_is connected True
check "the policy's rotation is audited as the hub's" audited "rotation policy"
check "the rotation resolves the cert_expiry alert" wait_for 10 eval '[ "$(m1_alert)" = resolved ]'
# the policy's tick that renewed M1 looked at every device's certificate
# in the same query (rotation_tick): D0's fresh one was not due
expect_eq "a fresh certificate is not rotated again" "$NEW_FP" "$(fp_of "$D0")"

# --- a rotation the device cannot carry out raises cert_rotation_failed
kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null
wait_for 20 eval '[ "$(as admin device show "$D0" | jget online)" = False ]'
as op device cmd "$D0" rotate --reason "yearly" >/dev/null
RC=$(as admin device commands "$D0" | jget commands.0.id)
# the device answers that it could not make a key (as one with a full disk would)
mqtt_pub "$P0" "mamori/v1/d/$D0/res" "{\"v\":1,\"seq\":900,\"ts\":$(date +%s%3N),\"body\":{\"cmd\":\"$RC\",\"type\":\"rotate\",\"status\":\"failed\",\"error\":\"no space left\",\"detail\":{}}}" >/dev/null 2>&1
check "a rotation the device reports failed raises cert_rotation_failed" \
    wait_for 20 has_alert cert_rotation_failed "$D0"
check "audit chain intact" as admin audit verify
[ "$FAIL" -gt 0 ] && { tail -30 "$T/agent0.log"; tail -40 "$T/hub.log"; }
finish
