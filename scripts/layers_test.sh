#!/usr/bin/env bash
# Shows that scripts/layers.sh refuses each kind of breach: it is run over
# a small tree made for the purpose, once clean and once per breach.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail=0
mk() { mkdir -p "$t/$(dirname "$1")"; printf '%s\n' "$2" > "$t/$1"; }
tree() {
    rm -rf "$t"/* "$t"/.git
    mkdir -p "$t/scripts"
    cp "$here/layers.sh" "$t/scripts/"
    mk common/a.h '#include "mamori/error.h"'
    mk lib/b.c '#include "common/a.h"'
    mk hub/core/hub.h '#include "hub/store/store.h"'
    mk hub/store/store.h '/* store */'
    mk hub/device/d.c '#include "hub/core/hub.h"'
    mk hub/alerts/a.c '#include "hub/device/d.h"'
    mk hub/io/api.c '#include "hub/alerts/a.h"'
}
run() { (cd "$t" && git init -q . && git add -A && scripts/layers.sh) >"$t.out" 2>&1; }
expect() { # name, pattern expected in the output
    if run; then echo "layers_test: $1: not refused"; fail=1
    elif ! grep -q -- "$2" "$t.out"; then echo "layers_test: $1: wrong message:"; cat "$t.out"; fail=1
    fi
}
tree
run || { echo "layers_test: a clean tree is refused:"; cat "$t.out"; fail=1; }
tree; mk common/x.c '#include "lib/b.h"'; expect "a lower floor includes a higher one" "common/ includes lib/b.h, a higher floor"
tree; mk lib/y.c '#include "broker/p.h"'; expect "two folders of one floor" "a folder of the same floor"
tree; mk hub/core/z.c '#include "hub/device/d.h"'; expect "core includes a domain" "hub/core includes hub/device/d.h, a higher room"
tree; mk hub/device/w.c '#include "hub/users/u.h"'; expect "two domains of one floor" "a room of the same floor"
tree; mk hub/misc/m.c '/* */'; expect "a folder that is no room" "is no room of hub/"
tree; { for i in $(seq 1001); do echo "/* $i */"; done; } > "$t/hub/io/big.c"; expect "a file over 1,000 lines" "1001 lines"
tree; { echo "int f(void)"; echo "{"; for i in $(seq 120); do echo "    (void)0;"; done; echo "}"; } > "$t/hub/io/long.c"
expect "a function over 120 lines" "function of 123 lines"
rm -f "$t.out"
[ $fail -eq 0 ] && echo "layers_test: the checker refuses all 7 kinds of breach"
exit $fail
