# tests/integration/lib.sh - shared helpers for the integration tests.
#
# Every test starts its own mamorid (which starts the real mosquitto with
# the real plugin) on loopback with ephemeral ports, in its own temporary
# directory, and removes everything when it exits (a failing test's
# directory is copied under $KEEP_T first, when that is set). Results are
# printed TAP style, then one closing line "N passed, N failed".
set -uo pipefail

BIN=${MAMORI_BIN:?MAMORI_BIN must point at build/bin}
T=$(mktemp -d /tmp/mamori-it.XXXXXX)
PASS=0
FAIL=0
PIDS=()
HUB_PID=""
export MAMORI_PASSWORD="" # never inherited from the caller

# MAMORI_IT_STORE=postgresql: each data directory's registry is a
# PostgreSQL database of its own (scripts/pg.sh, in $T), kept across the
# hub's restarts on that directory; else SQLite in the data directory.
IT_STORE=${MAMORI_IT_STORE:-sqlite}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

cleanup() {
    [ -n "${ON_CLEANUP:-}" ] && eval "$ON_CLEANUP" # what a test started outside PIDS
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null
    wait 2>/dev/null
    for d in "$T"/pg-*; do [ -d "$d" ] && "$ROOT_DIR/scripts/pg.sh" stop "$d" >/dev/null 2>&1; done
    [ -n "${KEEP_T:-}" ] && [ "$FAIL" -ne 0 ] && cp -r "$T" "$KEEP_T/$(basename "$T")"
    rm -rf "$T"
}
trap cleanup EXIT

ok()  { PASS=$((PASS + 1)); echo "ok - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() { local d=$1; shift; if "$@" >/dev/null; then ok "$d"; else bad "$d"; fi; }
# fails COMMAND...: succeeds when the command fails (its output is dropped)
fails() { ! "$@" >/dev/null 2>&1; }
# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected '$2', got '$3')"; fi; }
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}

# broker_alive: the broker process of this hub still exists
broker_alive() { local p; p=$(cat "$DATA/run/broker.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }
jget() { python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[int(k)] if isinstance(d, list) else d.get(k)
print("" if d is None else (json.dumps(d) if isinstance(d,(dict,list)) else d))' "$1"; }

# plugin_synced: the broker's plugin has confirmed the hub's registry snapshot
plugin_synced() { [ "$(curl -s --cacert "$CA" "$API/api/v1/health" | jget plugin_synced 2>/dev/null)" = "True" ]; }
# hub_start DATA [mamorid options...]: starts the hub, waits until the
# broker plugin is synchronised; sets API, MQTT_PORT, CA, HUB_PID.
# pg_dir DATA: where DATA's PostgreSQL server lives (MAMORI_IT_STORE=postgresql)
pg_dir() { echo "$T/pg-$(printf %s "$1" | sha256sum | cut -c1-12)"; }
# store_for DATA: the --store option for DATA's registry (none: SQLite in
# DATA), starting its PostgreSQL server on first use.
store_for() {
    [ "$IT_STORE" = postgresql ] || return 0
    local d
    d=$(pg_dir "$1")
    if [ ! -f "$d/store.url" ]; then
        chmod 711 "$T" # the server's own user reaches its directory, lists nothing
        "$ROOT_DIR/scripts/pg.sh" start "$d" >/dev/null || { cat "$d"/*.log >&2; return 1; }
    fi
    echo "--store=$(cat "$d/store.url")"
}
# hubsql DATA SQL: the first column of each row of a query on DATA's
# registry, whichever engine holds it
hubsql() {
    if [ "$IT_STORE" = postgresql ]; then
        "$ROOT_DIR/scripts/pg.sh" psql "$(pg_dir "$1")" -qAt -v ON_ERROR_STOP=1 -c "$2"
    else
        sqlite3 -cmd ".timeout 30000" "$1/mamori.db" "$2"
    fi
}
hub_start() {
    DATA=$1; shift
    local plugin=() store sync=${HUB_WAIT_SYNC:-1}
    [ -n "${MAMORI_PLUGIN:-}" ] && plugin=(--plugin "$MAMORI_PLUGIN")
    store=$(store_for "$DATA") || return 1
    "$BIN/mamorid" --data "$DATA" ${store:+"$store"} "${plugin[@]}" "$@" >>"$T/hub.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 1 200); do
        if [ -f "$DATA/run/endpoints.json" ]; then
            API=$(jget api <"$DATA/run/endpoints.json")
            MQTT_PORT=$(jget mqtt_port <"$DATA/run/endpoints.json")
            CA=$DATA/pki/root.crt
            if [ "$sync" = 0 ] || plugin_synced; then
                return 0
            fi
        fi
        sleep 0.1
    done
    echo "hub did not start; log:"; cat "$T/hub.log"; return 1
}

# free_port: a port free on 127.0.0.1 now, outside the kernel's range for
# source ports (one from there may be handed to an outgoing connection
# before our listener binds it)
free_port() { python3 "$ROOT_DIR/scripts/free_port.py"; }
# node_start DIR: runs the broker node of DIR (mamorid broker); NODE_PID
node_start() {
    local plugin=()
    [ -n "${MAMORI_PLUGIN:-}" ] && plugin=(--plugin "$MAMORI_PLUGIN")
    "$BIN/mamorid" broker --data "$1" "${plugin[@]}" >>"$T/node-$(basename "$1").log" 2>&1 &
    NODE_PID=$!; PIDS+=("$NODE_PID")
}
# node_broker DIR: the pid of the mosquitto a broker node runs
node_broker() { cat "$1/run/broker.pid" 2>/dev/null; }

hub_stop() {
    [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
    local rc=$?
    HUB_PID=""
    rm -f "$DATA/run/endpoints.json"
    return $rc
}

# as WHO mamorictl-args...: runs mamorictl with WHO's session file.
as() { local who=$1; shift; "$BIN/mamorictl" --data "$DATA" --session "$T/session-$who" "$@"; }

# http METHOD PATH [BODY] [TOKEN]: prints the status code; body in $T/body.
http() {
    local auth=()
    [ -n "${4:-}" ] && auth=(-H "Authorization: Bearer $4")
    curl -s -o "$T/body" -w '%{http_code}' --cacert "$CA" -X "$1" "${auth[@]}" \
        -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$API/api/v1/$2"
}
token_of() { cat "$T/session-$1"; }

# escalate_throttle MIN_S METHOD PATH BODY [TOKEN]: repeats a failing request,
# waiting out each throttle window so that every failure counts, until the
# answer is a 429 with Retry-After >= MIN_S (at most 8 tries). Throttle
# windows double (1, 2, 4 s...), so the checks that follow do not race the
# clock however slow the machine or sanitizer build. Leaves the headers of
# the last answer in $T/hdr and its Retry-After in $RETRY_AFTER. With
# THROTTLE_FROM=ADDR the requests leave from that loopback address.
escalate_throttle() {
    local min=$1 method=$2 path=$3 body=$4 tok=${5:-}
    RETRY_AFTER=0
    for _ in 1 2 3 4 5 6 7 8; do
        curl -s -D "$T/hdr" -o /dev/null --cacert "$CA" ${THROTTLE_FROM:+--interface "$THROTTLE_FROM"} \
            -X "$method" ${tok:+-H "Authorization: Bearer $tok"} \
            -H 'Content-Type: application/json' --data-binary "$body" "$API/api/v1/$path"
        if grep -q "^HTTP/1.1 429" "$T/hdr"; then
            RETRY_AFTER=$(grep -i '^retry-after:' "$T/hdr" | tr -dc 0-9)
            [ "${RETRY_AFTER:-0}" -ge "$min" ] && return 0
            wait_for $(( ${RETRY_AFTER:-1} + 10 )) clock_past $(( $(date +%s%3N) + ${RETRY_AFTER:-1} * 1000 + 500 ))
        fi
    done
    return 1
}

ADMIN_PW="admin passphrase 0001"
OWNER_PW="owner passphrase 0001"

# fleet_setup N: admin bootstrapped and logged in, operator "op", owners
# "alice" and "bob", N identities of model sensor-v1 in $T/fleet.
fleet_setup() {
    if [ -e "$DATA/bootstrap-token" ]; then
        MAMORI_PASSWORD=$ADMIN_PW as admin bootstrap --user admin >/dev/null || return 1
    fi
    MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null || return 1
    for u in alice bob; do
        MAMORI_NEW_PASSWORD=$OWNER_PW as admin user add $u --role owner >/dev/null || return 1
        MAMORI_PASSWORD=$OWNER_PW as $u login --user $u >/dev/null || return 1
    done
    MAMORI_NEW_PASSWORD=$OWNER_PW as admin user add op --role operator >/dev/null || return 1
    MAMORI_PASSWORD=$OWNER_PW as op login --user op >/dev/null || return 1
    [ "${1:-0}" -gt 0 ] && { as op factory batch --model sensor-v1 --count "$1" --out "$T/fleet" >/dev/null || return 1; }
    return 0
}
dev_dir() { printf '%s/fleet/dev-%05d' "$T" "$1"; }
dev_id() { jget device_id <"$(dev_dir "$1")/device.json"; }
claim() { as "$1" claim "$(cat "$(dev_dir "$2")/claim-code")" >/dev/null; }
dev_state() { as admin device show "$1" | jget state; }

# update_device_setup: a hub; device 0 (D0, its identity in P0) claimed by
# alice, with a telemetry schema; the update roots ($T/root-1.json handed
# to the device as the factory does); $T/reboot.sh, which leaves
# $T/rebooted where a board would reboot
update_device_setup() {
    hub_start "$T/data" || return 1
    fleet_setup 1 && claim alice 0 || return 1
    D0=$(dev_id 0); P0=$(dev_dir 0)
    echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 9}]}' >"$T/schema.json"
    as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
    update_root_setup
    cp "$T/root-1.json" "$P0/update-root.json"
    printf '#!/bin/sh\ntouch %s/rebooted\n' "$T" >"$T/reboot.sh"
    chmod 755 "$T/reboot.sh"
}

# mqtt_pub IDENTITY_DIR TOPIC MESSAGE [extra mosquitto_pub args]: as that
# device, under its own id as client id (the broker refuses any other one;
# a session of the device open elsewhere is taken over, as on a reconnection).
# The id is device.json's, or the certificate's common name without it.
mqtt_pub() {
    local d=$1 t=$2 m=$3 id; shift 3
    id=$(jget device_id 2>/dev/null <"$d/device.json") ||
        id=$(openssl x509 -in "$d/device.crt" -noout -subject -nameopt multiline | awk '/commonName/ {print $3}')
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$d/device.crt" \
        --key "$d/device.key" -i "$id" -q 1 -t "$t" -m "$m" "$@"
}
env_msg() { printf '{"v":1,"seq":%d,"ts":%d,"body":{}}' "$1" "$(date +%s%3N)"; }
events_json() { as admin events --limit 1000; }
has_event() { events_json | python3 -c 'import json,sys
ev=json.load(sys.stdin)["events"]
k,dev,sub=sys.argv[1],sys.argv[2],sys.argv[3]
sys.exit(0 if any(e["kind"]==k and (not dev or e.get("device_id")==dev) and sub in json.dumps(e["detail"]) for e in ev) else 1)' "$1" "${2:-}" "${3:-}"; }
# acl_denies DEV: how many publishes of DEV the broker plugin refused (events)
acl_denies() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="broker_acl_deny" and e.get("device_id")==sys.argv[1]))' "$1"; }
acl_denies_above() { [ "$(acl_denies "$1")" -gt "$2" ]; }
# as_hub DEV MSG: publishes MSG on DEV's command topic as the hub's own MQTT
# identity (what only a compromised hub or broker could do; a client id of
# the hub's other than its session's, which stays up)
as_hub() { timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" \
    --cert "$DATA/pki/hub-client.crt" --key "$DATA/pki/hub-client.key" -i mamori-hub-test -q 1 \
    -t "mamori/v1/d/$1/cmd" -m "$2"; }
# capture_cmds N FILE: records, in the background, everything the hub sends
# to device N (with the hub's certificate, as a compromised broker could;
# the device keeps its own session)
# (returns once the subscription is in place; -d adds debug lines, which
# replay_cmds skips; stdout is a file, line-buffered so that the SUBACK
# line is there when it happens, not with the first message)
capture_cmds() { timeout 600 stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" \
    --cert "$DATA/pki/hub-client.crt" --key "$DATA/pki/hub-client.key" -i "mamori-hub-capture-$1" \
    -t "mamori/v1/d/$(dev_id "$1")/cmd" >"$2" 2>/dev/null &
    PIDS+=($!)
    wait_for 10 grep -qs SUBACK "$2"; }
# replay_cmds DEV FILE: sends every captured command in FILE to DEV again
replay_cmds() { local line; while IFS= read -r line; do as_hub "$1" "$line" >/dev/null 2>&1; done < <(grep '^{.*"cmd"' "$2"); }
# captured_ids FILE: how many distinct commands the captured lines in FILE
# hold (the hub may have sent one of them twice: docs/protocol.md)
captured_ids() { grep -o 'id\\":\\"[0-9a-f]*' "$1" | sort -u | wc -l; }
# --- signed updates (docs/updates.md). R: the offline release tools in $T.
R() { (cd "$T" && "$BIN/mamorictl" release "$@" >/dev/null); }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
# update_root_setup: keys root1 and rel1, root version 1 signed and given to
# the hub (an administrator), in $T/root-1.json for devices' identities.
update_root_setup() {
    R keygen --out root1 && R keygen --out rel1 &&
        R root --version 1 --root-keys root1.pub --root-threshold 1 --release-keys rel1.pub \
            --release-threshold 1 --out root-1.json &&
        R sign --file root-1.json --key root1.key &&
        as admin firmware root add --file "$T/root-1.json" >/dev/null
}
# publish VERSION SECURITY_VERSION FLOOR SIZE: a random image $T/fw-VERSION.img
# for sensor-v1, signed by rel1, in the hub's repository with its image.
publish() {
    head -c "$4" /dev/urandom >"$T/fw-$1.img" &&
        R manifest --model sensor-v1 --fw-version "$1" --security-version "$2" --floor "$3" \
            --image "fw-$1.img" --out "rel-$1.json" &&
        R sign --file "rel-$1.json" --key rel1.key &&
        as op firmware add --file "$T/rel-$1.json" --image "$T/fw-$1.img" >/dev/null
}

# has_alert RULE DEVICE: a live or past alert of RULE for DEVICE ("" : fleet)
has_alert() { as admin alert list --limit 1000 | python3 -c 'import json,sys
sys.exit(0 if any(a["rule"]==sys.argv[1] and a["device_id"]==sys.argv[2] for a in json.load(sys.stdin)["alerts"]) else 1)' "$1" "$2"; }
# hook_receiver OUT NFAIL: an HTTP receiver on 127.0.0.1 (ephemeral port)
# recording each POST (code, signature headers, body) as a JSON line in
# OUT; its first NFAIL answers are 500. Sets HOOK_URL.
hook_receiver() {
    cat >"$T/receiver.py" <<'PY'
import http.server, json, sys
out, portfile, nfail = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        state["n"] += 1
        code = 500 if state["n"] <= nfail else 200
        with open(out, "a") as f:
            f.write(json.dumps({"code": code, "sig": self.headers.get("X-Mamori-Signature"),
                                "ts": self.headers.get("X-Mamori-Timestamp"),
                                "delivery": self.headers.get("X-Mamori-Delivery"),
                                "body": body.decode()}) + "\n")
        self.send_response(code); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_port))
s.serve_forever()
PY
    python3 "$T/receiver.py" "$1" "$T/receiver.port" "$2" &
    PIDS+=($!)
    wait_for 10 test -s "$T/receiver.port" || return 1
    HOOK_URL="http://127.0.0.1:$(cat "$T/receiver.port")/mamori"
}
# hooks_signed OUT SECRET: every line of OUT carries a valid signature
hooks_signed() { python3 - "$1" "$2" <<'PY'
import hmac, hashlib, json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    want = "sha256=" + hmac.new(sys.argv[2].encode(), (r["ts"] + "." + r["body"]).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, r["sig"] or ""):
        sys.exit(1)
    n += 1
sys.exit(0 if n else 1)
PY
}

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds
# or SECONDS of wall-clock time have passed (however slow each try is on a
# loaded machine: the deadline is the clock's, not a count of tries).
wait_for() {
    local end=$(( ${EPOCHREALTIME/./} + $1 * 1000000 )); shift
    while :; do
        "$@" && return 0
        [ "${EPOCHREALTIME/./}" -ge "$end" ] && return 1
        sleep 0.1
    done
}
# clock_past MS: the wall clock is past MS (milliseconds since the epoch),
# e.g. the expires_at of a command: what a wait for an expiry waits on
clock_past() { [ "$(date +%s%3N)" -gt "$1" ]; }

# --- mamori-agent helpers. Agent N runs identity N of the fleet with its
# state in $T/stateN, config $T/agentN.json, status $T/agentN.status.
# agent_conf N [outbox_max] [extra JSON members]
agent_conf() {
    cat >"$T/agent$1.json" <<J
{"identity_dir": "$(dev_dir "$1")", "state_dir": "$T/state$1", "schema_file": "$T/schema.json",
 "heartbeat_s": 2 ${2:+, \"outbox_max\": $2} ${3:+, $3}}
J
}
AGENT_PID=""
agent_start() { # agent_start N: starts it, waits for its local socket
    rm -f "$T/agent$1.status"
    "$BIN/mamori-agent" --config "$T/agent$1.json" --status "$T/agent$1.status" >>"$T/agent$1.log" 2>&1 &
    AGENT_PID=$!; PIDS+=("$AGENT_PID")
    wait_for 20 test -S "$T/state$1/agent.sock"
}
astat() { jget "$2" <"$T/agent$1.status" 2>/dev/null; }   # astat N KEY
stat_is() { [ "$(astat "$1" "$2")" = "$3" ]; }             # stat_is N KEY VALUE
health_is() { [ "$(curl -s --cacert "$CA" "$API/api/v1/health" | jget "$1")" = "$2" ]; }
health_of() { curl -s --cacert "$CA" "$API/api/v1/health" | jget "$1"; }  # health_of KEY
# mamori-sim's status file, $T/sim.json by convention: simget KEY,
# sim_at_least KEY N, sim_is KEY VALUE
simget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/sim.json" "$1" 2>/dev/null; }
sim_at_least() { [ "$(simget "$1")" -ge "$2" ] 2>/dev/null; }
sim_is() { [ "$(simget "$1")" = "$2" ]; }
send() { "$BIN/mamori-agent" send --socket "$T/state$1/agent.sock" "${@:2}"; }  # send N JSON
stored() { as admin device telemetry "$1" --limit 1000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'; }
stored_is() { [ "$(stored "$1")" = "$2" ]; }
seqs() { as admin device telemetry "$1" --limit 1000 | python3 -c 'import json,sys; print(",".join(str(i["seq"]) for i in json.load(sys.stdin)["items"]))'; }
