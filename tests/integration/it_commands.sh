#!/usr/bin/env bash
# Integration: signed remote commands end to end (hub -> broker -> agent).
# lock (persists across an agent restart), unlock, quarantine, release,
# self-test, safe reboot and wipe (no key material left), each with its
# result at the hub; every captured command replayed is refused and changes
# nothing; forged, foreign-signed, expired and misaddressed commands are
# refused.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 2
claim alice 0; claim alice 1
D0=$(dev_id 0); D1=$(dev_id 1); P0=$(dev_dir 0); P1=$(dev_dir 1)
cat >"$T/schema.json" <<'J'
{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}
J
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
printf '#!/bin/sh\ntouch %s/rebooted\n' "$T" >"$T/reboot.sh"; chmod 755 "$T/reboot.sh"
agent_conf 0 "" "\"reboot_command\": \"$T/reboot.sh\""
agent_conf 1
agent_start 0; A0=$AGENT_PID
agent_start 1; A1=$AGENT_PID
wait_for 20 stat_is 0 connected True && wait_for 20 stat_is 1 connected True || bad "agents connect"

# Everything the hub sends device 0 is captured (as a compromised broker
# could), to be played back later.
capture_cmds 0 "$T/captured" || bad "the capture subscribes"
cmd_status() { as admin device commands "$1" | jget "commands.0.status"; }   # newest command
cmd_is() { [ "$(cmd_status "$1")" = "$2" ]; }

# --- lock: the owner locks, the device stops, and stays stopped
check "telemetry flows before the lock" send 0 '{"temp_c": 20}'
as alice device lock "$D0" --reason "reported stolen" >/dev/null
check "lock command reaches the device and is applied" wait_for 15 stat_is 0 locked True
check "the device reports the result to the hub" wait_for 15 cmd_is "$D0" ok
check "a locked device refuses to work" fails send 0 '{"temp_c": 21}'
kill "$A0"; wait "$A0" 2>/dev/null
agent_start 0; A0=$AGENT_PID
check "the restarted agent connects" wait_for 20 stat_is 0 connected True
check "lock persists across an agent restart" stat_is 0 locked True
check "and it still refuses to work" fails send 0 '{"temp_c": 22}'
mqtt_pub "$P0" "mamori/v1/d/$D0/tm" "$(env_msg 900)" >/dev/null 2>&1
check "the broker gives a locked device no telemetry" wait_for 10 has_event broker_acl_deny "$D0"
as alice device unlock "$D0" --reason "found it" >/dev/null
check "unlock reaches the device" wait_for 15 stat_is 0 locked False
check "the unlocked device works again" send 0 '{"temp_c": 23}'

# --- quarantine keeps only the management channel
as op device quarantine "$D0" --reason "odd traffic" >/dev/null
check "quarantine applied on the device" wait_for 15 stat_is 0 quarantined True
check "quarantined: telemetry refused on the device" fails send 0 '{"temp_c": 24}'
check "quarantined: events (management) still go out" send 0 --event '{"type":"note"}'
as op device release "$D0" --reason "cleared" >/dev/null
check "release applied" wait_for 15 stat_is 0 quarantined False

# --- self-test with its findings
as alice device cmd "$D0" self-test --reason "check" >/dev/null
check "self-test result at the hub" wait_for 15 cmd_is "$D0" ok
expect_eq "self-test found the key private" True "$(as admin device commands "$D0" | jget commands.0.result.detail.key_private)"
check "owners may not reboot devices" fails as alice device cmd "$D0" reboot --reason x
check "another owner cannot command it" fails as bob device cmd "$D0" self-test --reason x
check "unknown command: refused by the hub" fails as op device cmd "$D0" format-disk --reason x

# --- replay of every captured command: refused, nothing changes
grep '^{.*"cmd"' "$T/captured" >"$T/replay"   # a snapshot: the capture also sees the replays
n_captured=$(wc -l <"$T/replay")
# (a command may be there twice: the hub sends a pending one again when the
# device reconnects, and the first copy can reach it just as it does)
check "the capture holds the five commands sent so far ($n_captured copies)" test "$(captured_ids "$T/replay")" -eq 5
refused0=$(astat 0 commands_refused)
replay_cmds "$D0" "$T/replay"
check "every replayed command is refused" wait_for 15 stat_is 0 commands_refused $((refused0 + n_captured))
check "replaying the old lock left the device unlocked" stat_is 0 locked False
check "replaying the old quarantine left it released" stat_is 0 quarantined False
check "the device reports the replays to the hub" wait_for 15 has_event device_event "$D0" command_replayed
check "...which raises the command_replayed alert" wait_for 10 has_alert command_replayed "$D0"

# --- forged and foreign commands
LOCK_MSG=$(grep '"type\\":\\"lock' "$T/replay" | head -1)
forged=$(python3 -c 'import json,sys,secrets
m=json.loads(sys.argv[1]); c=json.loads(m["cmd"])
c["id"]=secrets.token_hex(16); m["cmd"]=json.dumps(c,separators=(",",":"))
print(json.dumps(m))' "$LOCK_MSG")
r0=$(astat 0 commands_refused)
as_hub "$D0" "$forged" >/dev/null 2>&1
check "an altered command (new id, old signature) is refused" wait_for 10 stat_is 0 commands_refused $((r0 + 1))
python3 - "$D0" "$P1" >"$T/foreign" <<'PY'
import json, sys, subprocess, base64, secrets, time
dev, p1 = sys.argv[1], sys.argv[2]
now = int(time.time() * 1000)
cmd = json.dumps({"id": secrets.token_hex(16), "device": dev, "type": "lock", "iat": now,
                  "exp": now + 60000, "args": {}}, separators=(",", ":"))
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", p1 + "/device.key"],
                     input=cmd.encode(), capture_output=True, check=True).stdout
print(json.dumps({"v": 1, "cmd": cmd, "sig": base64.b64encode(sig).decode(),
                  "chain": open(p1 + "/device.crt").read()}))
PY
as_hub "$D0" "$(cat "$T/foreign")" >/dev/null 2>&1
check "a command signed by another platform certificate is refused" wait_for 10 stat_is 0 commands_refused $((r0 + 2))
check "and the device is still not locked" stat_is 0 locked False
r1=$(astat 1 commands_refused)
as_hub "$D1" "$LOCK_MSG" >/dev/null 2>&1
check "misaddressed: device 1 refuses device 0's lock" wait_for 10 stat_is 1 commands_refused $((r1 + 1))
check "and device 1 is not locked" stat_is 1 locked False
# expired: issued with a 10 s life while the device is away, played after
kill "$A0"; wait "$A0" 2>/dev/null
as op device cmd "$D0" self-test --reason "short-lived" --ttl 10 >/dev/null
CID=$(as admin device commands "$D0" | jget commands.0.id)
EXP=$(as admin device commands "$D0" | jget commands.0.expires_at)
check "the short-lived command is captured" wait_for 10 grep -q "$CID" "$T/captured"
EXPIRING=$(grep "$CID" "$T/captured" | tail -1)
# the device comes back only once the command's life is over (before, the
# hub would send it again and the device would run it)
check "the short-lived command expires" wait_for 30 clock_past "$EXP"
agent_start 0; A0=$AGENT_PID
check "the agent is back" wait_for 20 stat_is 0 connected True
r0=$(astat 0 commands_refused)
as_hub "$D0" "$EXPIRING" >/dev/null 2>&1
check "an expired command is refused" wait_for 10 stat_is 0 commands_refused $((r0 + 1))
expired_at_hub() { [ "$(as admin device commands "$D0" | jget commands.0.result.error)" = expired ]; }
check "...as expired (the device's answer, at the hub)" wait_for 10 expired_at_hub

# --- a lock issued while the device is offline reaches it when it returns
kill "$A1"; wait "$A1" 2>/dev/null
as alice device lock "$D1" --reason "lost" >/dev/null
agent_start 1; A1=$AGENT_PID
check "a lock sent while offline is delivered on reconnect" wait_for 20 stat_is 1 locked True

# --- a copy the hub sent again, refused by a device that had run the first,
# is expected: no alert; one refusal more than the copies sent is a replay
kill "$A1"; wait "$A1" 2>/dev/null
as op device cmd "$D1" self-test --reason "redelivery" >/dev/null
SID=$(as admin device commands "$D1" | jget commands.0.id)
agent_start 1; A1=$AGENT_PID
check "the pending self-test goes again on reconnect and runs" wait_for 20 cmd_is "$D1" ok
send 1 --event "{\"type\":\"command_replayed\",\"reason\":\"$SID\"}" >/dev/null
check "the refusal of the copy sent again is recorded as a redelivery" \
    wait_for 10 has_event command_redelivered "$D1" "$SID"
check "...and raises no command_replayed alert" fails has_alert command_replayed "$D1"
send 1 --event "{\"type\":\"command_replayed\",\"reason\":\"$SID\"}" >/dev/null
check "a refusal beyond the copies sent raises command_replayed" \
    wait_for 10 has_alert command_replayed "$D1"

# --- safe reboot
as op device cmd "$D0" reboot --reason "maintenance" >/dev/null
check "reboot: the board's reboot command ran" wait_for 15 test -e "$T/rebooted"
check "reboot: result reported before going down" wait_for 10 cmd_is "$D0" ok
check "reboot: the agent stopped cleanly" wait_for 10 bash -c "! kill -0 $A0 2>/dev/null"
agent_start 0; A0=$AGENT_PID
check "the agent is up again after the reboot" wait_for 20 stat_is 0 connected True
rm -f "$T/rebooted"
REBOOT_MSG=$(grep '"type\\":\\"reboot' "$T/captured" | tail -1)
RID=$(as admin device commands "$D0" | jget commands.0.id)   # the reboot
r0=$(astat 0 commands_refused)
as_hub "$D0" "$REBOOT_MSG" >/dev/null 2>&1
check "a replayed reboot is refused" wait_for 10 stat_is 0 commands_refused $((r0 + 1))
# the device reports a replay once it has refused it: with the report at
# the hub, the command has been handled
check "...the device reports it" wait_for 10 has_event device_event "$D0" "$RID"
check "...and the board is not rebooted again" bash -c "kill -0 $A0 && test ! -e '$T/rebooted'"

# --- wipe: crypto-erase, nothing of the key remains
KEYHEX=$(openssl ec -in "$P0/device.key" -text -noout 2>/dev/null | awk '/priv:/{f=1;next} /pub:/{f=0} f' | tr -d ' :\n')
check "the test can read the key's secret scalar" test ${#KEYHEX} -ge 64
as alice device cmd "$D0" wipe --reason "disposal" >/dev/null
check "wipe: the agent erases and stops" wait_for 15 bash -c "! kill -0 $A0 2>/dev/null"
check "wipe: result reported to the hub" wait_for 10 cmd_is "$D0" ok
check "wipe: no private key file left" test ! -e "$P0/device.key"
check "wipe: no outbox or state left" test ! -e "$T/state0/outbox.db" -a ! -e "$T/state0/state.db"
check "wipe: no PEM private key anywhere in identity or state" fails grep -rqa "PRIVATE KEY" "$P0" "$T/state0"
check "wipe: the key's secret bytes appear in no file" python3 - "$KEYHEX" "$P0" "$T/state0" <<'PY'
import os, sys
k = bytes.fromhex(sys.argv[1][-64:])
for d in sys.argv[2:]:
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p) and k in open(p, "rb").read():
                sys.exit(1)
PY
"$BIN/mamori-agent" --config "$T/agent0.json" >/dev/null 2>&1 && bad "a wiped device cannot start again" || ok "a wiped device cannot start again"

[ "$FAIL" -gt 0 ] && tail -n 20 "$T"/agent*.log
finish
