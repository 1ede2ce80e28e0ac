#!/usr/bin/env bash
# Integration: scan every TLS listener (MQTT and HTTPS) with sslscan: no
# protocol below TLS 1.2, only AEAD cipher suites, no insecure
# renegotiation. (TLS compression is off in OpenSSL 3 and absent from
# GnuTLS 3.7; Debian's sslscan cannot probe for it.) (T05-L1b, T11-L1d, T11-L1f).
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
claim alice 0
P0=$(dev_dir 0)

scan() { # scan NAME HOST:PORT [client cert args]
    local name=$1 target=$2; shift 2
    sslscan --no-colour --no-heartbleed --no-check-certificate "$@" "$target" >"$T/scan-$name.txt" 2>&1
    grep -q "Supported Server Cipher" "$T/scan-$name.txt" || { cat "$T/scan-$name.txt"; return 1; }
}
check_scan() {
    local name=$1 f="$T/scan-$1.txt"
    for p in SSLv2 SSLv3 TLSv1.0 TLSv1.1; do
        check "$name: $p disabled" grep -Eq "^$p +disabled" "$f"
    done
    check "$name: TLSv1.2 enabled" grep -Eq "^TLSv1.2 +enabled" "$f"
    check "$name: TLSv1.3 enabled" grep -Eq "^TLSv1.3 +enabled" "$f"
    local suites; suites=$(grep -E "^(Preferred|Accepted) " "$f")
    check "$name: some suites accepted" test -n "$suites"
    local weak; weak=$(grep -Ev "GCM|CHACHA20|CCM" <<<"$suites" || true)
    check "$name: every accepted suite is AEAD${weak:+ (not: $weak)}" test -z "$weak"
    check "$name: every accepted suite uses TLS 1.2 or 1.3" bash -c "! grep -Eq '^(Preferred|Accepted) +(SSL|TLSv1\.[01] )' '$f'"
    check "$name: no insecure renegotiation" fails grep -q "Insecure session renegotiation" "$f"
    sed -n 's/^\(Preferred\|Accepted\) */# '"$name"': /p' "$f"
}

check "scan of the HTTPS API" scan api "${API#https://}"
check_scan api
check "scan of the MQTT listener (with a device certificate)" scan mqtt "127.0.0.1:$MQTT_PORT" --certs="$P0/device.crt" --pk="$P0/device.key"
check_scan mqtt
finish
