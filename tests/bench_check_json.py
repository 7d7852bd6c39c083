#!/usr/bin/env python3
"""Runs one lightring-bench command and checks the JSON it wrote (ctest driver).

    bench_check_json.py MODE [expectations] -- COMMAND ...

Every "{json}" in COMMAND is replaced by a fresh temporary path. Exit status 0
only when COMMAND exits 0, wrote the file, and every row meets the
expectations of MODE (the keys are those of docs/bench-json.md):

  check     --check rows: every (N, schedule) of the run has its fwd, bwd and
            fwdbwd rows (auto: the cost model's pick), each checked (rel_err not null, at most the tolerance
            of its dtype, num_wrong 0), n_local / n_local_min the shard split.
  find-max  the search stopped at --ok-n with its first failure at --fail-n,
            rows double from -b then bisect, every failed row names the rank
            that ran out (the others stopped because of it: the agreement).
  exchange  --exchange-only rows: every schedule and message size, the critical
            steps, model_us and auto_choice equal to the cost model below.
  model     --model rows: every P and size, the three costs and auto equal to
            the cost model below, and the link the JSON records.

The cost model is parallel::schedule_cost_us (docs/scaling.md), written again
here as the reference: hop = α + m/β on a node, fold = m/γ, two levels when
ranks_per_node R > 0 and P > R (inter-node hop α_e + m/β_e):
    ring      (P − nodes)(hop + fold) + (nodes − 1)(hop_e + fold)
    allgather α_e·⌈log2 P⌉ + (P − 1)·m/β_e + (P − 1)·fold
    scan      ⌈log2 P⌉·(hop_e + 2·fold)
auto: ring for P ≤ 2, else the cheapest of ring, scan, allgather (ties: that
order). Standard library only.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

SCHEDULES = ("ring", "allgather", "scan")
# Largest relative error a checked row may have (launch/README.md, --check).
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 2e-2}


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


def close(a, b, rel=1e-4):
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def ints(text):
    return [int(x) for x in text.split(",") if x]


def link_model(alpha=1.5, beta=5.0, gamma=5.0, ranks_per_node=0, inter_alpha=10.0, inter_beta=50.0):
    """Bandwidths in GB/s = 1e3 bytes/µs, as lightring-bench's --link takes them."""
    return {"alpha": alpha, "beta": beta * 1e3, "gamma": gamma * 1e3, "R": ranks_per_node,
            "alpha_e": inter_alpha, "beta_e": inter_beta * 1e3}


def cost_us(schedule, P, m, link):
    R = link["R"]
    two_level = R > 0 and P > R
    nodes = (P + R - 1) // R if two_level else 1
    hop = link["alpha"] + m / link["beta"]
    hop_e = link["alpha_e"] + m / link["beta_e"] if two_level else hop
    alpha_e = link["alpha_e"] if two_level else link["alpha"]
    beta_e = link["beta_e"] if two_level else link["beta"]
    fold = m / link["gamma"]
    rounds = math.ceil(math.log2(P)) if P > 1 else 0
    if schedule == "ring":
        return (P - nodes) * (hop + fold) + (nodes - 1) * (hop_e + fold)
    if schedule == "allgather":
        return alpha_e * rounds + (P - 1) * m / beta_e + (P - 1) * fold
    return rounds * (hop_e + 2 * fold)


def auto_choice(P, m, link):
    if P <= 2:
        return "ring"
    best = "ring"
    for s in ("scan", "allgather"):
        if cost_us(s, P, m, link) < cost_us(best, P, m, link):
            best = s
    return best


def parse_link(a):
    alpha, beta, *gamma = [float(x) for x in a.link.split(",")] if a.link else [1.5, 5.0]
    inter = [float(x) for x in a.inter_link.split(",")] if a.inter_link else [10.0, 50.0]
    return link_model(alpha, beta, gamma[0] if gamma else beta, a.ranks_per_node, *inter)


def check_rows(doc, a):
    P = doc["world_size"]
    expect(P == a.ranks, f"world_size {P}, expected {a.ranks}")
    rows = doc["rows"]
    # auto: the schedule the cost model picks for one state message of the run.
    schedules = [auto_choice(P, rows[0]["state_bytes"], parse_link(a)) if s == "auto" else s
                 for s in a.schedules]
    want = {(n, s, p) for n in a.lengths for s in schedules for p in ("fwd", "bwd", "fwdbwd")}
    got = {(r["N"], r["schedule"], r["pass"]) for r in rows}
    expect(got == want and len(rows) == len(want),
           f"rows {sorted(got)} ({len(rows)}), expected {sorted(want)}")
    tol = TOLERANCE[a.dtype]
    for r in rows:
        tag = f"N={r['N']} {r['schedule']} {r['pass']}"
        expect(r["dtype"] == a.dtype, f"{tag}: dtype {r['dtype']}, expected {a.dtype}")
        expect(r["rel_err"] is not None and r["num_wrong"] is not None, f"{tag}: not checked")
        expect(0 <= r["rel_err"] <= tol, f"{tag}: rel_err {r['rel_err']} above {tol}")
        expect(r["num_wrong"] == 0, f"{tag}: {r['num_wrong']} wrong elements")
        expect(r["n_local"] == -(-r["N"] // P) and r["n_local_min"] == r["N"] // P,
               f"{tag}: n_local {r['n_local']} / {r['n_local_min']} is not the split of N over {P}")
        expect(r["ms"] is not None and r["ms"] > 0, f"{tag}: ms {r['ms']}")
        expect(close(r["tokens_per_s"], r["B"] * r["N"] / (r["ms"] * 1e-3), 1e-3),
               f"{tag}: tokens_per_s {r['tokens_per_s']} is not B·N / time")


def check_find_max(doc, a):
    P = doc["world_size"]
    fm = doc["find_max"]
    expect(fm == {"N": a.ok_n, "n_local": a.ok_n // P, "first_failure_N": a.fail_n,
                  "stopped": "bisection done"},
           f"find_max {fm}, expected N {a.ok_n}, first failure {a.fail_n}, bisection done")
    tried = [r["N"] for r in doc["rows"]]
    n, doubling = a.min_len, []
    while n <= a.fail_n or not doubling or doubling[-1] < a.fail_n:
        doubling.append(n)
        n *= 2
    expect(tried[:len(doubling)] == doubling, f"lengths {tried} do not double from {a.min_len}")
    for r in doc["rows"]:
        tag = f"N={r['N']}"
        expect(r["status"] in ("ok", "failed"), f"{tag}: status {r['status']}")
        if r["status"] == "ok":
            expect(r["N"] <= a.ok_n and r["ms"] > 0, f"{tag}: ok beyond {a.ok_n} or no time")
        else:
            expect(r["N"] >= a.fail_n, f"{tag}: failed below the first failure {a.fail_n}")
            expect(f"rank {a.limited_rank}" in r["message"],
                   f"{tag}: message does not name rank {a.limited_rank}: {r['message']!r}")
    expect({a.ok_n, a.fail_n} <= set(tried), f"lengths {tried} miss {a.ok_n} or {a.fail_n}")


def check_exchange(doc, a):
    P = doc["world_size"]
    expect(P == a.ranks, f"world_size {P}, expected {a.ranks}")
    link = parse_link(a)
    rows = doc["rows"]
    want = {(m, s) for m in a.msg_bytes for s in SCHEDULES}
    got = {(r["msg_bytes"], r["schedule"]) for r in rows}
    expect(got == want and len(rows) == len(want), f"rows {sorted(got)}, expected {sorted(want)}")
    steps = {"ring": P - 1, "allgather": 1, "scan": math.ceil(math.log2(P)) if P > 1 else 0}
    for r in rows:
        s, m = r["schedule"], r["msg_bytes"]
        tag = f"{s} {m} B"
        expect(r["pass"] == "exchange" and r["iters"] == a.iters, f"{tag}: pass/iters {r}")
        expect(r["steps"] == steps[s], f"{tag}: steps {r['steps']}, expected {steps[s]}")
        expect(0 < r["min_us"] <= r["us"], f"{tag}: min_us {r['min_us']} / us {r['us']}")
        expect(r["gpu_us"] > 0 and close(r["step_us"], r["gpu_us"] / max(steps[s], 1), 1e-3),
               f"{tag}: step_us {r['step_us']} is not gpu_us / steps")
        expect(close(r["model_us"], cost_us(s, P, m, link)),
               f"{tag}: model_us {r['model_us']}, reference {cost_us(s, P, m, link):.6g}")
        expect(r["auto_choice"] == (s == auto_choice(P, m, link)),
               f"{tag}: auto_choice {r['auto_choice']}, reference picks {auto_choice(P, m, link)}")


def check_model(doc, a):
    link = parse_link(a)
    rec = doc["link"]
    expect(close(rec["alpha_us"], link["alpha"]) and close(rec["beta_GBps"] * 1e3, link["beta"])
           and close(rec["gamma_GBps"] * 1e3, link["gamma"]) and rec["ranks_per_node"] == link["R"]
           and close(rec["inter_alpha_us"], link["alpha_e"])
           and close(rec["inter_beta_GBps"] * 1e3, link["beta_e"]),
           f"link {rec} is not the one of the command line")
    rows = doc["rows"]
    want = [(m, P) for m in a.msg_bytes for P in a.model_ranks]
    expect([(r["msg_bytes"], r["P"]) for r in rows] == want, f"rows {rows}, expected {want}")
    for r in rows:
        P, m = r["P"], r["msg_bytes"]
        for s in SCHEDULES:
            ref = cost_us(s, P, m, link)
            expect(close(r[f"{s}_us"], ref), f"P={P} {m} B: {s}_us {r[f'{s}_us']}, reference {ref:.6g}")
        expect(r["auto"] == auto_choice(P, m, link),
               f"P={P} {m} B: auto {r['auto']}, reference {auto_choice(P, m, link)}")


CHECKS = {"check": check_rows, "find-max": check_find_max, "exchange": check_exchange,
          "model": check_model}


def main(argv):
    if "--" not in argv:
        print("usage: bench_check_json.py MODE [expectations] -- COMMAND ...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=sorted(CHECKS))
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--lengths", type=ints, default=[])
    p.add_argument("--schedules", type=lambda t: t.split(","), default=[])
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--min-len", type=int, default=0)
    p.add_argument("--ok-n", type=int, default=0)
    p.add_argument("--fail-n", type=int, default=0)
    p.add_argument("--limited-rank", type=int, default=0)
    p.add_argument("--msg-bytes", type=ints, default=[])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--link", default="")
    p.add_argument("--inter-link", default="")
    p.add_argument("--ranks-per-node", type=int, default=0)
    p.add_argument("--model-ranks", type=ints, default=[])
    a = p.parse_args(argv[:cut])
    tmp = tempfile.mkdtemp(prefix="lightring-bench-json-")
    try:
        path = os.path.join(tmp, "out.json")
        cmd = [x.replace("{json}", path) for x in argv[cut + 1:]]
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"FAIL: the command exited with status {rc}", file=sys.stderr)
            return 1
        try:
            with open(path) as f:
                doc = json.load(f)
            expect(doc.get("tool") == "lightring-bench", f"tool {doc.get('tool')!r}")
            expect(doc.get("rows"), "no rows")
            CHECKS[a.mode](doc, a)
        except (OSError, ValueError, KeyError, TypeError, Failed) as e:
            print(f"FAIL: {path}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"PASS: {a.mode}: {len(doc['rows'])} rows as expected")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
