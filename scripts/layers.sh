#!/usr/bin/env bash
# The architecture, checked (run by scripts/lint.sh; docs/internals/hub.md):
#   1. folders are used in one direction: a file includes headers of its own
#      folder or of a lower one, never of a higher one, and two folders of
#      the same floor never include each other;
#        top level: include/ (public headers) < common/ < lib/ broker/ factory/
#                   < hub/ agent/ cli/ sim/ < bench/ fuzz/
#        inside hub/: store < core < pki < device, users < fleet, alerts, owners
#                     < compliance < io < hub/ itself (daemon, main, demo)
#   2. no source file over 1,000 lines, no function over 120 lines (tests and
#      generated tables aside).
# Prints every breach with file and line; exit status 1 when there is any.
set -uo pipefail
cd "$(dirname "$0")/.."
MAX_FILE=1000
MAX_FN=120
GENERATED="hub/compliance/matrix_table.h"

files=$(git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^tests/' ||
        find . -name '*.[ch]' -not -path './build*' -not -path './tests/*' | sed 's#^\./##')
bad=0

# 1. includes: one pass over every '#include "..."'
incs=$(echo "$files" | xargs grep -n -H -E '^#include "')
out=$(echo "$incs" | awk -F: '
    BEGIN {
        split("include:0 common:1 lib:2 broker:2 factory:2 hub:3 agent:3 cli:3 sim:3 bench:4 fuzz:4", t, " ")
        for (i in t) { split(t[i], kv, ":"); TOP[kv[1]] = kv[2] }
        split("store:0 core:1 pki:2 device:3 users:3 fleet:4 alerts:4 owners:4 compliance:5 io:6 .:7", r, " ")
        for (i in r) { split(r[i], kv, ":"); HUB[kv[1]] = kv[2] }
    }
    function top(p) { return substr(p, 1, index(p, "/") - 1) }
    function room(p,   q) { q = substr(p, 5); return index(q, "/") ? substr(q, 1, index(q, "/") - 1) : "." }
    {
        f = $1; line = $2; inc = $3; sub(/^#include "/, "", inc); sub(/".*/, "", inc)
        ft = top(f); if (!(ft in TOP)) next
        if (inc ~ /^mamori\//) it = "include"; else if (index(inc, "/")) it = top(inc); else next
        if (!(it in TOP)) next
        if (it != ft) {
            if (TOP[it] > TOP[ft]) printf "layers: %s:%s: %s/ includes %s, a higher floor\n", f, line, ft, inc
            else if (TOP[it] == TOP[ft]) printf "layers: %s:%s: %s/ includes %s, a folder of the same floor\n", f, line, ft, inc
            next
        }
        if (ft != "hub") next
        fr = room(f); ir = room(inc)
        if (!(fr in HUB)) next  # reported below
        if (!(ir in HUB)) { printf "layers: %s:%s: %s is in no room of hub/\n", f, line, inc; next }
        if (fr == ir) next
        if (HUB[ir] > HUB[fr]) printf "layers: %s:%s: hub/%s includes %s, a higher room\n", f, line, fr, inc
        else if (HUB[ir] == HUB[fr]) printf "layers: %s:%s: hub/%s includes %s, a room of the same floor\n", f, line, fr, inc
    }') || { echo "layers: the include check did not run"; bad=1; }
[ -z "$out" ] || { echo "$out"; bad=1; }
# every file of hub/ is in one of its rooms (or hub/ itself)
rooms=" store core pki device users fleet alerts owners compliance io "
for f in $(echo "$files" | grep '^hub/.*/'); do
    r=${f#hub/}
    r=${r%%/*}
    case "$rooms" in *" $r "*) ;; *) echo "layers: $f: hub/$r/ is no room of hub/ (scripts/layers.sh)"; bad=1 ;; esac
done

# 2. sizes: files, then functions (a definition starts at column 0 and
#    ends at the first "}" at column 0)
sizes=$(echo "$files" | grep -v -x "$GENERATED" | xargs awk -v maxf=$MAX_FILE -v max=$MAX_FN '
    FNR == 1 { if (prev && n > maxf) printf "layers: %s: %d lines (at most %d)\n", prev, n, maxf; infn = 0 }
    { prev = FILENAME; n = FNR }
    /^[A-Za-z_][A-Za-z0-9_ \*]*\(/ && !/;[ \t]*$/ { name = $0; start = FNR; infn = 1; next }
    infn && /^\}/ { if (FNR - start + 1 > max) printf "layers: %s:%d: function of %d lines (at most %d): %s\n", FILENAME, start, FNR - start + 1, max, name; infn = 0 }
    END { if (n > maxf) printf "layers: %s: %d lines (at most %d)\n", prev, n, maxf }') ||
    { echo "layers: the size check did not run"; bad=1; }
[ -z "$sizes" ] || { echo "$sizes"; bad=1; }
[ $bad -eq 0 ] && echo "layers: ok"
exit $bad
