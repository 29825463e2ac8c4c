#!/usr/bin/env python3
"""Generate examples/charts/prefect-cloud-<release>/ from the sources next to this script.

The six prefect-cloud chart directories are committed as plain files; this script only
keeps them in step. Every source file ends in `.in` and may contain:

  @VERSION@ / @APPVERSION@      replaced by the release's chart version / appVersion
  #@ file <cond>                (first line) emit the file only for matching releases
  #@ if <cond> / #@ elif <cond> / #@ else / #@ end
                                keep the enclosed lines only for matching releases

where <cond> is one or more `<op> <version>` pairs that must all hold, op being one of
< <= == >= > (e.g. `>= 0.5.2 < 1.2.0`). Directive lines themselves are never emitted.

Usage: generate.py          rewrite the chart directories
       generate.py --check  exit 1 if a committed directory differs from its source
"""
import operator
import pathlib
import re
import shutil
import sys
import tempfile

# chart version -> server image tag (appVersion)
RELEASES = {
    "0.4.2": "2025.0301.101010",
    "0.5.2": "2025.0415.120000",
    "0.6.1": "2025.0601.090000",
    "0.7.0": "2025.0715.155226",  # first tag without `ps` in the image
    "0.8.2": "2025.1001.080000",
    "1.2.0": "2026.0115.100000",
}

SRC = pathlib.Path(__file__).resolve().parent
CHARTS = SRC.parent
OPS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">=": operator.ge, ">": operator.gt}
DIRECTIVE = re.compile(r"^\s*#@\s*(file|if|elif|else|end)\b\s*(.*?)\s*$")


def vkey(v):
    return tuple(int(p) for p in v.split("."))


def holds(cond, release, where):
    words = cond.split()
    if not words or len(words) % 2:
        sys.exit(f"{where}: bad condition {cond!r}")
    for op, ver in zip(words[::2], words[1::2]):
        if op not in OPS:
            sys.exit(f"{where}: bad operator {op!r}")
        if not OPS[op](vkey(release), vkey(ver)):
            return False
    return True


def render(path, release):
    """Return the file's text for this release, or None when the file is not part of it."""
    out, stack = [], []  # stack entries: [parent_active, this_branch_active, some_branch_taken]
    lines = path.read_text().splitlines(keepends=True)
    for n, line in enumerate(lines, 1):
        where = f"{path.relative_to(SRC)}:{n}"
        m = DIRECTIVE.match(line)
        active = all(e[1] for e in stack)
        if not m:
            if active:
                out.append(line.replace("@VERSION@", release).replace("@APPVERSION@", RELEASES[release]))
            continue
        kind, cond = m.groups()
        if kind == "file":
            if n != 1:
                sys.exit(f"{where}: '#@ file' must be the first line")
            if not holds(cond, release, where):
                return None
        elif kind == "if":
            ok = holds(cond, release, where)
            stack.append([active, ok, ok])
        elif kind == "elif":
            if not stack:
                sys.exit(f"{where}: elif without if")
            ok = not stack[-1][2] and holds(cond, release, where)
            stack[-1][1], stack[-1][2] = ok, stack[-1][2] or ok
        elif kind == "else":
            if not stack:
                sys.exit(f"{where}: else without if")
            stack[-1][1], stack[-1][2] = not stack[-1][2], True
        else:
            if not stack:
                sys.exit(f"{where}: end without if")
            stack.pop()
    if stack:
        sys.exit(f"{path}: unterminated #@ if")
    return "".join(out)


def generate(release, dest):
    for src in sorted(SRC.rglob("*.in")):
        text = render(src, release)
        if text is None:
            continue
        target = dest / src.relative_to(SRC).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def tree(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for release in RELEASES:
        dest = CHARTS / f"prefect-cloud-{release}"
        if check:
            with tempfile.TemporaryDirectory() as tmp:
                generate(release, pathlib.Path(tmp))
                if not dest.is_dir() or tree(pathlib.Path(tmp)) != tree(dest):
                    stale.append(dest.name)
        else:
            shutil.rmtree(dest, ignore_errors=True)
            generate(release, dest)
            print(f"wrote {dest.relative_to(CHARTS.parent.parent)}")
    if stale:
        sys.exit("out of date (run examples/charts/prefect-cloud-src/generate.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
