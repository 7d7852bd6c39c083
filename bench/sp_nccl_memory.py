"""Summary of bench/sp_nccl_memory.sh: per NCCL setting and n_local, the P=2 peak against the
P=1 peak (both lightring-bench's MemoryProbe: device memory in use before the row + the row's
allocation high-water marks), the part outside lightring's allocations (in_use = peak -
alloc_peak), the fwd+bwd speed-up, the device memory in use after each start-up stage
(startup_memory_GB: context, NCCL init, warm-up connections), and the most memory nvidia-smi saw
per process and GPU.

    python3 bench/sp_nccl_memory.py OUT
"""
import glob
import json
import os
import sys


def rows(path):
    with open(path) as f:
        doc = json.load(f)
    return {r["n_local"]: r for r in doc["rows"] if r.get("pass") == "fwdbwd"}


def smi_max(path):
    """Largest used_memory (MiB) per setting and (pid, bus id) over runs.log's samples."""
    best, tag = {}, None
    if not os.path.exists(path):
        return best
    with open(path) as f:
        for line in f:
            if line.startswith("==== "):
                tag = line.split()[1]
                continue
            if not line.startswith("smi: "):
                continue
            parts = [p.strip() for p in line[5:].split(",")]
            if len(parts) != 3 or not parts[2].endswith("MiB"):
                continue
            per = best.setdefault(tag, {})
            key = (parts[0], parts[1])
            per[key] = max(per.get(key, 0), int(parts[2].split()[0]))
    return best


def main(out):
    base = rows(os.path.join(out, "mem-base-p1.json"))
    smis = smi_max(os.path.join(out, "runs.log"))
    print(f"{'setting':<10} {'n_local':>8} {'peak P1':>8} {'peak P2':>8} {'ratio':>6} "
          f"{'in_use P1':>9} {'in_use P2':>9} {'speed-up':>8}")
    for path in sorted(glob.glob(os.path.join(out, "mem-*-p2.json"))):
        tag = os.path.basename(path)[4:-8]
        p2 = rows(path)
        for n, r2 in sorted(p2.items()):
            r1 = base.get(n)
            if not r1:
                continue
            in1 = r1["peak_GB"] - r1["alloc_peak_GB"]
            in2 = r2["peak_GB"] - r2["alloc_peak_GB"]
            print(f"{tag:<10} {n:>8} {r1['peak_GB']:>8.3f} {r2['peak_GB']:>8.3f} "
                  f"{r2['peak_GB'] / r1['peak_GB']:>6.3f} {in1:>9.3f} {in2:>9.3f} "
                  f"{2 * r1['ms'] / r2['ms']:>8.3f}")
        for p, doc_path in ((1, os.path.join(out, "mem-base-p1.json")), (2, path)):
            with open(doc_path) as fh:
                marks = json.load(fh).get("startup_memory_GB")
            if marks:
                print(f"  start-up P={p}: " + ", ".join(f"{k} {v:.3f} GB" for k, v in marks.items()))
        smi = smis.get(tag)
        if smi:
            print("  nvidia-smi max MiB: " +
                  ", ".join(f"pid {p} on {b}: {m}" for (p, b), m in sorted(smi.items())))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sp-nccl-memory")
