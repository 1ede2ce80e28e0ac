#!/usr/bin/env bash
# Integration: malformed, truncated, oversized and mistyped JSON to every
# API endpoint gets a clear 400/413 in the one error shape, changes nothing,
# and the hub keeps serving.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
ADM=$(token_of admin); ALICE=$(token_of alice)
D0=$(dev_id 0)
claim alice 0

python3 - "$T" <<'PY'
import sys
t = sys.argv[1]
open(f"{t}/big.json", "w").write('{"username":"' + "a" * 70000 + '","password":"x"}')
open(f"{t}/deep.json", "w").write('{"a":' * 40 + '1' + '}' * 40)
PY

BAD=('{"username":' '{"username":"admin"' '[1,2,3]' 'not json at all' '"just a string"'
     '{"username":"a","username":"b","password":"long enough pw"}'
     '{"username":"a\u0000b","password":"long enough pw","token":"x","role":"owner"}'
     '{"username":1,"password":2,"token":3,"model":4,"csr":5,"certificate":6,"claim_code":7,"role":8}'
     '{}' '' "@$T/deep.json")
# endpoint|token: every POST the API has
EPS=("bootstrap|" "sessions|" "users|$ADM" "factory/enroll|$ADM" "factory/register|$ADM" "cas|$ADM"
     "claims|$ALICE" "devices/$D0/lock|$ALICE" "devices/$D0/revoke|$ADM")

errshape() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); e=d["error"]
assert isinstance(e["code"],str) and isinstance(e["message"],str) and e["message"]' "$T/body" 2>/dev/null; }

for ep in "${EPS[@]}"; do
    path=${ep%%|*}; tok=${ep#*|}
    nbad=0; nshape=0
    for b in "${BAD[@]}"; do
        if [ "${b:0:1}" = "@" ]; then body=$(cat "${b:1}"); else body=$b; fi
        code=$(http POST "$path" "$body" "$tok")
        case "$path:$code" in
            bootstrap:400|sessions:400|*:400|*:413) ;;
            *) nbad=$((nbad + 1)); echo "# $path <- ${b:0:40}: HTTP $code" ;;
        esac
        errshape || nshape=$((nshape + 1))
    done
    expect_eq "POST $path refuses malformed JSON" 0 "$nbad"
    expect_eq "POST $path errors have the one shape" 0 "$nshape"
    code=$(curl -s -o "$T/body" -w '%{http_code}' --cacert "$CA" -X POST ${tok:+-H "Authorization: Bearer $tok"} \
        --data-binary "@$T/big.json" "$API/api/v1/$path")
    expect_eq "POST $path refuses a 70 KB body" 413 "$code"
done

# truncated body: Content-Length promises more than arrives
code=$(printf 'POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"user' |
       timeout 20 openssl s_client -quiet -connect "${API#https://}" -CAfile "$CA" 2>/dev/null | head -1 | awk '{print $2}')
check "truncated body never yields a 2xx (got '${code:-closed}')" bash -c "[ -z '$code' ] || [ '$code' -ge 400 ]"

# GET endpoints with junk parameters, unknown paths and methods
expect_eq "junk limit is clamped, not an error" 200 "$(http GET 'devices?limit=abc&after=%00%ff' '' "$ADM")"
expect_eq "huge limit is clamped" 200 "$(http GET 'audit?limit=99999999999999999999' '' "$ADM")"
expect_eq "bad device id is 404" 404 "$(http GET 'devices/../../etc/passwd' '' "$ADM")"
expect_eq "unknown action is 404" 404 "$(http POST "devices/$D0/explode" '{"reason":"x"}' "$ADM")"
expect_eq "unknown endpoint is 404" 404 "$(http GET nothing-here '' "$ADM")"
expect_eq "unsupported method is 405" 405 "$(http PUT devices '{}' "$ADM")"
long=$(head -c 3000 /dev/zero | tr '\0' a)
code=$(http GET "devices/$long" '' "$ADM")
check "very long URL refused (HTTP $code)" bash -c "[ '$code' -ge 400 ] && [ '$code' -lt 500 ] || [ '$code' = 000 ]"

# ttl_s of a command and of a firmware deploy: anything but an integer from
# 10 to 2592000 is refused with the one message, never replaced by the default
TTL_MSG="ttl_s must be an integer number of seconds from 10 to 2592000"
SHA=$(printf '%064d' 0)
for ttl in -1 0 1e300 '"86400"' 5 99999999 1.5 null true; do
    code=$(http POST "devices/$D0/commands" "{\"type\":\"self-test\",\"reason\":\"ttl\",\"ttl_s\":$ttl}" "$ADM")
    expect_eq "command ttl_s $ttl is refused: HTTP $code, $(jget error.message <"$T/body")" \
        "400 $TTL_MSG" "$code $(jget error.message <"$T/body")"
    code=$(http POST "firmware/releases/$SHA/deploy" "{\"device\":\"$D0\",\"reason\":\"ttl\",\"ttl_s\":$ttl}" "$ADM")
    expect_eq "deploy ttl_s $ttl is refused: HTTP $code, $(jget error.message <"$T/body")" \
        "400 $TTL_MSG" "$code $(jget error.message <"$T/body")"
done
expect_eq "command ttl_s 600 is accepted" 201 \
    "$(http POST "devices/$D0/commands" '{"type":"self-test","reason":"ttl","ttl_s":600}' "$ADM")"
expect_eq "command without ttl_s takes the default" 201 \
    "$(http POST "devices/$D0/commands" '{"type":"self-test","reason":"ttl"}' "$ADM")"
expect_eq "deploy ttl_s 600 passes the check (unknown release: 404)" 404 \
    "$(http POST "firmware/releases/$SHA/deploy" "{\"device\":\"$D0\",\"reason\":\"ttl\",\"ttl_s\":600}" "$ADM")"

# nothing changed, nothing broke
expect_eq "device still in its state" claimed "$(dev_state "$D0")"
expect_eq "hub still healthy" ok "$(curl -s --cacert "$CA" "$API/api/v1/health" | jget status)"
check "audit chain intact" as admin audit verify

# connection limits per client address (T10-L1a): 3 idle connections from
# 127.0.0.1 fill its share; 127.0.0.2 is still served; closing them frees it
hub_stop
hub_start "$T/data" --api-per-address 3
HP=${API#https://}
python3 - "${HP%:*}" "${HP##*:}" "$T/hold" <<'PY' &
import os, socket, sys, time
host, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
held = [socket.create_connection((host, port), timeout=5) for _ in range(3)]
open(flag, "w").close()
for _ in range(300):                      # at most 30 s
    if not os.path.exists(flag):
        break
    time.sleep(0.1)
PY
HOLDER=$!
wait_for 50 test -f "$T/hold"
health() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$CA" "$@" "$API/api/v1/health"; }
code=$(health)
check "a 4th connection from the same address is refused (got ${code})" test "$code" = 000
expect_eq "another address is still served" 200 "$(health --interface 127.0.0.2)"
rm -f "$T/hold"; wait "$HOLDER"
wait_for 50 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert '$CA' '$API/api/v1/health')\" = 200 ]"
expect_eq "the address is served again once its connections close" 200 "$(health)"
expect_eq "--api-per-address 0 is refused" 2 "$("$BIN/mamorid" --data "$T/x" --api-per-address 0 >/dev/null 2>&1; echo $?)"
finish
