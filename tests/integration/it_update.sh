#!/usr/bin/env bash
# Integration: a firmware update end to end (docs/updates.md) with the real
# hub, broker, plugin and agent. The hub sends the signed update command;
# the agent fetches roots, release and image over HTTPS with the command's
# token, checks them, installs into the inactive slot and reboots (here:
# the reboot program runs and the agent stops; starting it again is the
# boot); the new slot is on trial until the agent is back online and its
# self-test passes, then committed. A release whose trial cannot reach the
# hub is rolled back and never taken again; an image that is not the
# release's is refused.
. "$(dirname "$0")/lib.sh"

update_device_setup
publish 2.0 2 1 3000000
agent_conf 0 "" "\"reboot_command\": \"$T/reboot.sh\", \"update_slots_dir\": \"$T/slots0\", \"update_trial_s\": 8, \"update_check_s\": 2"
agent_start 0
check "the agent connects" wait_for 20 stat_is 0 connected True
check "it reports its slot at boot" wait_for 20 has_event device_event "$D0" '"type": "update_status"'
last_cmd() { as admin device commands "$D0" | jget "commands.0.$1"; }
stopped() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
boot() { rm -f "$T/rebooted"; agent_start 0; }

# --- 2.0: downloaded, checked, installed, reboot, trial, committed
as op firmware deploy "$(sha_of "$T/fw-2.0.img")" --device "$D0" --reason "fleet update" >/dev/null
check "the device installs the release and asks for a reboot" wait_for 60 test -e "$T/rebooted"
check "...after reporting the install to the hub" wait_for 20 eval '[ "$(last_cmd status)" = ok ]'
check "the agent stopped for the reboot" wait_for 20 stopped
check "the image is in the inactive slot, whole" cmp "$T/slots0/b/image" "$T/fw-2.0.img"
check "the booted slot was not touched" test ! -e "$T/slots0/a/image"
boot
check "after the reboot the new slot is committed" wait_for 30 stat_is 0 updates_committed 1
expect_eq "running 2.0" "2.0" "$(astat 0 fw_version)"
check "the commit reaches the hub" wait_for 20 has_event device_event "$D0" '"type": "update_committed"'
check "every step is in the device's signed log" wait_for 20 has_event device_log "$D0" '"type": "update_installed"'
n_status() { events_json | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"]=="device_event" and e.get("device_id")==sys.argv[1] and "update_status" in json.dumps(e["detail"])))' "$D0"; }
s0=$(n_status)
status_grew() { [ "$(n_status)" -ge $((s0 + 2)) ]; }
check "idle and online, the device checks in periodically (update_status)" wait_for 30 status_grew
as op firmware deploy "$(sha_of "$T/fw-2.0.img")" --device "$D0" --reason "again" >/dev/null
check "the release running is not installed again" wait_for 20 eval '[ "$(last_cmd result.error)" = already_running ]'

# --- an image that is not the release's (the hub's storage altered)
publish 2.1 3 1 100000
head -c 100000 /dev/urandom >"$DATA/firmware/$(sha_of "$T/fw-2.1.img")"
as op firmware deploy "$(sha_of "$T/fw-2.1.img")" --device "$D0" --reason "tampered" >/dev/null
check "an altered image is refused (digest)" wait_for 30 eval '[ "$(last_cmd result.error)" = digest ]'
check "...and nothing was switched" test ! -e "$T/rebooted"

# --- 3.0 cannot reach the hub on trial: rolled back, never again
publish 3.0 4 2 50000
as op firmware deploy "$(sha_of "$T/fw-3.0.img")" --device "$D0" --reason "3.0" >/dev/null
check "3.0 installed, reboot asked" wait_for 60 test -e "$T/rebooted"
wait_for 20 stopped
hub_stop
boot
check "on trial without the hub, the deadline rolls it back and asks for a reboot" wait_for 40 test -e "$T/rebooted"
wait_for 20 stopped
boot
check "back on the previous slot (2.0)" wait_for 20 eval '[ "$(astat 0 fw_version)" = 2.0 ]'
hub_start "$DATA"; MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
MAMORI_PASSWORD=$OWNER_PW as op login --user op >/dev/null
check "the rollback reaches the hub once it is back" wait_for 40 has_event device_event "$D0" '"type": "update_rolled_back"'
as admin firmware deploy "$(sha_of "$T/fw-3.0.img")" --device "$D0" --reason "retry" >/dev/null
check "the failed release is never taken again" wait_for 30 eval '[ "$(last_cmd result.error)" = failed_before ]'

# --- advisories and the support period (the device runs 2.0)
check "an owner cannot publish an advisory" \
    fails as alice advisory add --model sensor-v1 --title x --severity high --affected 2.0
check "staff publish an advisory for 2.0" as op advisory add --model sensor-v1 \
    --title "CVE-2026-0001 in the web UI" --severity high --affected 2.0,1.9 --fixed 3.1
check "the device on 2.0 is flagged, for its owner to see" \
    wait_for 10 has_event device_vulnerable "$D0" '"fixed_version": "3.1"'
check "...and the vulnerable_firmware alert is raised" wait_for 10 has_alert vulnerable_firmware "$D0"
expect_eq "its owner sees the advisory on the device" "CVE-2026-0001 in the web UI" \
    "$(as alice device show "$D0" | jget advisories.0.title)"
expect_eq "...and the version it runs" 2.0 "$(as alice device show "$D0" | jget fw_version)"
check "owners read the advisories" as alice advisory list --model sensor-v1
check "an unknown severity is refused" \
    fails as op advisory add --model sensor-v1 --title x --severity urgent --affected 2.0
check "an owner cannot set the support period" fails as alice support set sensor-v1 --end 2031-03-31
check "staff set the model's security-support end" as op support set sensor-v1 --end 2031-03-31
expect_eq "the owner reads it" True "$(as alice support show sensor-v1 | jget supported)"
expect_eq "...also on the device" "$(date -u -d 2031-03-31 +%s)" "$(as alice device show "$D0" | jget support_end)"
check "a malformed date is refused" fails as op support set sensor-v1 --end 2031-3-31
# the device reads both itself: a signed "notice" (common/notice.h)
check "the device was told of the advisory on the version it runs" wait_for 20 stat_is 0 advisories 1
expect_eq "...with its title and fixed version" "CVE-2026-0001 in the web UI 3.1" \
    "$(astat 0 notice.advisories.0.title) $(astat 0 notice.advisories.0.fixed_version)"
check "...and of its model's support end" wait_for 20 stat_is 0 support_end "$(date -u -d 2031-03-31 +%s)"
check "notices are in the device's signed log" wait_for 20 has_event device_log "$D0" '"type": "notice"'
check "nobody sends a notice by hand" fails as op device cmd "$D0" notice --reason x
check "...nor an update" fails as op device cmd "$D0" update --reason x
kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
boot
check "the notice is kept across a restart" wait_for 20 stat_is 0 advisories 1
# the fixed release: once it runs 3.1 the device is told it is clear
publish 3.1 4 2 50000
as op firmware deploy "$(sha_of "$T/fw-3.1.img")" --device "$D0" --reason "fix for CVE-2026-0001" >/dev/null
check "3.1 installed, reboot asked" wait_for 60 test -e "$T/rebooted"
wait_for 20 stopped
boot
check "3.1 committed" wait_for 30 eval '[ "$(astat 0 fw_version)" = 3.1 ]'
check "on 3.1 the device is told no advisory applies" wait_for 30 stat_is 0 advisories 0
expect_eq "...its support end still known" "$(date -u -d 2031-03-31 +%s)" "$(astat 0 support_end)"
check "publishing is audited" bash -c "'$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' audit list --limit 1000 | grep -c -e advisory_published -e support_end_set | grep -qx 2"
[ "$FAIL" -gt 0 ] && tail -20 "$T/agent0.log"
finish
