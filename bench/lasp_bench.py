"""Times OpenNLPLab/LASP (the sequence-parallel peer) under torchrun, for the
side-by-side rows of the sequence-parallel benchmark.

    torchrun --nproc_per_node 2 bench/lasp_bench.py --anchors .anchors \
        --local-lens 16384,65536,262144 --json out.json

LASP's package is not part of lightring: it is copied from the peer's
repository into a git-ignored folder (--anchors) for the run, never committed.
Rows follow docs/bench-json.md: impl lasp-<variant>, pass fwdbwd, ms = median
over -n iterations of the max over ranks, tokens_per_s = P * n_local / s.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--anchors", default=".anchors", help="folder holding the lasp/ package")
    p.add_argument("--local-lens", default="16384,65536,262144")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--variants", default="naive,cache,fuse,fuse_parallel")
    p.add_argument("-w", "--warmup", type=int, default=3)
    p.add_argument("-n", "--iters", type=int, default=10)
    p.add_argument("--json", default=None)
    return p.parse_args()


def main():
    args = parse()
    sys.path.insert(0, os.path.abspath(args.anchors))
    import lasp  # noqa: E402  (the peer, from the git-ignored anchors folder)

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    dev = torch.device("cuda")
    lasp.initialize_lasp(1, world)
    b, h, d = args.batch, args.heads, args.dim
    s = lasp.build_slope_tensor(h).to(dev).to(torch.float32)
    rows = []
    for n_local in [int(x) for x in args.local_lens.split(",")]:
        torch.manual_seed(1234 + rank)
        q, k, v, do = (torch.randn(b, h, n_local, d, device=dev, dtype=torch.bfloat16) for _ in range(4))
        for name in args.variants.split(","):
            fn = getattr(lasp, "lasp_" + name)
            KV = torch.empty(b, h, d, d, device=dev, dtype=torch.float32)
            DKV = torch.empty_like(KV)
            array = torch.arange(n_local, device=dev).to(q)

            def step():
                qi, ki, vi = (x.detach().requires_grad_() for x in (q, k, v))
                if name == "naive":
                    o = fn(qi, ki, vi, s)
                elif name == "cache":
                    o = fn(qi, ki, vi, s, array, KV, DKV)
                else:
                    o = fn(qi, ki, vi, s, KV, DKV)
                o.backward(do)

            status, times = "ok", []
            try:
                torch.cuda.reset_peak_memory_stats()
                for _ in range(args.warmup):
                    step()
                torch.cuda.synchronize()
                for _ in range(args.iters):
                    dist.barrier()
                    t0 = time.perf_counter()
                    step()
                    torch.cuda.synchronize()
                    t = torch.tensor([time.perf_counter() - t0], device=dev)
                    dist.all_reduce(t, op=dist.ReduceOp.MAX)
                    times.append(t.item())
            except Exception as e:  # report, keep the other rows
                status = f"failed: {type(e).__name__}: {str(e)[:200]}"
            peak = torch.tensor([torch.cuda.max_memory_allocated() / 1e9], device=dev)
            dist.all_reduce(peak, op=dist.ReduceOp.MAX)
            ms = sorted(times)[len(times) // 2] * 1e3 if times else None
            row = {"impl": f"lasp-{name.replace('_', '-')}", "schedule": "ring", "P": world,
                   "B": b, "H": h, "N": n_local * world, "n_local": n_local, "D": d, "E": d,
                   "dtype": "bf16", "decay": True, "pass": "fwdbwd", "ms": ms,
                   "tokens_per_s": (b * n_local * world / (ms / 1e3)) if ms else None,
                   "peak_GB": peak.item(), "rel_err": None, "status": status}
            rows.append(row)
            if rank == 0:
                print(f"lasp-{name:14s} n_local={n_local:8d} ms={ms if ms is None else round(ms, 3)} "
                      f"tok/s={row['tokens_per_s'] and round(row['tokens_per_s'] / 1e6, 2)}M "
                      f"peak={peak.item():.2f}GB {status}", flush=True)
            del KV, DKV
            torch.cuda.empty_cache()
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "lasp_bench", "device": torch.cuda.get_device_name(),
                       "world_size": world, "rows": rows}, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
