#!/usr/bin/env python3
"""The numerical checks of the tests/cluster training tests. Exit status 0 only when every
check holds; 1 with one line per failure otherwise.

  train_log_check.py losses A.jsonl B.jsonl --rtol R [--from-step K] [--steps N]
      the "train" rows of A and B (the last row of each step: a resumed log repeats steps)
      cover the same steps, K < step <= N (N: A's last step), and every loss of B is within
      R·|loss_A| of A's (R = 0: the same double). Prints the largest relative difference and
      whether every loss is bit-exact.
  train_log_check.py final A.jsonl B.jsonl --rtol R
      the last "train" row of each has the same step and a loss within R·|loss_A|.
  train_log_check.py ckpt A.pt B.pt --rtol R
      (torch) same step and data position; every model tensor and AdamW moment of B within R
      of A's, as ||a - b||_2 <= R·||a||_2 per tensor (R = 0: torch.equal).
  train_log_check.py ckpt-dir DIR --min-step K
      (torch) DIR holds only ckpt-<8 digits>.pt files and `latest`, no hidden or temporary
      file; every checkpoint loads, says the step of its name, and one has step >= K;
      `latest` names an existing checkpoint, the newest one.
"""
import argparse
import json
import math
import os
import re
import sys

failures = []


def fail(message):
    failures.append(message)
    print("train_log_check: FAIL: " + message, file=sys.stderr)


def train_rows(path):
    """{step: loss} of the "train" rows; a later row of the same step wins (a resumed log)."""
    rows = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError:
                fail(f"{path}:{number}: not JSON: {line[:80]!r}")
                continue
            if row.get("kind") == "train":
                rows[int(row["step"])] = float(row["loss"])
    if not rows:
        fail(f"{path}: no train rows")
    return rows


def relative(a, b):
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), 1e-300)


def check_losses(args):
    a, b = train_rows(args.a), train_rows(args.b)
    last = args.steps if args.steps is not None else max(a, default=0)
    steps = [s for s in range(args.from_step + 1, last + 1)]
    missing_a = [s for s in steps if s not in a]
    missing_b = [s for s in steps if s not in b]
    if missing_a or missing_b:
        fail(f"steps missing: {args.a} lacks {missing_a[:5]}, {args.b} lacks {missing_b[:5]}")
        return
    worst, worst_step = 0.0, None
    for s in steps:
        r = relative(a[s], b[s])
        if r > worst:
            worst, worst_step = r, s
        if r > args.rtol or not math.isfinite(b[s]):
            fail(f"step {s}: loss {b[s]!r} in {args.b}, {a[s]!r} in {args.a} "
                 f"(relative {r:.3g} > {args.rtol:g})")
    exact = all(a[s] == b[s] for s in steps)
    print(f"train_log_check: steps {steps[0]}..{steps[-1]}: largest relative loss difference "
          f"{worst:.3g}" + (f" (step {worst_step})" if worst_step else "") +
          (", bit-exact" if exact else ", not bit-exact") + f" (tolerance {args.rtol:g})")


def check_final(args):
    a, b = train_rows(args.a), train_rows(args.b)
    if not a or not b:
        return
    sa, sb = max(a), max(b)
    if sa != sb:
        fail(f"final step {sb} in {args.b}, {sa} in {args.a}")
        return
    r = relative(a[sa], b[sb])
    print(f"train_log_check: final step {sa}: loss {b[sb]!r} vs {a[sa]!r} (relative {r:.3g})")
    if r > args.rtol:
        fail(f"final loss differs: relative {r:.3g} > {args.rtol:g}")


def load(path):
    import torch
    return torch.load(path)


def check_ckpt(args):
    import torch
    a, b = load(args.a), load(args.b)
    for key in ("step", "data"):
        if a[key] != b[key]:
            fail(f"{key}: {b[key]} in {args.b}, {a[key]} in {args.a}")
    pairs = [(f"model {n}", t, b["model"].get(n)) for n, t in a["model"].items()]
    for name, state in a["optimizer"].items():
        for moment in ("exp_avg", "exp_avg_sq"):
            pairs.append((f"{moment} {name}", state[moment], b["optimizer"][name][moment]))
    worst = 0.0
    for name, x, y in pairs:
        if y is None or x.shape != y.shape:
            fail(f"{name}: missing or of another shape in {args.b}")
            continue
        if args.rtol == 0:
            if not torch.equal(x, y):
                fail(f"{name}: not bit-identical")
            continue
        r = float((x - y).norm() / x.norm().clamp_min(1e-30))
        worst = max(worst, r)
        if r > args.rtol:
            fail(f"{name}: relative difference {r:.3g} > {args.rtol:g}")
    print(f"train_log_check: {len(pairs)} tensors of step {a['step']}: largest relative "
          f"difference {worst:.3g} (tolerance {args.rtol:g})")


def check_ckpt_dir(args):
    names = sorted(os.listdir(args.a))
    checkpoints = [n for n in names if re.fullmatch(r"ckpt-\d{8}\.pt", n)]
    others = [n for n in names if n not in checkpoints and n != "latest"]
    if others:
        fail(f"{args.a} holds files that are not complete checkpoints: {others}")
    if not checkpoints:
        fail(f"{args.a}: no checkpoint")
        return
    steps = []
    for n in checkpoints:
        try:
            c = load(os.path.join(args.a, n))
        except Exception as e:  # noqa: BLE001 - any failure to read is the finding
            fail(f"{n} does not load: {e}")
            continue
        if c.get("format") != "lightring-train/1" or c.get("step") != int(n[5:13]):
            fail(f"{n}: format {c.get('format')!r}, step {c.get('step')!r}")
        steps.append(c.get("step", -1))
    try:
        with open(os.path.join(args.a, "latest")) as f:
            latest = f.read().strip()
    except OSError as e:
        fail(f"{args.a}/latest: {e}")
        latest = None
    if latest is not None and latest != checkpoints[-1]:
        fail(f"latest names {latest!r}, the newest checkpoint is {checkpoints[-1]}")
    if max(steps, default=-1) < args.min_step:
        fail(f"no checkpoint at step >= {args.min_step} (steps {steps})")
    print(f"train_log_check: {args.a}: {len(checkpoints)} complete checkpoints (steps {steps}), "
          f"latest {latest}, nothing else")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["losses", "final", "ckpt", "ckpt-dir"])
    p.add_argument("a")
    p.add_argument("b", nargs="?")
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--from-step", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--min-step", type=int, default=1)
    args = p.parse_args()
    if args.what != "ckpt-dir" and args.b is None:
        p.error(f"{args.what} needs two files")
    {"losses": check_losses, "final": check_final, "ckpt": check_ckpt,
     "ckpt-dir": check_ckpt_dir}[args.what](args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
