#!/usr/bin/env bash
# Integration: the device key in a TPM 2.0 ("certificate in the chip"),
# through OpenSSL's tpm2 provider, against swtpm (a software TPM) on a Unix
# socket in the test's directory, behind the TPM2 access broker and
# resource manager (tpm2-abrmd, on a private D-Bus session bus) as a device
# has /dev/tpmrm0: a bare TPM holds only three loaded objects. The key is made in the TPM at the
# factory, the agent connects with it over mutual TLS, telemetry flows, and
# a rotation makes the next key in the TPM too. The private key cannot be
# exported, the key file is useless on another TPM, and a device set up for
# the TPM refuses a key in a plain file.
. "$(dirname "$0")/lib.sh"

export DBUS_SESSION_BUS_ADDRESS="unix:path=$T/dbus.sock"
dbus-daemon --session --nofork --nopidfile --address="$DBUS_SESSION_BUS_ADDRESS" >>"$T/dbus.log" 2>&1 &
PIDS+=("$!")
wait_for 10 test -S "$T/dbus.sock"
TCTI_A="" TCTI_B=""
tpm_start() { # tpm_start NAME: a fresh software TPM and its resource manager; sets TCTI_NAME
    local d=$T/tpm-$1
    mkdir -p "$d/state"
    swtpm socket --tpm2 --tpmstate dir="$d/state" --server type=unixio,path="$d/sock" \
        --ctrl type=unixio,path="$d/sock.ctrl" --flags not-need-init,startup-clear \
        >>"$d/swtpm.log" 2>&1 &
    PIDS+=("$!")
    wait_for 10 test -S "$d/sock" || return 1
    tpm2-abrmd --session --allow-root --tcti="swtpm:path=$d/sock" \
        --dbus-name="com.intel.tss2.Tabrmd.$1$$" >>"$d/abrmd.log" 2>&1 &
    PIDS+=("$!")
    local tcti="tabrmd:bus_name=com.intel.tss2.Tabrmd.$1$$,bus_type=session"
    wait_for 10 env TPM2TOOLS_TCTI="$tcti" tpm2_getcap properties-fixed >/dev/null 2>&1 || return 1
    printf -v "TCTI_${1^^}" '%s' "$tcti"
}
tpm_start a
tpm_start b
check "two software TPMs are running" test -n "$TCTI_A" -a -n "$TCTI_B"

hub_start "$T/data"
fleet_setup 1
claim alice 0
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 1000}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null

# --- factory: the key is made in the device's TPM
check "factory makes the device key in the TPM" \
    as op factory keygen --out "$T/t1" --keystore tpm2 --tcti "$TCTI_A"
check "the key file holds only a TPM blob" grep -q "BEGIN TSS2 PRIVATE KEY" "$T/t1/device.key"
check "the key file is private (0600)" test "$(stat -c %a "$T/t1/device.key")" = 600
check "the hub enrols the TPM key's CSR" as op factory enroll --model sensor-v1 --identity "$T/t1"
as alice claim "$(cat "$T/t1/claim-code")" >/dev/null
TD=$(jget device_id <"$T/t1/device.json")

# --- the private key cannot leave the TPM
check "the private key cannot be exported (traditional PEM)" fails env TPM2OPENSSL_TCTI="$TCTI_A" \
    openssl pkey -provider tpm2 -provider default -in "$T/t1/device.key" -traditional -out "$T/exported.pem"
check "the private key cannot be exported (PKCS#8 DER)" fails bash -c "TPM2OPENSSL_TCTI='$TCTI_A' \
    openssl pkey -provider tpm2 -provider default -in '$T/t1/device.key' -outform DER | openssl pkey -inform DER -noout"
check "without the TPM the key file is not a key" fails openssl pkey -in "$T/t1/device.key" -noout

# --- the agent runs on the TPM key
tpm_conf() { # tpm_conf NAME IDENTITY TCTI
    cat >"$T/agent-$1.json" <<J
{"identity_dir": "$2", "state_dir": "$T/state-$1", "schema_file": "$T/schema.json",
 "heartbeat_s": 2, "keystore": "tpm2", "tpm_tcti": "$3"}
J
}
tstat_is() { [ "$(jget "$2" <"$T/agent-$1.status" 2>/dev/null)" = "$3" ]; }
tpm_conf a "$T/t1" "$TCTI_A"
"$BIN/mamori-agent" --config "$T/agent-a.json" --status "$T/agent-a.status" >>"$T/agent-a.log" 2>&1 &
PIDS+=("$!")
check "TPM-backed identity connects (mutual TLS signed in the TPM)" wait_for 20 tstat_is a connected True
check "the device is activated" wait_for 10 bash -c "[ \"\$('$BIN/mamorictl' --data '$DATA' --session '$T/session-admin' device show $TD | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = active ]"
wait_for 10 test -S "$T/state-a/agent.sock"
"$BIN/mamori-agent" send --socket "$T/state-a/agent.sock" '{"i": 1}' >/dev/null
check "its telemetry is stored" wait_for 20 stored_is "$TD" 1
check "its log records (signed in the TPM) verify" fails has_event device_log_forged "$TD"

# --- rotation keeps the key in the TPM
OLD_FP=$(as admin device show "$TD" | jget cert_fingerprint)
fp_is_not() { [ "$(as admin device show "$1" | jget cert_fingerprint)" != "$2" ]; }
as op device cmd "$TD" rotate --reason "rotation on a TPM device" >/dev/null
check "rotation completes on the TPM device" wait_for 30 fp_is_not "$TD" "$OLD_FP"
check "the new key is a TPM blob too" grep -q "BEGIN TSS2 PRIVATE KEY" "$T/t1/device.key"
check "the agent reconnects with the new TPM key" wait_for 20 tstat_is a connected True
"$BIN/mamori-agent" send --socket "$T/state-a/agent.sock" '{"i": 2}' >/dev/null
check "telemetry flows after the rotation" wait_for 20 stored_is "$TD" 2

# --- a copy of the key file is useless on another TPM
cp -r "$T/t1" "$T/t1copy"
tpm_conf b "$T/t1copy" "$TCTI_B"
agent_once() { timeout 20 "$BIN/mamori-agent" --config "$T/agent-$1.json" --status "$T/agent-$1.status" 2>"$T/agent-$1.err"; }
check "the copied identity does not start on another TPM" fails agent_once b
check "...because the other TPM cannot load the key" grep -q "cannot start the device" "$T/agent-b.err"

# --- fail closed: a TPM device never uses a key in a plain file
tpm_conf c "$(dev_dir 0)" "$TCTI_A"
check "an agent set up for the TPM refuses a plain key file" fails agent_once c
check "...and says why" grep -q "not in the configured keystore (tpm2)" "$T/agent-c.err"

# --- the file keystore: the key must be the agent user's alone
file_conf() { # file_conf NAME IDENTITY
    cat >"$T/agent-$1.json" <<J
{"identity_dir": "$2", "state_dir": "$T/state-$1", "heartbeat_s": 2}
J
}
cp -r "$(dev_dir 0)" "$T/loose"
chmod 644 "$T/loose/device.key"
file_conf e "$T/loose"
check "file keystore: a key readable by others is refused" fails agent_once e
check "...and the reason is given" grep -q "unsafe file ownership or permissions" "$T/agent-e.err"
chmod 600 "$T/loose/device.key"
if [ "$(id -u)" = 0 ]; then   # only root can hand a file to someone else
    chown nobody "$T/loose/device.key"
    check "file keystore: a key owned by another user is refused" fails agent_once e
fi
check "a TPM that cannot be reached: the agent does not start" fails timeout 20 env -u TPM2OPENSSL_TCTI \
    "$BIN/mamori-agent" --config <(sed "s#$TCTI_A#swtpm:path=$T/no-such-tpm#" "$T/agent-a.json") --status "$T/agent-d.status"
[ "$FAIL" -gt 0 ] && { tail -20 "$T/agent-a.log"; tail -20 "$T/hub.log"; }
finish
