#!/usr/bin/env python3
"""Tests of scripts/matrix_check.py (run by scripts/lint.sh): a good matrix
over a small made-up tree passes, and each kind of wrong row is refused
with the line, the row and the reference named.

    scripts/matrix_check_test.py
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKER = os.path.join(HERE, "matrix_check.py")

TREE = {
    "tests/integration/it_demo.sh": 'check "the demo works" true\n'
                                    'for v in 1.2 1.3; do check "TLS $v: refused" true; done\n',
    "tests/unit/test_demo.c": "static void works(void **st) {}\n"
                              "static void unregistered(void **st) {}\n"
                              "static const struct CMUnitTest t[] = {cmocka_unit_test(works)};\n",
    "hub/demo.c": "/* T01-L1a; ghost_fn is only named in this comment */\n"
                  "void demo_run(void) {}\nvoid demo_stop(void) {}\n",
    "hub/compliance/matrix_table.h": "/* generated: T01-L1c */\n",
    "fuzz/fuzz_demo.c": "int LLVMFuzzerTestOneInput(void) { return 0; }\n",
    "docs/notes.md": "notes\n",
}

GOOD = {
    "T01-L1a": ("done: the demo runs", "`hub/demo.c` demo_run/demo_stop (note: anything)",
                'it_demo.sh: "the demo works", "TLS 1.3: refused" (both versions); '
                "test_demo:works; fuzz_demo; `docs/notes.md`"),
    "T01-L1b": ("planned: missing: the part of the demo that stops it safely", "", ""),
    "T01-L1c": ("n/a (the demo's labels are physical)", "", ""),
}


def matrix(rows):
    out = ["# Threat matrix", "", "## T01 Operation mistake", "", "| ID | status | code | proof |",
           "|---|---|---|---|"]
    for ident in sorted(rows):
        out.append("| %s | %s | %s | %s |" % ((ident,) + rows[ident]))
    return "\n".join(out) + "\n"


LINE = {ident: 7 + i for i, ident in enumerate(sorted(GOOD))}  # each row's line

# (what, the row changed, its new cells (None: unchanged), what the refusal says)
CASES = [
    ("planned without missing", "T01-L1b", ("planned: a safe stop", None, None),
     "planned but does not say what is missing"),
    ("partial with an empty missing", "T01-L1a", ("partial: the demo runs; missing: .", None, None),
     "\"missing:\" must say what is missing"),
    ("done that says missing", "T01-L1a", ("done: runs; missing: the stop of the demo", None, None),
     "done, yet it says \"missing:\""),
    ("a work item instead of a status", "T01-L1b",
     ("planned (UPD); missing: signed updates done", None, None),
     "refers to a work item ('UPD')"),
    ("n/a without a reason", "T01-L1c", ("n/a", None, None), "n/a must say why"),
    ("an unknown status", "T01-L1c", ("maybe: later", None, None), "status must start with one of"),
    ("done without proof", "T01-L1a", (None, None, ""), "done but names no proof"),
    ("done without code", "T01-L1a", (None, "", None), "done but names no code"),
    ("a test file that does not exist", "T01-L1a", (None, None, 'it_nope.sh: "the demo works"'),
     "proof: tests/integration/it_nope.sh does not exist"),
    ("a check that does not exist", "T01-L1a", (None, None, 'it_demo.sh: "the demo flies"'),
     "proof: check \"the demo flies\" does not occur in tests/integration/it_demo.sh"),
    ("a check a variable cannot make", "T01-L1a", (None, None, 'it_demo.sh: "TLS 1.3: accepted"'),
     "proof: check \"TLS 1.3: accepted\" does not occur in tests/integration/it_demo.sh"),
    ("a check with no test before it", "T01-L1a", (None, None, '"the demo works"'),
     "proof: check \"the demo works\" follows no it_*.sh"),
    ("a unit test that does not exist", "T01-L1a", (None, None, "test_demo:flies"),
     "proof: flies is no cmocka test registered in tests/unit/test_demo.c"),
    ("a unit test defined but not registered", "T01-L1a", (None, None, "test_demo:unregistered"),
     "proof: unregistered is no cmocka test registered in tests/unit/test_demo.c"),
    ("a unit test file that does not exist", "T01-L1a", (None, None, "test_nope:works"),
     "proof: tests/unit/test_nope.c does not exist"),
    ("a fuzz target that does not exist", "T01-L1a", (None, None, "fuzz_nope"),
     "proof: fuzz/fuzz_nope.c does not exist"),
    ("a proof that is prose", "T01-L1a", (None, None, "tested by hand"),
     "proof: 'tested' is not a test"),
    ("as a row that is only planned", "T01-L1a", (None, None, "as T01-L1b"),
     "proof: as T01-L1b, which is planned"),
    ("as a row that does not exist", "T01-L1a", (None, None, "as T01-L2a"),
     "proof: as T01-L2a, which is no row of the matrix"),
    ("a function that does not exist", "T01-L1a", (None, "`hub/demo.c` demo_fly", None),
     "code: demo_fly does not occur in `hub/demo.c` (outside comments)"),
    ("a function named only in a comment", "T01-L1a", (None, "`hub/demo.c` ghost_fn", None),
     "code: ghost_fn does not occur in `hub/demo.c` (outside comments)"),
    ("a code file that does not exist", "T01-L1a", (None, "`hub/nope.c` demo_run", None),
     "code: `hub/nope.c` does not exist"),
    ("a name before any file", "T01-L1a", (None, "demo_run", None),
     "code: the name demo_run follows no `file`"),
    ("done, tagged only in the generated table", "T01-L1c",
     ("done: labels", "`hub/demo.c` demo_run", 'it_demo.sh: "the demo works"'),
     "done, but no C source names it"),
    ("a '|' inside a cell", "T01-L1a", ("done: a | b", None, None), "a row has 4 cells"),
]


def run(root, rows):
    path = os.path.join(root, "docs", "threat-matrix.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(matrix(rows))
    p = subprocess.run([sys.executable, CHECKER, "--root", root, path], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


def main():
    failed = 0
    with tempfile.TemporaryDirectory(prefix="matrix-check-") as root:
        for rel, text in TREE.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        rc, out = run(root, GOOD)
        if rc != 0:
            print("matrix_check_test: the good matrix is refused:\n" + out)
            failed += 1
        for what, ident, cells, says in CASES:
            rows = dict(GOOD)
            rows[ident] = tuple(new if new is not None else old
                                for new, old in zip(cells, GOOD[ident]))
            rc, out = run(root, rows)
            where = "docs/threat-matrix.md:%d: %s: " % (LINE[ident], ident)
            if rc != 1 or not any(l.startswith("matrix_check: " + where) and says in l
                                  for l in out.splitlines()):
                print("matrix_check_test: %s: expected exit 1 and '%s%s', got %d:\n%s" %
                      (what, where, says, rc, out))
                failed += 1
        # a row whose ID is mistyped is not skipped
        rc, out = run(root, dict(GOOD, **{"T01-L1": GOOD["T01-L1a"]}))
        if rc != 1 or "docs/threat-matrix.md:7: T01-L1: not a countermeasure ID" not in out:
            print("matrix_check_test: a mistyped ID: expected exit 1 and its line, got %d:\n%s" %
                  (rc, out))
            failed += 1
    if failed:
        return 1
    print("matrix_check_test: the checker refuses all %d kinds of wrong row" % (len(CASES) + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
