#!/usr/bin/env bash
# Lint: banned string functions (STYLE.md habit 5) and clang-format.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
banned=$(echo "$files" | xargs grep -Hn -E '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok)\s*\(' |
         grep -v -E '//.*allowed|/\*.*allowed' || true)
if [ -n "$banned" ]; then
    echo "lint: banned functions:"; echo "$banned"; rc=1
fi
if command -v clang-format >/dev/null; then
    if ! echo "$files" | xargs clang-format --dry-run --Werror 2>"${TMPDIR:-/tmp}/mamori-fmt.$$"; then
        echo "lint: clang-format differences (run 'make format'):"
        grep -E '^[^ ].*: (error|warning)' "${TMPDIR:-/tmp}/mamori-fmt.$$" | cut -d: -f1 | sort -u
        rc=1
    fi
    rm -f "${TMPDIR:-/tmp}/mamori-fmt.$$"
fi
[ $rc -eq 0 ] && echo "lint: ok ($(echo "$files" | wc -l) files)"
exit $rc
