#!/usr/bin/env python3
"""Generates docs/api-reference.md from the public headers (include/mamori/).

Every declaration in a header is listed with the comment block right above
it, in header order. `scripts/apiref.py --check` exits 1 when the file in
the repository is not what the headers say (run by scripts/lint.sh).
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api-reference.md"


def clean_comment(c):
    lines = []
    for ln in c.strip().splitlines():
        ln = ln.strip()
        ln = re.sub(r"^/\*+\s?", "", ln)
        ln = re.sub(r"\s?\*+/$", "", ln)
        ln = re.sub(r"^\*\s?", "", ln)
        lines.append(ln)
    return "\n".join(lines).strip()


def items(text):
    """Top-level declarations (starting in column 0) with the comment block
    (also in column 0) right above them."""
    lines = text.splitlines()
    i, comment = 0, None
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("/*"):
            block = [ln]
            while "*/" not in lines[i]:
                i += 1
                block.append(lines[i])
            comment = "\n".join(block)
            i += 1
            continue
        if not ln.strip() or ln.startswith("#") or ln.startswith("}") or 'extern "C"' in ln:
            if not ln.strip():
                comment = None
            i += 1
            continue
        decl, depth = [], 0
        while i < len(lines):
            decl.append(lines[i])
            depth += lines[i].count("{") - lines[i].count("}")
            if depth == 0 and lines[i].rstrip().endswith(";"):
                break
            i += 1
        i += 1
        yield comment, "\n".join(decl)
        comment = None


def render():
    out = ["# libmamori API reference", "",
           "Generated from `include/mamori/*.h` by `scripts/apiref.py`; do not edit by hand.",
           "Ownership and threading rules are stated on each item; every action returns",
           "`enum mamori_err` (see `mamori_strerror`).", ""]
    for h in sorted((ROOT / "include" / "mamori").glob("*.h")):
        text = h.read_text()
        out += [f"## `mamori/{h.name}`", ""]
        head = re.match(r"\s*/\*(.*?)\*/", text, re.S)
        if head:
            out += [clean_comment(head.group(0)), ""]
            text = text[head.end():]
        for comment, decl in items(text):
            decl = re.sub(r"\s*MAMORI_MUST_CHECK", "", decl)
            out += ["```c", decl, "```", ""]
            if comment:
                out += [clean_comment(comment), ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    doc = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != doc:
            print("docs/api-reference.md is out of date: run scripts/apiref.py")
            sys.exit(1)
        sys.exit(0)
    OUT.write_text(doc)
