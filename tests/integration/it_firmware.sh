#!/usr/bin/env bash
# Integration: the hub's firmware repository (docs/updates.md) through the
# real mamorid and mamorictl. Roots are taken one version after the other,
# by administrators only; a release is taken only when the newest root's
# release keys signed it and it has not expired; an image is kept only
# when its size and SHA-256 are the release's; a revoked release key stops
# counting at the next root; everything is audited.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 1
for k in root1 root2 rel1 rel2; do R keygen --out "$k"; done
head -c 200000 /dev/urandom >"$T/fw-1.0.img"
head -c 150000 /dev/urandom >"$T/fw-1.1.img"
release() { # release VERSION IMAGE KEY [DAYS] -> $T/rel-VERSION.json
    R manifest --model sensor-v1 --fw-version "$1" --security-version 2 --floor 1 --image "$2" \
        --days "${4:-90}" --out "rel-$1.json"
    R sign --file "rel-$1.json" --key "$3.key"
}
listed() { as op firmware list --model sensor-v1 | python3 -c 'import json,sys
for r in json.load(sys.stdin)["releases"]:
    if r["fw_version"] == sys.argv[1]: print(r[sys.argv[2]])' "$1" "$2"; }
audited() { local out; out=$(as admin audit list --limit 1000) && grep -q "\"$1\"" <<<"$out"; }
# refused_with TEXT COMMAND...: the command fails and says TEXT
refused_with() { local t=$1 out; shift; out=$("$@" 2>&1) && return 1; grep -qF -- "$t" <<<"$out" || { echo "$out" >&2; return 1; }; }

release 1.0 "$T/fw-1.0.img" rel1
check "no release before a root" refused_with "no firmware root yet" as op firmware add --file "$T/rel-1.0.json"

R root --version 1 --root-keys root1.pub --root-threshold 1 --release-keys rel1.pub \
    --release-threshold 1 --out root-1.json
R sign --file root-1.json --key root1.key
check "an operator may not add a root" refused_with 403 as op firmware root add --file "$T/root-1.json"
check "an administrator adds root version 1" as admin firmware root add --file "$T/root-1.json"
check "the same version again is refused" refused_with "does not follow" as admin firmware root add --file "$T/root-1.json"

check "a signed release and its image are taken" \
    as op firmware add --file "$T/rel-1.0.json" --image "$T/fw-1.0.img"
expect_eq "listed with its image" "True" "$(listed 1.0 image)"
check "the stored image is the one uploaded" cmp "$DATA/firmware/$(sha_of "$T/fw-1.0.img")" "$T/fw-1.0.img"
check "an owner cannot see the repository" fails as alice firmware list
check "the same model and version twice is refused" refused_with "in the repository already" as op firmware add --file "$T/rel-1.0.json"

cp "$T/rel-1.0.json" "$T/rel-bad.json"; R manifest --model sensor-v1 --fw-version 9.9 \
    --security-version 2 --image "$T/fw-1.1.img" --out rel-root.json
R sign --file rel-root.json --key root1.key
check "a release signed by a root key is refused" refused_with "release keys" as op firmware add --file "$T/rel-root.json"
release 0.9 "$T/fw-1.1.img" rel1 -1
check "an expired release is refused" refused_with "expired" as op firmware add --file "$T/rel-0.9.json"

# --- an image that is not the release's
release 1.1 "$T/fw-1.1.img" rel1
check "release 1.1 without its image" as op firmware add --file "$T/rel-1.1.json"
SHA11=$(sha_of "$T/fw-1.1.img")
head -c 150000 /dev/urandom >"$T/other.img"
check "an image of the right size with other bytes is refused" \
    refused_with "SHA-256 is not the release" as op firmware upload "$SHA11" --image "$T/other.img"
head -c 150001 /dev/urandom >"$T/big.img"
check "a larger image is refused" refused_with "larger than the release" as op firmware upload "$SHA11" --image "$T/big.img"
head -c 149999 "$T/fw-1.1.img" >"$T/short.img"
check "a shorter one too" refused_with "smaller than the release" as op firmware upload "$SHA11" --image "$T/short.img"
expect_eq "still no image for 1.1" "False" "$(listed 1.1 image)"
check "nothing of the refused uploads is left" test -z "$(ls "$DATA/firmware" | grep -v -x -e "$(sha_of "$T/fw-1.0.img")")"
check "an owner cannot upload" fails as alice firmware upload "$SHA11" --image "$T/fw-1.1.img"
check "the right image is taken" as op firmware upload "$SHA11" --image "$T/fw-1.1.img"
check "an image is uploaded once" refused_with "there already" as op firmware upload "$SHA11" --image "$T/fw-1.1.img"

# --- root version 2 revokes rel1 and brings in rel2
R root --version 2 --root-keys root1.pub,root2.pub --root-threshold 1 --release-keys rel2.pub \
    --release-threshold 1 --out root-2.json
R sign --file root-2.json --key root2.key
check "root 2 signed only by a key root 1 does not know is refused" \
    refused_with "previous root keys" as admin firmware root add --file "$T/root-2.json"
R sign --file root-2.json --key root1.key
check "root 2 signed by root 1's key is taken" as admin firmware root add --file "$T/root-2.json"
expect_eq "two roots listed" "1 2" "$(as op firmware roots | python3 -c 'import json,sys; print(*[r["version"] for r in json.load(sys.stdin)["roots"]])')"
head -c 1000 /dev/urandom >"$T/fw-1.2.img"
release 1.2 "$T/fw-1.2.img" rel1
check "the revoked key's new release is refused" refused_with "release keys" as op firmware add --file "$T/rel-1.2.json"
rm -f "$T/rel-1.2.json"; release 1.2 "$T/fw-1.2.img" rel2
check "the new key's release is taken" as op firmware add --file "$T/rel-1.2.json" --image "$T/fw-1.2.img"

# --- deployment: a signed update command with a one-device download token
D0=$(dev_id 0)
SHA12=$(sha_of "$T/fw-1.2.img")
claim alice 0
check "an owner cannot deploy" refused_with 403 as alice firmware deploy "$SHA12" --device "$D0" --reason x
head -c 5000 /dev/urandom >"$T/db.img"
R manifest --model doorbell --fw-version 1.0 --security-version 1 --image "$T/db.img" --out rel-db.json
R sign --file rel-db.json --key rel2.key
as op firmware add --file "$T/rel-db.json" --image "$T/db.img" >/dev/null
check "a release for another model is not sent" \
    refused_with "is for model doorbell" as op firmware deploy "$(sha_of "$T/db.img")" --device "$D0" --reason x
check "release 1.2 is deployed to the device" as op firmware deploy "$SHA12" --device "$D0" --reason "fleet update"
check "the deployment is audited" audited command_update
TOKEN=$(hubsql "$DATA" "SELECT args FROM commands WHERE type='update' ORDER BY issued_at" | tail -1 | jget token)
check "the command carries a download token" test "${#TOKEN}" -eq 68
check "only the token's hash is kept" test "$(hubsql "$DATA" "SELECT count(*) FROM update_tokens WHERE token_hash='$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)'")" = 1
dl() { curl -s -o "$T/dl" -w '%{http_code}' --cacert "$CA" ${2:+-H "Authorization: Bearer $2"} ${3:+-H "Range: $3"} "$API/api/v1/updates/$1"; }
expect_eq "no token: 401" 401 "$(dl image)"
expect_eq "a made-up token: 401" 401 "$(dl image "mmu_$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)")"
expect_eq "a session token is not a download token" 401 "$(dl image "$(token_of op)")"
expect_eq "the roots, with the token" 200 "$(dl roots "$TOKEN")"
expect_eq "...every version, oldest first" "1 2" "$(python3 -c 'import json,sys
print(*[json.loads(r["signed"])["version"] for r in json.load(open(sys.argv[1]))["roots"]])' "$T/dl")"
expect_eq "the release document" 200 "$(dl release "$TOKEN")"
check "...is release 1.2's, signed" python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); s=json.loads(d["signed"])
sys.exit(0 if s["fw_version"]=="1.2" and d["signatures"] else 1)' "$T/dl"
expect_eq "the image" 200 "$(dl image "$TOKEN")"
check "...is the uploaded one" cmp "$T/dl" "$T/fw-1.2.img"
expect_eq "a download resumes from a byte offset (206)" 206 "$(dl image "$TOKEN" "bytes=600-")"
check "...with the rest of the image" cmp "$T/dl" <(tail -c +601 "$T/fw-1.2.img")
expect_eq "an offset past the end: 416" 416 "$(dl image "$TOKEN" "bytes=1000-")"
expect_eq "a malformed range: 416" 416 "$(dl image "$TOKEN" "bytes=-5")"
echo '{"fields": [{"name": "i", "type": "integer", "min": 0, "max": 9}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
agent_conf 0; agent_start 0
wait_for 20 stat_is 0 connected True
as op firmware deploy "$SHA12" --device "$D0" --reason "to a running agent" >/dev/null
update_answer() { [ "$(as admin device commands "$D0" | jget commands.0.status)" = refused ]; }
check "a device without an update backend refuses the command (never claims an install)" wait_for 20 update_answer
# a download token works only while its device may receive new code
# (claimed or active; docs/updates.md)
expect_eq "the active device's token fetches the image" 206 "$(dl image "$TOKEN" "bytes=600-")"
as op device lock "$D0" --reason "reported stolen" >/dev/null
expect_eq "a locked device's token is refused (403)" 403 "$(dl image "$TOKEN")"
expect_eq "...for a range too (no resume while locked)" 403 "$(dl image "$TOKEN" "bytes=600-")"
expect_eq "...and for the roots and the release" "403 403" "$(dl roots "$TOKEN") $(dl release "$TOKEN")"
as op firmware deploy "$SHA12" --device "$D0" --reason "short-lived" --ttl 10 >/dev/null
TOKEN10=$(hubsql "$DATA" "SELECT args FROM commands WHERE type='update' ORDER BY issued_at" | tail -1 | jget token)
expect_eq "a token issued to the locked device is refused too" 403 "$(dl image "$TOKEN10" "bytes=0-")"
as op device unlock "$D0" --reason "found" >/dev/null
expect_eq "unlocked: the unexpired token works again" 206 "$(dl image "$TOKEN" "bytes=600-")"
token10_expired() { [ "$(hubsql "$DATA" "SELECT count(*) FROM update_tokens WHERE token_hash='$(printf %s "$TOKEN10" | sha256sum | cut -d' ' -f1)' AND expires_at <= $(date +%s%3N)")" = 1 ]; }
check "(the 10 s token expires)" wait_for 20 token10_expired
expect_eq "...but an expired one stays refused after the unlock (401)" 401 "$(dl image "$TOKEN10" "bytes=0-")"
as op device quarantine "$D0" --reason "anomaly" >/dev/null
check "(quarantined)" test "$(dev_state "$D0")" = quarantined
expect_eq "a quarantined device's token is refused" 403 "$(dl image "$TOKEN" "bytes=600-")"
as op device release "$D0" --reason "cleared" >/dev/null
check "(active again)" test "$(dev_state "$D0")" = active
expect_eq "released: it works again" 206 "$(dl image "$TOKEN" "bytes=600-")"
as op device revoke "$D0" --reason "stolen" >/dev/null
expect_eq "a revoked device's token stops working" 403 "$(dl image "$TOKEN")"
expect_eq "...for a range too" 403 "$(dl image "$TOKEN" "bytes=600-")"
as op device decommission "$D0" --reason "disposed of" >/dev/null
expect_eq "a decommissioned device's token stays refused" 403 "$(dl image "$TOKEN" "bytes=600-")"

# --- retire
check "an owner cannot retire" fails as alice firmware retire "$SHA11" --reason x
check "release 1.1 retired" as op firmware retire "$SHA11" --reason "CVE in 1.1"
check "retired, with its time" test "$(listed 1.1 retired_at)" -gt 0
check "retiring twice is refused" refused_with "retired already" as op firmware retire "$SHA11" --reason again
check "a retired release is not deployed" refused_with "retired" as op firmware deploy "$SHA11" --device "$D0" --reason x
all_audited() { audited fw_root_added && audited fw_release_added && audited fw_image_uploaded &&
    audited fw_release_retired; }
check "every step is audited" all_audited
check "audit chain intact" as admin audit verify
finish
