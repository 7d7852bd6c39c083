#!/usr/bin/env python3
"""Plot scaling from any set of lightring-bench JSON files (docs/bench-json.md §1) as a PNG.

    python3 tools/plot_scaling.py p1.json p2.json p4.json p8.json [-o scaling.png] [--mode weak]

Reads the fwdbwd rows of every file (each file one world size P; any number of them, in any
order) and draws four panels: tokens/s and scaling efficiency against P (one line per
n_local for --mode weak, per global N for --mode strong), and tokens/s and efficiency against
the global length N (one line per P). Efficiency is tok/s(P) / (P * tok/s(1)) against the P = 1
row of the same n_local (weak) or the same N (strong); without a P = 1 file it is not drawn.
--table prints the points. Needs matplotlib (Debian: python3-matplotlib, tools/setup.sh).
"""
import argparse
import json
import sys


def scaling_points(docs, mode):
    """[{P, N, n_local, tok_s, efficiency}] over the fwdbwd rows of docs; the group key is
    n_local (weak) or N (strong); efficiency None where the P = 1 row of the group is missing."""
    key = "n_local" if mode == "weak" else "N"
    rows = [r for d in docs for r in d.get("rows", [])
            if r.get("pass") == "fwdbwd" and r.get("tokens_per_s")]
    base = {r[key]: r["tokens_per_s"] for r in rows if r["P"] == 1}
    points = []
    for r in sorted(rows, key=lambda r: (r[key], r["P"], r["N"])):
        b = base.get(r[key])
        points.append({"P": r["P"], "N": r["N"], "n_local": r["n_local"], "group": r[key],
                       "tok_s": r["tokens_per_s"],
                       "efficiency": r["tokens_per_s"] / (r["P"] * b) if b else None})
    return points


def plot(points, mode, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    label = "n_local" if mode == "weak" else "N"
    for g in sorted({p["group"] for p in points}):
        pts = [p for p in points if p["group"] == g]
        xs = [p["P"] for p in pts]
        ax[0][0].plot(xs, [p["tok_s"] for p in pts], "o-", label=f"{label} {g}")
        eff = [(p["P"], p["efficiency"]) for p in pts if p["efficiency"] is not None]
        if eff:
            ax[1][0].plot(*zip(*eff), "o-", label=f"{label} {g}")
    for P in sorted({p["P"] for p in points}):
        pts = sorted((p for p in points if p["P"] == P), key=lambda p: p["N"])
        ax[0][1].plot([p["N"] for p in pts], [p["tok_s"] for p in pts], "o-", label=f"P = {P}")
        eff = [(p["N"], p["efficiency"]) for p in pts if p["efficiency"] is not None]
        if eff:
            ax[1][1].plot(*zip(*eff), "o-", label=f"P = {P}")
    for a, x, y in ((ax[0][0], "ranks P", "tokens/s (fwd+bwd, one layer)"),
                    (ax[1][0], "ranks P", f"{mode} scaling efficiency"),
                    (ax[0][1], "global length N", "tokens/s (fwd+bwd, one layer)"),
                    (ax[1][1], "global length N", f"{mode} scaling efficiency")):
        a.set_xlabel(x)
        a.set_ylabel(y)
        a.set_xscale("log", base=2)
        if "tokens" in y:
            a.set_yscale("log")
        else:
            a.axhline(1.0, color="grey", lw=0.8, ls="--")
        a.grid(True, alpha=0.3)
        if a.get_lines():
            a.legend(fontsize=7)
    fig.suptitle(f"lightring-bench, {mode} scaling")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="lightring-bench --json files (any P)")
    ap.add_argument("-o", "--out", default="scaling.png")
    ap.add_argument("--mode", choices=["weak", "strong"], default="weak",
                    help="group rows by n_local (weak) or by global N (strong)")
    ap.add_argument("--table", action="store_true", help="print the points")
    a = ap.parse_args(argv)
    docs = []
    for path in a.json:
        try:
            with open(path) as f:
                docs.append(json.load(f))
        except (OSError, ValueError) as e:
            sys.exit(f"{path}: not a lightring-bench JSON ({e})")
    points = scaling_points(docs, a.mode)
    if not points:
        sys.exit("no fwdbwd rows with tokens_per_s in " + ", ".join(a.json))
    if a.table:
        print(f"{'P':>5} {'N':>10} {'n_local':>9} {'tok/s':>11} {'efficiency':>10}")
        for p in points:
            eff = "-" if p["efficiency"] is None else f"{p['efficiency']:.3f}"
            print(f"{p['P']:>5} {p['N']:>10} {p['n_local']:>9} {p['tok_s']:>11.4g} {eff:>10}")
    plot(points, a.mode, a.out)
    print(f"# wrote {a.out} ({len(points)} points, {len({p['P'] for p in points})} world sizes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
