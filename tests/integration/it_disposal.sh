#!/usr/bin/env bash
# Integration: decommission and disposal (docs/owners.md) with the real
# agent, hub, broker and plugin. Decommissioning a device sends it a signed
# wipe (it erases its keys and stops), withdraws its access, puts its
# certificate in the CRL the hub publishes for other relying parties (and
# `openssl verify -crl_check` then refuses it), erases what the hub held of
# its use while the audit log keeps the device id, tells the integrations
# by a signed webhook, and leaves the device in its terminal state. After
# that no credential of the device works anywhere. Revocation goes into
# the CRL too.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1); P0=$(dev_dir 0); P1=$(dev_dir 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
hook_receiver "$T/hooks.jsonl" 0
SECRET=$(as admin webhook add "$HOOK_URL" | jget secret)
cat "$DATA/pki/root.crt" "$DATA/pki/issuing.crt" >"$T/chain.pem"
crl() { curl -s --cacert "$CA" -o "$T/crl.pem" -w '%{http_code}' "$API/api/v1/pki/crl"; }

expect_eq "anyone fetches the CRL, no login" 200 "$(crl)"
check "it is signed by the issuing CA" bash -c "openssl crl -in '$T/crl.pem' -CAfile '$T/chain.pem' -noout 2>&1 | grep -qx 'verify OK'"
check "a device in good standing verifies against it" \
    openssl verify -crl_check -CAfile "$T/chain.pem" -CRLfile "$T/crl.pem" "$P1/device.crt"

agent_conf 0
agent_start 0
A0=$AGENT_PID
check "the device is online" wait_for 20 stat_is 0 connected True
send 0 '{"t": 20}' >/dev/null; send 0 '{"t": 21}' >/dev/null
check "its telemetry is stored" wait_for 20 stored_is "$D0" 2
mkdir -p "$T/copy" && cp "$P0/device.crt" "$P0/device.key" "$T/copy/"   # what a thief would keep
SERIAL=$(openssl x509 -in "$P0/device.crt" -noout -serial | cut -d= -f2)

# --- decommission
check "an owner cannot decommission" fails as alice device decommission "$D0" --reason x
check "the operator decommissions it" as op device decommission "$D0" --reason "end of life"
check "the device got the signed wipe: it erases its keys and stops" wait_for 20 bash -c "! kill -0 $A0 2>/dev/null && [ ! -e '$P0/device.key' ]"
expect_eq "terminal state" decommissioned "$(dev_state "$D0")"
check "no way back" fails as op device unlock "$D0" --reason x
expect_eq "the CRL is published again" 200 "$(crl)"
check "it lists the certificate, ceased operation" bash -c "openssl crl -in '$T/crl.pem' -noout -text | grep -A4 'Serial Number: $SERIAL' | grep -q 'Cessation Of Operation'"
out=$(openssl verify -crl_check -CAfile "$T/chain.pem" -CRLfile "$T/crl.pem" "$T/copy/device.crt" 2>&1)
check "another relying party refuses the certificate (revoked)" grep -q "certificate revoked" <<<"$out"
check "the broker refuses the kept key and certificate" fails mqtt_pub "$T/copy" "mamori/v1/d/$D0/hb" "$(env_msg 99)"
check "...and reports the attempt" wait_for 10 has_event broker_auth_fail "$D0"
expect_eq "what the hub held of its use is erased" 0 "$(stored "$D0")"
check "the previous owner no longer sees it" fails as alice device show "$D0"
check "the audit log keeps the device id" bash -c "'$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' audit list --limit 1000 | grep -q '\"target\": \"$D0\"'"
hooked() { grep -q "\"event\\\\\": \\\\\"$1\\\\\".*$2" "$T/hooks.jsonl" 2>/dev/null || python3 -c 'import json,sys
sys.exit(0 if any(json.loads(json.loads(l)["body"]).get("event")==sys.argv[2] and json.loads(json.loads(l)["body"]).get("device_id")==sys.argv[3] for l in open(sys.argv[1])) else 1)' "$T/hooks.jsonl" "$1" "$2"; }
check "integrations hear of it (device.decommissioned)" wait_for 20 hooked device.decommissioned "$D0"
check "...signed" hooks_signed "$T/hooks.jsonl" "$SECRET"

# --- revocation goes into the CRL too
as op device revoke "$D1" --reason "key leaked" >/dev/null
SERIAL1=$(openssl x509 -in "$P1/device.crt" -noout -serial | cut -d= -f2)
crl >/dev/null
check "a revoked device's certificate is listed, key compromise" bash -c "openssl crl -in '$T/crl.pem' -noout -text | grep -A4 'Serial Number: $SERIAL1' | grep -q 'Key Compromise'"
check "integrations hear of it (device.revoked)" wait_for 20 hooked device.revoked "$D1"
check "audit chain intact" as admin audit verify
finish
