#!/usr/bin/env python3
"""Fails when the repository cites a file it does not have.

Two kinds of reference are checked, in the tracked files of the repository
(`git ls-files`; every file below the root when it is not a git work tree),
bench/results/ excluded:

  1. relative Markdown links, [text](target) and [label]: target, in *.md
     outside code blocks and code spans: the file part of target (before any
     #anchor) must exist, relative to the linking file (a leading / means the
     repository root). Links with a scheme (https:, mailto:, ...) and
     anchor-only links (#section) are not checked;
  2. paths through a docs folder mentioned anywhere in source, scripts and
     docs (*.h *.cpp *.cu *.cuh *.py *.md *.sh *.txt *.cmake, CMakeLists.txt),
     e.g. "docs/algorithm.md" (also with folders in front): relative to the
     repository root (to the mentioning file when the path starts with ./ or
     ../), they must exist inside the repository.

    python3 tools/check_docs.py [--root DIR]

Prints one "file:line: target" per dangling reference and exits 1 if there is
any, 0 otherwise. Standard library only.
"""
import argparse
import os
import re
import subprocess
import sys

EXCLUDED = ("bench/results/",)
MENTION_EXTS = (".h", ".cpp", ".cu", ".cuh", ".py", ".md", ".sh", ".txt", ".cmake")

# [text](target "title")  and  [label]: target
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*)?\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
# A path whose last folder before the file is a docs folder: optional ./ or ../ or
# folders in front, not glued to a longer word or URL on the left.
DOCS_MENTION = re.compile(r"(?<![\w./\-:])((?:\.{1,2}/)*(?:[\w.\-]+/)*docs/(?:[\w.\-]+/)*[\w.\-]*\w)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def tracked_files(root):
    """Repository-relative paths of the files to check."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return files


def wants_mentions(path):
    base = os.path.basename(path)
    return base == "CMakeLists.txt" or base.endswith(MENTION_EXTS)


def resolve(root, source, target, relative_to_file):
    """The absolute path target names, or None when it leaves the repository."""
    if target.startswith("/"):
        full = os.path.join(root, target.lstrip("/"))
    elif relative_to_file:
        full = os.path.join(root, os.path.dirname(source), target)
    else:
        full = os.path.join(root, target)
    full = os.path.normpath(full)
    inside = os.path.commonpath([os.path.abspath(root), os.path.abspath(full)])
    return full if inside == os.path.abspath(root) else None


def exists(root, source, target, relative_to_file):
    full = resolve(root, source, target, relative_to_file)
    return full is not None and os.path.exists(full)


def markdown_links(text):
    """(line number, target) of every link outside fenced blocks and code spans."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = CODE_SPAN.sub("", line)
        for m in INLINE_LINK.finditer(line):
            yield number, m.group(1)
        m = REF_LINK.match(line)
        if m:
            yield number, m.group(1)


def check(root):
    """Sorted list of (file, line, target) that point at nothing."""
    problems = []
    for path in tracked_files(root):
        if path.startswith(EXCLUDED) or not os.path.isfile(os.path.join(root, path)):
            continue
        is_md = path.endswith(".md")
        if not (is_md or wants_mentions(path)):
            continue
        try:
            with open(os.path.join(root, path), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        if is_md:
            for number, target in markdown_links(text):
                if SCHEME.match(target) or target.startswith("#"):
                    continue
                file_part = target.split("#", 1)[0].split("?", 1)[0]
                if file_part and not exists(root, path, file_part, True):
                    problems.append((path, number, target))
        for number, line in enumerate(text.splitlines(), 1):
            if is_md:  # link targets were checked above, relative to the linking file
                line = REF_LINK.sub("", INLINE_LINK.sub("", line))
            for m in DOCS_MENTION.finditer(line):
                target = m.group(1)
                if not exists(root, path, target, target.startswith(".")):
                    problems.append((path, number, target))
    return sorted(set(problems))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.dirname(here), help="repository root")
    args = ap.parse_args(argv)
    problems = check(os.path.abspath(args.root))
    for path, number, target in problems:
        print(f"{path}:{number}: {target}")
    if problems:
        print(f"check_docs: {len(problems)} reference(s) to files the repository does not have",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
