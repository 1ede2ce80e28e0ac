#!/usr/bin/env python3
"""Checks docs/threat-matrix.md against the repository (run by scripts/lint.sh).

    scripts/matrix_check.py [--root DIR] [MATRIX]

The row format is documented at the top of docs/threat-matrix.md. For every
row this checks that

  - the status starts with done, partial, planned, n/a or design; a partial
    or planned row says what is missing ("missing: ..."), a done row does
    not, an n/a row says why; no row points at a work item (UPD, MON, "SDK
    work") instead of saying what exists;
  - a done or partial row names its code and its proof;
  - every `path` in the code cell exists, and every name after it occurs in
    that file outside comments (name* : a name with that prefix);
  - every test in the proof cell exists: it_x.sh in tests/integration/ with
    each "quoted check" in its text, test_x in tests/unit/ with each name
    after "test_x:" a registered cmocka test, fuzz_x in fuzz/, `path`, and
    "as ID" a row of the matrix;
  - every done or partial ID is tagged in the code (a C source or header
    other than the generated hub/compliance/matrix_table.h names it).

Each error names the line, the row and the reference that is wrong; the
exit status is 1 when there is any.
"""
import os
import re
import subprocess
import sys

STATUS_WORDS = ("done", "partial", "planned", "n/a", "design")
ID_RE = re.compile(r"^(T\d\d-L[1-5][a-z]|P-[A-Z]+)$")
# Work items are not evidence: a row says what exists and what is missing.
WORK_ITEM_RE = re.compile(r"\b(UPD|MON)\b|\(SDK\b|\bSDK (item|work)|\b(is|are) SDK\b|work item")
MISSING_MIN = 12  # characters after "missing:" that say something
TOKEN_RE = re.compile(r'"([^"]*)"|`([^`]*)`|([();,:/])|([^\s();,:/"`]+)')
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")
VAR_RE = r"(\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*|\$[0-9#?@*])"
GENERATED = os.path.join("hub", "compliance", "matrix_table.h")



def top_level(tokens, quotes_anywhere=False):
    """The cell's tokens outside parentheses (a note in parentheses is
    skipped); quoted texts too wherever they stand with quotes_anywhere.
    The parentheses themselves are not yielded."""
    depth = 0
    for tok in tokens:
        q, sep = tok[0], tok[2]
        if q and quotes_anywhere:
            yield tok
        elif sep == "(":
            depth += 1
        elif sep == ")":
            depth = max(0, depth - 1)
        elif not depth:
            yield tok

class Checker:
    def __init__(self, root, matrix):
        self.root = root
        self.matrix = matrix
        self.rel = os.path.relpath(matrix, root)
        self.errors = []
        self.texts = {}
        self.templates = {}
        self.ids = {}

    def err(self, line, ident, what):
        self.errors.append("%s:%d: %s: %s" % (self.rel, line, ident, what))

    def text(self, rel, strip_comments=False):
        key = (rel, strip_comments)
        if key not in self.texts:
            try:
                with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
                    t = f.read()
            except OSError:
                t = None
            if t is not None and strip_comments and re.search(r"\.(c|h)$", rel):
                # comments out, string literals kept (a table may name a function)
                t = re.sub(r"/\*.*?\*/", " ", t, flags=re.S)
                t = re.sub(r"(?m)//.*$", "", t)
            self.texts[key] = t
        return self.texts[key]

    def exists(self, rel):
        return os.path.exists(os.path.join(self.root, rel))

    # --- the rows -------------------------------------------------------------

    def rows(self):
        section = None
        out = []
        with open(self.matrix, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                m = re.match(r"^## (T\d\d|Platform)", line)
                if m:
                    section = m.group(1)
                    continue
                if not line.startswith("| ") or re.match(r"^\| (ID|-)", line):
                    continue
                cells = [c.strip() for c in line.strip()[1:-1].split("|")]
                ident = cells[0]
                if not ID_RE.match(ident):
                    self.err(n, ident, "not a countermeasure ID (Tnn-Lnx or P-NAME)")
                    continue
                if len(cells) != 4:
                    self.err(n, ident, "a row has 4 cells (ID | status | code | proof), this "
                             "one %d (a '|' inside a cell?)" % len(cells))
                    continue
                if section and ident.startswith("T") and ident[:3] != section:
                    self.err(n, ident, "row under the heading %s" % section)
                if ident in self.ids:
                    self.err(n, ident, "listed twice (first on line %d)" % self.ids[ident][0])
                    continue
                word = self.status_word(cells[1])
                self.ids[ident] = (n, word)
                out.append((n, ident, cells[1], cells[2], cells[3], word))
        return out

    @staticmethod
    def status_word(status):
        for w in STATUS_WORDS:
            if status == w or re.match(re.escape(w) + r"[\s:(]", status):
                return w
        return None

    def check_status(self, n, ident, status, code, proof, word):
        if word is None:
            self.err(n, ident, "status must start with one of %s: '%s'" %
                     (", ".join(STATUS_WORDS), status[:40]))
            return
        for cell in (status, code, proof):
            m = WORK_ITEM_RE.search(cell)
            if m:
                self.err(n, ident, "refers to a work item ('%s'): say what exists and what is "
                         "missing" % m.group(0))
        missing = re.search(r"\bmissing:\s*(.*)$", status)
        if word in ("partial", "planned"):
            if not missing:
                self.err(n, ident, "%s but does not say what is missing (\"missing: ...\")" % word)
            elif len(missing.group(1).strip(" .;")) < MISSING_MIN:
                self.err(n, ident, "\"missing:\" must say what is missing: '%s'" % missing.group(1))
        elif missing:
            self.err(n, ident, "%s, yet it says \"missing:\" (partial?)" % word)
        if word == "n/a" and len(status[3:].strip(" :()")) < MISSING_MIN:
            self.err(n, ident, "n/a must say why (\"n/a (why)\")")
        if word in ("done", "partial"):
            if not code:
                self.err(n, ident, "%s but names no code" % word)
            if not proof:
                self.err(n, ident, "%s but names no proof" % word)

    # --- the code cell --------------------------------------------------------

    def check_code(self, n, ident, code):
        cur = None
        for q, path, sep, word in top_level(TOKEN_RE.findall(code)):
            if q:
                self.err(n, ident, "code: a quoted text (\"%s\") belongs in the proof" % q)
            elif path:
                cur = path
                if not self.exists(path):
                    self.err(n, ident, "code: `%s` does not exist" % path)
                    cur = None
            elif sep == ";":
                cur = None
            elif word:
                if not NAME_RE.match(word):
                    self.err(n, ident, "code: '%s' is neither a `path` nor a name" % word)
                elif cur is None:
                    self.err(n, ident, "code: the name %s follows no `file`" % word)
                elif not os.path.isfile(os.path.join(self.root, cur)):
                    self.err(n, ident, "code: the name %s follows a directory (`%s`)" % (word, cur))
                else:
                    self.check_name(n, ident, cur, word)

    def check_name(self, n, ident, path, name):
        t = self.text(path, strip_comments=True) or ""
        pat = r"\b" + re.escape(name[:-1]) + r"\w*" if name.endswith("*") else \
            r"\b" + re.escape(name) + r"\b"
        if not re.search(pat, t):
            self.err(n, ident, "code: %s does not occur in `%s`%s" %
                     (name, path, " (outside comments)" if path.endswith((".c", ".h")) else ""))

    # --- the proof cell -------------------------------------------------------

    def check_proof(self, n, ident, proof):
        it, unit, names, prev = None, None, False, None
        for q, path, sep, word in top_level(TOKEN_RE.findall(proof), quotes_anywhere=True):
            if q:  # a check name, wherever it stands (notes too)
                if it is None:
                    self.err(n, ident, "proof: check \"%s\" follows no it_*.sh" % q)
                elif self.text(it) is not None and not self.has_check(it, q):
                    self.err(n, ident, "proof: check \"%s\" does not occur in %s" % (q, it))
                prev = None
            elif path:
                it, unit, names = None, None, False
                if not self.exists(path):
                    self.err(n, ident, "proof: `%s` does not exist" % path)
            elif sep == ";":
                it, unit, names = None, None, False
            elif sep == ":":
                names = unit is not None and prev == unit
            elif word:
                self.proof_word(n, ident, word, prev, unit, names)
                if re.match(r"^it_\w+\.sh$", word):
                    it, unit, names = "tests/integration/" + word, None, False
                elif re.match(r"^test_\w+$", word) and not names:
                    it, unit = None, word
                elif re.match(r"^fuzz_\w+$", word):
                    it, unit, names = None, None, False
            prev = word if word else (prev if sep in (",", "/") else None)

    def has_check(self, it, name):
        """name is in the test's text, or fills a check name the test builds
        from variables ("TLS $v: ..." names "TLS 1.2: ...")."""
        t = self.text(it)
        if name in t:
            return True
        if it not in self.templates:
            pats = []
            # the names passed to the helpers of tests/integration/lib.sh
            for s in set(re.findall(r'\b(?:check|expect_eq|ok|bad)\s+"((?:[^"\\\n]|\\.)*)"', t)):
                parts = re.split(VAR_RE, s)
                lit = "".join(p for p in parts if not p.startswith("$"))
                if len(parts) > 1 and len(lit.strip()) >= 8:  # a name, not just "$1"
                    rx = "".join(".*?" if p.startswith("$") else re.escape(p) for p in parts)
                    pats.append(re.compile(rx + r"\Z"))
            self.templates[it] = pats
        return any(p.match(name) for p in self.templates[it])

    def proof_word(self, n, ident, word, prev, unit, names):
        if re.match(r"^it_\w+\.sh$", word):
            if not self.exists("tests/integration/" + word):
                self.err(n, ident, "proof: tests/integration/%s does not exist" % word)
        elif re.match(r"^test_\w+$", word) and not names:
            if not self.exists("tests/unit/%s.c" % word):
                self.err(n, ident, "proof: tests/unit/%s.c does not exist" % word)
        elif re.match(r"^fuzz_\w+$", word):
            if not self.exists("fuzz/%s.c" % word):
                self.err(n, ident, "proof: fuzz/%s.c does not exist" % word)
        elif word == "as":
            pass
        elif ID_RE.match(word) and prev == "as":
            if word not in self.ids:
                self.err(n, ident, "proof: as %s, which is no row of the matrix" % word)
            elif self.ids[word][1] not in ("done", "partial"):
                self.err(n, ident, "proof: as %s, which is %s" % (word, self.ids[word][1]))
        elif names and NAME_RE.match(word):
            t = self.text("tests/unit/%s.c" % unit) or ""
            if not (re.search(r"\bstatic void %s\s*\(" % re.escape(word), t) and
                    re.search(r"cmocka_unit_test\w*\(\s*%s\b" % re.escape(word), t)):
                self.err(n, ident, "proof: %s is no cmocka test registered in tests/unit/%s.c" %
                         (word, unit))
        else:
            self.err(n, ident, "proof: '%s' is not a test (it_x.sh \"check\", test_x:name, fuzz_x, "
                     "`path`, as ID)" % word)

    # --- tags -----------------------------------------------------------------

    def sources(self):
        try:
            out = subprocess.run(["git", "ls-files", "*.c", "*.h"], cwd=self.root, check=True,
                                 capture_output=True, text=True).stdout.split()
            if out:
                return out
        except (OSError, subprocess.CalledProcessError):
            pass
        found = []
        for d, dirs, files in os.walk(self.root):
            dirs[:] = [x for x in dirs if not x.startswith(("build", "."))]
            found += [os.path.relpath(os.path.join(d, f), self.root)
                      for f in files if f.endswith((".c", ".h"))]
        return found

    def check_tags(self, rows):
        blob = "\n".join(self.text(f) or "" for f in self.sources() if f != GENERATED)
        for n, ident, _status, _code, _proof, word in rows:
            if word in ("done", "partial") and not re.search(r"\b%s\b" % re.escape(ident), blob):
                self.err(n, ident, "%s, but no C source names it (tag the code: /* %s */)" %
                         (word, ident))

    def run(self):
        rows = self.rows()
        for n, ident, status, code, proof, word in rows:
            self.check_status(n, ident, status, code, proof, word)
            self.check_code(n, ident, code)
            self.check_proof(n, ident, proof)
        self.check_tags(rows)
        return self.errors


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = argv[1:]
    if args[:1] == ["--root"] and len(args) >= 2:
        root, args = os.path.abspath(args[1]), args[2:]
    matrix = os.path.abspath(args[0]) if args else os.path.join(root, "docs", "threat-matrix.md")
    errors = Checker(root, matrix).run()
    for e in errors:
        print("matrix_check: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
