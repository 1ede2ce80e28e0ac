#!/usr/bin/env bash
# The whole test suite, as `make test` runs it:
#   1. lint (banned functions, clang-format)
#   2. normal build: unit tests (cmocka) + integration tests (real mamorid,
#      mosquitto + plugin, TLS, SQLite on loopback), then the integration
#      tests again with the registry on PostgreSQL (a server of each test's
#      own, scripts/pg.sh)
#   3. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#      (LeakSanitizer on: a leak fails the process)
#   4. unit tests under valgrind --leak-check=full, JOBS at a time
#   5. every libFuzzer target for FUZZ_SECONDS (default 20) from its corpus,
#      JOBS targets at a time
# and prints one summary; exit status 0 only when everything passed.
set -uo pipefail
BUILD=${1:-build}; BUILD_SAN=${2:-build-san}; BUILD_FUZZ=${3:-build-fuzz}; JOBS=${4:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
cd "$(dirname "$0")/.."
ROOT=$PWD
# The suite runs on what scripts/install-deps.sh installed: Debian's
# interpreters and tools, never a user-level shim found first on the
# caller's PATH (a version-manager shim in front of python3 costs half a
# second of CPU per start, and the tests start python3 thousands of times).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PASSED=0; FAILED=0; FAILURES=()
LOGDIR=$(mktemp -d /tmp/mamori-test-logs.XXXXXX)

# in_parallel FN ARG...: runs FN ARG for every ARG, JOBS at a time (each is
# single-threaded: valgrind runs, libFuzzer targets); FN leaves its status
in_parallel() {
    local fn=$1 a; shift
    for a in "$@"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        "$fn" "$a" &
    done
    wait
}
stage() { printf '\n=== %s ===\n' "$*"; }
result() { # result NAME STATUS
    if [ "$2" -eq 0 ]; then PASSED=$((PASSED + 1)); echo "PASS $1"
    else FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "FAIL $1"; fi
}
run_ctest() { # run_ctest NAME BUILD_DIR LABEL [env...]
    local name=$1 dir=$2 label=$3; shift 3
    (cd "$dir" && env "$@" ctest -L "$label" --output-on-failure -j "${CTEST_JOBS:-2}") >"$LOGDIR/$name.log" 2>&1
    local st=$?
    grep -E "tests passed|tests failed|^ *[0-9]+/[0-9]+ Test" "$LOGDIR/$name.log" | sed 's/^/  /'
    [ $st -ne 0 ] && tail -60 "$LOGDIR/$name.log"
    result "$name" $st
}

stage "lint"
scripts/lint.sh; result lint $?

stage "build ($BUILD)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAMORI_TESTS=ON >/dev/null && cmake --build "$BUILD" -j "$JOBS" >"$LOGDIR/build.log" 2>&1
st=$?; [ $st -ne 0 ] && tail -40 "$LOGDIR/build.log"; result build $st

stage "unit + integration tests"
run_ctest unit "$BUILD" unit
run_ctest integration "$BUILD" integration
run_ctest integration-pg "$BUILD" integration MAMORI_IT_STORE=postgresql

stage "sanitizers: ASan + UBSan ($BUILD_SAN)"
cmake -S . -B "$BUILD_SAN" -DCMAKE_BUILD_TYPE=Debug -DMAMORI_SANITIZE=ON -DMAMORI_TESTS=ON >/dev/null &&
    cmake --build "$BUILD_SAN" -j "$JOBS" >"$LOGDIR/build-san.log" 2>&1
st=$?; [ $st -ne 0 ] && tail -40 "$LOGDIR/build-san.log"; result build-san $st
# mosquitto cannot load an ASan-instrumented plugin without preloading the
# runtime; the plugin's logic runs under ASan in the unit tests, and the
# sanitized hub, CLI and simulator use the normal build's plugin.
SAN_ENV=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1
         UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
         "LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
         "MAMORI_PLUGIN=$ROOT/$BUILD/lib/mamori_broker.so")
run_ctest unit-san "$BUILD_SAN" unit "${SAN_ENV[@]}"
run_ctest integration-san "$BUILD_SAN" integration "${SAN_ENV[@]}"

stage "valgrind (unit tests)"
vg_one() { # vg_one BINARY: its status in $LOGDIR/vg-NAME.rc
    local n; n=$(basename "$1")
    valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 "$1" \
        >"$LOGDIR/vg-$n.log" 2>&1
    echo $? >"$LOGDIR/vg-$n.rc"
}
in_parallel vg_one "$BUILD"/bin/test_*
st=0
for t in "$BUILD"/bin/test_*; do
    n=$(basename "$t")
    [ "$(cat "$LOGDIR/vg-$n.rc" 2>/dev/null)" = 0 ] || { st=1; tail -30 "$LOGDIR/vg-$n.log"; }
done
result valgrind $st

stage "fuzzing (${FUZZ_SECONDS} s per target)"
if command -v clang >/dev/null; then
    CC=clang cmake -S . -B "$BUILD_FUZZ" -DCMAKE_BUILD_TYPE=Debug -DMAMORI_FUZZ=ON >/dev/null &&
        cmake --build "$BUILD_FUZZ" -j "$JOBS" --target $(for f in fuzz/corpus/*; do printf 'fuzz_%s ' "$(basename "$f")"; done) >"$LOGDIR/build-fuzz.log" 2>&1
    st=$?; [ $st -ne 0 ] && tail -40 "$LOGDIR/build-fuzz.log"; result build-fuzz $st
    fuzz_one() { # fuzz_one TARGET: its status in $LOGDIR/fuzz-TARGET.rc
        local t=$1 work
        work=$(mktemp -d /tmp/mamori-fuzz-$t.XXXXXX)
        cp "fuzz/corpus/$t"/* "$work"/
        (cd "$work" && "$ROOT/$BUILD_FUZZ/bin/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
            -seed=1 "$work" >"$LOGDIR/fuzz-$t.log" 2>&1)
        echo $? >"$LOGDIR/fuzz-$t.rc"
        rm -rf "$work"
    }
    TARGETS=(); for f in fuzz/corpus/*; do TARGETS+=("$(basename "$f")"); done
    in_parallel fuzz_one "${TARGETS[@]}"
    for t in "${TARGETS[@]}"; do
        st=$(cat "$LOGDIR/fuzz-$t.rc" 2>/dev/null || echo 1)
        grep -E "^Done" "$LOGDIR/fuzz-$t.log" | sed "s/^/  fuzz_$t: /"
        [ "$st" -ne 0 ] && tail -30 "$LOGDIR/fuzz-$t.log"
        result "fuzz_$t" "$st"
    done
else
    result build-fuzz 1
fi

stage "summary"
echo "logs: $LOGDIR"
[ ${#FAILURES[@]} -gt 0 ] && echo "failed: ${FAILURES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
