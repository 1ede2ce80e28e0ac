#!/usr/bin/env bash
# Integration: the release signer's offline tools (mamorictl release) and
# the metadata rules they produce (docs/updates.md): roles with thresholds,
# a release key rotated and revoked by a new root without touching the
# devices' anchor, expired metadata refused (freeze), an image that is not
# the one the release names refused. No hub: these run on an offline machine.
. "$(dirname "$0")/lib.sh"

R() { "$BIN/mamorictl" release "$@"; }
cd "$T" || exit 1
for k in root1 root2 root3 rel1 rel2; do R keygen --out "$k" >/dev/null; done
check "a release key is made with a private key file (0600)" test "$(stat -c %a rel1.key)" = 600
check "keygen never overwrites a key" fails R keygen --out rel1
head -c 300000 /dev/urandom >fw-1.2.img

# --- root version 1: three root keys (2 needed), one release key
R root --version 1 --root-keys root1.pub,root2.pub,root3.pub --root-threshold 2 \
    --release-keys rel1.pub --release-threshold 1 --out root-1.json >/dev/null
check "an unsigned root is not trusted" fails R verify --root root-1.json
R sign --file root-1.json --key root1.key >/dev/null
check "one root signature of the two needed is not enough" fails R verify --root root-1.json
R sign --file root-1.json --key root2.key >/dev/null
check "two root signatures make root version 1 trusted" R verify --root root-1.json
chmod 644 root3.key
check "a signing key readable by others is refused" fails R sign --file root-1.json --key root3.key
chmod 600 root3.key

# --- a release
R manifest --model cam-v2 --fw-version 1.2.0 --security-version 4 --floor 3 --image fw-1.2.img \
    --out rel-1.2.json >/dev/null
check "an unsigned release is refused" fails R verify --root root-1.json --file rel-1.2.json
R sign --file rel-1.2.json --key rel1.key >/dev/null
out=$(R verify --root root-1.json --file rel-1.2.json --image fw-1.2.img)
check "the release verifies with its image" test $? -eq 0
check "...and names model, security version, floor and size" \
    grep -q "model cam-v2: security version 4, floor 3, image 300000 bytes" <<<"$out"
# one byte inverted (writing a fixed byte into a random image left it
# unchanged one time in 256)
cp fw-1.2.img fw-bad.img
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[1000] ^= 0xFF
open(sys.argv[1], "wb").write(b)' fw-bad.img
check "(the byte did change)" fails cmp -s fw-1.2.img fw-bad.img
check "an image with one byte changed is refused" fails R verify --root root-1.json --file rel-1.2.json --image fw-bad.img
head -c 300001 /dev/zero >fw-big.img
check "a larger image is refused" fails R verify --root root-1.json --file rel-1.2.json --image fw-big.img
cp rel-1.2.json rel-evil.json; sed -i 's/security_version\\":4/security_version\\":9/' rel-evil.json
check "(the edit took)" fails cmp -s rel-1.2.json rel-evil.json
check "a manifest edited after signing is refused" fails R verify --root root-1.json --file rel-evil.json
R manifest --model cam-v2 --fw-version 1.2.1 --security-version 4 --image fw-1.2.img --out rel-root.json >/dev/null
R sign --file rel-root.json --key root1.key >/dev/null
check "a root key does not sign releases" fails R verify --root root-1.json --file rel-root.json
R manifest --model cam-v2 --fw-version 1.1.0 --security-version 2 --image fw-1.2.img --days -1 --out rel-old.json >/dev/null
R sign --file rel-old.json --key rel1.key >/dev/null
check "expired release metadata is refused (freeze)" fails R verify --root root-1.json --file rel-old.json
check "the floor may not exceed the security version" fails R manifest --model cam-v2 --fw-version 9 \
    --security-version 2 --floor 3 --image fw-1.2.img --out x.json

# --- root version 2 rotates the release key: rel1 out (revoked), rel2 in
R root --version 2 --root-keys root1.pub,root2.pub,root3.pub --root-threshold 2 \
    --release-keys rel2.pub --release-threshold 1 --out root-2.json >/dev/null
cp root-2.json root-2-thief.json
R sign --file root-2-thief.json --key rel1.key >/dev/null
check "a root signed by a release key is refused" fails R verify --root root-1.json,root-2-thief.json
R sign --file root-2.json --key root2.key >/dev/null; R sign --file root-2.json --key root3.key >/dev/null
check "root version 2 follows version 1" R verify --root root-1.json,root-2.json
check "under root 2 the revoked key's release is refused" fails R verify --root root-1.json,root-2.json --file rel-1.2.json
R manifest --model cam-v2 --fw-version 1.3.0 --security-version 5 --floor 4 --image fw-1.2.img --out rel-1.3.json >/dev/null
R sign --file rel-1.3.json --key rel2.key >/dev/null
check "under root 2 the new key's release verifies" R verify --root root-1.json,root-2.json --file rel-1.3.json
check "under root 1 alone it does not" fails R verify --root root-1.json --file rel-1.3.json

# --- root version 3 replaces a lost root key: signed by 2 old and 2 new
R keygen --out root4 >/dev/null
R root --version 3 --root-keys root1.pub,root2.pub,root4.pub --root-threshold 2 \
    --release-keys rel2.pub --release-threshold 1 --out root-3.json >/dev/null
R sign --file root-3.json --key root4.key >/dev/null
R sign --file root-3.json --key root1.key >/dev/null
check "root 3 with one old and one new signature... needs 2 of the old" fails R verify --root root-1.json,root-2.json,root-3.json
R sign --file root-3.json --key root3.key >/dev/null
check "root 3 signed by 2 of root 2's keys and 2 of its own" R verify --root root-1.json,root-2.json,root-3.json
check "a root version skipped is refused" fails R verify --root root-1.json,root-3.json
R root --version 4 --root-keys root1.pub,root2.pub --root-threshold 1 \
    --release-keys rel2.pub --release-threshold 1 --days -1 --out root-4.json >/dev/null
R sign --file root-4.json --key root1.key >/dev/null; R sign --file root-4.json --key root2.key >/dev/null
check "an expired newest root is refused" fails R verify --root root-1.json,root-2.json,root-3.json,root-4.json
finish
