#!/usr/bin/env bash
# Integration: the device's connection manager against the real broker, over
# a loopback relay the test can cut (tcpproxy.py), and against an impostor
# TLS server (tlsimpostor.py), which it must never talk MQTT to. After a network cut the
# agent reconnects on its own, resuming its TLS session (no full handshake,
# no new signature by the device key); after a broker restart, whose
# session tickets are gone, it falls back to a full handshake. Nothing sent
# around the cuts is lost.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
claim alice 0
D0=$(dev_id 0)
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 1000}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

python3 "$(dirname "$0")/tcpproxy.py" "$MQTT_PORT" >"$T/proxy.port" 2>>"$T/proxy.log" &
PROXY=$!; PIDS+=("$PROXY")
wait_for 10 test -s "$T/proxy.port" || bad "the relay starts"
PPORT=$(cat "$T/proxy.port")

# 127.0.0.1 is in the broker certificate, so the name check still holds
agent_conf 0 "" "\"broker_host\": \"127.0.0.1\", \"broker_port\": $PPORT"
agent_start 0
check "agent connects through the relay" wait_for 20 stat_is 0 connected True
expect_eq "the first connection is a full handshake" "0 1" "$(astat 0 tls_resumed) $(astat 0 tls_full)"
send 0 '{"i": 1}' >/dev/null

connects_above() { [ "$(astat 0 connects)" -gt "$1" ] 2>/dev/null; }
C=$(astat 0 connects); R=$(astat 0 tls_resumed); F=$(astat 0 tls_full)
kill -USR1 "$PROXY"
check "after the cut the agent is back" wait_for 20 connects_above "$C"
expect_eq "the reconnection resumed the TLS session" $((R + 1)) "$(astat 0 tls_resumed)"
expect_eq "...without a new signature by the device key (no full handshake)" "$F" "$(astat 0 tls_full)"
check "...and it is connected" wait_for 10 stat_is 0 connected True
send 0 '{"i": 2}' >/dev/null
check "messages around the cut are all stored" wait_for 20 stored_is "$D0" 2

# a broker restart loses its ticket keys: the device falls back cleanly.
# The counters are read from one status (written whole) that shows the
# connection after the cut carrying traffic both ways: connected, the
# second reading acknowledged by the hub, nothing left in the outbox.
settled() { cp "$T/agent0.status" "$T/settled.status" 2>/dev/null &&
    [ "$(jget connected <"$T/settled.status")" = True ] &&
    [ "$(jget acked <"$T/settled.status")" -ge 2 ] &&
    [ "$(jget outbox_queued <"$T/settled.status")" = 0 ]; }
check "the connection after the cut is in use" wait_for 20 settled
C=$(jget connects <"$T/settled.status"); F=$(jget tls_full <"$T/settled.status")
kill -9 "$(cat "$DATA/run/broker.pid")"
check "after a broker restart the agent reconnects" wait_for 60 connects_above "$C"
# The new broker cannot read the old ticket: the device makes a full
# handshake (a later reconnection may resume the new broker's ticket).
full_after_restart() { [ "$(astat 0 tls_full)" -gt "$F" ]; }
check "...with a full handshake (the old ticket is refused)" full_after_restart
check "...and stays connected" wait_for 10 stat_is 0 connected True
send 0 '{"i": 3}' >/dev/null
check "and its telemetry is stored" wait_for 20 stored_is "$D0" 3
expect_eq "in order, none twice" "1,2,3" "$(seqs "$D0")"
# --- an impostor with a certificate for the right address from another CA
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/imp.key" \
    -out "$T/imp.crt" -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" -days 2 2>/dev/null
python3 "$(dirname "$0")/tlsimpostor.py" "$T/imp.crt" "$T/imp.key" >"$T/imp.out" 2>>"$T/imp.log" &
PIDS+=("$!")
wait_for 10 test -s "$T/imp.out" || bad "the impostor starts"
IPORT=$(head -1 "$T/imp.out")
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_conf 0 "" "\"broker_host\": \"127.0.0.1\", \"broker_port\": $IPORT"
agent_start 0
check "the agent tries the impostor" wait_for 20 grep -q refused "$T/imp.out"
check "...refuses its certificate, with backoff" wait_for 20 bash -c "[ \$(grep -c refused '$T/imp.out') -ge 2 ]"
check "...and never goes past the handshake" fails grep -q accepted "$T/imp.out"
expect_eq "the agent never counts a connection to it" False "$(astat 0 connected)"
refused_ge() { [ "$(astat 0 refused)" -ge "$1" ] 2>/dev/null; }
check "the refusals are counted" wait_for 10 refused_ge 2
[ "$FAIL" -gt 0 ] && { cat "$T/agent0.status"; tail -20 "$T/agent0.log"; }
finish
