#!/usr/bin/env python3
"""Checks what a user reads from lightring-bench; the exit status is the verdict.

  bench_table_check.py table --rows K [--width 120] [--require COL,...] [--columns N] -- CMD...
      CMD must exit 0; every stdout line is at most --width characters; the column header
      (the '#' line naming N and step_ms) is followed by exactly K rows of as many fields;
      every column except schedule and #wrong is '-' or a number >= 0, and the columns of
      --require are numbers in every row (with --columns N the header names N columns). With
      --progress-min/--progress-max: the number of progress lines ('# ... T s: ...') is within.
  bench_table_check.py error [--expect TEXT] -- CMD...
      CMD must fail with no MPI_ABORT banner; every rank's message starts with a
      'lightring error' line, names no C++ source location, and ends with a
      '(this rank was ...; raised at file.cpp:NN)' line; with --expect, some rank's first
      line contains TEXT.
  bench_table_check.py version -- CMD...
      CMD must exit 0 and print one line 'lightring-bench X.Y.Z (commit C)'.
"""
import argparse
import subprocess
import sys

TEXT_COLUMNS = {"schedule", "#wrong"}


def fail(why, output=""):
    print(f"FAIL: {why}", file=sys.stderr)
    if output:
        print(output, file=sys.stderr)
    sys.exit(1)


def is_location(word):
    """'(dir/file.cpp:12)' or 'file.h:3' (a C++/CUDA source and a line number)."""
    word = word.strip("(),;")
    name, _, line = word.rpartition(":")
    return line.isdigit() and name.endswith((".cpp", ".h", ".cu", ".cuh", ".cc", ".hpp"))


def check_table(a, proc):
    out = proc.stdout
    if proc.returncode != 0:
        fail(f"exit status {proc.returncode}", out + proc.stderr)
    lines = out.splitlines()
    for line in lines:
        if len(line) > a.width:
            fail(f"a line of {len(line)} characters (> {a.width}): {line!r}")
    headers = [i for i, l in enumerate(lines)
               if l.startswith("#") and l[1:].split()[:1] == ["N"] and "step_ms" in l.split()]
    if len(headers) != 1:
        fail(f"expected one column header, found {len(headers)}", out)
    columns = lines[headers[0]][1:].split()
    if a.columns and len(columns) != a.columns:
        fail(f"{len(columns)} columns, expected {a.columns}: {columns}")
    rows = [l.split() for l in lines[headers[0] + 1:] if l.strip() and not l.startswith("#")]
    if len(rows) != a.rows:
        fail(f"{len(rows)} rows, expected {a.rows}", out)
    required = [c for c in a.require.split(",") if c]
    for c in required:
        if c not in columns:
            fail(f"no column {c} in {columns}")
    for row in rows:
        if len(row) != len(columns):
            fail(f"a row of {len(row)} fields under {len(columns)} columns: {row}")
        for name, value in zip(columns, row):
            if name in TEXT_COLUMNS:
                continue
            if value == "-":
                if name in required:
                    fail(f"{name} is '-' in {row}")
                continue
            try:
                number = float(value)
            except ValueError:
                fail(f"{name} = {value!r} is not a number in {row}")
            if not number >= 0:
                fail(f"{name} = {value} is negative in {row}")
    progress = [l for l in lines if l.startswith("# ... ") and " s: " in l]
    if not a.progress_min <= len(progress) <= a.progress_max:
        fail(f"{len(progress)} progress lines, expected {a.progress_min}..{a.progress_max}", out)
    print(f"ok: {len(rows)} rows x {len(columns)} columns, {len(progress)} progress lines, widest line "
          f"{max(len(l) for l in lines)} characters")


def check_error(a, proc):
    if proc.returncode == 0:
        fail("the command succeeded; expected a failure")
    err = proc.stderr.splitlines()
    if "MPI_ABORT" in proc.stdout + proc.stderr:
        fail("an MPI_ABORT banner", proc.stderr)
    firsts = [i for i, l in enumerate(err) if l.startswith("lightring error")]
    if not firsts:
        fail("no 'lightring error' line", proc.stderr)
    for i in firsts:
        # A message runs to its "(this rank was ...; raised at ...)" line: only that one names
        # source files.
        end = next((j for j in range(i + 1, len(err)) if err[j].startswith("  (this rank was")), None)
        if end is None or "raised at" not in err[end]:
            fail(f"no '(this rank was ...; raised at ...)' detail after {err[i]!r}", proc.stderr)
        for line in err[i:end]:
            if any(is_location(w) for w in line.split()):
                fail(f"a source location in the message a user reads: {line!r}")
    if a.expect and not any(a.expect in err[i] for i in firsts):
        fail(f"no rank's first line contains {a.expect!r}", proc.stderr)
    print(f"ok: {len(firsts)} error lines without a source location")


def check_version(proc):
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 1:
        fail(f"exit {proc.returncode}, {len(lines)} lines", proc.stdout + proc.stderr)
    words = lines[0].split()
    version = words[1].split(".") if len(words) >= 4 else []
    if words[:1] != ["lightring-bench"] or len(version) != 3 or not all(v.isdigit() for v in version) \
            or words[2] != "(commit" or not words[3].endswith(")"):
        fail(f"not 'lightring-bench X.Y.Z (commit C)': {lines[0]!r}")
    print(f"ok: {lines[0]}")


def main(argv):
    if "--" not in argv:
        fail("usage: bench_table_check.py MODE [options] -- CMD...")
    cut = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["table", "error", "version"])
    p.add_argument("--rows", type=int, default=1)
    p.add_argument("--width", type=int, default=120)
    p.add_argument("--require", default="")
    p.add_argument("--columns", type=int, default=0)
    p.add_argument("--expect", default="")
    p.add_argument("--progress-min", type=int, default=0)
    p.add_argument("--progress-max", type=int, default=1 << 30)
    a = p.parse_args(argv[:cut])
    proc = subprocess.run(argv[cut + 1:], capture_output=True, text=True, timeout=240)
    {"table": lambda: check_table(a, proc), "error": lambda: check_error(a, proc),
     "version": lambda: check_version(proc)}[a.mode]()


if __name__ == "__main__":
    main(sys.argv[1:])
