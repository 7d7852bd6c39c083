"""End-to-end training benchmark: TransNormerLLM (lightring.models.TransNormerLM) with its token
mixer on lightring and on FLA's chunk_simple_gla, the same weights, batch and precision.

    python3 bench/model_bench.py --out model.jsonl [--phases table,longest,compile]
        [--sizes 125m,350m] [--contexts 4096,32768,131072] [--mixers lightring,fla]
        [--anchors .anchors] [--quick] [--summarize model.jsonl]

A training step is: forward under bf16 autocast (fp32 weights, the `--precision auto` of
python -m lightring.train on CUDA), the mean next-token cross-entropy over B·T targets, backward,
one torch.optim.AdamW step, zero_grad. The LM head and the cross-entropy run in chunks of
--loss-chunk tokens, each checkpointed (bench/model_mixers.py lm_loss), for both mixers.

Phases (each row is one JSON line, written and flushed as soon as it is measured):
- table: per size, mixer and context T (B = 1): the initial weights are loaded (the same
  state_dict for every mixer); the first of --warmup steps also records the loss, the outputs
  of the first and last token mixer and the gradient of layer 0's qkvu weight (before its
  optimizer step); then --iters timed steps, more (up to 20) until they add up to 0.5 s
  (timed_steps: how many). ms = median step time (CUDA events); steps_per_s =
  1000 / ms; tokens_per_s = B·T / (ms / 1000); peak_GB = torch.cuda.max_memory_allocated over
  the row (weights, AdamW states, activations; reset per row). A row that runs out of memory is
  run again with every block recomputed in the backward (recompute: true); both rows are kept.
  Then one "check" row per (size, T) and mixer other than the first: rel_err (‖x − ref‖ /
  ‖ref‖) of the loss, of both mixer outputs and of the gradient against the first mixer, ok when
  all are <= --check-tol (default 2e-2 in bf16, 1e-4 in fp32).
- longest: per mixer, --longest-size with every block recomputed: T from --longest-start,
  doubled while one training step fits (torch.cuda.OutOfMemoryError ends the doubling), then
  --bisect halvings of the gap (multiples of 8192 tokens), within --longest-cap-s seconds per
  mixer (a doubling starts only if 2.5 times the last step's time still fits in the cap, a
  bisection 1.5 times). One row per try and a summary row (longest_T, first_fail_T).
- compile: --compile-size at --compile-context, the lightring model (no group), the loss from
  the model's forward (whole logits, no chunks): eager steps, then the same steps through
  torch.compile(model, fullgraph=True, backend=--compile-backend): the first compiled step's
  time (compile_s), the loss and gradients of the first step against eager, the median step
  time of each (speedup = eager_ms / compiled_ms). Needs torch >= 2.4 (an error row otherwise).
"""
import argparse
import gc
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import lightring  # noqa: E402
from lightring.models import TransNormerConfig, TransNormerLM  # noqa: E402
from model_mixers import kernel_of, lm_loss, rel_err, use_kernel  # noqa: E402
from model_report import print_summary  # noqa: E402

OOM = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--phases", default="table", help="comma list of table, longest, compile")
    a("--compile", action="store_true", help="add the compile phase (= --phases ...,compile)")
    a("--sizes", default=None, help="presets of lightring.models (default 125m,350m)")
    a("--contexts", default=None, help="sequence lengths T of the table (default "
                                       "4096,32768,131072)")
    a("--mixers", default="lightring,fla", help="lightring, fla, torch-reference (first: the "
                                                "reference of the checks)")
    a("--vocab", type=int, default=32000)
    a("--batch", type=int, default=1)
    a("--device", default="auto", help="auto (cuda when available) | cuda | cpu")
    a("--precision", default="auto", help="auto (bf16 autocast on cuda, fp32 on cpu) | "
                                          "bf16-autocast | fp32")
    a("--loss-chunk", type=int, default=8192, help="tokens per LM-head chunk (0: all)")
    a("--recompute", default="auto", help="auto (on after an OOM) | on | off, table rows")
    a("-w", "--warmup", type=int, default=2)
    a("-n", "--iters", type=int, default=3)
    a("--lr", type=float, default=1e-4)
    a("--seed", type=int, default=1)
    a("--check-tol", type=float, default=None)
    a("--anchors", default=".anchors", help="folder holding FLA's source tree (fla/)")
    a("--longest-size", default="350m")
    a("--longest-start", type=int, default=131072)
    a("--longest-max", type=int, default=1 << 24)
    a("--longest-cap-s", type=float, default=60.0)
    a("--bisect", type=int, default=2)
    a("--compile-size", default="125m")
    a("--compile-context", type=int, default=4096)
    a("--compile-backend", default=None, help="torch.compile backend (default inductor on cuda, "
                                              "aot_eager on the cpu)")
    a("--quick", action="store_true", help="125m at 4K and 32K (cuda); tiny at 256, 512 and "
                                           "V = 256 (cpu); 1 warmup, 2 timed steps, 30 s caps "
                                           "(--sizes / --contexts given still apply)")
    a("--out", default=None, help="JSONL file, appended to")
    a("--summarize", default=None, help="print the summary tables of a JSONL file and exit")
    o = p.parse_args(argv)
    if o.summarize:
        return o
    if o.device == "auto":
        o.device = "cuda" if torch.cuda.is_available() else "cpu"
    o.cuda = o.device == "cuda"
    if o.precision == "auto":
        o.precision = "bf16-autocast" if o.cuda else "fp32"
    if o.precision not in ("bf16-autocast", "fp32"):
        p.error(f"--precision must be auto, bf16-autocast or fp32 (got {o.precision!r})")
    if o.recompute not in ("auto", "on", "off"):
        p.error(f"--recompute must be auto, on or off (got {o.recompute!r})")
    if o.compile_backend is None:
        o.compile_backend = "inductor" if o.cuda else "aot_eager"
    if o.check_tol is None:
        o.check_tol = 2e-2 if o.precision == "bf16-autocast" else 1e-4
    sizes, contexts = "125m,350m", "4096,32768,131072"
    if o.quick:
        sizes, contexts = ("125m", "4096,32768") if o.cuda else ("tiny", "256,512")
        o.warmup, o.iters = 1, 2
        o.longest_cap_s = min(o.longest_cap_s, 30.0)
        if not o.cuda:
            o.vocab = 256
            o.longest_size, o.longest_start, o.longest_max = "tiny", 256, 1024
            o.compile_size, o.compile_context = "tiny", 256
    o.phases = o.phases.split(",")
    if o.compile and "compile" not in o.phases:
        o.phases.append("compile")
    for phase in o.phases:
        if phase not in ("table", "longest", "compile"):
            p.error(f"--phases: unknown phase {phase!r} (table, longest, compile)")
    o.sizes, o.mixers = (o.sizes or sizes).split(","), o.mixers.split(",")
    o.contexts = [int(t) for t in (o.contexts or contexts).split(",")]
    return o


class Writer:
    """One JSON object per line, to stdout and --out, flushed at once (a crash keeps them)."""

    def __init__(self, path, common):
        self.file = open(path, "a") if path else None
        self.common = common
        self.rows = []

    def __call__(self, row):
        row = dict(self.common, **row)
        self.rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()


def log(msg):
    print(f"# {time.strftime('%H:%M:%S')} {msg}", flush=True)


def sync(o):
    if o.cuda:
        torch.cuda.synchronize()


def free(o):
    gc.collect()
    if o.cuda:
        torch.cuda.empty_cache()


def batch(o, vocab, t):
    """The same ids and targets for every mixer: [B, T] int64 from a seeded cpu generator."""
    g = torch.Generator().manual_seed(o.seed * 1000003 + t)
    tokens = torch.randint(0, vocab, (o.batch, t + 1), generator=g)
    return tokens[:, :-1].contiguous().to(o.device), tokens[:, 1:].contiguous().to(o.device)


def autocast(o):
    return torch.autocast("cuda" if o.cuda else "cpu", dtype=torch.bfloat16,
                          enabled=o.precision == "bf16-autocast")


class Run:
    """One model of one mixer on the device, with its initial weights and an optimizer."""

    def __init__(self, o, config, init_state, mixer):
        self.o, self.mixer = o, mixer
        self.model = TransNormerLM(config, device=o.device)
        self.model.load_state_dict(init_state)
        use_kernel(self.model, kernel_of(mixer, o.anchors))
        self.optimizer = None
        self.compiled = None  # torch.compile(self.model) when set: the loss runs through it

    def reset(self, init_state):
        """Initial weights, a new optimizer (the previous one's states are freed)."""
        self.optimizer = None
        free(self.o)
        self.model.load_state_dict(init_state)
        self.model.zero_grad(set_to_none=True)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.o.lr)

    def loss(self, ids, targets, recompute, loss_chunk=None):
        with autocast(self.o):
            if self.compiled is not None:
                return whole_loss(self.compiled, ids, targets)
            return lm_loss(self.model, ids, targets,
                           self.o.loss_chunk if loss_chunk is None else loss_chunk, recompute)

    def step(self, ids, targets, recompute, loss_chunk=None, probe=False):
        """One training step. probe=True also returns, taken before the optimizer step, what
        the checks compare: the loss, the first and last token mixers' outputs and layer 0's
        qkvu gradient (on the cpu)."""
        seen, hooks = {}, []
        if probe:
            for l in (0, len(self.model.layers) - 1):
                def keep(module, inputs, output, l=l):  # the first call (not the recompute)
                    seen.setdefault(f"mixer_out_{l}", output.detach().cpu().float())
                hooks.append(self.model.layers[l].token_mixer.register_forward_hook(keep))
        try:
            loss = self.loss(ids, targets, recompute, loss_chunk)
            loss.backward()
        finally:
            for h in hooks:
                h.remove()
        if probe:
            seen["loss"] = loss.detach().float().cpu().reshape(1)
            seen["grad_qkvu_0"] = \
                self.model.layers[0].token_mixer.qkvu_proj.weight.grad.float().cpu()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return seen if probe else loss.detach()


def whole_loss(forward, ids, targets):
    """The mean cross-entropy of forward(ids) [B, T, V] logits (the compile phase)."""
    logits = forward(ids).float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1))


def timed_ms(o, fn):
    """Milliseconds of fn: CUDA events around it (cuda), perf_counter after a sync (cpu)."""
    if o.cuda:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_steps(o, fn, min_total_ms=500.0, max_iters=20):
    """Median ms of fn over --iters calls, more (up to max_iters) until they add up to
    min_total_ms: short steps get enough samples. Returns (median, number of calls)."""
    ms = []
    while len(ms) < o.iters or (sum(ms) < min_total_ms and len(ms) < max_iters):
        ms.append(timed_ms(o, fn))
    return median(ms), len(ms)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def peak_gb(o):
    return torch.cuda.max_memory_allocated() / 1e9 if o.cuda else None


def reset_peak(o):
    if o.cuda:
        torch.cuda.reset_peak_memory_stats()


def error_text(e):
    lines = str(e).strip().splitlines() or [""]
    return f"{type(e).__name__}: {lines[0][:240]}"


def table_row(o, run, init_state, size, t, recompute):
    """One row of the table; returns (row, probe) (probe None when it failed)."""
    row = {"phase": "table", "size": size, "mixer": run.mixer, "T": t, "B": o.batch,
           "recompute": recompute}
    ids, targets = batch(o, run.model.config.vocab_size, t)
    seen, error = None, None
    try:
        run.reset(init_state)
        reset_peak(o)
        seen = run.step(ids, targets, recompute, probe=True)
        for _ in range(max(o.warmup - 1, 0)):
            run.step(ids, targets, recompute)
        m, count = time_steps(o, lambda: run.step(ids, targets, recompute))
        row.update(ms=m, timed_steps=count, steps_per_s=1e3 / m,
                   tokens_per_s=o.batch * t / m * 1e3,
                   peak_GB=peak_gb(o), loss=seen["loss"].item(), oom=False)
    except OOM as e:
        error = error_text(e)
        row.update(oom=True)
    except Exception as e:  # noqa: BLE001 (a failing row is a result; the rest still run)
        error = error_text(e)
    if error is not None:
        row.update(ms=None, tokens_per_s=None, peak_GB=peak_gb(o), error=error)
        seen = None
        run.optimizer = None
        run.model.zero_grad(set_to_none=True)
    return row, seen


def check_rows(o, write, probes):
    """Compares every mixer's probe with the first mixer's at the same (size, T). The first
    step's loss, outputs and gradients do not depend on recompute, so a row that needed it is
    compared with one that did not (recompute names each side's mode)."""
    ref_mixer = o.mixers[0]
    for (size, t), by_mixer in probes.items():
        if ref_mixer not in by_mixer:
            continue
        ref_mode, ref = by_mixer[ref_mixer]
        for mixer, (mode, got) in by_mixer.items():
            if mixer == ref_mixer:
                continue
            errs = {name: rel_err(got[name], ref[name]) for name in ref}
            write({"phase": "check", "size": size, "T": t,
                   "recompute": {mixer: mode, ref_mixer: ref_mode}, "mixer": mixer,
                   "ref": ref_mixer, "rel_err": errs, "tol": o.check_tol,
                   "ok": all(e <= o.check_tol for e in errs.values())})


def initial_state(o, size):
    """The initial weights of size on the cpu (normal(0, 0.02), seeded): every mixer loads
    the same state_dict."""
    torch.manual_seed(o.seed)
    config = TransNormerConfig.from_preset(size, o.vocab)
    model = TransNormerLM(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return config, state


def phase_table(o, write):
    """Per size and T, each mixer in turn on a model of its own (built, measured, freed: one
    model on the device at a time), then the check rows of that T: a time limit that ends the
    process keeps every finished T whole."""
    for size in o.sizes:
        config, init = initial_state(o, size)
        write({"phase": "model", "size": size, "parameters": config.parameter_count(),
               "d_model": config.d_model, "layers": config.num_layers,
               "heads": config.num_heads, "head_dim": config.resolved_head_dim})
        for t in o.contexts:
            probes = {}
            for mixer in o.mixers:
                try:
                    run = Run(o, config, init, mixer)
                except Exception as e:  # noqa: BLE001 (e.g. FLA missing: its row says so)
                    write({"phase": "table", "size": size, "mixer": mixer, "T": t,
                           "B": o.batch, "ms": None, "tokens_per_s": None,
                           "error": error_text(e)})
                    continue
                modes = {"auto": [False, True], "on": [True], "off": [False]}[o.recompute]
                for recompute in modes:
                    log(f"table {size} {mixer} T={t} recompute={recompute}")
                    row, seen = table_row(o, run, init, size, t, recompute)
                    free(o)  # the row's batch and activations are gone with its frame
                    write(row)
                    if seen is not None:
                        probes[mixer] = (recompute, seen)
                    if not row.get("oom"):
                        break  # auto: recompute only after an out-of-memory row
                run = None
                free(o)
            check_rows(o, write, {(size, t): probes})
            probes = None


def phase_longest(o, write):
    config, init = initial_state(o, o.longest_size)
    step = 8192 if o.cuda else 128
    for mixer in o.mixers:
        t0 = time.perf_counter()
        try:
            run = Run(o, config, init, mixer)
            run.reset(init)
        except Exception as e:  # noqa: BLE001
            write({"phase": "longest", "size": o.longest_size, "mixer": mixer,
                   "longest_T": None, "error": error_text(e)})
            continue
        fits, fail, tries, stop = None, None, 0, None

        def attempt(t):
            row = {"phase": "longest_try", "size": o.longest_size, "mixer": mixer, "T": t,
                   "B": o.batch, "recompute": True}
            ids, targets = batch(o, config.vocab_size, t)
            reset_peak(o)
            try:
                ms = timed_ms(o, lambda: run.step(ids, targets, True))
                row.update(fits=True, ms_first_step=ms, peak_GB=peak_gb(o))
                last_s[0] = ms / 1e3
            except OOM as e:
                row.update(fits=False, oom=True, error=error_text(e), peak_GB=peak_gb(o))
            except Exception as e:  # noqa: BLE001 (not memory: the search stops here)
                row.update(fits=False, oom=False, error=error_text(e))
            run.optimizer.zero_grad(set_to_none=True)
            write(row)
            return row

        last_s = [0.0]  # the last try's step time: a try twice as long must fit in the cap

        def over_cap(factor=2.5):
            return time.perf_counter() - t0 + factor * last_s[0] > o.longest_cap_s

        t = o.longest_start
        while t <= o.longest_max and not over_cap():
            log(f"longest {mixer} T={t}")
            row = attempt(t)
            free(o)
            tries += 1
            if row["fits"]:
                fits, t = t, t * 2
            else:
                fail, stop = t, row.get("error")
                if fits is not None or not row.get("oom") or t // 2 < step:
                    break
                t //= 2  # the start does not fit: halve until one does
        for _ in range(o.bisect):
            if fits is None or fail is None or fail - fits <= step or over_cap(1.5):
                break
            mid = (fits + fail) // 2 // step * step
            log(f"longest {mixer} T={mid} (bisect)")
            row = attempt(mid)
            free(o)
            tries += 1
            if row["fits"]:
                fits = mid
            else:
                fail = mid
        write({"phase": "longest", "size": o.longest_size, "mixer": mixer, "longest_T": fits,
               "first_fail_T": fail, "stopped_by": stop, "tries": tries,
               "capped": over_cap(0.0), "elapsed_s": time.perf_counter() - t0})
        run = None
        free(o)


def phase_compile(o, write):
    row = {"phase": "compile", "size": o.compile_size, "mixer": "lightring",
           "T": o.compile_context, "B": o.batch, "fullgraph": True,
           "backend": o.compile_backend}
    try:
        if not hasattr(torch, "compile") or not lightring.HAS_FAKE_IMPLS:
            raise RuntimeError(f"torch {torch.__version__}: torch.compile of lightring needs "
                               "torch >= 2.4 (fake impls)")
        config, init = initial_state(o, o.compile_size)
        run = Run(o, config, init, "lightring")
        ids, targets = batch(o, config.vocab_size, o.compile_context)
        watched = ("layers.0.token_mixer.qkvu_proj.weight", "lm_head.weight")

        def measure(forward):
            """First step (loss, gradients; its time), then warmup and timed steps."""
            run.compiled = forward
            run.reset(init)
            t0 = time.perf_counter()
            loss = run.loss(ids, targets, False)
            loss.backward()
            sync(o)
            first_s = time.perf_counter() - t0
            grads = {n: p.grad.float().cpu() for n, p in run.model.named_parameters()
                     if n in watched}
            run.model.zero_grad(set_to_none=True)
            for _ in range(o.warmup):
                run.step(ids, targets, False)
            ms, _ = time_steps(o, lambda: run.step(ids, targets, False))
            return loss.detach().float().cpu().reshape(1), grads, first_s, ms

        log(f"compile {o.compile_size} T={o.compile_context}: eager")
        loss_e, grads_e, _, e_ms = measure(run.model)
        log(f"compile {o.compile_size} T={o.compile_context}: torch.compile(fullgraph=True)")
        loss_c, grads_c, compile_s, c_ms = measure(torch.compile(run.model, fullgraph=True,
                                                                 backend=o.compile_backend))
        errs = {"loss": rel_err(loss_c, loss_e)}
        errs.update({f"grad:{n}": rel_err(grads_c[n], grads_e[n]) for n in grads_e})
        row.update(eager_ms=e_ms, compiled_ms=c_ms, speedup=e_ms / c_ms, compile_s=compile_s,
                   loss_eager=loss_e.item(), loss_compiled=loss_c.item(), rel_err=errs,
                   tol=o.check_tol, ok=all(e <= o.check_tol for e in errs.values()))
    except Exception as e:  # noqa: BLE001 (a graph break or an old torch is the result)
        row.update(error=error_text(e), ok=False)
    write(row)
    free(o)


def main(argv=None):
    o = parse(argv)
    if o.summarize:
        if not os.path.isfile(o.summarize):
            print(f"--summarize: no file {o.summarize} (no row was written)", flush=True)
            return 1
        with open(o.summarize) as f:
            print_summary([json.loads(line) for line in f if line.strip()])
        return 0
    common = {"bench": "model", "device": torch.cuda.get_device_name() if o.cuda else "cpu",
              "torch": torch.__version__, "lightring": lightring.__version__,
              "precision": o.precision, "vocab": o.vocab, "loss_chunk": o.loss_chunk,
              "optimizer": "AdamW", "warmup": o.warmup, "iters": o.iters}
    write = Writer(o.out, common)
    phases = {"table": phase_table, "longest": phase_longest, "compile": phase_compile}
    for name in o.phases:
        log(f"phase {name}")
        phases[name](o, write)
    print_summary(write.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
