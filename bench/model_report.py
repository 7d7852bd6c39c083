"""Summary tables (Markdown) of bench/model_bench.py rows; `model_bench.py --summarize FILE`.

"<first> ×" = tokens_per_s of the first mixer's latest row before this one at the same size, T
and recompute mode / tokens_per_s of this row (lightring first: lightring's speed-up over the
row's mixer); "best vs best" is the same ratio between each mixer's fastest row at (size, T),
whatever its mode (a mixer that fits without recompute where the other needs it gains there).
In the longest-context table "<first> ×" is the first mixer's longest T / this row's.
"""


def _fmt(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1e5:
        return f"{x / 1e3:,.0f}K"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _tokens(t):
    return "—" if t is None else (f"{t // 1024}K" if t % 1024 == 0 else str(t))


def table_lines(rows):
    table = [r for r in rows if r.get("phase") == "table"]
    if not table:
        return []
    first = table[0]["mixer"]
    ref_of, latest = {}, {}  # a row's reference: the first mixer's latest row before it
    for i, r in enumerate(table):
        key = (r["size"], r["T"], r.get("recompute"))
        if r["mixer"] == first:
            latest[key] = r
        ref_of[i] = latest.get(key)
    best = {}
    for r in table:
        if r.get("tokens_per_s"):
            k = (r["size"], r["T"], r["mixer"])
            if k not in best or r["tokens_per_s"] > best[k]["tokens_per_s"]:
                best[k] = r
    out = ["| size | T | mixer | recompute | ms/step | steps/s | tokens/s | peak GB | "
           f"{first} × | best vs best |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(table):
        ref = ref_of[i]
        ratio = None
        if r["mixer"] != first and ref and ref.get("tokens_per_s") and r.get("tokens_per_s"):
            ratio = ref["tokens_per_s"] / r["tokens_per_s"]
        mine, theirs = best.get((r["size"], r["T"], r["mixer"])), \
            best.get((r["size"], r["T"], first))
        best_ratio = None
        if r["mixer"] != first and mine is r and theirs:
            best_ratio = theirs["tokens_per_s"] / r["tokens_per_s"]
        ms = _fmt(r.get("ms")) if r.get("ms") is not None else \
            ("OOM" if r.get("oom") else "error")
        out.append(f"| {r['size']} | {_tokens(r['T'])} | {r['mixer']} | "
                   f"{_fmt(r.get('recompute'))} | {ms} | {_fmt(r.get('steps_per_s'))} | "
                   f"{_fmt(r.get('tokens_per_s'))} | {_fmt(r.get('peak_GB'))} | "
                   f"{_fmt(ratio)} | {_fmt(best_ratio)} |")
    errors = [r for r in table if r.get("error") and not r.get("oom")]
    out += [f"- {r['size']} {r['mixer']} T={r['T']}: {r['error']}" for r in errors]
    return out


def check_lines(rows):
    checks = [r for r in rows if r.get("phase") == "check"]
    if not checks:
        return []
    out = ["", "| size | T | recompute | mixer vs ref | loss rel | mixer out 0 / last rel | "
           "grad qkvu 0 rel | tol | ok |", "|---|---:|---|---|---:|---:|---:|---:|---|"]
    for r in checks:
        e = r["rel_err"]
        outs = [v for k, v in sorted(e.items()) if k.startswith("mixer_out")]
        modes = r.get("recompute")
        modes = ", ".join(f"{m}: {_fmt(v)}" for m, v in modes.items()) \
            if isinstance(modes, dict) else _fmt(modes)
        out.append(f"| {r['size']} | {_tokens(r['T'])} | {modes} | "
                   f"{r['mixer']} vs {r['ref']} | {_fmt(e.get('loss'), 2)} | "
                   f"{' / '.join(_fmt(v, 2) for v in outs)} | {_fmt(e.get('grad_qkvu_0'), 2)} | "
                   f"{_fmt(r['tol'], 2)} | {_fmt(r['ok'])} |")
    return out


def _from_tries(rows):
    """A longest row rebuilt from the tries of a search whose process ended before its summary
    row (killed by a timeout, or a fatal error)."""
    done = {(r["size"], r["mixer"]) for r in rows if r.get("phase") == "longest"}
    tries = {}
    for r in rows:
        if r.get("phase") == "longest_try" and (r["size"], r["mixer"]) not in done:
            tries.setdefault((r["size"], r["mixer"]), []).append(r)
    out = []
    for (size, mixer), found in tries.items():
        fits = [r["T"] for r in found if r.get("fits")]
        best = max(fits) if fits else None
        fails = [r["T"] for r in found if not r.get("fits") and (best is None or r["T"] > best)]
        out.append({"phase": "longest", "size": size, "mixer": mixer, "longest_T": best,
                    "first_fail_T": min(fails) if fails else None, "tries": len(found),
                    "stopped_by": "the process ended during the search"})
    return out


def longest_lines(rows):
    found = [r for r in rows if r.get("phase") == "longest"] + _from_tries(rows)
    if not found:
        return []
    first = found[0].get("longest_T")
    out = ["", "| size | mixer | longest T (one step fits) | first failure | stopped by | "
           f"tries | s | {found[0]['mixer']} × |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in found:
        ratio = first / r["longest_T"] if first and r.get("longest_T") else None
        stop = r.get("stopped_by") or r.get("error") or ("time cap" if r.get("capped") else
                                                          "--longest-max")
        stop = stop.split(":")[0] if stop else stop
        out.append(f"| {r['size']} | {r['mixer']} | {_tokens(r.get('longest_T'))} | "
                   f"{_tokens(r.get('first_fail_T'))} | {stop} | {r.get('tries', 0)} | "
                   f"{_fmt(r.get('elapsed_s'))} | {_fmt(ratio)} |")
    return out


def compile_lines(rows):
    found = [r for r in rows if r.get("phase") == "compile"]
    out = []
    for r in found:
        if r.get("error"):
            out += ["", f"torch.compile {r['size']} T={_tokens(r['T'])}: {r['error']}"]
            continue
        worst = max(r["rel_err"].values())
        out += ["", "| size | T | eager ms | compiled ms | speedup | compile s | worst rel err "
                "| ok |", "|---|---:|---:|---:|---:|---:|---:|---|",
                f"| {r['size']} | {_tokens(r['T'])} | {_fmt(r['eager_ms'])} | "
                f"{_fmt(r['compiled_ms'])} | {_fmt(r['speedup'])} | {_fmt(r['compile_s'])} | "
                f"{_fmt(worst, 2)} | {_fmt(r['ok'])} |"]
    return out


def print_summary(rows):
    lines = table_lines(rows) + check_lines(rows) + longest_lines(rows) + compile_lines(rows)
    if lines:
        head = next((r for r in rows if "device" in r), {})
        print(f"\n# model_bench: {head.get('device')}, torch {head.get('torch')}, "
              f"{head.get('precision')}, vocab {head.get('vocab')}, loss chunk "
              f"{head.get('loss_chunk')}", flush=True)
        print("\n".join(lines), flush=True)
