#!/usr/bin/env bash
# Integration: the hook backend (docs/updates.md) driving the real RAUC,
# end to end with the real hub, broker, plugin and agent. RAUC runs as its
# service on a private D-Bus session bus with two raw slots (files, bootnames
# A and B) and its "custom" boot loader backend; only the boot loader is a
# stand-in (rauc_bootloader.sh, U-Boot's bootcount logic), since a test
# cannot reboot into U-Boot. A "reboot" stops the agent and RAUC, lets the
# boot loader choose, and starts RAUC (told the slot booted) and the agent.
#
# The release's image is a RAUC bundle: the agent checks it against the
# signed release while it downloads, then scripts/hooks/rauc runs `rauc
# install`, and after the reboot `rauc status mark-good` once the health
# check passes, or `mark-bad` when it fails. A bundle RAUC refuses is
# reported as install_failed; a slot that never comes up falls back.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)

if ! command -v rauc >/dev/null || ! command -v mksquashfs >/dev/null || [ "$(id -u)" != 0 ] ||
    ! losetup -f >/dev/null 2>&1; then
    echo "it_rauc needs rauc, squashfs-tools, root and a free loop device (RAUC mounts bundles):"
    echo "not ok - environment: $(command -v rauc || echo 'no rauc') $(id -un) $(losetup -f 2>&1)"
    echo "0 passed, 1 failed"
    exit 1
fi

# --- RAUC on a private bus
export DBUS_SESSION_BUS_ADDRESS="unix:path=$T/dbus.sock" DBUS_STARTER_BUS_TYPE=session
dbus-daemon --session --nofork --nopidfile --address="$DBUS_SESSION_BUS_ADDRESS" >>"$T/dbus.log" 2>&1 &
PIDS+=("$!")
wait_for 10 test -S "$T/dbus.sock"
RD=$T/rauc
mkdir -p "$RD/mnt"
export RAUC_BOOTENV=$RD/bootenv
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RD/sign.key" \
    -out "$RD/sign.crt" -days 30 -subj /CN=sensor-v1-bundles 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RD/other.key" \
    -out "$RD/other.crt" -days 30 -subj /CN=someone-else 2>/dev/null
head -c 1048576 /dev/zero >"$RD/slot-a.img"; cp "$RD/slot-a.img" "$RD/slot-b.img"
cat >"$RD/system.conf" <<C
[system]
compatible=sensor-v1
bootloader=custom
mountprefix=$RD/mnt
statusfile=$RD/status.raucs

[keyring]
path=$RD/sign.crt

[handlers]
bootloader-custom-backend=$HERE/rauc_bootloader.sh

[slot.rootfs.0]
device=$RD/slot-a.img
type=raw
bootname=A

[slot.rootfs.1]
device=$RD/slot-b.img
type=raw
bootname=B
C
RAUC_PID=""
rauc_start() { # rauc_start BOOTNAME
    rauc service --conf="$RD/system.conf" --override-boot-slot="$1" >>"$RD/service.log" 2>&1 &
    RAUC_PID=$!; PIDS+=("$RAUC_PID")
    wait_for 20 eval 'rauc status >/dev/null 2>&1'
}
rauc_stop() { kill "$RAUC_PID" 2>/dev/null; wait "$RAUC_PID" 2>/dev/null; RAUC_PID=""; }
# bundle NAME VERSION KEY [COMPATIBLE]: a RAUC bundle $T/NAME.raucb with a
# random 200 KB root file system
bundle() {
    local d=$RD/b-$1
    mkdir -p "$d"
    head -c 204800 /dev/urandom >"$d/rootfs.img"
    printf '[update]\ncompatible=%s\nversion=%s\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n' \
        "${4:-sensor-v1}" "$2" >"$d/manifest.raucm"
    rauc bundle --cert "$RD/$3.crt" --key "$RD/$3.key" "$d" "$T/$1.raucb" >>"$RD/bundle.log" 2>&1
}
# publish_file VERSION SECURITY_VERSION FLOOR FILE: a signed release of FILE
publish_file() {
    R manifest --model sensor-v1 --fw-version "$1" --security-version "$2" --floor "$3" \
        --image "$(basename "$4")" --out "rel-$1.json" &&
        R sign --file "rel-$1.json" --key rel1.key &&
        as op firmware add --file "$T/rel-$1.json" --image "$4" >/dev/null
}
slot_holds() { cmp -n 204800 "$RD/slot-$1.img" "$RD/b-$2/rootfs.img" >/dev/null 2>&1; } # slot_holds a|b NAME

# --- hub, device, agent with the RAUC hook
update_device_setup
agent_conf 0 "" "\"reboot_command\": \"$T/reboot.sh\", \"update_hook\": \"$SRC/scripts/hooks/rauc\", \"update_trial_s\": 8, \"update_check_s\": 2"
last_cmd() { as admin device commands "$D0" | jget "commands.0.$1"; }
stopped() { ! kill -0 "$AGENT_PID" 2>/dev/null; }
power_on() { # the boot loader chooses; RAUC and the agent start on that slot
    rm -f "$T/rebooted"
    BOOTED=$("$HERE/rauc_bootloader.sh" boot)
    rauc_start "$BOOTED"
    [ "${1:-}" = no-agent ] || agent_start 0
}
power_off() { wait_for 20 stopped; rauc_stop; }
deploy() { as op firmware deploy "$(sha_of "$T/$1.raucb")" --device "$D0" --reason "$2" >/dev/null; }

power_on
check "the agent connects" wait_for 20 stat_is 0 connected True
expect_eq "RAUC booted slot A" A "$BOOTED"
check "the hook reports the slot at boot" wait_for 20 has_event device_event "$D0" '"slot": "a"'

# --- 2.0: verified, `rauc install`, reboot, trial, `mark-good`
bundle v2 2.0 sign
publish_file 2.0 2 1 "$T/v2.raucb"
deploy v2 "fleet update"
check "the agent has RAUC install the bundle and asks for a reboot" wait_for 60 test -e "$T/rebooted"
check "...after reporting the install to the hub" wait_for 20 eval '[ "$(last_cmd status)" = ok ]'
check "RAUC wrote the bundle's root file system into slot B" slot_holds b v2
check "slot A (booted) was not touched" bash -c "! cmp -s -n 204800 '$RD/slot-a.img' '$RD/b-v2/rootfs.img'"
check "the staged bundle is gone from the agent's state" test ! -e "$T/state0/update/image.part"
power_off
power_on
expect_eq "the boot loader tries slot B" B "$BOOTED"
check "after the reboot the new slot is committed" wait_for 30 stat_is 0 updates_committed 1
expect_eq "running 2.0" "2.0" "$(astat 0 fw_version)"
check "RAUC has slot B marked good" bash -c "rauc status --output-format=shell | grep -q \"^RAUC_BOOT_PRIMARY='rootfs.1'\""
check "the commit reaches the hub" wait_for 20 has_event device_event "$D0" '"type": "update_committed"'

# --- a bundle RAUC refuses (signed by a key outside its keyring)
bundle bad 2.1 other
publish_file 2.1 2 1 "$T/bad.raucb"
deploy bad "foreign bundle"
check "RAUC's refusal is reported as install_failed" wait_for 60 eval '[ "$(last_cmd result.error)" = install_failed ]'
check "...no reboot" test ! -e "$T/rebooted"
check "...slot A untouched" bash -c "! cmp -s -n 204800 '$RD/slot-a.img' '$RD/b-bad/rootfs.img'"
check "...the device stays idle on 2.0" wait_for 10 stat_is 0 update_phase 0
check "the failure is in the device's signed log" wait_for 20 has_event device_log "$D0" '"type": "update_failed"'

# --- 3.0 cannot reach the hub on trial: `mark-bad`, back to B, never again
bundle v3 3.0 sign
publish_file 3.0 3 2 "$T/v3.raucb"
deploy v3 "3.0"
check "3.0 installed into slot A, reboot asked" wait_for 60 test -e "$T/rebooted"
check "...slot A holds it" slot_holds a v3
power_off
hub_stop
power_on
expect_eq "the boot loader tries slot A" A "$BOOTED"
check "on trial without the hub, the deadline rolls it back and asks for a reboot" wait_for 40 test -e "$T/rebooted"
check "RAUC has slot A marked bad" bash -c "rauc status --output-format=shell | grep -q \"^RAUC_BOOT_PRIMARY='rootfs.1'\""
power_off
power_on
expect_eq "back on slot B" B "$BOOTED"
check "running 2.0 again" wait_for 60 eval '[ "$(astat 0 fw_version)" = 2.0 ]'
hub_start "$DATA"; MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
MAMORI_PASSWORD=$OWNER_PW as op login --user op >/dev/null
check "the rollback reaches the hub once it is back" wait_for 40 has_event device_event "$D0" '"type": "update_rolled_back"'
deploy v3 "retry"
check "the failed release is never taken again" wait_for 30 eval '[ "$(last_cmd result.error)" = failed_before ]'

# --- 3.1 never comes up (the agent does not start on it): the boot loader
# falls back by itself, and the agent marks the release failed
bundle v31 3.1 sign
publish_file 3.1 3 2 "$T/v31.raucb"
deploy v31 "3.1"
check "3.1 installed, reboot asked" wait_for 60 test -e "$T/rebooted"
power_off
power_on no-agent
expect_eq "the boot loader tries slot A once" A "$BOOTED"
rauc_stop
power_on
expect_eq "...then falls back to slot B" B "$BOOTED"
# (an agent booting under a sanitizer on a loaded machine takes its time)
check "the agent is back on 2.0" wait_for 60 eval '[ "$(astat 0 fw_version)" = 2.0 ]'
check "...idle" wait_for 30 stat_is 0 update_phase 0
deploy v31 "retry 3.1"
check "a release whose slot never came up is never taken again" wait_for 30 eval '[ "$(last_cmd result.error)" = failed_before ]'
agent_stop_now() { kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; }
agent_stop_now
rauc_stop
finish
