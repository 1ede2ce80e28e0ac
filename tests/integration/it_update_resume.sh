#!/usr/bin/env bash
# Integration: an update cut by a power loss resumes by itself (docs/updates.md,
# "after a power loss"). The agent downloads at a limited rate
# (update_rate_kbps) so that it can be killed (-9, as a power loss would stop
# it) at a chosen byte of the image: early, in the middle, near the end, and
# once every byte is on disk but before the install. Started again, with no
# operator, it takes the command up from its own state, hashes the bytes on
# disk again, asks the hub for the rest only (the agent logs where each image
# request begins), installs, and the command ends "ok" at the hub. The hub's
# sending the command again meanwhile is no replay; a finished command played
# again still is. A partial image altered on disk is dropped and fetched again
# from byte 0: never installed.
. "$(dirname "$0")/lib.sh"

update_device_setup
SIZE=$((3 * 1024 * 1024)) # 3 MiB at 512 KiB/s: about 6 s per whole download
agent_conf 0 "" "\"reboot_command\": \"$T/reboot.sh\", \"update_slots_dir\": \"$T/slots0\", \"update_trial_s\": 30, \"update_rate_kbps\": 512"
agent_start 0
check "the agent connects" wait_for 20 stat_is 0 connected True
capture_cmds 0 "$T/captured"

stopped() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
boot() { rm -f "$T/rebooted"; agent_start 0; }
power_loss() { kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; }
cmd_status() { as admin device commands "$D0" | python3 -c 'import json,sys
print(next((c["status"] for c in json.load(sys.stdin)["commands"] if c["id"]==sys.argv[1]), ""))' "$1"; }
target() { [ "$(cat "$T/slots0/booted")" = a ] && echo b || echo a; }  # the inactive slot
part_size() { stat -c %s "$T/slots0/$1/image.part" 2>/dev/null || echo 0; }
part_ge() { [ "$(part_size "$1")" -ge "$2" ]; }
# where each image request for SHA began (the agent's log), in order
starts() { grep -o "update $1: image from byte [0-9]*" "$T/agent0.log" | awk '{print $6}' | xargs; }
replays() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and e.get("device_id")==sys.argv[1] and "command_replayed" in json.dumps(e["detail"])))' "$D0"; }

# cut_at VERSION SECURITY_VERSION BYTES [whole|alter]: deploys VERSION, kills
# the agent once BYTES of the image are on disk, starts it again.
# whole: the rest of the image is put on disk before the restart (every
# byte arrived, the install had not run); alter: a byte of the partial
# image is changed before the restart.
cut_at() {
    local v=$1 sv=$2 at=$3 how=${4:-} slot sha cid p
    publish "$v" "$sv" 1 "$SIZE"
    sha=$(sha_of "$T/fw-$v.img"); slot=$(target)
    cid=$(as op firmware deploy "$sha" --device "$D0" --reason "$v" | jget command)
    if ! wait_for 60 part_ge "$slot" "$at"; then
        bad "$v: the download reached byte $at"; CID=""; tail -20 "$T/agent0.log"; return
    fi
    power_loss
    p=$(part_size "$slot")
    check "$v: cut off mid-download ($p of $SIZE bytes on disk)" test "$p" -lt "$SIZE"
    check "$v: ...the bytes on disk are the image's" cmp -n "$p" "$T/slots0/$slot/image.part" "$T/fw-$v.img"
    expect_eq "$v: the command is still pending at the hub" pending "$(cmd_status "$cid")"
    if [ "$how" = whole ]; then
        tail -c +$((p + 1)) "$T/fw-$v.img" >>"$T/slots0/$slot/image.part"
        p=$SIZE
    elif [ "$how" = alter ]; then
        python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' \
            "$T/slots0/$slot/image.part" $((p / 2))
        check "$v: (a byte of the partial image changed on disk)" \
            fails cmp -n "$p" "$T/slots0/$slot/image.part" "$T/fw-$v.img"
    fi
    boot
    check "$v: after the restart the update completes on its own" wait_for 60 test -e "$T/rebooted"
    check "$v: ...and the command ends ok at the hub" wait_for 20 eval '[ "$(cmd_status "$cid")" = ok ]'
    if [ "$how" = alter ]; then
        expect_eq "$v: the altered partial image was resumed, refused, and fetched again from byte 0" \
            "0 $p 0" "$(starts "$sha")"
    else
        expect_eq "$v: the download resumed at the bytes on disk (image requests from byte 0, then $p)" \
            "0 $p" "$(starts "$sha")"
        echo "# $v: $((SIZE - p)) of $SIZE bytes fetched after the restart"
    fi
    check "$v: the installed image is the release's" cmp "$T/slots0/$slot/image" "$T/fw-$v.img"
    check "$v: the agent stopped for the reboot" wait_for 20 stopped
    boot
    check "$v: after the reboot it runs $v" wait_for 30 eval '[ "$(astat 0 fw_version)" = "$v" ]'
    CID=$cid
}

cut_at 2.0 2 50000
CID20=$CID
check "the hub sent the pending command again at the reconnection" \
    grep -q "sending pending command $CID20 (update) again" "$T/hub.log"
cut_at 2.1 3 $((SIZE / 2))
# the command played again while the device carries it out (as the hub
# does at each connection): no replay, the download goes on
publish 2.2 4 1 "$SIZE"
SHA22=$(sha_of "$T/fw-2.2.img"); SLOT=$(target)
CID22=$(as op firmware deploy "$SHA22" --device "$D0" --reason 2.2 | jget command)
wait_for 30 part_ge "$SLOT" 200000
power_loss
boot
check "2.2: the download was taken up again" wait_for 20 eval '[ "$(starts "$SHA22" | wc -w)" = 2 ]'
r0=$(astat 0 commands_refused)
again() { grep -c "command $CID22 sent again: carried on" "$T/agent0.log"; }
a0=$(again)
as_hub "$D0" "$(grep "$CID22" "$T/captured" | grep '^{' | head -1)" >/dev/null
check "2.2: the command sent again mid-download is carried on" \
    wait_for 20 eval '[ "$(again)" -gt "$a0" ]' 
check "2.2: ...the update completes" wait_for 60 test -e "$T/rebooted"
expect_eq "2.2: ...not refused" "$r0" "$(astat 0 commands_refused)"
check "2.2: ...and ends ok" wait_for 20 eval '[ "$(cmd_status "$CID22")" = ok ]'
expect_eq "2.2: one request after the restart, from the bytes on disk" 2 "$(starts "$SHA22" | wc -w)"
wait_for 20 stopped
boot
check "2.2 runs" wait_for 30 eval '[ "$(astat 0 fw_version)" = 2.2 ]'
cut_at 2.3 5 $((SIZE - 500000))
cut_at 2.4 6 $((SIZE - 500000)) whole
cut_at 2.5 7 $((SIZE / 2)) alter
expect_eq "no cut produced a command_replayed event" 0 "$(replays)"
[ "$(replays)" = 0 ] || events_json | python3 -c 'import json,sys
for e in json.load(sys.stdin)["events"]:
    if "command_replayed" in json.dumps(e["detail"]): print("#", e)'
echo "# commands: $CID20 2.2=$CID22"; as admin device commands "$D0" | python3 -c 'import json,sys
for c in json.load(sys.stdin)["commands"]: print("#", c["id"], c["type"], c["status"], c.get("result"))'

refused_replay() { as admin device commands "$D0" | python3 -c 'import json,sys
print(sum(1 for c in json.load(sys.stdin)["commands"] if "replay" in json.dumps(c.get("result"))))'; }
expect_eq "the device never refused its own update command as a replay" 0 "$(refused_replay)"

# --- a finished update command played again is still a replay
r0=$(astat 0 commands_refused)
as_hub "$D0" "$(grep "$CID20" "$T/captured" | grep '^{' | head -1)" >/dev/null
check "a finished update command played again is refused" wait_for 15 stat_is 0 commands_refused $((r0 + 1))
check "...and reported as a replay" wait_for 15 has_event device_event "$D0" command_replayed
expect_eq "...its first outcome stays at the hub" ok "$(cmd_status "$CID20")"
expect_eq "...nothing was installed again" 2.5 "$(astat 0 fw_version)"
[ "$FAIL" -gt 0 ] && tail -30 "$T/agent0.log"
finish
