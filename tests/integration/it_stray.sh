#!/usr/bin/env bash
# Integration: stray ("野良") devices (docs/owners.md) with the real agent,
# hub, broker and plugin. A claimed device silent longer than the stray
# period (here 20 s) becomes stray: restricted to heartbeats and commands,
# its owner and the integrations told; when it comes back it stays
# restricted — its telemetry is refused — until its owner confirms it.
. "$(dirname "$0")/lib.sh"

# the agents beat every 2 s; the period leaves an agent that starts slowly
# (a sanitizer, a loaded machine) time for its first heartbeat
hub_start "$T/data" --heartbeat 2 --stray-after 20
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0
agent_start 0
check "device 0 is online and active" wait_for 20 eval '[ "$(dev_state "$D0")" = active ]'
check "a claimed device that never shows up becomes stray" wait_for 40 eval '[ "$(dev_state "$D1")" = stray ]'
check "...while the device that keeps its heartbeat stays active" eval '[ "$(dev_state "$D0")" = active ]'
check "its owner is told (event on the device)" has_event device_stray "$D1"
check "...and so are staff and integrations (alert)" \
    eval '[ "$(as admin alert list --device "$D1" | jget alerts.0.rule)" = stray_device ]'

# --- device 0 goes silent, becomes stray, comes back
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "silent past the period, device 0 becomes stray" wait_for 40 eval '[ "$(dev_state "$D0")" = stray ]'
agent_start 0
check "back: it connects (heartbeats and commands only)" wait_for 20 stat_is 0 connected True
check "its return raises stray_returned" wait_for 20 eval 'as admin alert list --device "$D0" | grep -q stray_returned'
n0=$(stored "$D0")
k0=$(acl_denies "$D0")
send 0 '{"t": 20}' >/dev/null
check "the broker refuses its telemetry" wait_for 20 acl_denies_above "$D0" "$k0"
expect_eq "its telemetry is refused while it is stray" "$n0" "$(stored "$D0")"
expect_eq "it stays stray until its owner confirms it" stray "$(dev_state "$D0")"
http POST "devices/$D0/stray" '{"reason":"x"}' "$(token_of admin)" >/dev/null
expect_eq "nobody marks a device stray by hand" 404 "$(http POST "devices/$D0/stray" '{"reason":"x"}' "$(token_of admin)")"
check "another owner cannot confirm it" fails as bob device confirm "$D0" --reason "mine"
check "its owner confirms it" as alice device confirm "$D0" --reason "it is the one in the shed"
expect_eq "active again" active "$(dev_state "$D0")"
check "its telemetry flows again" wait_for 30 eval '[ "$(stored "$D0")" -gt "$n0" ]'
audited() { as admin audit list --limit 1000 | python3 -c 'import json,sys
e=json.load(sys.stdin)["entries"]
st=[x for x in e if x["action"]=="device_stray"]
cf=[x for x in e if x["action"]=="device_confirm"]
sys.exit(0 if st and st[0]["actor"]=="hub:stray" and cf and cf[-1]["actor"]=="owner:alice" else 1)'; }
check "stray and confirm are audited (actor hub:stray, owner:alice)" audited

# --- the fleet audit: a cloned key, a weak key, a stray device
as op factory mfr-ca-create --out "$T/acme" --name "Acme CA" >/dev/null
as admin ca import --model sensor-v1 --cert "$T/acme/ca.crt" >/dev/null
mkdir -p "$T/clone" "$T/weak"
as op factory mfr-ca-sign --ca "$T/acme" --csr "$(dev_dir 0)/device.csr" --out "$T/clone/device.crt" >/dev/null
as op factory register --model sensor-v1 --identity "$T/clone" >/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/weak/device.key" -out "$T/weak/device.csr" -subj /CN=weak 2>/dev/null
# (mamorictl signs P-256 keys only; a manufacturer's own tooling may not)
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$T/weak/ext"
openssl x509 -req -in "$T/weak/device.csr" -CA "$T/acme/ca.crt" -CAkey "$T/acme/ca.key" -CAcreateserial \
    -days 365 -extfile "$T/weak/ext" -out "$T/weak/device.crt" 2>/dev/null
as op factory register --model sensor-v1 --identity "$T/weak" >/dev/null
check "an owner cannot run the fleet audit" fails as alice report audit
as op report audit >"$T/audit.json"
finding() { python3 -c 'import json,sys
c={x["id"]: x for x in json.load(open(sys.argv[1]))["checks"]}[sys.argv[2]]
sys.exit(0 if c["status"]==sys.argv[3] and (len(sys.argv)<5 or sys.argv[4] in json.dumps(c["items"])) else 1)' "$T/audit.json" "$@"; }
check "the audit finds the key behind two identities" finding duplicate_keys finding "$D0"
check "...the RSA-2048 device key" finding weak_keys finding RSA
check "...the stray device" finding stray_devices finding "$D1"
check "...and no certificate about to expire" finding expiring_certificates ok
check "...nor too many administrators" finding broad_admin_accounts ok

# --- the live threat matrix, for the fleet and for one device
check "the fleet matrix is printed (exit status 0)" as op report matrix
as op report matrix >"$T/matrix.md"
check "the fleet matrix has the 12 threats" test "$(grep -c '^| T[01][0-9] ' "$T/matrix.md")" = 12
check "...and the 5 lifecycle states" grep -q '| L1 setup | L2 normal | L3 abnormal | L4 stray | L5 disposal |' "$T/matrix.md"
check "...with the live stray status" grep -q 'T01-L4a ✓ stray after 20 s offline; 1 stray now' "$T/matrix.md"
check "...and the CRL" grep -q 'T01-L5d ✓ CRL lists 0 certificates' "$T/matrix.md"
as op report matrix --json >"$T/matrix.json"
check "as JSON: 60 cells, each countermeasure with status, summary and proof" python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); c=d["cells"]
assert len(c)==60
ids=[m for x in c for m in x["countermeasures"]]
assert len(ids)>=100 and all(m["status"] and m["summary"] for m in ids)' "$T/matrix.json"
check "an owner's device matrix is printed (exit status 0)" as alice report matrix --device "$D0"
as alice report matrix --device "$D0" >"$T/dev.md"
check "an owner reads their device's matrix" grep -Eq "T03-L2a ✓ heartbeat [0-9]+ s; (online|offline), last seen" "$T/dev.md"
check "...not another's" fails as bob report matrix --device "$D0"
check "...nor the fleet's" fails as alice report matrix
as op report etsi >"$T/etsi.md"
check "the ETSI EN 303 645 self-assessment lists its provisions" test "$(grep -c '^| [56]' "$T/etsi.md")" -ge 60
check "...each met or not applicable, with the count" grep -Eq '^[0-9]+ provisions met, [0-9]+ not applicable, 0 otherwise' "$T/etsi.md"
check "...for staff" fails as alice report etsi

# --- forgotten by its owner: no login for the owner-idle period
hub_stop
hub_start "$DATA" --stray-after 0 --owner-idle-after 3
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "an owner who has not logged in for the period: their devices become stray" \
    wait_for 20 eval '[ "$(dev_state "$D0")" = stray ]'
check "...and the owner is told why" has_event device_stray "$D0" "has not logged in"
MAMORI_PASSWORD=$OWNER_PW as alice login --user alice >/dev/null
check "back, the owner confirms the device" as alice device confirm "$D0" --reason "still here"
expect_eq "active again" active "$(dev_state "$D0")"
check "audit chain intact" as admin audit verify
finish
