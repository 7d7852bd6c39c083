#!/usr/bin/env python3
"""A markdown table of lightring-train JSONL logs (docs/training.md, "JSONL log").

    python3 bench/train_cpp_report.py OUT/*.jsonl

One row per log: preset, context, steps, the median tokens/s and MFU over the steps after the
first (the first includes CUDA's start-up and the allocator's growth), the peak memory of the
last step (peak_mem_mb, with its kind), and the last loss.
"""
import json
import statistics
import sys


def summary(path):
    start, train = None, []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["kind"] == "start":
                start = row
            elif row["kind"] == "train":
                train.append(row)
    if start is None or not train:
        return None
    steady = train[1:] or train
    mfu = [r["mfu"] for r in steady if r.get("mfu") is not None]
    last = train[-1]
    preset = start["config"].split()[0].replace("preset=", "")
    return {
        "log": path.rsplit("/", 1)[-1],
        "preset": preset,
        "parameters": start["parameters"],
        "seq_len": start["seq_len"],
        "batch": start["batch"],
        "steps": len(train),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
        "mfu": statistics.median(mfu) if mfu else None,
        "peak_mem_mb": last.get("peak_mem_mb", last.get("max_rss_mb")),
        "peak_mem_kind": last.get("peak_mem_kind", "max-rss"),
        "loss": last["loss"],
    }


def context(n):
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def main(paths):
    rows = [s for s in (summary(p) for p in paths) if s is not None]
    print("| log | preset | params | context | batch | steps | tokens/s (median, steps 2+) "
          "| MFU | peak memory | last loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        print(f"| {r['log']} | {r['preset']} | {r['parameters'] / 1e6:.1f}M | "
              f"{context(r['seq_len'])} | {r['batch']} | {r['steps']} | "
              f"{r['tokens_per_s'] / 1e3:.0f}K | {mfu} | {r['peak_mem_mb'] / 1e3:.2f} GB "
              f"({r['peak_mem_kind']}) | {r['loss']:.4f} |")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
