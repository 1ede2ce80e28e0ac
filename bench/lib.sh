# Shared by the bench scripts; sourced once BIN and W (the run's temporary
# directory) are set. Every process started is put in PIDS and stopped,
# and W removed, on exit.
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT
# ep KEY: from the hub's endpoints.json
ep() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$W/data/run/endpoints.json" "$1"; }
# cpu_ms PID: user + system CPU of a process so far
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }
# jget A.B.0: a member of the JSON on stdin
jget() { python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1"; }
# bench_accounts: the administrator (bootstrapped; session W/s-admin, used
# by $C) and an owner account (session W/s-owner), on a started hub
bench_accounts() {
    C="$BIN/mamorictl --data $W/data --session $W/s-admin"
    export MAMORI_PASSWORD="bench admin passphrase"
    $C bootstrap --user admin >/dev/null && $C login --user admin >/dev/null
    MAMORI_NEW_PASSWORD="bench owner passphrase" $C user add owner --role owner >/dev/null
    MAMORI_PASSWORD="bench owner passphrase" "$BIN/mamorictl" --data "$W/data" --session "$W/s-owner" \
        login --user owner >/dev/null
}
