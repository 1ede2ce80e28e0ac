#!/usr/bin/env bash
# Integration: a broker node apart from the hub (`mamorid broker`). The
# hub connects to it (--broker) and starts no broker of its own, so
# stopping the hub or killing it with -9 drops no device connection: the
# node's plugin keeps the registry snapshot, the hub sends a new one when
# it is back, and what devices sent meanwhile is recorded from their
# outboxes. A node without a snapshot (mosquitto restarted while no hub is
# connected) refuses every device until a hub gives it one. A node refuses
# to start on files not its own.
. "$(dirname "$0")/lib.sh"

NODE=$T/node1
PORT=$(free_port)
HUB_WAIT_SYNC=0 hub_start "$T/data" --heartbeat 2 --broker "127.0.0.1:$PORT"
check "without a node the hub is up but has no broker session" health_is broker_session False
# --- prepare and start the node from the hub's pki/
check "broker-init prepares the node's directory" "$BIN/mamorid" broker-init --from "$DATA" \
    --data "$NODE" --node n1 --mqtt-port "$PORT"
check "...its key is private" test "$(stat -c %a "$NODE/tls/broker.key")" = 600
check "...and its own, not the hub's broker key" fails cmp -s "$NODE/tls/broker.key" "$DATA/pki/broker.key"
check "...its certificate chains to the platform root" openssl verify -CAfile "$DATA/pki/root.crt" \
    -untrusted "$NODE/tls/broker.crt" "$NODE/tls/broker.crt"
"$BIN/mamorid" broker-init --from "$DATA" --data "$T/node-named" --node n9 --mqtt-port "$PORT" \
    --names mqtt.example.com,192.0.2.7 >/dev/null
san=$(openssl x509 -in "$T/node-named/tls/broker.crt" -noout -ext subjectAltName 2>/dev/null | tail -1)
expect_eq "--names puts exactly those names in the node's certificate" \
    "DNS:mqtt.example.com, IP Address:192.0.2.7" "$(echo $san)"
cp "$T/node-named/tls/broker.key" "$T/named-key.old"
"$BIN/mamorid" broker-init --from "$DATA" --data "$T/node-named" --node n9 >/dev/null
san=$(openssl x509 -in "$T/node-named/tls/broker.crt" -noout -ext subjectAltName 2>/dev/null | tail -1)
expect_eq "a renewal without --names keeps them" "DNS:mqtt.example.com, IP Address:192.0.2.7" "$(echo $san)"
check "...with a new key" fails cmp -s "$T/node-named/tls/broker.key" "$T/named-key.old"
check "a listener that is not an address or a name is refused" fails "$BIN/mamorid" broker-init \
    --from "$DATA" --data "$T/node-bad3" --node n7 --mqtt-port "$PORT" --listen $'127.0.0.1\nplugin /x'
check "a name that is not one is refused" fails "$BIN/mamorid" broker-init --from "$DATA" \
    --data "$T/node-bad2" --node n8 --mqtt-port "$PORT" --names "a.example,IP:1.2.3.4"
check "...and leaves no key behind" test ! -e "$T/node-bad2/tls/broker.key"
check "...and node.json names it" grep -q '"node": "n1"' "$NODE/node.json"
check "a bad node name is refused" fails "$BIN/mamorid" broker-init --from "$DATA" \
    --data "$T/node-bad" --node "N1;x"
check "--broker without a port is refused" fails "$BIN/mamorid" --data "$T/other" --broker 127.0.0.1
node_start "$NODE"
check "the hub reaches the node and the plugin takes its snapshot" wait_for 30 plugin_synced
check "the node runs mosquitto" wait_for 10 eval '[ -n "$(node_broker "$NODE")" ]'
BROKER0=$(node_broker "$NODE")
timeout 10 "$BIN/mamorid" broker --data "$NODE" ${MAMORI_PLUGIN:+--plugin "$MAMORI_PLUGIN"} \
    >"$T/node-second.log" 2>&1
expect_eq "a second node on the same directory is refused (status 1)" 1 "$?"
check "...saying why" grep -q "in use by another broker node" "$T/node-second.log"
check "endpoints.json gives devices the node's address" test "$(jget mqtt_port <"$DATA/run/endpoints.json")" = "$PORT"

fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1)
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0; agent_conf 1
agent_start 0; A0=$AGENT_PID
agent_start 1; A1=$AGENT_PID
online() { [ "$(as admin device show "$1" | jget online)" = True ]; }
check "both devices connect through the node" wait_for 30 stat_is 0 connected True
check "...both" wait_for 30 stat_is 1 connected True
check "...and are online at the hub" wait_for 20 online "$D0"
send 0 '{"t": 1}' >/dev/null
check "a reading is recorded" wait_for 20 stored_is "$D0" 1
C0=$(astat 0 connects); C1=$(astat 1 connects)

# --- the hub stops (SIGTERM): no device notices
hub_stop
check "the node's mosquitto outlives the hub" kill -0 "$BROKER0"
send 0 '{"t": 2}' >/dev/null # queued while no hub records it
check "a device still connected while no hub runs" stat_is 0 connected True
HUB_WAIT_SYNC=0 hub_start "$DATA" --heartbeat 2 --broker "127.0.0.1:$PORT"
check "the restarted hub gives the node a new snapshot" wait_for 30 plugin_synced
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
check "the reading sent while the hub was away is recorded" wait_for 60 stored_is "$D0" 2
expect_eq "a hub restart costs device 0 no reconnection" "$C0" "$(astat 0 connects)"
expect_eq "...nor device 1" "$C1" "$(astat 1 connects)"

# --- kill -9 of the hub: the same
kill -9 "$HUB_PID"; wait "$HUB_PID" 2>/dev/null; HUB_PID=""
check "the node's mosquitto outlives kill -9 of the hub" kill -0 "$BROKER0"
rm -f "$DATA/run/endpoints.json"
HUB_WAIT_SYNC=0 hub_start "$DATA" --heartbeat 2 --broker "127.0.0.1:$PORT"
check "after kill -9 the new hub synchronises the node" wait_for 30 plugin_synced
send 0 '{"t": 3}' >/dev/null
check "readings go on being recorded" wait_for 60 stored_is "$D0" 3
expect_eq "kill -9 of the hub costs device 0 no reconnection" "$C0" "$(astat 0 connects)"
expect_eq "...nor device 1" "$C1" "$(astat 1 connects)"
check "the hub holds each reading once" test "$(hubsql "$DATA" "SELECT count(DISTINCT seq) FROM telemetry WHERE device_id='$D0'")" = 3

# --- the registry's word still reaches the node: commands, and revocation
as op device lock "$D1" --reason "stolen" >/dev/null
check "a lock sent by the restarted hub reaches the device" wait_for 20 stat_is 1 locked True
as op device unlock "$D1" --reason "found" >/dev/null
check "...and its unlock" wait_for 20 stat_is 1 locked False
r1=$(astat 1 refused)
as op device revoke "$D1" --reason "key leaked" >/dev/null
check "a device revoked through the restarted hub is kicked by the node" wait_for 10 stat_is 1 connected False
check "...and refused when it tries again" wait_for 30 eval '[ "$(astat 1 refused)" -gt "$r1" ]'
check "...while the other stays" stat_is 0 connected True
kill "$A1"; wait "$A1" 2>/dev/null

# --- mosquitto dies while no hub runs: the node restarts it fail-closed
hub_stop
r0=$(astat 0 refused)
kill -9 "$BROKER0"
check "the node restarts mosquitto" wait_for 20 eval '[ -n "$(node_broker "$NODE")" ] && [ "$(node_broker "$NODE")" != "$BROKER0" ]'
check "without a snapshot it refuses the device" wait_for 60 test "$(astat 0 refused)" -gt "$r0"
check "...which stays out" stat_is 0 connected False
HUB_WAIT_SYNC=0 hub_start "$DATA" --heartbeat 2 --broker "127.0.0.1:$PORT"
check "a hub's snapshot opens the node again" wait_for 30 plugin_synced
check "...and the device is back" wait_for 60 stat_is 0 connected True

# --- SIGTERM stops the node and its mosquitto; it refuses foreign files
BROKER1=$(node_broker "$NODE")
kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null
check "SIGTERM stops the node's mosquitto too" wait_for 10 fails kill -0 "$BROKER1"
# the hub, its sessions down and retrying, still stops at once when told
check "the hub sees its node gone" wait_for 30 health_is broker_session False
kill "$HUB_PID"
check "...and, stopped while its sessions are down, exits" wait_for 10 fails kill -0 "$HUB_PID"
wait "$HUB_PID" 2>/dev/null; HUB_PID=""
chmod 644 "$NODE/tls/broker.key"
"$BIN/mamorid" broker --data "$NODE" >"$T/node-perm.log" 2>&1
check "a node whose key others can read does not start" test $? -eq 1
check "...saying why" grep -q "broker.key must be ours" "$T/node-perm.log"
chmod 600 "$NODE/tls/broker.key"
echo '{"node":"n1"}' >"$NODE/node.json"
"$BIN/mamorid" broker --data "$NODE" >"$T/node-json.log" 2>&1
check "a node with an incomplete node.json does not start" test $? -eq 1
kill "$A0" 2>/dev/null

# --- the unit files that run it as a service: valid, and sandboxed
units=$T/units; mkdir -p "$units"
for f in "$ROOT_DIR"/dist/systemd/*.service; do
    sed "s#/usr/bin/mamorid#$BIN/mamorid#" "$f" >"$units/$(basename "$f")"
done
cp "$units/mamori-broker@.service" "$units/mamori-broker@n1.service"
check "dist/systemd: systemd-analyze finds nothing wrong" systemd-analyze verify \
    "$units/mamorid.service" "$units/mamori-broker@n1.service"
for u in mamorid.service mamori-broker@n1.service; do
    check "dist/systemd: $u runs sandboxed (exposure under 2.0)" \
        systemd-analyze security --offline=yes --threshold=20 "$units/$u"
    for k in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes; do
        check "...with $k" grep -qx "$k" "$units/$u"
    done
    check "...as a user of its own" grep -qE '^User=mamori(-broker)?$' "$units/$u"
done
finish
