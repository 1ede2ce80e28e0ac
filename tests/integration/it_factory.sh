#!/usr/bin/env bash
# Integration: factory provisioning (device-generated key + CSR, manufacturer
# CAs per model, batch), claim codes (single use, rate limited, stored hashed).
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 0

# --- (a) device-generated key, CSR signed by the issuing CA
as op factory keygen --out "$T/d1" >/dev/null
key_b64=$(sed -n 2p "$T/d1/device.key")
out=$(as op factory enroll --model sensor-v1 --identity "$T/d1")
check "enroll prints the management number and claim code" grep -q "claim code: " <<<"$out"
check "the private key never reached the hub" bash -c "! grep -rqa -- '$key_b64' '$DATA'"
expect_eq "device key stays 0600" 600 "$(stat -c %a "$T/d1/device.key")"
code=$(cat "$T/d1/claim-code")
check "claim code is 20 Crockford chars (100 bits), QR-friendly" grep -Eq '^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$' "$T/d1/claim-code"
check "claim code is stored only as a hash" bash -c "! grep -qa -- '$code' '$DATA/mamori.db' '$DATA/mamori.db-wal'"
id1=$(jget device_id <"$T/d1/device.json")
check "certificate subject is the management number" bash -c "openssl x509 -in '$T/d1/device.crt' -noout -subject | grep -q 'CN = $id1'"
check "certificate chains to the platform root" openssl verify -CAfile "$T/d1/ca.crt" -untrusted "$DATA/pki/issuing.crt" "$T/d1/device.crt"
expect_eq "new device is manufactured" manufactured "$(dev_state "$id1")"

# --- a CSR whose signature does not match is refused
cp -r "$T/d1" "$T/bad"; as op factory keygen --out "$T/other" >/dev/null
python3 - "$T/bad/device.csr" <<'PY'
import sys
p = sys.argv[1]; lines = open(p).read().splitlines()
mid = len(lines) // 2; l = lines[mid]; lines[mid] = l[:10] + ("A" if l[10] != "A" else "B") + l[11:]
open(p, "w").write("\n".join(lines) + "\n")
PY
check "tampered CSR refused" fails as op factory enroll --model sensor-v1 --identity "$T/bad"

# --- (b) batch mode
as op factory batch --model sensor-v1 --count 5 --out "$T/fleet" >/dev/null
n=$(ls -d "$T"/fleet/dev-* | wc -l)
expect_eq "batch made 5 identities" 5 "$n"
ids=$(for i in 0 1 2 3 4; do dev_id $i; done | sort -u | wc -l)
expect_eq "every device has its own management number" 5 "$ids"
fps=$(for i in 0 1 2 3 4; do openssl x509 -in "$(dev_dir $i)/device.crt" -noout -fingerprint -sha256; done | sort -u | wc -l)
expect_eq "every device has its own certificate" 5 "$fps"

# --- claims
ALICE=$(token_of alice); BOB=$(token_of bob)
c0=$(cat "$(dev_dir 0)/claim-code")
expect_eq "owner claims with the code" 201 "$(http POST claims "{\"claim_code\":\"$c0\"}" "$ALICE")"
expect_eq "device is now claimed" claimed "$(dev_state "$(dev_id 0)")"
expect_eq "the same code again (same owner)" 409 "$(http POST claims "{\"claim_code\":\"$c0\"}" "$ALICE")"
expect_eq "the same code again (another owner)" 409 "$(http POST claims "{\"claim_code\":\"$c0\"}" "$BOB")"
check "error says it is already claimed" grep -q "already claimed" "$T/body"
expect_eq "device still belongs to alice" alice "$(as admin device show "$(dev_id 0)" | jget owner)"
c1=$(cat "$(dev_dir 1)/claim-code" | tr 'A-Z' 'a-z' | tr -d '-')
expect_eq "code typed in lower case without dashes works" 201 "$(http POST claims "{\"claim_code\":\"$c1\"}" "$BOB")"

# --- wrong codes are rate limited per account
for i in 1 2 3 4 5; do http POST claims '{"claim_code":"00000-00000-00000-0000'$i'"}' "$BOB" >/dev/null; done
check "repeated wrong codes are throttled" escalate_throttle 4 POST claims '{"claim_code":"00000-00000-00000-00009"}' "$BOB"
c2=$(cat "$(dev_dir 2)/claim-code")
expect_eq "even a right code waits out the throttle" 429 "$(http POST claims "{\"claim_code\":\"$c2\"}" "$BOB")"
expect_eq "another account is not affected" 201 "$(http POST claims "{\"claim_code\":\"$c2\"}" "$ALICE")"
check "failed claims are recorded" has_event claim_failed

# --- manufacturer CA ("certificate in the chip"), trusted per model
as op factory mfr-ca-create --out "$T/mfr" --name "Acme Devices CA" >/dev/null
as op factory mfr-ca-create --out "$T/rogue" --name "Rogue CA" >/dev/null
as op factory keygen --out "$T/m1" >/dev/null
as op factory mfr-ca-sign --ca "$T/mfr" --csr "$T/m1/device.csr" --out "$T/m1/device.crt" --cn ACME-0001 >/dev/null
check "register before the CA is trusted: refused" fails as op factory register --model acme-cam --identity "$T/m1"
expect_eq "operator may not import a CA" 1 "$(as op ca import --model acme-cam --cert "$T/mfr/ca.crt" >/dev/null 2>&1; echo $?)"
check "admin imports the manufacturer CA for model acme-cam" as admin ca import --model acme-cam --cert "$T/mfr/ca.crt"
check "register a manufacturer-signed device" as op factory register --model acme-cam --identity "$T/m1"
idm=$(jget device_id <"$T/m1/device.json")
expect_eq "registered device is manufactured" manufactured "$(dev_state "$idm")"
as op factory keygen --out "$T/m2" >/dev/null
as op factory mfr-ca-sign --ca "$T/mfr" --csr "$T/m2/device.csr" --out "$T/m2/device.crt" >/dev/null
check "same CA, other model: refused" fails as op factory register --model sensor-v1 --identity "$T/m2"
as op factory keygen --out "$T/m3" >/dev/null
as op factory mfr-ca-sign --ca "$T/rogue" --csr "$T/m3/device.csr" --out "$T/m3/device.crt" >/dev/null
check "untrusted manufacturer: refused" fails as op factory register --model acme-cam --identity "$T/m3"
as op factory keygen --out "$T/m4" >/dev/null
as op factory mfr-ca-sign --ca "$T/mfr" --csr "$T/m4/device.csr" --out "$T/m4/device.crt" --days -1 >/dev/null
check "expired manufacturer certificate: refused" fails as op factory register --model acme-cam --identity "$T/m4"
check "a certificate registers once" fails as op factory register --model acme-cam --identity "$T/m1"
expect_eq "CA certificate cannot be a device" 422 "$(http POST factory/register "$(python3 -c 'import json,sys; print(json.dumps({"model":"acme-cam","certificate":open(sys.argv[1]).read()}))' "$T/mfr/ca.crt")" "$(token_of op)")"

# the manufacturer-signed device connects end to end once claimed
expect_eq "claim the acme device" 201 "$(http POST claims "{\"claim_code\":\"$(cat "$T/m1/claim-code")\"}" "$ALICE")"
check "the broker is in sync with the registry" wait_for 30 plugin_synced
# The claim reaches the broker's plugin a moment after the API answers; a
# device retries until it gets in, and so does this one.
hb_until_active() { mqtt_pub "$T/m1" "mamori/v1/d/$idm/hb" "$(env_msg 1)" >/dev/null 2>&1; [ "$(dev_state "$idm")" = active ]; }
check "manufacturer-signed device connects and is activated" wait_for 20 hb_until_active

check "audit chain intact" as admin audit verify
[ "$FAIL" -gt 0 ] && tail -40 "$T/hub.log"
finish
