"""Times the peers of the kernel benchmark on the same shapes as kernel_bench:
FLA chunk_simple_gla, the OpenNLPLab Triton lightning_attn2 and
FlashAttention-2 (torch SDPA, flash backend), and writes rows (one JSON object
per line) in the format of docs/bench-json.md.

    python3 bench/peer_bench.py --anchors .anchors --out peers.jsonl [--check] 1,32,16384,128 ...

The peers' packages are not part of lightring: their Python packages are
copied from the peers' repositories into git-ignored folders for the run
(--anchors holds fla-org+flash-linear-attention/fla and
OpenNLPLab+lightning-attention/lightning_attn), never committed.

Metrics as in bench/kernel_bench.cu: ms = median of CUDA-event times; bwd =
fwdbwd - fwd (the peers' backward needs the graph of a forward); peak_GB =
torch.cuda.max_memory_allocated over one forward+backward, inputs and
gradients included; rel_err against float64 on small shapes (--check).
"""
import argparse
import json
import math
import os
import sys
import traceback

import torch


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shapes", nargs="+", help="B,H,N,D[,E]")
    p.add_argument("--anchors", default=".anchors")
    p.add_argument("--impls", default="fla,la2,fa2")
    p.add_argument("--fa2-max-n", type=int, default=65536)
    p.add_argument("--la2-max-n", type=int, default=1 << 30)
    p.add_argument("-w", "--warmup", type=int, default=3)
    p.add_argument("-n", "--iters", type=int, default=10)
    p.add_argument("--check", action="store_true")
    p.add_argument("--out", default=None)
    return p.parse_args()


def slopes(h):
    # TransNormerLLM / Lightning Attention slopes (docs/algorithm.md §1).
    def pow2(n):
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    p = 2 ** int(math.floor(math.log2(h)))
    out = pow2(p)
    if p < h:
        out += pow2(2 * p)[0::2][: h - p]
    return torch.tensor(out, dtype=torch.float32)


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def reference(q, k, v, do, s):
    """float64 closed form on [B,H,N,D]: o and the gradients of <dO, o>."""
    q, k, v = (x.double().detach().requires_grad_(True) for x in (q, k, v))
    n = q.shape[2]
    t = torch.arange(n, device=q.device, dtype=torch.float64)
    diff = t[:, None] - t[None, :]
    m = torch.exp(-s.double().view(-1, 1, 1) * diff.clamp(min=0)) * (diff >= 0)
    o = ((q @ k.transpose(-1, -2)) * m) @ v
    o.backward(do.double())
    return o.detach(), q.grad, k.grad, v.grad


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def make_impl(name, s_dev):
    """Returns (fn(q, k, v) -> o, layout): tensors in the peer's own layout, "bnhd" or "bhnd"."""
    if name == "fla":
        from fla.ops.simple_gla import chunk_simple_gla

        def fla(q, k, v):
            o, _ = chunk_simple_gla(q, k, v, g_gamma=-s_dev, scale=1.0)
            return o

        return fla, "bnhd"
    if name == "la2":
        from lightning_attn.ops import lightning_attn_func

        return (lambda q, k, v: lightning_attn_func(q, k, v, s_dev.view(-1, 1, 1))), "bhnd"
    if name == "fa2":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def fa2(q, k, v):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        return fa2, "bhnd"
    raise ValueError(name)


def run_shape(name, shape, args, dev):
    b, h, n, d, e = shape
    s_dev = slopes(h).to(dev)
    fn, layout = make_impl(name, s_dev)
    g = torch.Generator(device=dev).manual_seed(1234)

    def rand(*sz, sd=1.0):
        x = (torch.rand(*sz, device=dev, generator=g) * 2 - 1) * (sd * math.sqrt(3.0))
        return x.to(torch.bfloat16)

    sd = 1.0 / d ** 0.25
    if layout == "bnhd":  # the peer's own layout
        q, k = (rand(b, n, h, d, sd=sd) for _ in range(2))
        v, do = (rand(b, n, h, e) for _ in range(2))
    else:
        q, k = (rand(b, h, n, d, sd=sd) for _ in range(2))
        v, do = (rand(b, h, n, e) for _ in range(2))
    bhnd = (lambda x: x.transpose(1, 2)) if layout == "bnhd" else (lambda x: x)
    for x in (q, k, v):
        x.requires_grad_(True)

    def fwd():
        with torch.no_grad():
            fn(q, k, v)

    def fwdbwd():
        o = fn(q, k, v)
        o.backward(do)

    err_f = err = None
    if args.check and n <= 4096 and b * h <= 4:
        for x in (q, k, v):
            x.grad = None
        o = fn(q, k, v)
        o.backward(do)
        if name != "fa2":  # softmax attention is another function: no error against ours
            ro, rq, rk, rv = reference(bhnd(q), bhnd(k), bhnd(v), bhnd(do), s_dev)
            err_f = rel(bhnd(o), ro)
            err = max(err_f, rel(bhnd(q.grad), rq), rel(bhnd(k.grad), rk), rel(bhnd(v.grad), rv))
    for x in (q, k, v):
        x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fwdbwd()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 1e9
    t_f = median_ms(fwd, args.warmup, args.iters)
    t_fb = median_ms(fwdbwd, args.warmup, args.iters)
    es = 2
    fwd_bytes = (2 * b * h * n * d + 2 * b * h * n * e) * es
    bwd_bytes = (4 * b * h * n * d + 3 * b * h * n * e) * es
    rows = []
    for pas, ms, by, er in (("fwd", t_f, fwd_bytes, err_f), ("bwd", t_fb - t_f, bwd_bytes, err),
                            ("fwdbwd", t_fb, fwd_bytes + bwd_bytes, err)):
        rows.append({"impl": name, "B": b, "H": h, "N": n, "n_local": n, "D": d, "E": e,
                     "dtype": "bf16", "decay": name != "fa2", "pass": pas, "ms": round(ms, 5),
                     "tokens_per_s": b * n / (ms * 1e-3), "achieved_TBps": by / (ms * 1e-3) / 1e12,
                     "peak_GB": round(peak, 3), "rel_err": er,
                     **({"note": "softmax attention, not the same function"} if name == "fa2" else {})})
    return rows


def main():
    args = parse()
    for sub in ("fla-org+flash-linear-attention", "OpenNLPLab+lightning-attention"):
        sys.path.insert(0, os.path.abspath(os.path.join(args.anchors, sub)))
    dev = torch.device("cuda")
    out = open(args.out, "w") if args.out else None
    shapes = []
    for sh in args.shapes:
        v = [int(x) for x in sh.split(",")]
        shapes.append(tuple(v + [v[3]] if len(v) == 4 else v))
    print(f"# torch {torch.__version__}, device {torch.cuda.get_device_name()}")
    for name in args.impls.split(","):
        for shape in shapes:
            if name == "fa2" and shape[2] > args.fa2_max_n:
                continue
            if name == "la2" and shape[2] > args.la2_max_n:
                continue
            try:
                rows = run_shape(name, shape, args, dev)
            except Exception as ex:  # a peer failing on a shape is a result, not a crash
                traceback.print_exc(limit=1)
                rows = [{"impl": name, "B": shape[0], "H": shape[1], "N": shape[2], "n_local": shape[2],
                         "D": shape[3], "E": shape[4], "dtype": "bf16", "decay": name != "fa2",
                         "pass": "fwdbwd", "ms": None, "tokens_per_s": None, "achieved_TBps": None,
                         "peak_GB": None, "rel_err": None, "error": f"{type(ex).__name__}: {str(ex)[:200]}"}]
            torch.cuda.empty_cache()
            for r in rows:
                ms = "-" if r["ms"] is None else "%.3f" % r["ms"]
                tps = "-" if r["tokens_per_s"] is None else "%.4g" % r["tokens_per_s"]
                err_s = "-" if r["rel_err"] is None else "%.3g" % r["rel_err"]
                print("  %-4s %3d %3d %8d %4d %-7s %10s %12s peak %s err %s %s" % (
                    r["impl"], r["B"], r["H"], r["N"], r["D"], r["pass"], ms, tps, r["peak_GB"], err_s,
                    r.get("error", "")), flush=True)
                if out:
                    out.write(json.dumps(r) + "\n")
                    out.flush()


if __name__ == "__main__":
    main()
