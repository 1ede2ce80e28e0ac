#!/usr/bin/env bash
# Integration: two broker nodes behind HAProxy (TCP mode, TLS passed
# through: each device's mutual TLS still ends at mosquitto and our
# plugin). Devices dial one public address; the hub holds sessions with
# both nodes, learns from each node's plugin where every device is, sends
# a device's commands and acknowledgements to its node only, and pushes
# every registry change to both, so a revocation kicks the device wherever
# it is. A node killed: its devices come back through HAProxy on the other
# one within their backoff, still subject to lock and revocation.
. "$(dirname "$0")/lib.sh"

P1=$(free_port); P2=$(free_port); PUB=$(free_port)
while [ "$P2" = "$P1" ]; do P2=$(free_port); done
while [ "$PUB" = "$P1" ] || [ "$PUB" = "$P2" ]; do PUB=$(free_port); done
HUB_WAIT_SYNC=0 hub_start "$T/data" --heartbeat 2 --broker "127.0.0.1:$P1,127.0.0.1:$P2" \
    --mqtt-public "127.0.0.1:$PUB"
"$BIN/mamorid" broker-init --from "$DATA" --data "$T/n1" --node n1 --mqtt-port "$P1" >/dev/null
"$BIN/mamorid" broker-init --from "$DATA" --data "$T/n2" --node n2 --mqtt-port "$P2" >/dev/null
node_start "$T/n1"; N1_PID=$NODE_PID
node_start "$T/n2"; N2_PID=$NODE_PID
"$ROOT_DIR/scripts/cluster.sh" haproxy-conf "$PUB" "127.0.0.1:$P1" "127.0.0.1:$P2" >"$T/haproxy.cfg"
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
PIDS+=($!)
check "HAProxy listens on the public address" wait_for 10 eval "ss -Htln | grep -q '127.0.0.1:$PUB '"
nodes_synced() { curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys
n=json.load(sys.stdin)["nodes"]; sys.exit(0 if len(n)==2 and all(x["synced"] for x in n) and sorted(x["name"] for x in n)==["n1","n2"] else 1)'; }
check "the hub synchronises both nodes" wait_for 30 nodes_synced
check "...and says so" plugin_synced
check "devices are given the public address" test "$(jget mqtt_port <"$DATA/run/endpoints.json")" = "$PUB"

N=4
fleet_setup $N
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
for i in $(seq 0 $((N - 1))); do claim alice "$i"; agent_conf "$i"; done
declare -a APID
for i in $(seq 0 $((N - 1))); do agent_start "$i"; APID[i]=$AGENT_PID; done
all_connected() { local i; for i in $(seq 0 $((N - 1))); do stat_is "$i" connected True || return 1; done; }
check "every device connects through HAProxy" wait_for 60 all_connected
node_of() { as admin device show "$(dev_id "$1")" | jget node; }
located() { local i; for i in $(seq 0 $((N - 1))); do [ -n "$(node_of "$i")" ] || return 1; done; }
check "the hub knows each device's node" wait_for 20 located
on_node() { local i out=""; for i in $(seq 0 $((N - 1))); do [ "$(node_of "$i")" = "$1" ] && out="$out $i"; done; echo $out; }
ON1=($(on_node n1)); ON2=($(on_node n2))
check "HAProxy spread the devices over both nodes" test ${#ON1[@]} -ge 1 -a ${#ON2[@]} -ge 1
expect_eq "...all of them" $N $((${#ON1[@]} + ${#ON2[@]}))
node_devices() { curl -s --cacert "$CA" "$API/api/v1/health" | python3 -c 'import json,sys
print([x["devices"] for x in json.load(sys.stdin)["nodes"] if x["name"]==sys.argv[1]][0])' "$1"; }
check "the health check counts node 2's devices" test "$(node_devices n2)" = ${#ON2[@]}

# --- a command goes to the node that holds the device, and only there
capture() { # capture PORT FILE: everything the hub sends devices on that node
    timeout 600 stdbuf -oL mosquitto_sub -d -v -h 127.0.0.1 -p "$1" --cafile "$CA" \
        --cert "$DATA/pki/hub-client.crt" --key "$DATA/pki/hub-client.key" \
        -i "mamori-hub-capture-$1" -t 'mamori/v1/d/+/cmd' >"$2" 2>/dev/null &
    PIDS+=($!)
    wait_for 10 grep -q SUBACK "$2"
}
check "capturing what the hub sends through node 1" capture "$P1" "$T/cap1"
check "...and through node 2" capture "$P2" "$T/cap2"
# sent_cmd ID FILE: a signed command to device ID is in FILE (not an
# acknowledgement: those go to every node while the device's node is not
# known yet, e.g. in the moment it connects)
sent_cmd() { grep -q "^mamori/v1/d/$1/cmd {\"v\":1,\"cmd\":" "$2"; }
# probe N FILE: a command to device N, seen in FILE: the hub's session to
# that node delivers in order, so what it sent there before has arrived
probe() { as alice device cmd "$(dev_id "$1")" self-test --reason probe >/dev/null &&
    wait_for 20 sent_cmd "$(dev_id "$1")" "$2"; }
X=${ON2[0]}; DX=$(dev_id "$X")
as op device lock "$DX" --reason "stolen" >/dev/null
check "a lock reaches a device on node 2" wait_for 20 stat_is "$X" locked True
check "...sent through node 2" sent_cmd "$DX" "$T/cap2"
check "a later command to a device on node 1 arrives there" probe "${ON1[0]}" "$T/cap1"
check "...but the lock never went through node 1" fails sent_cmd "$DX" "$T/cap1"
as op device unlock "$DX" --reason "found" >/dev/null
check "...and its unlock" wait_for 20 stat_is "$X" locked False

# --- revocation through the hub kicks the device on its node
r=$(astat "$X" refused)
as op device revoke "$DX" --reason "key leaked" >/dev/null
check "a device revoked on node 2 is kicked" wait_for 10 stat_is "$X" connected False
check "...and refused through HAProxy, whichever node it reaches" wait_for 30 eval '[ "$(astat "$X" refused)" -gt "$r" ]'
kill "${APID[X]}"; wait "${APID[X]}" 2>/dev/null

# --- node 1 dies: its devices come back through HAProxy on node 2
declare -A C
for i in "${ON1[@]}"; do C[$i]=$(astat "$i" connects); done
kill -9 "$N1_PID"; wait "$N1_PID" 2>/dev/null
back() { local i; for i in "${ON1[@]}"; do stat_is "$i" connected True && [ "$(astat "$i" connects)" -gt "${C[$i]}" ] || return 1; done; }
check "node 1's devices reconnect through HAProxy" wait_for 90 back
moved() { local i; for i in "${ON1[@]}"; do [ "$(node_of "$i")" = n2 ] || return 1; done; }
check "...on node 2, where the hub now finds them" wait_for 20 moved
Y=${ON1[0]}; DY=$(dev_id "$Y")
as op device lock "$DY" --reason "check" >/dev/null
check "a moved device still gets its lock" wait_for 20 stat_is "$Y" locked True
as op device revoke "$DY" --reason "gone" >/dev/null
check "...and is kicked when revoked" wait_for 10 stat_is "$Y" connected False

# --- node 1 back: the hub synchronises it again
node_start "$T/n1"
check "a restarted node is synchronised again" wait_for 30 nodes_synced

# --- a restarted hub learns where devices are from the nodes at once, not
# at each device's next heartbeat: a device that beats once an hour
as op factory batch --model sensor-v1 --count 1 --out "$T/quiet" >/dev/null
as alice claim "$(cat "$T"/quiet/dev-*/claim-code)" >/dev/null
DQ=$(jget device_id <"$(ls -d "$T"/quiet/dev-*)/device.json")
# straight to node 1 (not through HAProxy), so the test knows where it is
"$BIN/mamori-sim" --identities "$T/quiet" --heartbeat 3600 --broker-port "$P1" \
    --status "$T/quiet.json" >"$T/quiet.log" 2>&1 &
PIDS+=($!)
quiet_node() { as admin device show "$DQ" | jget node; }
check "the quiet device is located when it connects" wait_for 30 eval '[ -n "$(quiet_node)" ]'
hub_stop
HUB_WAIT_SYNC=0 hub_start "$DATA" --heartbeat 2 --broker "127.0.0.1:$P1,127.0.0.1:$P2" \
    --mqtt-public "127.0.0.1:$PUB"
check "the restarted hub synchronises both nodes" wait_for 30 nodes_synced
MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
MAMORI_PASSWORD=$OWNER_PW as op login --user op >/dev/null
check "...and knows at once where the quiet device is" wait_for 10 eval '[ -n "$(quiet_node)" ]'
expect_eq "...on node 1" n1 "$(quiet_node)"
check "capturing node 1 again (the first capture ended with it)" capture "$P1" "$T/cap1b"
check "...so its lock goes to its node" eval 'as op device lock "$DQ" --reason "check" >/dev/null'
check "...and reaches it there" wait_for 20 sent_cmd "$DQ" "$T/cap1b"
on2=""; for i in $(seq 0 $((N - 1))); do stat_is "$i" connected True && on2=$i && break; done
check "a later command to a device on node 2 arrives there" probe "$on2" "$T/cap2"
check "...but the quiet device's lock never went through node 2" \
    fails sent_cmd "$DQ" "$T/cap2"
for i in $(seq 0 $((N - 1))); do kill "${APID[i]}" 2>/dev/null; done
finish
