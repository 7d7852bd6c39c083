#!/usr/bin/env python3
"""Summary of the sequence-parallel GPU run (bench/sp_gpu_run.sh), and the model table of docs/scaling.md.

    python3 bench/sp_report.py --weak p1.json p2.json p4.json --exchange x.json --findmax f.json \
        --lasp lasp.json --bench build/launch/lightring-bench --out merged.json
    python3 bench/sp_report.py --strong s1.json s2.json s4.json s8.json

Prints (metrics: launch/README.md, docs/scaling.md):
  1. weak scaling per n_local and P (every P of --weak): tokens/s at P=1 and P, scaling efficiency
     tok/s(P) / (P * tok/s(1)) and the speed-up tok/s(P) / tok/s(1) (target >= 1.9 at P=2),
     x best LASP variant at the same n_local (target >= 5), peak memory per rank at P vs 1
     (target <= 1.05), exchange time per layer (fwd, bwd), exposed time and overlap;
  1b. strong scaling per global N and P (--strong): speed-up tok/s(P) / tok/s(1), efficiency
     speed-up / P;
  2. the exchange micro-benchmark, with alpha (latency) and beta (bandwidth) of one hop
     fitted on the ring rows of P=2: t = alpha + m / beta (least squares over message sizes);
  3. the longest global sequence of --find-max;
  4. the cost model at P = 8..4096 from the fitted alpha, beta, gamma = copy ceiling / 3
     (a combine reads two states and writes one), an assumed inter-node link (400 Gb/s),
     computed by `lightring-bench --model` (the C++ cost model auto uses), against the
     single-GPU step time per layer.
Merges every input's rows into one JSON (docs/bench-json.md) with a "summary".
Every input is optional; missing or failed ones are reported, not fatal.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def load(path):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"# {path}: not available ({type(e).__name__}: {e})")
        return None


def fmt(x, spec=".3g", none="-"):
    return none if x is None else format(x, spec)


def fwdbwd_rows(doc, key):
    """The fwdbwd rows of one lightring-bench JSON, keyed by row[key] (n_local or N)."""
    return {r[key]: r for r in (doc or {}).get("rows", []) if r.get("pass") == "fwdbwd"}


def by_world_size(docs):
    """{P: doc} over the JSONs (the last one of a P wins), so that any set of P is used."""
    out = {}
    for d in docs:
        if d:
            out[d.get("world_size", 1)] = d
    return out


def weak_table(docs, lasp):
    """Rows of the weak-scaling summary: one per (n_local, P > 1), efficiency against P = 1 at the
    same n_local: tok/s(P) / (P * tok/s(1)). Without a P = 1 run, rows with no efficiency."""
    runs = by_world_size(docs)
    base = fwdbwd_rows(runs.get(1), "n_local")
    lasp_best = {}
    for r in (lasp or {}).get("rows", []):
        if r.get("tokens_per_s"):
            n = r["n_local"]
            if n not in lasp_best or r["tokens_per_s"] > lasp_best[n]["tokens_per_s"]:
                lasp_best[n] = r
    sizes = sorted(P for P in runs if P > 1)
    rows = []
    for n in sorted(set(base).union(*(fwdbwd_rows(runs[P], "n_local") for P in sizes))):
        b, l = base.get(n), lasp_best.get(n)
        for P in sizes or [None]:
            pn = runs.get(P)
            p = fwdbwd_rows(pn, "n_local").get(n)
            if P is not None and not p and b:
                continue
            row = {"n_local": n, "P": P,
                   "tok_s_1": b and b["tokens_per_s"], "tok_s_P": p and p["tokens_per_s"],
                   "speedup": (p["tokens_per_s"] / b["tokens_per_s"]) if (b and p) else None,
                   "efficiency": (p["tokens_per_s"] / (P * b["tokens_per_s"])) if (b and p) else None,
                   "lasp_best": l and l["impl"], "lasp_tok_s": l and l["tokens_per_s"],
                   "x_lasp": (p["tokens_per_s"] / l["tokens_per_s"]) if (p and l) else None,
                   "peak_GB_1": b and b.get("peak_GB"), "peak_GB_P": p and p.get("peak_GB"),
                   "mem_ratio": (p["peak_GB"] / b["peak_GB"]) if (b and p and b.get("peak_GB")) else None,
                   "alloc_ratio": (p["alloc_peak_GB"] / b["alloc_peak_GB"])
                   if (b and p and b.get("alloc_peak_GB")) else None,
                   "exposed_ms": p and p.get("exposed_ms"), "overlap": p and p.get("overlap"),
                   "step_ms_1": b and b["ms"], "step_ms_P": p and p["ms"],
                   "frac_of_copy_1": b and b.get("frac_of_copy"), "frac_of_copy_P": p and p.get("frac_of_copy")}
            for pas in ("fwd", "bwd"):
                for r in (pn or {}).get("rows", []):
                    if r.get("pass") == pas and r["n_local"] == n:
                        row[f"exchange_{pas}_ms"] = r.get("exchange_ms")
                        row[f"span_{pas}_ms"] = r.get("exchange_span_ms")
            rows.append(row)
    return rows


def strong_table(docs):
    """Rows of the strong-scaling summary: one per (global N, P > 1); speed-up
    tok/s(P) / tok/s(1) at the same N and efficiency = speed-up / P."""
    runs = by_world_size(docs)
    base = fwdbwd_rows(runs.get(1), "N")
    rows = []
    for P in sorted(P for P in runs if P > 1):
        for N, p in sorted(fwdbwd_rows(runs[P], "N").items()):
            b = base.get(N)
            speedup = p["tokens_per_s"] / b["tokens_per_s"] if b else None
            rows.append({"N": N, "P": P, "n_local": p["n_local"], "tok_s_1": b and b["tokens_per_s"],
                         "tok_s_P": p["tokens_per_s"], "speedup": speedup,
                         "efficiency": speedup / P if speedup is not None else None,
                         "step_ms_1": b and b["ms"], "step_ms_P": p["ms"],
                         "exposed_ms": p.get("exposed_ms"), "overlap": p.get("overlap"),
                         "peak_GB_P": p.get("peak_GB")})
    return rows


def print_strong(rows):
    print("\n## Strong scaling (fwd+bwd of one layer at a fixed global length N)")
    print(f"{'N':>9} {'P':>4} {'n_local':>8} {'tok/s P=1':>10} {'tok/s P':>10} {'speedup':>7} {'eff':>6} "
          f"{'step_ms 1':>9} {'step_ms P':>9} {'expo_ms':>7} {'ovl':>5} {'peakGB P':>8}")
    for r in rows:
        print(f"{r['N']:>9} {r['P']:>4} {r['n_local']:>8} {fmt(r['tok_s_1'], '.4g'):>10} "
              f"{fmt(r['tok_s_P'], '.4g'):>10} {fmt(r['speedup'], '.3f'):>7} {fmt(r['efficiency'], '.3f'):>6} "
              f"{fmt(r['step_ms_1'], '.3f'):>9} {fmt(r['step_ms_P'], '.3f'):>9} "
              f"{fmt(r['exposed_ms'], '.3f'):>7} {fmt(r['overlap'], '.2f'):>5} {fmt(r['peak_GB_P'], '.2f'):>8}")


def print_weak(rows):
    print("\n## Weak scaling (fwd+bwd of one layer; targets: speed-up >= 1.9 at P=2, >= 5x LASP, memory <= 1.05x)")
    print(f"{'n_local':>8} {'P':>4} {'tok/s P=1':>10} {'tok/s P':>10} {'speedup':>7} {'eff':>6} "
          f"{'xLASP':>6} {'LASP best':>20} {'peakGB 1':>8} {'peakGB P':>8} {'mem':>5} {'alloc':>5} "
          f"{'xf_ms':>7} {'xb_ms':>7} {'expo_ms':>7} {'ovl':>5} {'%copy1':>6} {'%copyP':>6}")
    for r in rows:
        pct = lambda x: None if x is None else 100 * x  # noqa: E731
        print(f"{r['n_local']:>8} {fmt(r['P'], 'd'):>4} {fmt(r['tok_s_1'], '.4g'):>10} {fmt(r['tok_s_P'], '.4g'):>10} "
              f"{fmt(r['speedup'], '.3f'):>7} {fmt(r['efficiency'], '.3f'):>6} {fmt(r['x_lasp'], '.2f'):>6} "
              f"{(r['lasp_best'] or '-'):>20} {fmt(r['peak_GB_1'], '.2f'):>8} {fmt(r['peak_GB_P'], '.2f'):>8} "
              f"{fmt(r['mem_ratio'], '.3f'):>5} {fmt(r['alloc_ratio'], '.3f'):>5} "
              f"{fmt(r.get('exchange_fwd_ms'), '.3f'):>7} {fmt(r.get('exchange_bwd_ms'), '.3f'):>7} "
              f"{fmt(r['exposed_ms'], '.3f'):>7} {fmt(r['overlap'], '.2f'):>5} "
              f"{fmt(pct(r['frac_of_copy_1']), '.1f'):>6} {fmt(pct(r['frac_of_copy_P']), '.1f'):>6}")


def fit_hop(doc):
    """alpha (us) and beta (bytes/us) of t = alpha + m/beta over the ring rows of P=2."""
    pts = [(r["msg_bytes"], r["gpu_us"]) for r in (doc or {}).get("rows", [])
           if r.get("pass") == "exchange" and r.get("schedule") == "ring" and r.get("P") == 2]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(m for m, _ in pts) / n
    my = sum(t for _, t in pts) / n
    sxx = sum((m - mx) ** 2 for m, _ in pts)
    slope = sum((m - mx) * (t - my) for m, t in pts) / sxx if sxx else 0.0
    alpha = my - slope * mx
    if slope <= 0:
        return None
    return {"alpha_us": max(alpha, 0.0), "beta_Bpus": 1.0 / slope, "points": n}


def print_exchange(doc, fit):
    if not doc:
        return
    print("\n## State exchange alone (median over iterations of the max over ranks)")
    print(f"{'P':>4} {'msg_B':>10} {'schedule':>9} {'us':>9} {'gpu_us':>9} {'step_us':>9} {'GB/s':>8} {'model_us':>9}")
    for r in doc.get("rows", []):
        if r.get("pass") == "exchange":
            print(f"{r['P']:>4} {r['msg_bytes']:>10} {r['schedule']:>9} {r['us']:>9.2f} {r['gpu_us']:>9.2f} "
                  f"{r['step_us']:>9.2f} {r['algbw_GBps']:>8.2f} {r['model_us']:>9.2f}")
    if fit:
        print(f"# fitted one hop (ring, P=2): alpha = {fit['alpha_us']:.2f} us, "
              f"beta = {fit['beta_Bpus'] / 1e3:.1f} GB/s over {fit['points']} sizes")


def run_model(bench, fit, gamma_Bpus, msg, ranks, inter):
    """Rows of `lightring-bench --model` (the C++ cost model of auto)."""
    if not (bench and os.path.exists(bench)):
        print(f"# model: lightring-bench not found at {bench}: skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.json")
        cmd = [bench, "--backend", "cpu", "--model", "--msg-bytes", str(msg),
               "--model-ranks", ",".join(str(p) for p in ranks),
               "--link", f"{fit['alpha_us']},{fit['beta_Bpus'] / 1e3},{gamma_Bpus / 1e3}",
               "--inter-link", f"{inter[0]},{inter[1]}", "--ranks-per-node", str(inter[2]), "--json", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"# model: {' '.join(cmd)} failed: {r.stderr[-400:]}")
            return None
        with open(out) as f:
            return json.load(f)


def print_model(model, compute_ms, msg):
    if not model:
        return
    link = model.get("link", {})
    print(f"\n## Exchange per layer, model (message {msg} B; alpha {link.get('alpha_us'):.3g} us, "
          f"beta {link.get('beta_GBps'):.3g} GB/s, gamma {link.get('gamma_GBps'):.3g} GB/s on a node of "
          f"{link.get('ranks_per_node')}; between nodes alpha {link.get('inter_alpha_us'):.3g} us, "
          f"beta {link.get('inter_beta_GBps'):.3g} GB/s)")
    head = " ".join(f"{'x/step@' + str(n):>11}" for n in sorted(compute_ms))
    print(f"{'P':>5} {'ring_us':>10} {'allgather_us':>12} {'scan_us':>9} {'auto':>9} {'fwd+bwd_us':>10} {head}")
    for r in model["rows"]:
        best = min(r["ring_us"], r["allgather_us"], r["scan_us"])
        cells = " ".join(f"{100 * 2 * best / 1e3 / compute_ms[n]:>10.2f}%" for n in sorted(compute_ms))
        print(f"{r['P']:>5} {r['ring_us']:>10.1f} {r['allgather_us']:>12.1f} {r['scan_us']:>9.1f} "
              f"{r['auto']:>9} {2 * best:>10.1f} {cells}")


def validate(paths, bench):
    """Measured vs model ordering of the schedules from --exchange-only runs at several P.

    Two models, both with alpha, beta fitted on the ring rows of P=2 and gamma = copy / 3:
      links   the cost model of auto (lightring-bench --model): every rank has its own link;
      shared  all ranks share one memory system (an oversubscribed CPU): a round in which k
              ranks each move m bytes costs k*m/beta; ring (P-1) rounds of 1 message,
              scan rounds d = 1, 2, 4, ... of P-d messages, allgather P(P-1) messages.
    """
    docs = [d for d in (load(p) for p in paths) if d]
    two = next((d for d in docs if d.get("world_size") == 2), None)
    fit = fit_hop(two)
    if not fit:
        print("# validate: needs a P=2 run with >= 2 message sizes")
        return None
    ceil = two.get("ceilings", {}).get("copy_TBps")
    gamma = ceil * 1e6 / 3 if ceil else 1e12
    out = []
    print(f"\n## Ordering check: alpha {fit['alpha_us']:.2f} us, beta {fit['beta_Bpus'] / 1e3:.2f} GB/s "
          f"(ring P=2 fit), gamma {gamma / 1e3:.2f} GB/s")
    print("| P | msg B | measured ring / allgather / scan (us) | order | links model (us) | order | "
          "shared model (us) | order |")
    print("|---|---|---|---|---|---|---|---|")
    for d in sorted(docs, key=lambda d: d["world_size"]):
        P = d["world_size"]
        sizes = sorted({r["msg_bytes"] for r in d["rows"] if r.get("pass") == "exchange"})
        for m in sizes:
            meas = {r["schedule"]: r["gpu_us"] for r in d["rows"] if r.get("msg_bytes") == m}
            model = run_model(bench, fit, gamma, m, [P], (0, 1, 0))
            if not model or len(meas) < 3:
                continue
            lk = {k: model["rows"][0][k + "_us"] for k in ("ring", "allgather", "scan")}
            a, b = fit["alpha_us"], fit["beta_Bpus"]
            rounds, dd, scan_msgs = 0, 1, 0
            while dd < P:
                rounds, scan_msgs, dd = rounds + 1, scan_msgs + (P - dd), dd * 2
            sh = {"ring": (P - 1) * (a + m / b + m / gamma),
                  "allgather": a * rounds + P * (P - 1) * m / b + (P - 1) * m / gamma,
                  "scan": rounds * a + scan_msgs * m / b + 2 * rounds * m / gamma}
            order = lambda x: " < ".join(sorted(x, key=x.get))  # noqa: E731
            trip = lambda x: " / ".join(f"{x[k]:.0f}" for k in ("ring", "allgather", "scan"))  # noqa: E731
            row = {"P": P, "msg_bytes": m, "measured_us": meas, "links_us": lk, "shared_us": sh,
                   "measured_order": order(meas), "links_order": order(lk), "shared_order": order(sh)}
            out.append(row)
            mark = lambda o: o + (" ✓" if o == row["measured_order"] else (" (best ✓)" if o.split(" < ")[0] == row["measured_order"].split(" < ")[0] else ""))  # noqa: E731,E501
            print(f"| {P} | {m} | {trip(meas)} | {row['measured_order']} | {trip(lk)} | {mark(row['links_order'])} | "
                  f"{trip(sh)} | {mark(row['shared_order'])} |")
    return {"fit": fit, "gamma_Bpus": gamma, "rows": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weak", nargs="*", default=[],
                    help="lightring-bench --local-len JSONs, any number of P (P = 1 is the baseline)")
    ap.add_argument("--strong", nargs="*", default=[],
                    help="lightring-bench -b/-e JSONs at the same global lengths, any number of P (P = 1 the baseline)")
    ap.add_argument("--exchange", help="lightring-bench --exchange-only JSON")
    ap.add_argument("--findmax", help="lightring-bench --find-max JSON")
    ap.add_argument("--lasp", help="bench/lasp_bench.py JSON")
    ap.add_argument("--bench", help="lightring-bench binary (for the model table)")
    ap.add_argument("--inter-link", default="15,50", help="ALPHA_US,BETA_GBPS between nodes (assumed: 400 Gb/s)")
    ap.add_argument("--ranks-per-node", type=int, default=8)
    ap.add_argument("--model-ranks", default="8,16,32,64,128,256,512,1024,2048,4096")
    ap.add_argument("--out", help="merged JSON")
    ap.add_argument("--validate", nargs="*", default=[],
                    help="--exchange-only JSONs at several P (first a P=2 one): measured vs model ordering")
    a = ap.parse_args()
    if a.validate:
        v = validate(a.validate, a.bench)
        if a.out and v:
            docs = [d for d in (load(p) for p in a.validate) if d]
            head = {k: docs[0].get(k) for k in ("tool", "commit", "device", "date", "backend", "mode",
                                                 "versions", "ceilings")}
            merged = dict(head, world_size=max(d["world_size"] for d in docs),
                          world_sizes=[d["world_size"] for d in docs],
                          rows=[r for d in docs for r in d.get("rows", [])], validate=v)
            with open(a.out, "w") as f:
                json.dump(merged, f, indent=1)
            print(f"# merged JSON: {a.out}")
        return 0

    weak = [load(p) for p in a.weak]
    weak = [w for w in weak if w]
    # Every P of --weak is used (the model and the ceilings take the smallest P > 1).
    p1 = by_world_size(weak).get(1)
    pns = [d for P, d in sorted(by_world_size(weak).items()) if P > 1]
    pn = pns[0] if pns else None
    strong = [d for d in (load(p) for p in a.strong) if d]
    xchg, fmax, lasp = load(a.exchange), load(a.findmax), load(a.lasp)
    summary = {}

    rows = weak_table(weak, lasp)
    if rows:
        print_weak(rows)
    summary["weak"] = rows
    if strong:
        summary["strong"] = strong_table(strong)
        print_strong(summary["strong"])
    if lasp:
        bad = [r for r in lasp.get("rows", []) if r.get("status", "ok") != "ok"]
        for r in bad:
            print(f"# LASP {r['impl']} n_local={r['n_local']}: {r['status']}")

    fit = fit_hop(xchg)
    print_exchange(xchg, fit)
    summary["hop_fit"] = fit

    if fmax and "find_max" in fmax:
        fm = fmax["find_max"]
        print(f"\n## Longest sequence (fwd+bwd, P={fmax.get('world_size')}): N = {fm['N']} "
              f"({fm['n_local']} per rank); first failure at {fm['first_failure_N']}; stopped: {fm['stopped']}")
        summary["find_max"] = fm

    ceil = (pn or p1 or {}).get("ceilings", {}).get("copy_TBps")
    if fit and ceil:
        msg = next((r["state_bytes"] for r in (pn or p1)["rows"]), 32 * 128 * 128 * 4)
        ranks = [int(x) for x in a.model_ranks.split(",")]
        ia, ib = (float(x) for x in a.inter_link.split(","))
        gamma = ceil * 1e6 / 3  # bytes/us: one combine moves 3 state-sized arrays
        compute = {r["n_local"]: r["step_ms_1"] for r in rows if r.get("step_ms_1")}
        model = run_model(a.bench, fit, gamma, msg, ranks, (ia, ib, a.ranks_per_node))
        print_model(model, compute, msg)
        summary["model"] = model
    else:
        print("\n# model table: needs the exchange fit and a copy ceiling: skipped")

    if a.out:
        merged = {"tool": "sp_report", "device": (pn or p1 or xchg or {}).get("device"),
                  "commit": (pn or p1 or xchg or {}).get("commit"), "date": (pn or p1 or xchg or {}).get("date"),
                  "world_size": (pn or {}).get("world_size"),
                  "exchange_transport": (pn or xchg or {}).get("exchange_transport", "nccl"),
                  "ceilings": (pn or p1 or {}).get("ceilings", {}), "summary": summary, "rows": []}
        sources = [("weak-p1", p1)] + [("weak-p", d) for d in pns] + \
            [("strong-p1" if d.get("world_size") == 1 else "strong-p", d) for d in strong] + \
            [("exchange", xchg), ("find-max", fmax), ("lasp", lasp)]
        for name, doc in sources:
            for r in (doc or {}).get("rows", []):
                merged["rows"].append(dict(r, source=name))
        with open(a.out, "w") as f:
            json.dump(merged, f, indent=1)
        print(f"\n# merged JSON: {a.out} ({len(merged['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
