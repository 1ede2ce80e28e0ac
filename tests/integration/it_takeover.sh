#!/usr/bin/env bash
# Integration: nobody takes over a session that is not theirs (T07-L2d,
# T11-L1a, P-MUT, T07-L3a), with the real agent, hub, broker and plugin.
#
#  - A device holding its own valid certificate tries, over and over for
#    10 s, to connect under another device's id, under the hub's id and
#    under an id the broker assigns: every attempt is refused before the
#    broker could hand it the other's session, reported, recorded as an
#    event and raised as an alert (client_id_mismatch); the victim device
#    (mamori-agent) and the hub keep their sessions throughout. The hub's
#    certificate is good for the hub's ids only.
#  - A rotation's switch closes a session still open on the old key. The
#    device's key has leaked; it is rotated. The device makes its new key,
#    gets its certificate, switches and reconnects with it, but the hub is
#    slow to take its answer (held with SIGSTOP) and the device goes quiet
#    (held too): an impostor with the old key and certificate takes the
#    device's session over in that window. When the hub switches the
#    registry to the new certificate, the broker cuts the impostor within a
#    second and refuses it from then on; the device comes back on its new
#    key and stays.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 3
claim alice 0; claim alice 1; claim alice 2
D0=$(dev_id 0); D1=$(dev_id 1); D2=$(dev_id 2)
P0=$(dev_dir 0); P2=$(dev_dir 2)
PROBE=$BIN/mqtt-resume-probe
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 100000}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

# client CERT KEY CLIENT_ID: a bare MQTT 3.1.1 client. Prints "connected"
# once the broker accepts it, then "closed MS" (the wall clock in ms) the
# moment the broker closes the connection, and exits (1 when refused).
cat >"$T/client.py" <<'PY'
import socket, ssl, sys, time
port, ca, cert, key, cid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].encode()
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))))
var = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid  # clean session, no keepalive
s.sendall(bytes([0x10, len(var)]) + var)
ack = s.recv(4)
if len(ack) != 4 or ack[0] != 0x20 or ack[3] != 0:
    print("refused", ack[3] if len(ack) == 4 else -1, flush=True)
    sys.exit(1)
print("connected", flush=True)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
print("closed", int(time.time() * 1000), flush=True)
PY
client() { python3 "$T/client.py" "$MQTT_PORT" "$CA" "$@"; }

# --- the victim: device 1 under mamori-agent (the SDK's client id is the
# device id, or it would not get in at all)
agent_conf 1
agent_start 1
check "the victim device connects under its own id" wait_for 20 stat_is 1 connected True
C1=$(astat 1 connects)
check "the hub's broker session is up" test "$(health_of broker_session)" = True
log0=$(wc -l <"$T/hub.log")

# --- device 0, with its own certificate, claims device 1's id, the hub's
# id and none at all (the broker assigns one), for 10 s (at most 100 rounds)
attack() { # attack CLIENT_ID [mosquitto_pub args]: 0 when it got in
    local cid=$1; shift
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P0/device.crt" \
        --key "$P0/device.key" -i "$cid" "$@" -q 1 -t "mamori/v1/d/$D0/hb" -m "$(env_msg 1)" >/dev/null 2>&1
}
# sampled all along, apart from the attack: the hub's broker session and
# the victim's connection
# (no python per sample: a sample is a curl and a read)
sampler() { # sampler END_MS
    local h a hub dev
    while [ "$(date +%s%3N)" -lt "$1" ]; do
        h=$(curl -s --cacert "$CA" "$API/api/v1/health")
        a=$(cat "$T/agent1.status" 2>/dev/null)
        hub=down; dev=down
        [[ $h =~ \"broker_session\":\ ?true ]] && hub=up
        [[ $a =~ \"connected\":\ ?true ]] && dev=up
        echo "$hub $dev" >>"$T/samples"
        sleep 0.2 # sampling cadence until END_MS, not a wait
    done
}
end=$(( $(date +%s%3N) + 10000 ))
sampler "$end" &
SAMPLER=$!
rounds=0; admitted=0
while [ "$rounds" -lt 100 ] && [ "$(date +%s%3N)" -lt "$end" ]; do
    rounds=$((rounds + 1))
    attack "$D1" && admitted=$((admitted + 1))
    attack "$D1" -V 5 && admitted=$((admitted + 1))
    attack mamori-hub && admitted=$((admitted + 1))
    attack mamori-hub -V 5 && admitted=$((admitted + 1))
    [ "$("$PROBE" "$MQTT_PORT" "$CA" "$P0/device.crt" "$P0/device.key" "$T/sess-empty" save 1.2 "")" = \
        "reused=0 connack=5" ] || admitted=$((admitted + 1))
done
wait "$SAMPLER"
samples=$(wc -l <"$T/samples")
down=$(grep -vc '^up up$' "$T/samples")
echo "# $rounds rounds of 5 attempts in 10 s, $samples samples"
check "the attack ran for its 10 s (at least 3 rounds, 10 samples)" test "$rounds" -ge 3 -a "$samples" -ge 10
expect_eq "no attempt under another device's, the hub's or an assigned id got in" 0 "$admitted"
expect_eq "the hub's session and the victim's stayed up in every sample" "0 of $samples" "$down of $samples"
expect_eq "the victim was never thrown off (one connection all along)" "$C1 True" \
    "$(astat 1 connects) $(astat 1 connected)"
check "the hub never lost its session to the broker" \
    bash -c "! tail -n +$((log0 + 1)) '$T/hub.log' | grep -q 'session to broker lost'"
check "the hub's plugin view stayed in force" test "$(health_of plugin_synced)" = True
check "the claim of another device's id is reported as device 0's" \
    wait_for 10 has_event broker_client_id_mismatch "$D0" "client id of another device"
check "...naming the id it claimed" has_event broker_client_id_mismatch "$D0" "$D1"
check "the claim of the hub's id is reported" has_event broker_client_id_mismatch "$D0" "reserved for the hub"
check "an id the broker assigned is refused and reported" \
    has_event broker_client_id_mismatch "$D0" "client id not the device's own"
check "the attacker raises the client_id_mismatch alert" wait_for 10 has_alert client_id_mismatch "$D0"
check "the victim raises nothing" test "$(as admin alert list --device "$D1" | jget alerts)" = "[]"
check "device 0 under its own id still gets in" attack "$D0"

# --- the hub's certificate is the hub's ids only
hub_pub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$DATA/pki/hub-client.crt" \
    --key "$DATA/pki/hub-client.key" -i "$1" -q 1 -t "mamori/v1/d/$D2/cmd" -m '{}' >/dev/null 2>&1; }
check "the hub's certificate under a device's id: refused" fails hub_pub "$D1"
check "...and reported" wait_for 10 has_event broker_client_id_mismatch "" "the hub's certificate"
check "the hub's certificate under a hub tool's id gets in" hub_pub mamori-hub-test
expect_eq "the victim is still on its first connection" "$C1 True" "$(astat 1 connects) $(astat 1 connected)"

# --- T07-L3a: the switch of a rotation closes a session on the old key
agent_conf 2
agent_start 2
A2=$AGENT_PID
# whatever happens, nothing is left stopped (cleanup could not end it)
trap 'kill -CONT "$HUB_PID" "$A2" 2>/dev/null; cleanup' EXIT
check "device 2 connects" wait_for 20 stat_is 2 connected True
fp_of() { as admin device show "$1" | jget "$2"; }
OLD_FP=$(fp_of "$D2" cert_fingerprint)
cp "$P2/device.crt" "$T/old.crt"; cp "$P2/device.key" "$T/old.key"
capture_cmds 2 "$T/cmds2"
acc=$(astat 2 commands_accepted)
kill -STOP "$A2"          # the device hangs with its session open
as op device cmd "$D2" rotate --reason "key leaked" >/dev/null
check "the rotate command is out" wait_for 10 grep -q 'type\\":\\"rotate' "$T/cmds2"
kill -STOP "$HUB_PID"     # the hub is slow
kill -CONT "$A2"
check "the device makes its new key and answers" wait_for 10 stat_is 2 commands_accepted $((acc + 1))
kill -STOP "$A2"
kill -CONT "$HUB_PID"
check "the hub delivers the new certificate" wait_for 10 grep -q 'type\\":\\"cert' "$T/cmds2"
NEXT_FP=$(fp_of "$D2" cert_next_fingerprint)
kill -STOP "$HUB_PID"
c2=$(astat 2 connects)
kill -CONT "$A2"
check "the device switches and reconnects with its new certificate" \
    wait_for 10 eval '[ "$(astat 2 rotations) $(astat 2 connected)" = "1 True" ] && [ "$(astat 2 connects)" -gt "$c2" ]'
kill -STOP "$A2"          # ...and goes quiet
client "$T/old.crt" "$T/old.key" "$D2" >"$T/impostor.out" 2>&1 &
IMP=$!; PIDS+=("$IMP")
check "an impostor with the old key takes the device's session over before the switch" \
    wait_for 10 grep -q connected "$T/impostor.out"
t_switch=$(date +%s%3N)
kill -CONT "$HUB_PID"     # the hub takes the device's answer: the switch
check "the registry switches to the new certificate" wait_for 10 eval '[ "$(fp_of "$D2" cert_fingerprint)" = "$NEXT_FP" ]'
check "the impostor is cut" wait_for 5 grep -q closed "$T/impostor.out"
cut_ms=$(( $(awk '/closed/ {print $2}' "$T/impostor.out") - t_switch ))
echo "# the impostor's session closed $cut_ms ms after the hub resumed (the switch in between)"
check "...within 1 s of the switch" test "$cut_ms" -ge 0 -a "$cut_ms" -le 1000
check "...and the cut is reported" wait_for 10 has_event broker_stale_session_kick "$D2"
expect_eq "the old key is refused from then on" "reused=0 connack=5" \
    "$("$PROBE" "$MQTT_PORT" "$CA" "$T/old.crt" "$T/old.key" "$T/sess-old" save 1.2 "$D2")"
kill -CONT "$A2"
check "the device comes back on its new key" \
    wait_for 20 eval '[ "$(astat 2 connected)" = True ] && [ "$(astat 2 connects)" -gt "$((c2 + 1))" ]'
expect_eq "...the certificate the registry holds" "$NEXT_FP" \
    "$(openssl x509 -in "$P2/device.crt" -outform DER | sha256sum | cut -d' ' -f1)"
check "the device is online for the hub" wait_for 20 eval '[ "$(as admin device show "$D2" | jget online)" = True ]'
send 2 '{"i": 1}' >/dev/null
check "its telemetry flows on the new key" wait_for 20 stored_is "$D2" 1
check "audit chain intact" as admin audit verify
[ "$FAIL" -gt 0 ] && { tail -20 "$T/agent2.log"; tail -40 "$T/hub.log"; cat "$T/impostor.out"; }
finish
