#!/usr/bin/env bash
# Integration: each device publishes its own security status in a standard
# form (P-MGMT): an Entity Attestation Token (RFC 9711) as a JWT signed
# ES256 with the device key, when it connects. The hub verifies it against
# the device's certificate, keeps the newest, and serves it as the device
# signed it, with the certificate, so that anyone can check it without
# trusting the hub (here: openssl). A status signed by another key, a stale
# one and a malformed one are refused and recorded.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); P0=$(dev_dir 0); P1=$(dev_dir 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
agent_conf 0
agent_start 0
check "the device is online" wait_for 20 stat_is 0 connected True
check "it publishes its signed status, which the hub verifies" \
    wait_for 20 as alice device status "$D0"
as alice device status "$D0" >"$T/status.json"
check "the status is an EAT of the device's profile, about this device" python3 -c 'import json,sys,time
s=json.load(open(sys.argv[1])); c=s["claims"]
assert c["eat_profile"]=="tag:mamori.dev,2026:device-status-1", c
assert c["sub"]==sys.argv[2] and s["device"]==sys.argv[2]
assert s["current"] is True and c["iat"] <= time.time() + 300 < c["exp"] + 300
assert c["exp"] - c["iat"] == 2 * 86400' "$T/status.json" "$D0"
check "...with the validity of its security functions" python3 -c 'import json,sys,subprocess
c=json.load(open(sys.argv[1]))["claims"]["mamori"]
na=subprocess.run(["openssl","x509","-in",sys.argv[2]+"/device.crt","-noout","-enddate"],capture_output=True,text=True).stdout.strip().split("=",1)[1]
import email.utils, calendar, time
end=calendar.timegm(time.strptime(na.replace(" GMT",""), "%b %d %H:%M:%S %Y"))
assert c["cert_not_after"]==end, (c, end)
assert c["locked"] is False and c["quarantined"] is False and c["log_records"] >= 1, c
assert "support_end" in c and "advisories" in c' "$T/status.json" "$P0"

# --- anyone can check it: the token's signature with the certificate served
verify_eat() { python3 - "$1" "$T" <<'PY'
import base64, json, subprocess, sys
s = json.load(open(sys.argv[1])); t = sys.argv[2]
h, b, sig = s["eat"].split(".")
d = lambda x: base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
assert json.loads(d(h)) == {"alg": "ES256", "typ": "eat+jwt"}
assert json.loads(d(b)) == s["claims"]
raw = d(sig); assert len(raw) == 64
def der_int(v):
    v = v.lstrip(b"\0") or b"\0"
    if v[0] & 0x80: v = b"\0" + v
    return b"\x02" + bytes([len(v)]) + v
seq = der_int(raw[:32]) + der_int(raw[32:])
open(t + "/sig.der", "wb").write(b"\x30" + bytes([len(seq)]) + seq)
open(t + "/signed", "w").write(h + "." + b)
open(t + "/cert.pem", "w").write(s["certificate"])
subprocess.run(["openssl", "x509", "-in", t + "/cert.pem", "-pubkey", "-noout", "-out", t + "/pub.pem"], check=True)
r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", t + "/pub.pem", "-signature",
                    t + "/sig.der", t + "/signed"], capture_output=True, text=True)
sys.exit(0 if "Verified OK" in r.stdout else 1)
PY
}
check "openssl verifies the token with the device certificate the hub serves" verify_eat "$T/status.json"
check "bob does not see alice's device's status" fails as bob device status "$D0"
check "staff see it" as op device status "$D0"
check "a device that never published has none" fails as alice device status "$(dev_id 1)"
check "the receipt is recorded" has_event security_status "$D0"

# --- refused: another key's signature, a stale token, a malformed one
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
IAT=$(jget claims.iat <"$T/status.json")
forge() { python3 - "$1" "$2" "$3" "$T" <<'PY'
import base64, json, subprocess, sys
sub, iat, key, t = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
e = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
c = {"eat_profile": "tag:mamori.dev,2026:device-status-1", "sub": sub, "iat": iat,
     "exp": iat + 86400, "mamori": {"locked": False, "quarantined": False}}
inp = e(b'{"alg":"ES256","typ":"eat+jwt"}') + "." + e(json.dumps(c, separators=(",", ":")).encode())
open(t + "/in", "w").write(inp)
der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, t + "/in"], capture_output=True, check=True).stdout
rl = der[3]; r = der[4:4 + rl]; sl = der[5 + rl]; s = der[6 + rl:6 + rl + sl]
raw = r.lstrip(b"\0").rjust(32, b"\0") + s.lstrip(b"\0").rjust(32, b"\0")
print(inp + "." + e(raw))
PY
}
status_ev() { # status_ev SEQ TOKEN: published with the device's own identity
    mqtt_pub "$P0" "mamori/v1/d/$D0/ev" \
        "{\"v\":1,\"seq\":$1,\"ts\":$(date +%s%3N),\"body\":{\"type\":\"security_status\",\"eat\":\"$2\"}}"
}
rejections() { as admin events --device "$D0" --limit 1000 | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="security_status_rejected" and sys.argv[1] in e["detail"]["reason"]))' "$1"; }
NOW=$(date +%s)
check "a status for this device signed by another device's key is sent" \
    status_ev 100000 "$(forge "$D0" "$NOW" "$P1/device.key")"
check "...and refused: the signature does not verify" wait_for 20 eval '[ "$(rejections "signature does not verify")" -ge 1 ]'
expect_eq "the status held is still the device's own" "$IAT" "$(as alice device status "$D0" | jget claims.iat)"
check "a status signed by the device's key but older than the one held is sent" \
    status_ev 100001 "$(forge "$D0" $((IAT - 60)) "$P0/device.key")"
check "...and refused as stale" wait_for 20 eval '[ "$(rejections "not newer")" -ge 1 ]'
check "a status naming another device is sent" status_ev 100002 "$(forge "$(dev_id 1)" "$NOW" "$P0/device.key")"
check "...and refused" wait_for 20 eval '[ "$(rejections "sub is not this device")" -ge 1 ]'
check "a token with alg none is sent" status_ev 100003 "eyJhbGciOiJub25lIiwidHlwIjoiZWF0K2p3dCJ9.e30."
check "...and refused" wait_for 20 eval '[ "$(rejections "header is not")" -ge 1 ]'
check "a newer status signed by the device's key is taken" \
    status_ev 100004 "$(forge "$D0" $((IAT + 5)) "$P0/device.key")"
check "...and held" wait_for 20 eval '[ "$(as alice device status "$D0" | jget claims.iat)" = $((IAT + 5)) ]'
# --- a device without a state directory (the simulator) restarted: its
# sequence numbers go on from the clock, so nothing it sends after the
# restart is taken for a replay, and it publishes its status again
D1=$(dev_id 1)
sim_run() { "$BIN/mamori-sim" --identities "$T/fleet" --first 1 --devices 1 --heartbeat 2 \
    --broker-port "$MQTT_PORT" --events 200 --duration 3 >>"$T/sim.log" 2>&1; }
ticks() { as admin events --device "$D1" --limit 1000 | python3 -c 'import json,sys
ev=json.load(sys.stdin)["events"]
print(sum(1 for e in ev if e["kind"]=="device_event"), sum(1 for e in ev if "replay" in e["kind"]))'; }
sim_run
first=$(ticks)
check "a stateless device sends events" test "${first% *}" -gt 3
sim_run
check "restarted, its events are taken again, none refused as a replay" \
    wait_for 20 eval '[ "$(ticks | cut -d" " -f1)" -gt $(( ${first% *} + 3 )) ] && [ "$(ticks | cut -d" " -f2)" = 0 ]'
check "...and it raised no replay alert" bash -c "! '$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' alert list --device '$D1' | grep -q replayed_messages"
check "a stateless device publishes its status too" as alice device status "$D1"
check "audit chain intact" as admin audit verify
finish
