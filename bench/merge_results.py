"""Merges the rows of one GPU run (kernel_bench and peer_bench JSON lines) into
bench/results/kernels-<device>-<yyyymmdd>.json (docs/bench-json.md) and prints
the Markdown table of bench/README.md.

    python3 bench/merge_results.py --run DIR --commit SHA [--variant FILE:NAME ...]
                                   [--earlier-peers FILE:NOTE ...] [--tag NAME]

DIR holds lightring.jsonl (its first line is the copy-bandwidth ceiling) and
peers.jsonl. --variant adds lightring rows of another configuration (an
environment setting) with the extra key "variant": NAME; the table shows only
the default rows. --earlier-peers adds peer rows measured in an earlier call on
the same machine kind, marked "same_run": false and "note": NOTE; the table uses
them only where this run has no row, marked with †.
"""
import argparse
import datetime
import json
import os


def read_rows(path):
    rows, ceilings = [], {}
    if not os.path.exists(path):
        return rows, ceilings
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "ceiling" in r:
                ceilings[r["ceiling"]] = r["value"]
                ceilings["_device"] = r.get("device")
            else:
                rows.append(r)
    return rows, ceilings


def fmt_tps(r):
    x = r.get("tokens_per_s")
    mark = "†" if r.get("same_run") is False else ""
    return "—" if x is None else f"{x / 1e6:.2f} M{mark}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--earlier-peers", action="append", default=[])
    ap.add_argument("--tag", default="", help="kernel version in the file name (kernels-<device>-<tag>-<date>)")
    ap.add_argument("--outdir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()

    rows, ceilings = read_rows(os.path.join(args.run, "lightring.jsonl"))
    for spec in args.variant:
        path, name = spec.rsplit(":", 1)
        vrows, _ = read_rows(os.path.join(args.run, path))
        for r in vrows:
            r["variant"] = name
        rows += vrows
    peers, _ = read_rows(os.path.join(args.run, "peers.jsonl"))
    rows += peers
    have = {(r["impl"], r["B"], r["H"], r["N"], r["D"], r["E"], r["pass"]) for r in rows}
    for spec in args.earlier_peers:
        path, note = spec.rsplit(":", 1)
        for r in read_rows(path)[0]:
            if (r["impl"], r["B"], r["H"], r["N"], r["D"], r["E"], r["pass"]) not in have:
                r["same_run"] = False
                r["note"] = (r.get("note", "") + "; " if r.get("note") else "") + note
                rows.append(r)
    device = ceilings.pop("_device", "unknown")
    doc = {"tool": "kernel_bench", "commit": args.commit, "device": device, "date": args.date,
           "world_size": 1, "ceilings": ceilings, "rows": rows}
    slug = device.replace("NVIDIA ", "").replace(" ", "-").lower()
    tag = f"-{args.tag}" if args.tag else ""
    out = os.path.join(args.outdir, f"kernels-{slug}{tag}-{args.date.replace('-', '')}.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out}\n")

    # Table: one line per shape and pass, tokens/s of each implementation, lightring / FLA.
    def key(r):
        return (r["B"], r["H"], r["N"], r["D"], r["E"], r["pass"])

    by = {}
    for r in rows:
        if r.get("variant"):
            continue
        by.setdefault(key(r), {})[r["impl"]] = r
    print(f"{device}, copy {ceilings.get('copy_TBps', 0):.2f} TB/s; tokens/s (M = 10^6), bf16, decay on "
          "(FA2: softmax, no decay)\n")
    print("| B | H | N | D | pass | lightring | TB/s | FLA | LA2 | FA2 | lightring / FLA | peak GB (lr / FLA) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = {"fwd": 0, "bwd": 1, "fwdbwd": 2}
    for k in sorted(by, key=lambda k: (k[:5], order.get(k[5], 9))):
        d = by[k]
        lr, fla = d.get("lightring"), d.get("fla")
        ratio = (f"{lr['tokens_per_s'] / fla['tokens_per_s']:.2f}×"
                 if lr and fla and lr.get("tokens_per_s") and fla.get("tokens_per_s") else "—")
        peak = (f"{lr['peak_GB']:.2f} / {fla['peak_GB']:.2f}"
                if k[5] == "fwdbwd" and lr and fla and fla.get("peak_GB") is not None else "")
        tb = f"{lr['achieved_TBps']:.2f}" if lr else "—"
        cells = [fmt_tps(d[i]) if i in d else "—" for i in ("lightring",)]
        cells += [tb] + [fmt_tps(d[i]) if i in d else "—" for i in ("fla", "la2", "fa2")]
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[5]} | " + " | ".join(cells) + f" | {ratio} | {peak} |")


if __name__ == "__main__":
    main()
