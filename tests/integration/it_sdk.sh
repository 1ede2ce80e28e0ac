#!/usr/bin/env bash
# Integration: the SDK as a device maker gets it. Install libmamori (shared
# library, headers, pkg-config file) into a fresh prefix, build
# examples/sensor.c against it with pkg-config alone, and run it against
# the real hub: its readings are stored. The shared library exports the
# public API only.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$BIN")

check "install into a fresh prefix" cmake --install "$BUILD" --prefix "$T/prefix"
export PKG_CONFIG_PATH=$T/prefix/lib/pkgconfig:$T/prefix/lib/x86_64-linux-gnu/pkgconfig
check "pkg-config knows mamori" pkg-config --exists mamori
# The sanitizer build's library needs its runtime in the program too.
SAN=""
# (no grep -q: with pipefail, nm killed by SIGPIPE would fail the test)
nm -D "$BUILD/lib/libmamori.so" 2>/dev/null | grep __asan >/dev/null && SAN="-fsanitize=address,undefined"
# shellcheck disable=SC2046
check "the example builds with pkg-config alone" cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror \
    $SAN "$ROOT/examples/sensor.c" $(pkg-config --cflags --libs mamori) -o "$T/sensor"
LIBDIR=$(pkg-config --variable=libdir mamori)
check "the shared library is installed" test -e "$LIBDIR/libmamori.so"
bad_syms=$(nm -D --defined-only "$LIBDIR/libmamori.so" | awk '$2 ~ /[TD]/ {print $3}' | grep -v '^mamori_' | grep -v '^MAMORI_0' || true)
expect_eq "libmamori.so exports only mamori_* symbols" "" "$bad_syms"

hub_start "$T/data"
fleet_setup 1
claim alice 0
D0=$(dev_id 0)
echo '{"fields": [{"name": "temp_c", "type": "number", "min": -40, "max": 85}]}' >"$T/schema.json"
as op schema set sensor-v1 --file "$T/schema.json" >/dev/null
LD_LIBRARY_PATH=$LIBDIR timeout 60 "$T/sensor" "$(dev_dir 0)" "$T/state-sdk" 1 3 >"$T/sensor.log" 2>&1
check "the example ran to the end" grep -q "sent 3 readings" "$T/sensor.log"
check "its readings are stored at the hub" wait_for 10 stored_is "$D0" 3
[ "$FAIL" -gt 0 ] && tail -20 "$T/sensor.log"
finish
