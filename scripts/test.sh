#!/usr/bin/env bash
# The whole test suite, as `make test` runs it:
#   1. lint (banned functions, clang-format)
#   2. normal build: unit tests (cmocka) + integration tests (real mamorid,
#      mosquitto + plugin, TLS, SQLite on loopback)
#   3. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#      (LeakSanitizer on: a leak fails the process)
#   4. unit tests under valgrind --leak-check=full
#   5. every libFuzzer target for FUZZ_SECONDS (default 20) from its corpus
# and prints one summary; exit status 0 only when everything passed.
set -uo pipefail
BUILD=${1:-build}; BUILD_SAN=${2:-build-san}; BUILD_FUZZ=${3:-build-fuzz}; JOBS=${4:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
cd "$(dirname "$0")/.."
ROOT=$PWD
PASSED=0; FAILED=0; FAILURES=()
LOGDIR=$(mktemp -d /tmp/mamori-test-logs.XXXXXX)

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
st=0
for t in "$BUILD"/bin/test_*; do
    valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 "$t" \
        >"$LOGDIR/vg-$(basename "$t").log" 2>&1 || { st=1; tail -30 "$LOGDIR/vg-$(basename "$t").log"; }
done
result valgrind $st

stage "fuzzing (${FUZZ_SECONDS} s per target)"
if command -v clang >/dev/null; then
    CC=clang cmake -S . -B "$BUILD_FUZZ" -DCMAKE_BUILD_TYPE=Debug -DMAMORI_FUZZ=ON >/dev/null &&
        cmake --build "$BUILD_FUZZ" -j "$JOBS" --target $(for f in fuzz/corpus/*; do printf 'fuzz_%s ' "$(basename "$f")"; done) >"$LOGDIR/build-fuzz.log" 2>&1
    st=$?; [ $st -ne 0 ] && tail -40 "$LOGDIR/build-fuzz.log"; result build-fuzz $st
    for f in fuzz/corpus/*; do
        t=$(basename "$f")
        work=$(mktemp -d /tmp/mamori-fuzz-$t.XXXXXX)
        cp "$f"/* "$work"/
        (cd "$work" && "$ROOT/$BUILD_FUZZ/bin/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
            -seed=1 "$work" >"$LOGDIR/fuzz-$t.log" 2>&1)
        st=$?
        grep -E "^Done" "$LOGDIR/fuzz-$t.log" | sed "s/^/  fuzz_$t: /"
        [ $st -ne 0 ] && tail -30 "$LOGDIR/fuzz-$t.log"
        result "fuzz_$t" $st
        rm -rf "$work"
    done
else
    result build-fuzz 1
fi

stage "summary"
echo "logs: $LOGDIR"
[ ${#FAILURES[@]} -gt 0 ] && echo "failed: ${FAILURES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
