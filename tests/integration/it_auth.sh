#!/usr/bin/env bash
# Integration: no default credentials, one-time bootstrap, login throttling,
# sessions, roles, and owners kept to their own devices.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"

# --- no default credentials (T01-L1a, T07-L1a, P-PWD)
for u in admin root mamori; do
    code=$(http POST sessions "{\"username\":\"$u\",\"password\":\"$u\"}")
    expect_eq "no default account '$u'" 401 "$code"
done
expect_eq "bootstrap token file is private" 600 "$(stat -c %a "$DATA/bootstrap-token")"
tok=$(cat "$DATA/bootstrap-token")
check "bootstrap token is not stored in clear" bash -c "! grep -qa '$tok' $DATA/mamori.db $DATA/mamori.db-wal"

# --- wrong bootstrap token; probing from one address cannot lock out another
code=$(http POST bootstrap "{\"token\":\"mmb_0000\",\"username\":\"eve\",\"password\":\"$ADMIN_PW\"}")
expect_eq "wrong bootstrap token refused" 401 "$code"
# Throttle delays are whole seconds, so a fixed count of quick tries may
# straddle a second boundary and find the window closed: each window is
# waited out until the delay has grown to 2 s.
probe_bootstrap() {
    THROTTLE_FROM=127.0.0.2 escalate_throttle 2 POST bootstrap \
        '{"token":"mmb_1111","username":"eve","password":"long enough pw"}'
}
check "bootstrap probing from 127.0.0.2 is throttled" probe_bootstrap
code=$(http POST bootstrap "{\"token\":\"$tok\",\"username\":\"admin\",\"password\":\"short\"}")
expect_eq "weak admin password refused" 400 "$code"
code=$(http POST bootstrap "{\"token\":\"$tok\",\"username\":\"admin\",\"password\":\"$ADMIN_PW\"}")
expect_eq "bootstrap with the one-time token from 127.0.0.1 (not locked out by 127.0.0.2)" 201 "$code"
check "bootstrap token file removed" test ! -e "$DATA/bootstrap-token"
code=$(http POST bootstrap "{\"token\":\"$tok\",\"username\":\"admin2\",\"password\":\"$ADMIN_PW\"}")
expect_eq "bootstrap token is useless after use" 409 "$code"

fleet_setup 2
ADM=$(token_of admin); ALICE=$(token_of alice); BOB=$(token_of bob); OP=$(token_of op)

# --- brute-force login is slowed, then locked (T07-L2c)
for i in 1 2 3; do http POST sessions '{"username":"alice","password":"wrong password!!"}' >/dev/null; done
check "repeated wrong passwords are throttled, the wait growing to 4 s and more" \
    escalate_throttle 4 POST sessions '{"username":"alice","password":"wrong password!!"}'
check "throttled answer carries Retry-After" grep -qi '^retry-after: [0-9]' "$T/hdr"
ra=$RETRY_AFTER
code=$(http POST sessions "{\"username\":\"alice\",\"password\":\"$OWNER_PW\"}")
expect_eq "even the right password waits out the throttle" 429 "$code"
# the throttle ends when its Retry-After has passed (by the wall clock)
check "(the throttle's Retry-After passes)" wait_for $(( ${ra:-4} + 10 )) clock_past $(( $(date +%s%3N) + ${ra:-4} * 1000 + 500 ))
code=$(http POST sessions "{\"username\":\"alice\",\"password\":\"$OWNER_PW\"}")
expect_eq "right password after the delay" 201 "$code"
code=$(http POST sessions '{"username":"nosuchuser","password":"wrong password!!"}')
expect_eq "unknown user gets the same answer" 401 "$code"
check "failed logins are audited" grep -q login_failed <<<"$(as admin audit list --limit 1000)"

# --- sessions
expect_eq "no token" 401 "$(http GET devices)"
expect_eq "forged token" 401 "$(http GET devices '' mms_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef)"
expect_eq "token of another format" 401 "$(http GET devices '' "$tok")"
# the failed attempts above may still hold this address back a second
login_bob2() { MAMORI_PASSWORD=$OWNER_PW as bob2 login --user bob >/dev/null 2>&1; }
check "a second session for bob (after any throttle from this address)" wait_for 20 login_bob2
BOB2=$(token_of bob2)
expect_eq "logout" 200 "$(http DELETE sessions/current '' "$BOB2")"
expect_eq "token dead after logout" 401 "$(http GET devices '' "$BOB2")"

# --- roles: every endpoint checks (T06-L1a, T11-L1g)
expect_eq "owner cannot add users" 403 "$(http POST users '{"username":"x","role":"admin","password":"long enough pw"}' "$ALICE")"
expect_eq "operator cannot add users" 403 "$(http POST users '{"username":"x","role":"admin","password":"long enough pw"}' "$OP")"
expect_eq "owner cannot list users" 403 "$(http GET users '' "$ALICE")"
expect_eq "owner cannot enroll devices" 403 "$(http POST factory/enroll '{"model":"m","csr":"x"}' "$ALICE")"
expect_eq "operator cannot import CAs" 403 "$(http POST cas '{"model":"m","certificate":"x"}' "$OP")"
expect_eq "owner cannot read the audit log" 403 "$(http GET audit '' "$ALICE")"
expect_eq "operator cannot claim" 403 "$(http POST claims '{"claim_code":"x"}' "$OP")"
expect_eq "admin adds a user" 201 "$(http POST users '{"username":"carol","role":"operator","password":"long enough pw"}' "$ADM")"
expect_eq "duplicate user refused" 409 "$(http POST users '{"username":"carol","role":"operator","password":"long enough pw"}' "$ADM")"
expect_eq "unknown role refused" 400 "$(http POST users '{"username":"dave","role":"root","password":"long enough pw"}' "$ADM")"

# --- owners see and act only on their own devices (T06-L1a)
claim alice 0
D0=$(dev_id 0)
expect_eq "owner reads own device" 200 "$(http GET "devices/$D0" '' "$ALICE")"
expect_eq "other owner cannot read it" 404 "$(http GET "devices/$D0" '' "$BOB")"
expect_eq "other owner cannot lock it" 404 "$(http POST "devices/$D0/lock" '{"reason":"x"}' "$BOB")"
expect_eq "other owner cannot read its events" 404 "$(http GET "events?device=$D0" '' "$BOB")"
http GET devices '' "$BOB" >/dev/null
expect_eq "other owner's list is empty" "[]" "$(jget devices <"$T/body")"
expect_eq "owner cannot revoke (operator action)" 403 "$(http POST "devices/$D0/revoke" '{"reason":"x"}' "$ALICE")"
expect_eq "owner locks own device (reported stolen)" 200 "$(http POST "devices/$D0/lock" '{"reason":"stolen"}' "$ALICE")"
expect_eq "owner unlocks own device" 200 "$(http POST "devices/$D0/unlock" '{"reason":"found"}' "$ALICE")"

finish
