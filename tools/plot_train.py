#!/usr/bin/env python3
"""Plot a lightring-train JSONL log (docs/training.md, "JSONL log") as a PNG.

    python3 tools/plot_train.py train.jsonl [-o train.png] [--smooth 20]

Top: training loss per step (and its running mean over --smooth steps) with the validation
loss of the "eval" rows; bottom: tokens/s per step. A resumed run appends to its log: every
"train" row of a step replaces an earlier row of the same step, so the plot shows the run as it
continued. Needs matplotlib (Debian: python3-matplotlib, installed by tools/setup.sh).
"""
import argparse
import json
import sys


def read_log(path):
    train, evals = {}, {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not a JSON object ({e})")
            kind = row.get("kind")
            if kind == "train":
                train[row["step"]] = row
            elif kind == "eval":
                evals[row["step"]] = row
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]


def running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", help="the --log file of lightring-train")
    parser.add_argument("-o", "--output", help="PNG path (default: the log's name with .png)")
    parser.add_argument("--smooth", type=int, default=20, help="running-mean window in steps")
    args = parser.parse_args()
    if args.smooth < 1:
        sys.exit("--smooth must be >= 1")
    train, evals = read_log(args.log)
    if not train:
        sys.exit(f"{args.log}: no train rows")
    output = args.output or (args.log.rsplit(".", 1)[0] + ".png")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in train]
    loss = [r["loss"] for r in train]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    top.plot(steps, loss, color="tab:blue", alpha=0.35, linewidth=0.8, label="train loss")
    top.plot(steps, running_mean(loss, args.smooth), color="tab:blue",
             label=f"train loss ({args.smooth}-step mean)")
    if evals:
        top.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-",
                 color="tab:orange", label="validation loss")
    top.set_ylabel("loss (nats / token)")
    top.grid(alpha=0.3)
    top.legend()
    tps = [r.get("tokens_per_s") or 0.0 for r in train]
    bottom.plot(steps, tps, color="tab:green", linewidth=0.8)
    bottom.set_ylabel("tokens / s")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    fig.suptitle(f"lightring-train: {args.log} ({len(train)} steps)")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(f"wrote {output}: {len(train)} steps, loss {loss[0]:.4f} -> {loss[-1]:.4f}"
          + (f", last validation loss {evals[-1]['eval_loss']:.4f}" if evals else ""))


if __name__ == "__main__":
    main()
