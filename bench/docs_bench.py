"""Packed documents on one GPU: lightring's lightning_attention(cu_seqlens=...) against the
same tokens unpacked (one sequence) and against FLA's chunk_simple_gla(cu_seqlens=...) on the
same stream, forward + backward, one process (timings compare only within one run).

    python3 bench/docs_bench.py --anchors .anchors --out docs.jsonl [--check]
        [--rows 65536:uniform:1..8192,65536:fixed:64,...]

A row is T:SPEC with SPEC fixed:L, uniform:A..B (inclusive) or lognormal:MEAN[:SIGMA]
(lengths drawn with a fixed seed, the last document cut to fit T: the same forms as
lightring-bench --docs). B = 1, H, D = E from the flags (defaults 32, 128), bf16, decay =
TransNormerLLM slopes (FLA: g_gamma = -slopes, the same function), scale 1.

Per row and implementation: ms = median of CUDA-event times of forward + backward (inputs
and the output gradient prepared outside the timed region), tokens/s = T / ms, peak_GB =
torch.cuda.max_memory_allocated over one forward + backward. --check compares lightring's
and FLA's outputs and gradients on the row with the float64 per-document reference
(rows of T <= 16384 only). One JSON object per line.
"""
import argparse
import json
import math
import os
import random
import sys
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)
from peer_bench import median_ms  # noqa: E402 (the same timing as the kernel peers)

DEFAULT_ROWS = ("65536:unpacked,65536:uniform:1..8192,65536:fixed:64,65536:uniform:1..256,"
                "65536:fixed:8192,1048576:uniform:1..8192")


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=DEFAULT_ROWS)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--anchors", default=".anchors")
    p.add_argument("--impls", default="lightring,fla")
    p.add_argument("-w", "--warmup", type=int, default=3)
    p.add_argument("-n", "--iters", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check", action="store_true")
    p.add_argument("--out", default=None)
    return p.parse_args()


def lengths_of(spec, total, seed):
    """Document lengths summing to total for fixed:L, uniform:A..B, lognormal:MEAN[:SIGMA]."""
    rng = random.Random(seed)
    kind, _, arg = spec.partition(":")
    if kind == "unpacked":
        return [total]
    if kind == "fixed":
        draw = lambda: int(arg)  # noqa: E731
    elif kind == "uniform":
        lo, hi = (int(x) for x in arg.split(".."))
        draw = lambda: rng.randint(lo, hi)  # noqa: E731
    elif kind == "lognormal":
        parts = arg.split(":")
        mean, sigma = float(parts[0]), float(parts[1]) if len(parts) > 1 else 1.0
        mu = math.log(mean) - sigma * sigma / 2
        draw = lambda: max(1, round(rng.lognormvariate(mu, sigma)))  # noqa: E731
    else:
        raise SystemExit(f"--rows: unknown document spec {spec!r} (fixed:L, uniform:A..B, "
                         "lognormal:MEAN[:SIGMA], unpacked)")
    out, used = [], 0
    while used < total:
        n = min(draw(), total - used)
        out.append(n)
        used += n
    return out


def make_inputs(total, h, d, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    mk = lambda: (0.1 * torch.randn(1, total, h, d, device="cuda", generator=g)  # noqa: E731
                  ).to(torch.bfloat16)
    return mk(), mk(), mk(), mk()


def lightring_step(lightring, q, k, v, do, decay, cu):
    def run():
        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
        o = lightring.lightning_attention(qq, kk, vv, decay, layout="bnhd", cu_seqlens=cu)
        o.backward(do)
        return o, qq.grad, kk.grad, vv.grad
    return run


def fla_step(chunk_simple_gla, q, k, v, do, decay, cu):
    g_gamma = -decay

    def run():
        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
        o, _ = chunk_simple_gla(qq, kk, vv, g_gamma=g_gamma, scale=1.0, cu_seqlens=cu)
        o.backward(do)
        return o, qq.grad, kk.grad, vv.grad
    return run


def reference(q, k, v, do, decay, lengths):
    """float64 per-document closed form on [1, T, H, D]: o, dq, dk, dv."""
    outs = [[], [], [], []]
    lo = 0
    s = decay.double().view(-1, 1, 1)
    for n in lengths:
        qq, kk, vv = (x[:, lo:lo + n].transpose(1, 2).double().detach().requires_grad_()
                      for x in (q, k, v))
        t = torch.arange(n, device=q.device, dtype=torch.float64)
        diff = t[:, None] - t[None, :]
        m = torch.exp(-s * diff.clamp(min=0)) * (diff >= 0)
        o = ((qq @ kk.transpose(-1, -2)) * m) @ vv
        o.backward(do[:, lo:lo + n].transpose(1, 2).double())
        for acc, x in zip(outs, (o.detach(), qq.grad, kk.grad, vv.grad)):
            acc.append(x.transpose(1, 2))
        lo += n
    return [torch.cat(x, dim=1) for x in outs]


def rel_err(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).abs().max() / ref.abs().max().clamp(min=1e-6)).item()


def main():
    args = parse()
    import lightring
    impls = args.impls.split(",")
    fla = None
    if "fla" in impls:
        sys.path.insert(0, args.anchors)
        from fla.ops.simple_gla import chunk_simple_gla as fla
    h, d = args.heads, args.dim
    decay = lightring.slopes(h).cuda()
    out = open(args.out, "a") if args.out else None
    for row in args.rows.split(","):
        total_s, _, spec = row.partition(":")
        total = int(total_s)
        lengths = lengths_of(spec, total, args.seed)
        cu_list = [0]
        for n in lengths:
            cu_list.append(cu_list[-1] + n)
        cu = torch.tensor(cu_list, dtype=torch.int32, device="cuda")
        q, k, v, do = make_inputs(total, h, d, args.seed)
        ref = None
        if args.check and total <= 16384:
            ref = reference(q, k, v, do, decay, lengths)
        for impl in impls:
            rec = {"bench": "docs", "impl": impl, "T": total, "docs_spec": spec,
                   "num_docs": len(lengths), "mean_doc_len": total / len(lengths), "B": 1,
                   "H": h, "D": d, "E": d, "dtype": "bf16", "device": torch.cuda.get_device_name()}
            try:
                if impl in ("lightring", "lightring-pieces"):
                    # lightring-pieces: the documents piece by piece (the A/B reference of the
                    # boundaries inside the scans).
                    lightring._ext.load().set_documents_path(
                        "auto" if impl == "lightring" else "pieces")
                    cu_arg = None if spec == "unpacked" else cu
                    step = lightring_step(lightring, q, k, v, do, decay, cu_arg)
                else:
                    step = fla_step(fla, q, k, v, do, decay, None if spec == "unpacked" else
                                    cu.long())
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                got = step()
                torch.cuda.synchronize()
                rec["peak_GB"] = torch.cuda.max_memory_allocated() / 1e9
                if ref is not None:
                    rec["rel_err"] = {n: rel_err(a, b) for n, a, b in
                                      zip(("o", "dq", "dk", "dv"), got, ref)}
                del got
                ms = median_ms(step, args.warmup, args.iters)
                rec.update(ms=ms, tokens_per_s=total / ms * 1e3)
            except Exception as e:  # noqa: BLE001 (an out-of-memory row is a result)
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                traceback.print_exc(limit=2)
            torch.cuda.empty_cache()
            print(json.dumps(rec), flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()


if __name__ == "__main__":
    main()
