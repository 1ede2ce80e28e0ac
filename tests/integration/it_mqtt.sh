#!/usr/bin/env bash
# Integration: the data path through the real mosquitto with the mamori
# plugin. Who may connect (mTLS + registry state), per-device ACL, size and
# rate limits, live revocation and lock, and revocation on a resumed TLS
# session.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data" --rate 20 --burst 100
fleet_setup 3
claim alice 0; claim alice 1   # dev 2 stays unclaimed (manufactured)
D0=$(dev_id 0); D1=$(dev_id 1); D2=$(dev_id 2)
P0=$(dev_dir 0); P1=$(dev_dir 1); P2=$(dev_dir 2)
PROBE=$BIN/mqtt-resume-probe

# certificates that must not get in
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/self.key" \
    -out "$T/self.crt" -subj "/CN=$D0" -days 30 2>/dev/null
as op factory mfr-ca-create --out "$T/rogue" --name "Rogue CA" >/dev/null
as op factory mfr-ca-create --out "$T/acme" --name "Acme CA" >/dev/null
as admin ca import --model acme-cam --cert "$T/acme/ca.crt" >/dev/null
for n in rogue unreg expired; do as op factory keygen --out "$T/$n" >/dev/null; done
as op factory mfr-ca-sign --ca "$T/rogue" --csr "$T/rogue/device.csr" --out "$T/rogue/device.crt" --cn "$D0" >/dev/null
as op factory mfr-ca-sign --ca "$T/acme" --csr "$T/unreg/device.csr" --out "$T/unreg/device.crt" >/dev/null
as op factory mfr-ca-sign --ca "$T/acme" --csr "$T/expired/device.csr" --out "$T/expired/device.crt" --days -1 >/dev/null
# the CA import restarted the broker: wait for the plugin to be in sync again
wait_for 20 plugin_synced

pub() { mqtt_pub "$@" >/dev/null 2>&1; }
pub_as() { # pub_as CERT KEY TOPIC (under D0's client id: refused for the certificate alone)
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$1" --key "$2" \
        -i "$D0" -q 1 -t "$3" -m "$(env_msg 1)" >/dev/null 2>&1
}
hb() { echo "mamori/v1/d/$1/hb"; }
# sub_cmds IDENTITY_DIR DEV OUT: device DEV's own subscriber to its command
# topic, in the background (SUB), returning once its subscription is in
# place; line-buffered so the file shows each message as it comes
sub_cmds() {
    timeout 30 stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$1/device.crt" \
        --key "$1/device.key" -i "$2" -t "mamori/v1/d/$2/cmd" >"$3" 2>&1 &
    SUB=$!; PIDS+=($SUB)
    wait_for 10 grep -qs SUBACK "$3"
}
# watch_cmds DEV OUT: the same with the hub's certificate (a hub tool's id)
watch_cmds() {
    timeout 30 stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" \
        --cert "$DATA/pki/hub-client.crt" --key "$DATA/pki/hub-client.key" -i "mamori-hub-watch-$1" \
        -t "mamori/v1/d/$1/cmd" >"$2" 2>&1 &
    SUB=$!; PIDS+=($SUB)
    wait_for 10 grep -qs SUBACK "$2"
}
# marker DEV OUT: the hub's word on DEV's command topic, seen by the
# subscriber: whatever the broker let through before it is in OUT by then
marker() { as_hub "$1" '{"marker":1}' >/dev/null 2>&1; wait_for 10 grep -qs marker "$2"; }

# --- who may connect
check "active device connects and publishes" pub "$P0" "$(hb "$D0")" "$(env_msg 1)"
check "no client certificate: refused" fails timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" -t "$(hb "$D0")" -m x
check "self-signed certificate: refused" fails pub_as "$T/self.crt" "$T/self.key" "$(hb "$D0")"
check "certificate of an untrusted CA: refused" fails pub_as "$T/rogue/device.crt" "$T/rogue/device.key" "$(hb "$D0")"
check "expired certificate of a trusted CA: refused" fails pub_as "$T/expired/device.crt" "$T/expired/device.key" "$(hb "$D0")"
check "trusted but unregistered certificate: refused" fails pub_as "$T/unreg/device.crt" "$T/unreg/device.key" "$(hb "$D0")"
check "refusal of the unregistered certificate is reported" wait_for 5 has_event broker_auth_fail "" "certificate not registered"
check "unclaimed (manufactured) device: refused" fails pub "$P2" "$(hb "$D2")" "$(env_msg 1)"
check "hub's plain server cert is not a client identity" fails pub_as "$DATA/pki/api.crt" "$DATA/pki/api.key" "$(hb "$D0")"

# --- identity comes from the certificate, never from what the client says
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" \
    -u '!hub' -i "$D0" -q 1 -t "mamori/v1/ctl/sync" -m '{"op":"set","fp":"x","id":"x","mode":1}' >/dev/null 2>&1
check "user name '!hub' claimed by a device gives nothing" wait_for 5 has_event broker_acl_deny "$D0" "publish denied"

# --- ACL: own subtree only
check "device 1 listens to its commands" sub_cmds "$P1" "$D1" "$T/sub1.out"
n_deny=$(acl_denies "$D0")
pub "$P0" "mamori/v1/d/$D1/cmd" '{"forged":"command"}'
# the plugin delivers the hub's notes (acknowledgements) to any device: a
# device may not hand it one
pub "$P0" "mamori/v1/ctl/notes" "$D1 {\"v\":1,\"ack\":{\"tm\":99999}}"
pub "$P0" "mamori/v1/d/$D1/hb" "$(env_msg 1)"
check "the hub's next command reaches it" marker "$D1" "$T/sub1.out"
kill $SUB 2>/dev/null; wait $SUB 2>/dev/null
check "publish into another device's subtree never arrives" fails grep -q forged "$T/sub1.out"
check "a note a device publishes for another never arrives" fails grep -q 99999 "$T/sub1.out"
check "...both attempts are refused and reported" wait_for 5 acl_denies_above "$D0" $((n_deny + 1))
check "the attempt is reported" wait_for 5 has_event broker_acl_deny "$D0" "publish denied: topic"
# (the device has one session, under its own id: what arrives on its
# command topic is watched with the hub's certificate, under a hub tool's id)
check "device 1's command topic is watched" watch_cmds "$D1" "$T/sub1c.out"
pub "$P1" "mamori/v1/d/$D1/cmd" '{"self":"command"}'
check "the hub's next command is seen" marker "$D1" "$T/sub1c.out"
kill $SUB 2>/dev/null; wait $SUB 2>/dev/null
check "a device cannot write its own command topic (hub's direction)" fails grep -q self "$T/sub1c.out"
check "...and that attempt is reported too" wait_for 5 has_event broker_acl_deny "$D1" "publish denied: topic"
timeout 8 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" -i "$D0" \
    -t 'mamori/v1/d/+/hb' -C 1 -W 3 >"$T/sub0.out" 2>&1
check "subscribe outside the own subtree is denied" grep -q "All subscription requests were denied" "$T/sub0.out"
timeout 8 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" -i "$D0" \
    -t 'mamori/v1/broker/ev' -C 1 -W 3 >"$T/sub0b.out" 2>&1
check "devices cannot read the broker's reports" grep -q "All subscription requests were denied" "$T/sub0b.out"

# --- garbage from a device is recorded, but cannot become a stream of writes
seq 1 30 | sed 's/.*/not an envelope &/' | timeout 20 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" \
    --cafile "$CA" --cert "$P1/device.crt" --key "$P1/device.key" -i "$D1" -q 1 -t "mamori/v1/d/$D1/ev" -l >/dev/null 2>&1
check "a malformed message is recorded" wait_for 5 has_event malformed_message "$D1"
n=$(events_json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="malformed_message" and e.get("device_id")==sys.argv[1]))' "$D1")
expect_eq "30 malformed messages make one event (rate limited per device)" 1 "$n"

# --- size and rate
python3 -c "print('x' * 17000)" >"$T/big"
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" -i "$D0" \
    -q 1 -t "mamori/v1/d/$D0/tm" -f "$T/big" >/dev/null 2>&1
check "oversized message refused and reported" wait_for 5 has_event broker_acl_deny "$D0" "size"
python3 -c "print('x' * 200000)" >"$T/huge"
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" -i "$D0" \
    -q 0 -t "mamori/v1/d/$D0/tm" -f "$T/huge" >/dev/null 2>&1
check "a packet above the broker's limit does not hurt the broker" pub "$P1" "$(hb "$D1")" "$(env_msg 2)"
seq 1 1000 | sed 's/.*/{"v":1,"seq":&,"ts":1,"body":{}}/' | timeout 20 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" \
    --cafile "$CA" --cert "$P0/device.crt" --key "$P0/device.key" -i "$D0" -q 0 -t "mamori/v1/d/$D0/tm" -l >/dev/null 2>&1
check "message flood: the flooding device is kicked and reported" wait_for 5 has_event broker_rate_kick "$D0"
check "other devices are unaffected by the flood" pub "$P1" "$(hb "$D1")" "$(env_msg 3)"
# its bucket refills at 20 messages/s: it is let in again once it has
check "the flooder may come back at a sane rate" wait_for 10 pub "$P0" "$(hb "$D0")" "$(env_msg 4)"

# --- live lock: the device keeps only its management channel, gets its
# signed lock command, and the broker refuses its telemetry
sub_cmds "$P0" "$D0" "$T/live.cmd"
check "subscriber connected" kill -0 $SUB
n_deny=$(acl_denies "$D0")
as alice device lock "$D0" --reason "reported stolen" >/dev/null
check "locked device receives the signed lock command" wait_for 5 grep -q 'type\\":\\"lock' "$T/live.cmd"
expect_eq "locked device keeps its management connection (never reconnected)" 1 \
    "$(grep -c 'sending CONNECT' "$T/live.cmd")"
# Every publish below connects under D0's client id and so takes over the
# subscriber's session; the subscriber would reconnect a second later and
# take it back, in the middle of a publish. It has done its part: stop it.
kill $SUB 2>/dev/null; wait $SUB 2>/dev/null
pub "$P0" "mamori/v1/d/$D0/tm" "$(env_msg 5)"
check "locked device's telemetry is refused by the broker" wait_for 5 acl_denies_above "$D0" "$n_deny"
# refused_after TOPIC MSG: publishes MSG as D0 on TOPIC, then a publish the
# broker always refuses (D1's topic); succeeds when that marker is the only
# refusal reported: reports come in order, so the first was accepted
refused_after() {
    local n; n=$(acl_denies "$D0")
    pub "$P0" "$1" "$2"
    pub "$P0" "mamori/v1/d/$D1/hb" "$(env_msg 99)"
    wait_for 10 acl_denies_above "$D0" "$n" && [ "$(acl_denies "$D0")" -eq $((n + 1)) ]
}
check "locked device may still send heartbeats (management)" refused_after "$(hb "$D0")" "$(env_msg 6)"
as alice device unlock "$D0" --reason "found it" >/dev/null
check "unlocked device's telemetry is accepted again" \
    wait_for 10 refused_after "mamori/v1/d/$D0/tm" "$(env_msg 7)"

# --- revocation holds on a resumed TLS session (TLS 1.2 and 1.3)
for v in 1.2 1.3; do
    out=$("$PROBE" "$MQTT_PORT" "$CA" "$P1/device.crt" "$P1/device.key" "$T/sess$v" save $v "$D1")
    expect_eq "TLS $v: fresh session accepted before revocation" "reused=0 connack=0" "$out"
done
out=$("$PROBE" "$MQTT_PORT" "$CA" "$P1/device.crt" "$P1/device.key" "$T/sess1.2" resume 1.2 "$D1")
expect_eq "resumption works while the device is in good standing" "reused=1 connack=0" "$out"
"$PROBE" "$MQTT_PORT" "$CA" "$P1/device.crt" "$P1/device.key" "$T/sess1.2" save 1.2 "$D1" >/dev/null
as admin device revoke "$D1" --reason "key compromised" >/dev/null
check "revoked device: fresh connect refused" fails pub "$P1" "$(hb "$D1")" "$(env_msg 7)"
for v in 1.2 1.3; do
    out=$("$PROBE" "$MQTT_PORT" "$CA" "$P1/device.crt" "$P1/device.key" "$T/sess$v" resume $v "$D1")
    expect_eq "TLS $v: revoked device on a resumed session is refused (not authorised)" "reused=1 connack=5" "$out"
done
check "revoked device's refusal is reported" wait_for 5 has_event broker_auth_fail "$D1" "does not allow"

# --- the broker is fail-closed until it has the registry's view
kill -9 "$(cat "$DATA/run/broker.pid")"
check "broker is restarted by the hub" wait_for 20 plugin_synced
check "after the restart the active device connects" pub "$P0" "$(hb "$D0")" "$(env_msg 8)"
check "after the restart the revoked device is still refused" fails pub "$P1" "$(hb "$D1")" "$(env_msg 9)"
check "broker restart is recorded" has_event broker_exit
# data_sessions_up: both of the hub's data sessions (telemetry; events,
# logs, results) are connected, by name
data_sessions_up() { curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys
h=json.load(sys.stdin); s=h["data_sessions"]
sys.exit(0 if sorted(s)==["mamori-hub-data","mamori-hub-events"] and all(s.values()) and h["data_session"] else 1)'; }
check "both data sessions are back after the broker's restart" wait_for 20 data_sessions_up
pub "$P0" "mamori/v1/d/$D0/ev" "{\"v\":1,\"seq\":50,\"ts\":$(date +%s%3N),\"body\":{\"type\":\"after_restart\"}}"
check "...and an event is recorded over them" wait_for 10 has_event device_event "$D0" after_restart

# --- a hub restarted over a registry of hundreds of devices hands the
# plugin its whole view (snapshot batches stay under the broker's packet
# limit; a larger one cost the hub its session and left every device out)
check "300 more identities made" as op factory batch --model sensor-v1 --count 300 --out "$T/fleet300"

# --- a burst that meets a busy hub waits in the broker: none is dropped
# after the device had its PUBACK (the hub's session queue holds it)
hub_stop
n0=$(wc -l <"$T/hub.log")
hub_start "$DATA" --rate 1000 --burst 1000
check "restarted over 300+ devices, the plugin takes the hub's snapshot" wait_for 20 plugin_synced
check "the hub's session was never dropped while sending it" \
    bash -c "! tail -n +$((n0 + 1)) '$T/hub.log' | grep -q 'hub session to broker lost'"
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
n_burst() { as admin events --device "$D0" --limit 1000 | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and (e.get("detail") or {}).get("type")=="burst"))'; }
kill -STOP "$HUB_PID"
python3 -c 'import sys,time
t=int(time.time()*1000)
for i in range(100, 500): print("{\"v\":1,\"seq\":%d,\"ts\":%d,\"body\":{\"type\":\"burst\",\"i\":%d}}" % (i, t, i))' |
    timeout 30 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" \
        --key "$P0/device.key" -i "$D0" -q 1 -t "mamori/v1/d/$D0/ev" -l >/dev/null 2>&1
kill -CONT "$HUB_PID"
check "400 events sent while the hub was stopped all reach it" wait_for 30 eval '[ "$(n_burst)" = 400 ]'
check "the broker dropped nothing for the hub" bash -c "! grep -q 'Outgoing messages are being dropped' '$DATA/log/broker.log'"

check "audit chain intact" as admin audit verify
finish
