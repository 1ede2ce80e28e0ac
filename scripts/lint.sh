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
# docs/threat-matrix.md promises that grep finds the code behind every
# implemented (done or partial) countermeasure: hold it to that.
untagged=""
for id in $(grep -oE '^\| (T[0-9]{2}-L[0-9][a-z]|P-[A-Z]+) \| (done|partial)' docs/threat-matrix.md | awk '{print $2}'); do
    echo "$files" | xargs grep -q -- "$id" || untagged="$untagged $id"
done
if [ -n "$untagged" ]; then
    echo "lint: threat-matrix IDs marked done/partial with no tag in the code:$untagged"; rc=1
fi
# docs/api-reference.md is generated from the public headers: keep it so.
python3 scripts/apiref.py --check || rc=1
python3 scripts/matrix_gen.py --check || rc=1
[ $rc -eq 0 ] && echo "lint: ok ($(echo "$files" | wc -l) files)"
exit $rc
