#!/usr/bin/env bash
# Integration: rules, alerts and their delivery (docs/alerts.md) with the
# real simulator, broker and plugin. A webhook receiver on loopback records
# what it gets (its first two answers are 500: deliveries are retried) and
# the test checks every HMAC signature. Normal traffic raises nothing; a
# device gone silent raises heartbeat_loss (resolved by the rules when it
# is back); publishing outside its topics raises unexpected_topic, counted
# on one alert, notified while tolerable and quarantined beyond the
# policy's tolerance; staff acknowledge and resolve, all audited.
. "$(dirname "$0")/lib.sh"

HB=2
# --- a mail sink (SMTP) and a syslog listener (UDP) on loopback, before the hub
cat >"$T/sinks.py" <<'PY'
import asyncore, smtpd, socket, sys, threading, warnings
warnings.simplefilter("ignore")
mails, syslog, portfile = sys.argv[1], sys.argv[2], sys.argv[3]
class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        with open(mails, "ab") as f:
            f.write(b"=== " + mailfrom.encode() + b" -> " + ",".join(rcpttos).encode() + b"\n" + data + b"\n")
sink = Sink(("127.0.0.1", 0), None, decode_data=False)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
def udp():
    while True:
        d, _ = u.recvfrom(4096)
        with open(syslog, "ab") as f: f.write(d + b"\n")
threading.Thread(target=udp, daemon=True).start()
open(portfile, "w").write("%d %d" % (sink.socket.getsockname()[1], u.getsockname()[1]))
asyncore.loop(timeout=0.2)
PY
python3 -W ignore "$T/sinks.py" "$T/mails" "$T/syslog" "$T/sinks.port" &
PIDS+=($!)
wait_for 10 test -s "$T/sinks.port"
read -r SMTP_PORT SYSLOG_PORT <"$T/sinks.port"
hub_start "$T/data" --heartbeat $HB --smtp "smtp://127.0.0.1:$SMTP_PORT" \
    --smtp-from mamori@hub.test --syslog "udp://127.0.0.1:$SYSLOG_PORT"
fleet_setup 3
claim alice 0; claim alice 1; claim alice 2
D0=$(dev_id 0); D1=$(dev_id 1); P1=$(dev_dir 1)

# --- the webhook receiver (its first two answers are 500)
hook_receiver "$T/hooks.jsonl" 2
HOOK=$HOOK_URL

check "an operator cannot add a webhook" fails as op webhook add "$HOOK"
check "a plain-http webhook off loopback is refused" fails as admin webhook add "http://example.com/x"
check "a non-http webhook is refused" fails as admin webhook add "ftp://127.0.0.1/x"
SECRET=$(as admin webhook add "$HOOK" | jget secret)
check "the administrator gets the webhook's secret once" grep -q '^whsec_[0-9a-f]\{64\}$' <<<"$SECRET"
check "...and it is never listed again" bash -c "! '$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' webhook list | grep -q whsec_"
check "an owner cannot read alerts" fails as alice alert list
MAIL_SECRET=$(as admin webhook add mailto:oncall@ops.test | jget secret)
check "mail to an operator's address (its own secret)" grep -q '^whsec_' <<<"$MAIL_SECRET"
check "an address with a header smuggled in is refused" fails as admin webhook add "$(printf 'mailto:a@b.test\r\nBcc: x@evil.test')"
check "...and one with a second @" fails as admin webhook add "mailto:a@b@c.test"

# --- normal traffic: nothing
"$BIN/mamori-sim" --identities "$T/fleet" --heartbeat $HB --status "$T/sim.json" >"$T/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
connected() { [ -f "$T/sim.json" ] && [ "$(jget connected <"$T/sim.json" 2>/dev/null)" = 3 ]; }
check "three devices online through the simulator" wait_for 20 connected
# three heartbeat intervals of normal traffic (the hub calls a device lost
# after 1.5 silent ones): four more heartbeats from each of the three
hb_sent() { jget heartbeats <"$T/sim.json" 2>/dev/null; }
hb_at_least() { [ "$(hb_sent)" -ge "$1" ] 2>/dev/null; }
HB0=$(hb_sent)
check "three heartbeat intervals of normal traffic" wait_for $((6 * HB + 10)) hb_at_least $((HB0 + 12))
n_alerts() { as admin alert list "$@" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["alerts"]))'; }
expect_eq "normal traffic raises no alert" 0 "$(n_alerts)"

# --- a clone: device 0's key in a second place. Under another client id it
# is refused (client_id_mismatch); under the device's own id, from another
# address, it takes the live session over (identity_clone)
resolve_rule() { # resolve_rule DEV RULE: resolves DEV's alert of RULE
    local id
    id=$(as admin alert list --device "$1" | python3 -c 'import json,sys
print(next((a["id"] for a in json.load(sys.stdin)["alerts"] if a["rule"]==sys.argv[1]), ""))' "$2")
    [ -n "$id" ] && as op alert resolve "$id" --reason "test clone" >/dev/null
}
check "a second session under another client id is refused" fails timeout 4 mosquitto_sub -h 127.0.0.1 \
    -p "$MQTT_PORT" --cafile "$CA" --cert "$(dev_dir 0)/device.crt" --key "$(dev_dir 0)/device.key" \
    -i "clone-of-device-0" -t "mamori/v1/d/$D0/cmd" -C 1
check "...and raises client_id_mismatch" wait_for 10 has_alert client_id_mismatch "$D0"
resolve_rule "$D0" client_id_mismatch
timeout 60 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$(dev_dir 0)/device.crt" \
    --key "$(dev_dir 0)/device.key" -i "$D0" -A 127.0.0.2 -t "mamori/v1/d/$D0/cmd" >/dev/null 2>&1 &
CLONE=$!; PIDS+=($CLONE)
check "the live session taken over from another address raises identity_clone" \
    wait_for 10 has_alert identity_clone "$D0"
kill "$CLONE" 2>/dev/null; wait "$CLONE" 2>/dev/null
check "the simulated device 0 is back online" wait_for 20 connected
resolve_rule "$D0" identity_clone
expect_eq "the other devices raised nothing" 0 "$(n_alerts --state open)"

# --- heartbeat loss: an alert per device, delivered (after two 500s), signed
kill $SIM; wait $SIM 2>/dev/null
check "every silent device gets a heartbeat_loss alert" wait_for 20 eval '[ "$(n_alerts --state open)" = 3 ]'
alert_of() { as admin alert list --device "$1" | python3 -c 'import json,sys
a=[x for x in json.load(sys.stdin)["alerts"] if x["rule"]==sys.argv[1]]
print(json.dumps(a[-1]) if a else "{}")' "$2"; }
A0=$(alert_of "$D0" heartbeat_loss)
expect_eq "...open, notify only: the device is not touched" "open  active" \
    "$(jget state <<<"$A0") $(jget action <<<"$A0") $(dev_state "$D0")"
opened() { grep -c '"code": 200' "$T/hooks.jsonl" 2>/dev/null | grep -qx '[3-9]'; }
check "the webhook receives the three alerts, retried after its two 500s" wait_for 30 opened
sigs_ok() { hooks_signed "$T/hooks.jsonl" "$SECRET"; }
check "every delivery carries a valid HMAC-SHA256 signature" sigs_ok
mails_ok() { python3 - "$T/mails" "$MAIL_SECRET" <<'PY'
import email, hmac, hashlib, re, sys
raw = open(sys.argv[1], "rb").read().split(b"=== ")[1:]
n = 0
for m in raw:
    head, _, data = m.partition(b"\n")
    if b"mamori@hub.test -> oncall@ops.test" not in head: sys.exit(1)
    msg = email.message_from_bytes(data)
    if "heartbeat_loss" not in msg["Subject"]: continue
    body = msg.get_payload().strip().splitlines()[-1]
    want = "sha256=" + hmac.new(sys.argv[2].encode(), (msg["X-Mamori-Timestamp"] + "." + body).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, msg["X-Mamori-Signature"]): sys.exit(2)
    n += 1
sys.exit(0 if n >= 3 else 3)
PY
}
check "the alerts are mailed too, signed the same way" wait_for 30 mails_ok
syslog_ok() { [ "$(grep -c '^<27>1 .* mamorid [0-9]* alert - alert.opened id=[0-9]* rule=heartbeat_loss device=MM' "$T/syslog" 2>/dev/null)" -ge 3 ]; }
check "...and logged to syslog (RFC 5424, daemon.err)" wait_for 10 syslog_ok
retried() { python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
failed={r["delivery"] for r in rows if r["code"]==500}
ok={r["delivery"] for r in rows if r["code"]==200}
sys.exit(0 if len(failed)>=1 and failed<=ok else 1)' "$T/hooks.jsonl"; }
check "each delivery answered 500 was tried again and accepted" retried
sed 's/heartbeat_loss/nothing_here/' "$T/hooks.jsonl" >"$T/forged.jsonl"
check "a forged payload fails the signature check" fails hooks_signed "$T/forged.jsonl" "$SECRET"

# heartbeats back: the rules resolve it
"$BIN/mamori-sim" --identities "$T/fleet" --heartbeat $HB --status "$T/sim.json" >>"$T/sim.log" 2>&1 &
SIM=$!; PIDS+=($SIM)
check "heartbeats back: the alerts are resolved by the rules" wait_for 20 eval '[ "$(n_alerts --state open)" = 0 ]'
expect_eq "...by 'rules'" rules "$(jget resolved_by <<<"$(alert_of "$D0" heartbeat_loss)")"
check "...and the resolution is delivered" wait_for 20 grep -q 'alert.resolved' "$T/hooks.jsonl"
kill $SIM; wait $SIM 2>/dev/null
check "the devices go offline again (a new alert each)" wait_for 20 eval '[ "$(n_alerts --state open)" = 3 ]'

# --- unexpected topic: notify while tolerable, quarantine beyond
check "an operator sets the response: quarantine once the alert counted 2" \
    as op rule set unexpected_topic --action quarantine --model sensor-v1 --count 2
check "an unknown action is refused" fails as op rule set unexpected_topic --action explode
check "an unknown rule is refused" fails as op rule set no_such_rule --action notify
wrong() { mqtt_pub "$P1" "mamori/v1/d/$D0/tm" '{"x":1}' >/dev/null 2>&1; }
wrong; wrong; wrong
check "three publishes outside its topics raise unexpected_topic" \
    wait_for 20 eval '[ "$(jget count <<<"$(alert_of "$D1" unexpected_topic)")" = 1 ]'
expect_eq "...tolerable: notified, the device keeps working" active "$(dev_state "$D1")"
wrong; wrong; wrong
check "three more count on the same alert (deduplicated)" \
    wait_for 20 eval '[ "$(jget count <<<"$(alert_of "$D1" unexpected_topic)")" = 2 ]'
check "beyond tolerance the policy quarantines the device" wait_for 20 eval '[ "$(dev_state "$D1")" = quarantined ]'
A1=$(alert_of "$D1" unexpected_topic)
expect_eq "the alert says what was done" quarantined "$(jget action <<<"$A1")"
check "the action is delivered" wait_for 20 grep -q 'alert.acted' "$T/hooks.jsonl"
expect_eq "one alert, not two" 1 "$(as admin alert list --device "$D1" | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin)["alerts"] if a["rule"]=="unexpected_topic"))')"

# --- the other rules, each from its own scenario
D2=$(dev_id 2); P2=$(dev_dir 2)
as op device revoke "$D0" --reason "lost in transit" >/dev/null
for _ in 1 2 3 4 5; do mqtt_pub "$(dev_dir 0)" "mamori/v1/d/$D0/hb" "$(env_msg 1)" >/dev/null 2>&1; done
check "five refused connections in a minute raise auth_failures" wait_for 10 has_alert auth_failures "$D0"
echo '{"fields": [{"name": "t", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
mqtt_pub "$P2" "mamori/v1/d/$D2/tm" "{\"v\":1,\"seq\":1,\"ts\":$(date +%s%3N),\"body\":{\"t\":900}}" >/dev/null 2>&1
check "a reading the schema refuses raises value_out_of_range" wait_for 10 has_alert value_out_of_range "$D2"
now=$(date +%s%3N)
printf '{"v":1,"seq":1,"ts":%s,"body":{"type":"x"}}\n{"v":1,"seq":1,"ts":%s,"body":{"type":"y"}}\n' "$now" "$((now + 1))" |
    timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$CA" --cert "$P1/device.crt" \
        --key "$P1/device.key" -i "$D1" -q 1 -t "mamori/v1/d/$D1/ev" -l >/dev/null 2>&1
check "an event replayed with its old sequence raises replayed_messages" wait_for 10 has_alert replayed_messages "$D1"
check "an operator makes floods intolerable: lock at once" as op rule set message_flood --action lock --count 1
seq 1 1000 | sed 's/.*/{"v":1,"seq":&,"ts":1,"body":{}}/' | timeout 20 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" \
    --cafile "$CA" --cert "$P2/device.crt" --key "$P2/device.key" -i "$D2" -q 0 -t "mamori/v1/d/$D2/hb" -l >/dev/null 2>&1
check "a flood raises message_flood" wait_for 10 has_alert message_flood "$D2"
check "...and the policy locks the device" wait_for 10 eval '[ "$(dev_state "$D2")" = locked ]'

# --- the lifecycle: open -> acknowledged -> resolved
ID1=$(jget id <<<"$A1")
check "an owner cannot acknowledge" fails as alice alert ack "$ID1"
check "an operator acknowledges" as op alert ack "$ID1" --reason "looking into it"
expect_eq "acknowledged, by op" "acknowledged op" "$(jget state <<<"$(alert_of "$D1" unexpected_topic)") $(jget acked_by <<<"$(alert_of "$D1" unexpected_topic)")"
check "acknowledging twice is refused" fails as op alert ack "$ID1"
check "the operator resolves it" as op alert resolve "$ID1" --reason "bad firmware build, reflashed"
check "resolving twice is refused" fails as op alert resolve "$ID1"
check "the steps are delivered" wait_for 20 eval 'grep -q alert.acknowledged "$T/hooks.jsonl" && grep -q "alert.resolved.*unexpected_topic" "$T/hooks.jsonl"'
audited() { local out; out=$(as admin audit list --limit 1000) || return 1
    for a in webhook_added rule_policy_set alert_acknowledged alert_resolved; do grep -q "\"$a\"" <<<"$out" || return 1; done
    python3 -c 'import json,sys
e=[x for x in json.loads(sys.argv[1])["entries"] if x["action"]=="device_quarantine"]
sys.exit(0 if e and e[-1]["actor"]=="hub:rules" and "unexpected_topic" in e[-1]["reason"] else 1)' "$out"; }
check "every change is audited, the quarantine with the rule as reason" audited

# --- a removed webhook gets nothing more
n_before=$(wc -l <"$T/hooks.jsonl")
check "the administrator removes the webhook" as admin webhook remove 1
check "...and the mail target" as admin webhook remove 2
# A webhook added now, with a receiver of its own, gets the next alert:
# once it has it, the delivery pass that would have sent the removed
# targets theirs is over (one thread sends, in the order queued).
rm -f "$T/receiver.port"
hook_receiver "$T/control.jsonl" 0
as admin webhook add "$HOOK_URL" >/dev/null
wrong; wrong; wrong
check "a webhook still registered gets the next alert" \
    wait_for 20 grep -qs 'alert.opened.*unexpected_topic' "$T/control.jsonl"
expect_eq "nothing more is delivered" "$n_before" "$(wc -l <"$T/hooks.jsonl")"

# --- --rules off (the measurement baseline): events are recorded, no alert
# is raised, and the hub says so in its reports
hub_stop
# ...and, on the way, data retention: rows older than the retention period
# (planted in the store while the hub is down) go at the next start
old=$(($(date +%s) - 400 * 86400))
hubsql "$DATA" "INSERT INTO events(ts,device_id,kind,severity,detail) VALUES($old,'$D1','planted_old','info','{}');
INSERT INTO telemetry(device_id,seq,ts,recv_at,digest,body) VALUES('$D1',999999,${old}000,${old}000,'planted','{}')"
n_events=$(hubsql "$DATA" "SELECT count(*) FROM events")
hub_start "$T/data" --heartbeat $HB --rules off --data-retention-days 365
planted() { hubsql "$DATA" "SELECT (SELECT count(*) FROM events WHERE kind='planted_old') + (SELECT count(*) FROM telemetry WHERE digest='planted')"; }
check "telemetry and events older than the retention period are removed" wait_for 20 eval '[ "$(planted)" = 0 ]'
check "...the rest stays" test "$(hubsql "$DATA" "SELECT count(*) FROM events")" -ge $((n_events - 1))
check "the hub runs with the rules off" wait_for 20 plugin_synced
check "...and warns of it" grep -q "alert rules are off" "$T/hub.log"
# the revoked device tries again: five refusals (auth_failures with the rules on)
fails0() { as admin events --device "$D0" --limit 1000 | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="broker_auth_fail"))'; }
n_fail=$(fails0)
n_alert=$(jget count <<<"$(alert_of "$D0" auth_failures)")
for _ in 1 2 3 4 5 6; do mqtt_pub "$(dev_dir 0)" "mamori/v1/d/$D0/hb" "$(env_msg 1)" >/dev/null 2>&1; done
check "the refused connections are recorded" wait_for 20 eval '[ "$(fails0)" -ge $((n_fail + 6)) ]'
# (the rules take each event in the step that records it: once the
# refusals are listed, whatever alert they raise is listed too)
expect_eq "...but count on no alert" "$n_alert" "$(jget count <<<"$(alert_of "$D0" auth_failures)")"
check "the fleet audit lists the rules being off" bash -c "'$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' report audit | python3 -c 'import json,sys
c=[x for x in json.load(sys.stdin)[\"checks\"] if x[\"id\"]==\"alert_rules_off\"]
sys.exit(0 if c and c[0][\"status\"]==\"finding\" else 1)'"
check "the live matrix says the offline alert is off" bash -c "'$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' report matrix | grep -q 'offline alert OFF'"
check "audit chain intact" as admin audit verify
finish
