"""python -m lightring.train: the job of lightring-train (docs/training.md) in PyTorch.

    mpirun -np 4 python3 -m lightring.train --dp 2 --sp 2 --data fortunes --steps 300 \\
        --seq-len 256 --batch 4 --log train.jsonl --save-dir ckpt --eval-every 50

(or torchrun where it works; lightring.distributed.init reads either launcher's variables).

The same model (lightring.models.TransNormerLM, presets), data (the C++ pipeline of csrc/data
through the extension, lightring.data.Pipeline: the same sequences in the same order for the
same --data / --seq-len / --seed / --dp), DP x SP groups (lightring.distributed.new_groups: SP
fastest, as lightring-train), loss (Σ_shard CE / the global batch's target tokens, gradients
summed over the world: summed over SP, averaged over DP), AdamW (torch.optim.AdamW), linear
warmup + cosine, gradient clipping, progress lines (rank 0), the same JSONL log rows and the same
checkpoint files (format "lightring-train/1"), which lightring.models.from_checkpoint,
`lightring-train --resume` and `--resume` here read.

Differences from the C++ driver: `--precision auto` (the default) is bf16 autocast on CUDA and
fp32 on the CPU; gradients are all-reduced after backward in flat buckets of --bucket-mb (no
overlap with backward).
"""
import argparse
import json
import math
import os
import resource
import signal
import sys
import time

import torch
import torch.distributed as dist

from . import distributed as lrd
from .data import FORMATS, Pipeline, shard_indices
from .models import PRESETS, TransNormerConfig, TransNormerLM
from .models.transnormer import CHECKPOINT_FORMAT, _resolve

SCHEDULES = ("auto", "ring", "allgather", "scan")
FORTUNES = "/usr/share/games/fortunes"


class UsageError(Exception):
    """A bad flag value (the message names the flag)."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m lightring.train",
        description="Pretrain a TransNormerLLM model over data x sequence parallel ranks "
                    "(mpirun -np D*S python -m lightring.train --dp D --sp S ...); the flags, "
                    "log and checkpoints of lightring-train (docs/training.md).")
    a = p.add_argument
    # model
    a("--preset", default="tiny", help="tiny | 125m | 350m | 1b")
    for flag, what in (("--d-model", "width d"), ("--layers", "layers L"), ("--heads", "heads H"),
                       ("--head-dim", "head dim dh (default d / H)"),
                       ("--ffn-dim", "SGLU hidden size"), ("--vocab", "vocabulary (default: "
                                                                       "the data's)")):
        a(flag, type=int, default=None, help=what + " (default: the preset's)")
    a("--no-embedding-scale", action="store_true", help="do not scale embeddings by sqrt(d)")
    a("--init-std", type=float, default=0.02)
    # parallelism
    a("--dp", type=int, default=0, help="data-parallel size (0: ranks / --sp)")
    a("--sp", type=int, default=1, help="sequence-parallel size")
    a("--schedule", default="auto", help="ring | allgather | scan | auto")
    a("--timeout", type=float, default=None, help="seconds a rank waits for a peer")
    a("--threads", type=int, default=1, help="torch intra-op threads per rank")
    a("--precision", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16")
    a("--bucket-mb", type=float, default=25.0, help="gradient all-reduce bucket size (0: one)")
    a("--device", default="auto", help="auto | cpu | cuda")
    # data
    a("--data", default="synthetic-recall", help=" | ".join(FORMATS))
    a("--data-path", default="", help="file, folder or Megatron prefix")
    a("--seq-len", type=int, default=256)
    a("--batch", type=int, default=4, help="sequences per DP rank per step")
    a("--documents", default="on", help="on | off")
    a("--text-split", default="file", help="file | block")
    a("--token-dtype", default="uint16", help="uint16 | uint32")
    a("--eos", type=int, default=None)
    a("--val-fraction", type=float, default=0.01)
    a("--recall-keys", type=int, default=64)
    a("--recall-pairs", type=int, default=16)
    a("--recall-queries", type=int, default=16)
    # optimisation
    a("--steps", type=int, default=200)
    a("--lr", type=float, default=3e-3)
    a("--min-lr", type=float, default=3e-4)
    a("--warmup", type=int, default=20)
    a("--weight-decay", type=float, default=0.1)
    a("--beta1", type=float, default=0.9)
    a("--beta2", type=float, default=0.95)
    a("--adam-eps", type=float, default=1e-8)
    a("--grad-clip", type=float, default=1.0, help="0: off")
    a("--seed", type=int, default=1234)
    # checkpoints and reports
    a("--save-dir", default="")
    a("--save-every", type=int, default=0)
    a("--resume", default="", help="a checkpoint file, or a --save-dir (its latest)")
    a("--log", default="", help="JSONL log (rank 0)")
    a("--log-every", type=int, default=10)
    a("--eval-every", type=int, default=0)
    a("--eval-sequences", type=int, default=16)
    a("--peak-tflops", type=float, default=0.0)
    # samples (rank 0, the recurrent form: TransNormerLM.generate)
    a("--sample", type=int, default=0, help="print a sample of N tokens after training")
    a("--generate", action="store_true",
      help="only sample from the --resume checkpoint (--sample tokens, default 200)")
    a("--prompt", default="", help="byte-level data: the text the sample continues")
    a("--temperature", type=float, default=0.8, help="0: greedy")
    a("--top-k", type=int, default=0, help="sample among the k likeliest (0: all)")
    return p


def check_options(o):
    """Raises UsageError naming the flag, as lightring-train's parse_train_options."""
    def need(cond, msg):
        if not cond:
            raise UsageError(msg)
    need(o.preset in PRESETS, f"--preset: unknown preset '{o.preset}' (known: "
                              f"{', '.join(PRESETS)})")
    for flag in ("d_model", "layers", "heads", "head_dim", "ffn_dim", "vocab"):
        v = getattr(o, flag)
        need(v is None or v >= 1, f"--{flag.replace('_', '-')} must be >= 1 (got {v})")
    need(o.init_std > 0 and math.isfinite(o.init_std), f"--init-std must be > 0 (got {o.init_std})")
    need(o.dp >= 0, f"--dp must be >= 1, or 0 for ranks / --sp (got {o.dp})")
    need(o.sp >= 1, f"--sp must be >= 1 (got {o.sp})")
    need(o.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)} "
                                  f"(got '{o.schedule}')")
    need(o.timeout is None or (o.timeout > 0 and math.isfinite(o.timeout)),
         f"--timeout must be a positive number of seconds (got {o.timeout})")
    need(o.threads >= 1, f"--threads must be >= 1 (got {o.threads})")
    need(o.precision in ("auto", "fp32", "bf16"),
         f"--precision must be auto, fp32 or bf16 (got '{o.precision}')")
    need(o.bucket_mb >= 0, f"--bucket-mb must be >= 0 (got {o.bucket_mb})")
    need(o.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda "
                                              f"(got '{o.device}')")
    need(o.data in FORMATS, f"--data: unknown format '{o.data}' (known: {', '.join(FORMATS)})")
    need(o.data not in ("text", "tokens", "megatron") or o.data_path,
         f"--data-path is required for --data {o.data}")
    need(o.data != "synthetic-recall" or not o.data_path,
         f"--data-path: synthetic-recall reads no files (got '{o.data_path}')")
    need(o.seq_len >= 2, f"--seq-len must be >= 2 (got {o.seq_len})")
    need(o.seq_len >= o.sp, f"--seq-len ({o.seq_len}) must be at least --sp ({o.sp}): every SP "
                            "rank holds >= 1 token")
    need(o.batch >= 1, f"--batch must be >= 1 (got {o.batch})")
    need(o.documents in ("on", "off"), f"--documents must be on or off (got '{o.documents}')")
    need(o.text_split in ("file", "block"), f"--text-split must be file or block "
                                            f"(got '{o.text_split}')")
    need(o.token_dtype in ("uint16", "uint32"), f"--token-dtype must be uint16 or uint32 "
                                                f"(got '{o.token_dtype}')")
    need(o.eos is None or 0 <= o.eos <= 0xffffffff, f"--eos must be a token id >= 0 (got {o.eos})")
    need(o.data != "tokens" or o.eos is not None,
         "--eos is required for --data tokens (the id that separates documents)")
    need(0 <= o.val_fraction < 1, f"--val-fraction must be in [0, 1) (got {o.val_fraction})")
    need(1 <= o.recall_keys <= 1 << 20, f"--recall-keys must be in 1..2^20 (got {o.recall_keys})")
    need(o.recall_pairs >= 1, f"--recall-pairs must be >= 1 (got {o.recall_pairs})")
    need(1 <= o.recall_queries <= o.recall_pairs,
         f"--recall-queries must be in 1..--recall-pairs (got {o.recall_queries})")
    need(o.steps >= 1, f"--steps must be >= 1 (got {o.steps})")
    need(o.lr > 0 and math.isfinite(o.lr), f"--lr must be > 0 (got {o.lr})")
    need(0 <= o.min_lr <= o.lr, f"--min-lr must be in [0, --lr] (got {o.min_lr})")
    need(o.warmup >= 0, f"--warmup must be >= 0 (got {o.warmup})")
    need(o.weight_decay >= 0, f"--weight-decay must be >= 0 (got {o.weight_decay})")
    need(0 <= o.beta1 < 1, f"--beta1 must be in [0, 1) (got {o.beta1})")
    need(0 <= o.beta2 < 1, f"--beta2 must be in [0, 1) (got {o.beta2})")
    need(o.adam_eps > 0, f"--adam-eps must be > 0 (got {o.adam_eps})")
    need(o.grad_clip >= 0, f"--grad-clip must be >= 0 (got {o.grad_clip})")
    need(o.seed >= 0, f"--seed must be >= 0 (got {o.seed})")
    need(o.save_every >= 0, f"--save-every must be >= 0 (got {o.save_every})")
    need(o.save_every == 0 or o.save_dir, "--save-every needs --save-dir")
    need(o.log_every >= 1, f"--log-every must be >= 1 (got {o.log_every})")
    need(o.eval_every >= 0, f"--eval-every must be >= 0 (got {o.eval_every})")
    need(o.eval_sequences >= 0, f"--eval-sequences must be >= 0 (got {o.eval_sequences})")
    need(o.peak_tflops >= 0, f"--peak-tflops must be >= 0 (got {o.peak_tflops})")
    need(o.sample >= 0, f"--sample must be >= 0 (got {o.sample})")
    need(not o.generate or o.resume, "--generate needs --resume (the checkpoint)")
    if o.generate and o.sample == 0:
        o.sample = 200
    need(o.temperature >= 0 and math.isfinite(o.temperature),
         f"--temperature must be >= 0 (got {o.temperature})")
    need(o.top_k >= 0, f"--top-k must be >= 0 (got {o.top_k})")
    need(not o.prompt or o.data in ("fortunes", "text"),
         f"--prompt needs byte-level data (--data fortunes or text), not {o.data}")
    try:
        model_config(o, 2).validate()  # sizes, before any data is read
    except ValueError as e:
        raise UsageError(f"model: {e}")


def check_world(o, world_size):
    if o.dp == 0:
        if world_size % o.sp:
            raise UsageError(f"--sp {o.sp} does not divide the number of ranks ({world_size})")
        o.dp = world_size // o.sp
    if o.dp * o.sp != world_size:
        raise UsageError(f"--dp {o.dp} x --sp {o.sp} = {o.dp * o.sp} ranks, but the job has "
                         f"{world_size} (mpirun -np must be --dp x --sp)")


def model_config(o, vocab):
    overrides = {k: getattr(o, a) for k, a in (("d_model", "d_model"), ("num_layers", "layers"),
                                               ("num_heads", "heads"), ("head_dim", "head_dim"),
                                               ("ffn_dim", "ffn_dim")) if getattr(o, a)}
    c = TransNormerConfig.from_preset(o.preset, vocab, **overrides)
    if overrides:
        c.preset = o.preset + "+custom"
    c.scale_embedding = not o.no_embedding_scale
    c.init_std = o.init_std
    return c


def describe(c):
    """csrc/model/config.cpp describe()."""
    return (f"preset={c.preset} V={c.vocab_size} d={c.d_model} L={c.num_layers} "
            f"H={c.num_heads} dh={c.resolved_head_dim} f={c.resolved_ffn_dim} "
            f"scale_emb={1 if c.scale_embedding else 0}")


def flops_per_token(c):
    """docs/training.md "MFU": 6·(P_nonembedding + V·d) + 12·L·H·dh²."""
    dh = c.resolved_head_dim
    non_embedding = c.parameter_count() - 2 * c.vocab_size * c.d_model
    return 6.0 * (non_embedding + c.vocab_size * c.d_model) + 12.0 * c.num_layers * c.num_heads \
        * dh * dh


def learning_rate(o, step):
    """lr of step s = 0, 1, ... (launch/train_options.cpp learning_rate)."""
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    span = max(1, o.steps - o.warmup)
    progress = min(1.0, (step - o.warmup) / span)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * progress))


# --- the JSONL log and progress lines, as launch/train_log.cpp ----------------------------------

def _json_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "%.17g" % v if math.isfinite(v) else "null"
    if v is None:
        return "null"
    return json.dumps(str(v), ensure_ascii=False)


def json_row(fields):
    return "{" + ",".join(f"{json.dumps(k)}:{_json_value(v)}" for k, v in fields) + "}"


class JsonlLog:
    def __init__(self, path, append):
        self.file = open(path, "a" if append else "w") if path else None

    def write(self, fields):
        if self.file:
            self.file.write(json_row(fields) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


def format_duration(s):
    if not math.isfinite(s) or s < 0:
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s / 60)}m{int(s) % 60:02d}s"
    return f"{int(s / 3600)}h{int(s / 60) % 60:02d}m"


def format_count(v):
    if v >= 1e9:
        return f"{v / 1e9:.2f}G"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- checkpoints, as launch/train_checkpoint.cpp ------------------------------------------------

def config_dict(c):
    return {"preset": c.preset, "vocab_size": c.vocab_size, "d_model": c.d_model,
            "num_layers": c.num_layers, "num_heads": c.num_heads,
            "head_dim": c.resolved_head_dim, "ffn_dim": c.resolved_ffn_dim,
            "scale_embedding": bool(c.scale_embedding), "norm_eps": float(c.norm_eps),
            "init_std": float(c.init_std)}


def _write_atomically(path, write):
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, "." + name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(save_dir, model, optimizer, step, position, o):
    os.makedirs(save_dir, exist_ok=True)
    names = {p: n for n, p in model.named_parameters()}
    weights, opt = {}, {}
    for n, p in model.named_parameters():
        weights[n] = p.detach().float().cpu().clone()
        s = optimizer.state.get(p)
        if s:
            opt[n] = {"step": int(s["step"]), "exp_avg": s["exp_avg"].float().cpu().clone(),
                      "exp_avg_sq": s["exp_avg_sq"].float().cpu().clone()}
    del names
    root = {"format": CHECKPOINT_FORMAT, "step": int(step), "config": config_dict(model.config),
            "model": weights, "optimizer": opt,
            "data": {"format": o.data, "seq_len": int(o.seq_len), "seed": int(o.seed),
                     "epoch": int(position[0]), "sequence": int(position[1])},
            "rng": torch.get_rng_state()}
    name = f"ckpt-{step:08d}.pt"
    file = os.path.join(save_dir, name)
    _write_atomically(file, lambda f: torch.save(root, f))
    _write_atomically(os.path.join(save_dir, "latest"), lambda f: f.write((name + "\n").encode()))
    return file


def check_save_dir(save_dir):
    try:
        os.makedirs(save_dir, exist_ok=True)
        probe = os.path.join(save_dir, ".lightring-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"--save-dir: cannot write in '{save_dir}': {e.strerror or e}")


def read_checkpoint(path, model, o):
    """Checks a checkpoint against this run (every difference listed) and returns it; applies
    nothing."""
    try:
        file = _resolve(path)
    except FileNotFoundError as e:
        raise UsageError(f"--resume: {e}")
    size = os.path.getsize(file)
    try:
        ckpt = torch.load(file, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise UsageError(f"checkpoint {file} ({size} bytes) is not readable: truncated or "
                         f"corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    bad = f"checkpoint {file}: "
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(bad + f"not a {CHECKPOINT_FORMAT} checkpoint")
    for key in ("step", "config", "model", "optimizer", "data", "rng"):
        if key not in ckpt:
            raise UsageError(bad + f"no '{key}' entry")
    diff = []
    saved = ckpt["config"]
    for key, value in config_dict(model.config).items():
        if key not in saved:
            diff.append(f"{key}: missing in the checkpoint")
        elif key != "preset" and saved[key] != value:
            diff.append(f"{key}: {saved[key]!r} in the checkpoint, {value!r} in this run")
    data = ckpt["data"]
    if data.get("format") != o.data:
        diff.append(f"--data: '{data.get('format')}' in the checkpoint, '{o.data}' in this run")
    if data.get("seq_len") != o.seq_len:
        diff.append(f"--seq-len: {data.get('seq_len')} in the checkpoint, {o.seq_len} in this run")
    if diff:
        raise UsageError(bad + f"does not match this run (preset '{saved.get('preset', '?')}' "
                         f"there, '{model.config.preset}' here):\n  " + "\n  ".join(diff))
    for n, p in model.named_parameters():
        w = ckpt["model"].get(n)
        if w is None:
            raise UsageError(bad + f"no weight '{n}'")
        if tuple(w.shape) != tuple(p.shape):
            raise UsageError(bad + f"weight '{n}' is {list(w.shape)}, the model's is "
                             f"{list(p.shape)}")
        s = ckpt["optimizer"].get(n)
        if s is not None and any(k not in s or tuple(s[k].shape) != tuple(p.shape)
                                 for k in ("exp_avg", "exp_avg_sq")):
            raise UsageError(bad + f"optimizer state of '{n}' is missing or misshapen")
    return file, ckpt


def apply_checkpoint(ckpt, model, optimizer):
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(ckpt["model"][n])
    optimizer.state.clear()
    for n, p in model.named_parameters():
        s = ckpt["optimizer"].get(n)
        if s is None:
            continue
        optimizer.state[p] = {"step": torch.tensor(float(s["step"])),
                              "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                              "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}
    torch.set_rng_state(ckpt["rng"])


# --- the job -------------------------------------------------------------------------------------

_DEVICE = torch.device("cpu")  # where the small all-reduces run (NCCL needs CUDA tensors)


def all_reduce_sum(values, dtype=torch.float64):
    """Sums a few numbers over the world; returns them as a CPU tensor."""
    t = torch.as_tensor(values, dtype=dtype).to(_DEVICE)
    dist.all_reduce(t)
    return t.cpu()


def agree(error, what):
    """Every rank learns whether any rank failed (no rank waits for one that stopped)."""
    flag = all_reduce_sum([0.0 if error is None else 1.0])
    if flag.item() > 0:
        raise UsageError(f"{what}: {error}" if error else
                         f"{what}: failed on another rank (see its message)")


_stop_requested = False


def _request_stop(signum, frame):
    global _stop_requested
    _stop_requested = True


class Trainer:
    def __init__(self, o, ctx):
        self.o, self.ctx = o, ctx
        self.root = ctx.rank == 0
        self.device = ctx.device
        self.bf16 = o.precision == "bf16" or (o.precision == "auto" and
                                              self.device.type == "cuda")
        self.dp_rank, self.sp_rank = ctx.rank // o.sp, ctx.rank % o.sp
        self.dp_group, self.sp_group = lrd.new_groups(o.dp, o.sp)
        self.group = self.sp_group if o.sp > 1 else None
        error = None
        try:
            self.pipe = Pipeline(o.data, o.data_path or (FORTUNES if o.data == "fortunes" else ""),
                                 o.seq_len, o.seed, self.dp_rank, o.dp,
                                 val_fraction=o.val_fraction, text_split=o.text_split,
                                 token_dtype=o.token_dtype, eos=-1 if o.eos is None else o.eos,
                                 vocab=o.vocab or 0, recall_keys=o.recall_keys,
                                 recall_pairs=o.recall_pairs, recall_queries=o.recall_queries)
            self.config = model_config(o, o.vocab or self.pipe.vocab_size)
            if self.config.vocab_size < self.pipe.vocab_size:
                raise UsageError(f"--vocab {self.config.vocab_size} is smaller than the "
                                 f"vocabulary of the data ({self.pipe.vocab_size}: "
                                 f"{self.pipe.description} has token ids up to "
                                 f"{self.pipe.vocab_size - 1})")
            self.config.validate()
        except (UsageError, ValueError) as e:
            error = str(e)
        agree(error, f"--data {o.data}" + (f" --data-path {o.data_path}" if o.data_path else ""))
        self.documents = o.documents == "on" and self.pipe.has_documents

        torch.manual_seed(o.seed)  # the same weights on every rank (lightring-train's init)
        self.model = TransNormerLM(self.config, schedule=o.schedule).to(self.device)
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, betas=(o.beta1, o.beta2),
                                           eps=o.adam_eps, weight_decay=o.weight_decay)
        self.first_step = 0
        if o.resume:
            error, ckpt = None, None
            try:
                self.resume_file, ckpt = read_checkpoint(o.resume, self.model, o)
            except UsageError as e:
                error = str(e)
            agree(error, f"--resume {o.resume}")
            apply_checkpoint(ckpt, self.model, self.optimizer)
            self.pipe.seek(ckpt["data"]["epoch"], ckpt["data"]["sequence"])
            self.first_step = int(ckpt["step"])
            if self.root:
                print(f"resumed from {self.resume_file} at step {self.first_step}", flush=True)
        error = None
        try:
            if self.root and o.save_dir and not o.generate:
                check_save_dir(o.save_dir)
            self.log = JsonlLog(o.log if self.root and not o.generate else "", bool(o.resume))
        except (UsageError, OSError) as e:
            error = str(e)
        agree(error, "--log / --save-dir")
        self.bucket = int(o.bucket_mb * 1e6 / 4) if o.bucket_mb > 0 else 0

    def batch(self, b):
        """This rank's SP shard of a batch: ids, targets [B, n] on the device, per-row global
        cu_seqlens (or None), the shard's first position."""
        ids, targets = b.ids, b.targets
        begin = 0
        if self.o.sp > 1:
            sizes = [t.shape[1] for t in torch.tensor_split(ids, self.o.sp, dim=1)]
            begin = sum(sizes[:self.sp_rank])
            ids = lrd.shard(ids, self.sp_group, dim=1)
            targets = lrd.shard(targets, self.sp_group, dim=1)
        cu = [c.to(self.device) for c in b.cu_seqlens] if self.documents else None
        return ids.to(self.device), targets.to(self.device), cu, begin

    def logits(self, ids, cu):
        if self.bf16:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self.model(ids, cu_seqlens=cu, group=self.group)
        else:
            out = self.model(ids, cu_seqlens=cu, group=self.group)
        return out.float()

    @staticmethod
    def loss_sum(logits, targets):
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 targets.reshape(-1), ignore_index=-1,
                                                 reduction="sum")

    def all_reduce_grads(self):
        """Sums every gradient over the world, in flat buckets of --bucket-mb."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        i = 0
        while i < len(grads):
            j, n = i, 0
            while j < len(grads) and (j == i or not self.bucket or n + grads[j].numel()
                                      <= self.bucket):
                n += grads[j].numel()
                j += 1
            flat = torch.cat([g.reshape(-1) for g in grads[i:j]])
            dist.all_reduce(flat)
            offset = 0
            for p, g in zip(self.params[i:j], grads[i:j]):
                p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
                offset += g.numel()
            i = j

    def train_step(self, step):
        o = self.o
        t0 = time.perf_counter()
        ids, targets, cu, _ = self.batch(self.pipe.next(o.batch))
        count = int((targets != -1).sum())
        head = all_reduce_sum([float(count), 1.0 if _stop_requested else 0.0])
        tokens = max(head[0].item(), 1.0)
        self.stop = head[1].item() > 0
        local = self.loss_sum(self.logits(ids, cu), targets)
        (local / tokens).backward()
        self.all_reduce_grads()
        loss = all_reduce_sum([local.item()]).item() / tokens
        clip = o.grad_clip if o.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        lr = learning_rate(o, step - 1)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0
        self.train_seconds += step_s
        if not self.root:
            return
        global_tokens = o.dp * o.batch * o.seq_len
        tps = global_tokens / step_s
        world = o.dp * o.sp
        mfu = (flops_per_token(self.config) * tps / (o.peak_tflops * 1e12 * world)
               if o.peak_tflops > 0 else float("nan"))
        elapsed = time.perf_counter() - self.start
        eta = self.train_seconds / (step - self.first_step) * (o.steps - step)
        self.log.write([("kind", "train"), ("step", step), ("loss", loss), ("lr", lr),
                        ("grad_norm", grad_norm), ("tokens", global_tokens),
                        ("target_tokens", int(tokens)), ("tokens_per_s", tps), ("mfu", mfu),
                        ("step_s", step_s), ("elapsed_s", elapsed),
                        ("max_rss_mb", max_rss_mb())])
        if step % o.log_every == 0 or step == self.first_step + 1 or step == o.steps:
            mfu_s = f"{mfu * 100:.2f}%" if math.isfinite(mfu) else "-"
            print(f"step {step:6d}/{o.steps} | loss {loss:.4f} | lr {lr:.2e} | gnorm "
                  f"{grad_norm:.3f} | {format_count(tps)} tok/s | mfu {mfu_s} | mem "
                  f"{max_rss_mb():.0f} MB | {format_duration(elapsed)} | eta "
                  f"{format_duration(eta)}", flush=True)

    @torch.no_grad()
    def evaluate(self, step):
        o = self.o
        if self.pipe.validation_sequences == 0 or o.eval_sequences == 0:
            return
        n = min(o.eval_sequences, self.pipe.validation_sequences)
        mine = shard_indices(n, self.dp_rank, o.dp)
        # loss sum, targets, answers right, answers, right with the key elsewhere, those
        stats = torch.zeros(6, dtype=torch.float64)
        for i in range(0, len(mine), o.batch):
            b = self.pipe.validation(mine[i:i + o.batch])
            ids, targets, cu, begin = self.batch(b)
            logits = self.logits(ids, cu)
            stats[0] += self.loss_sum(logits, targets).item()
            stats[1] += int((targets != -1).sum())
            pred = logits.argmax(-1).cpu()
            targets = targets.cpu()
            end = begin + ids.shape[1]
            for r in range(ids.shape[0]):
                for pos, key in zip(b.answer_positions[r].tolist(),
                                    b.answer_key_positions[r].tolist()):
                    if not begin <= pos < end:
                        continue
                    right = float(pred[r, pos - begin] == targets[r, pos - begin])
                    stats[2] += right
                    stats[3] += 1
                    if key < begin:
                        stats[4] += right
                        stats[5] += 1
        stats = all_reduce_sum(stats)
        if not self.root:
            return
        s = stats.tolist()
        loss = s[0] / max(s[1], 1.0)
        row = [("kind", "eval"), ("step", step), ("eval_loss", loss),
               ("eval_tokens", int(s[1])), ("eval_sequences", n)]
        line = f"eval   {step} | val loss {loss:.4f}"
        if s[3] > 0:
            row.append(("recall_acc", s[2] / s[3]))
            line += f" | recall {s[2] / s[3]:.4f} ({int(s[3])} queries)"
            if s[5] > 0:
                row.append(("recall_acc_other_shard", s[4] / s[5]))
                line += f", keys on an earlier shard {s[4] / s[5]:.4f} ({int(s[5])})"
        row.append(("elapsed_s", time.perf_counter() - self.start))
        self.log.write(row)
        print(line, flush=True)

    def save(self, step):
        if not self.o.save_dir:
            return
        error, file = None, None
        if self.root:
            try:
                file = save_checkpoint(self.o.save_dir, self.model, self.optimizer, step,
                                       self.pipe.position(), self.o)
            except OSError as e:
                error = str(e)
        agree(error, f"--save-dir {self.o.save_dir}")
        if self.root:
            print(f"saved {file}", flush=True)

    def sample(self):
        """Rank 0 prints a sample as lightring-train does (launch/train_loop.cpp sample()): the
        prompt after the start-of-document token, the recurrent form, the sampler seeded by
        --seed; bytes as text for byte-level data, token ids otherwise."""
        o = self.o
        if not self.root or o.sample == 0:
            return
        start = self.pipe.eos if self.pipe.eos is not None else (
            1 if o.data == "synthetic-recall" else 0)  # csrc/data/recall.h kRecallBos
        prompt = [start] + list(o.prompt.encode())
        tokens = self.model.generate(prompt, o.sample, temperature=o.temperature,
                                     top_k=o.top_k, seed=o.seed, prefill="recurrent")
        byte_level = o.data in ("fortunes", "text")
        text = bytearray(o.prompt.encode())
        for t in tokens:
            if byte_level and t == 256:
                text += b"<|eos|>"
            elif byte_level and (t >= 0x20 or t in (0x0a, 0x09)):
                text.append(t)
            else:
                text += (("\\x" if byte_level else " ") + str(t)).encode()
        top = f", top-k {o.top_k}" if o.top_k else ""
        sys.stdout.flush()
        sys.stdout.buffer.write(f"sample ({len(tokens)} tokens, temperature {o.temperature:g}"
                                f"{top}):\n".encode() + bytes(text) + b"\n")
        sys.stdout.buffer.flush()

    def header(self):
        o, c = self.o, self.config
        p = c.parameter_count()
        non_emb = p - 2 * c.vocab_size * c.d_model
        mode = ("attention restarts at every document" if self.documents else
                "attention runs across documents" if self.pipe.has_documents else
                "one sample per sequence")
        print(f"lightring.train: {describe(c)}\n  {format_count(p)} parameters ({p}; {non_emb} "
              f"without embedding and head)\n  {o.dp * o.sp} ranks = --dp {o.dp} x --sp {o.sp} "
              f"({self.ctx.backend} on {self.device}, schedule {o.schedule}, "
              f"{'bf16 autocast' if self.bf16 else 'fp32'})\n  data {self.pipe.description}: "
              f"{o.seq_len} tokens per sequence ({o.seq_len // o.sp}+ per SP rank), {o.batch} per "
              f"DP rank, {o.dp * o.batch * o.seq_len} tokens per step, {mode}\n  steps {o.steps}, "
              f"lr {o.lr:g} (warmup {o.warmup}, cosine to {o.min_lr:g}), AdamW wd "
              f"{o.weight_decay:g}, clip {o.grad_clip:g}, seed {o.seed}", flush=True)
        self.log.write([("kind", "start"), ("step", self.first_step), ("config", describe(c)),
                        ("parameters", p), ("dp", o.dp), ("sp", o.sp), ("seq_len", o.seq_len),
                        ("batch", o.batch), ("data", self.pipe.description),
                        ("documents", 1 if self.documents else 0),
                        ("flops_per_token", flops_per_token(c))])

    def run(self):
        o = self.o
        if o.generate:
            self.sample()
            return 0
        if self.root:
            self.header()
        self.start = time.perf_counter()
        self.train_seconds = 0.0
        self.stop = False
        step = self.first_step
        while step < o.steps and not self.stop:
            step += 1
            self.train_step(step)
            last = step == o.steps
            if not last and not self.stop and o.eval_every > 0 and step % o.eval_every == 0:
                self.evaluate(step)
            if not last and not self.stop and o.save_every > 0 and step % o.save_every == 0:
                self.save(step)
        if self.stop and self.root:
            print("stop requested (SIGTERM/SIGINT): saving and exiting", flush=True)
        if not self.stop:
            self.evaluate(step)
        self.save(step)
        if not self.stop:
            self.sample()
        if self.root:
            print(f"done: {step} steps in {format_duration(time.perf_counter() - self.start)}",
                  flush=True)
        self.log.close()
        return 0


def main(argv=None):
    o = build_parser().parse_args(argv)
    try:
        check_options(o)
    except UsageError as e:
        print(f"lightring.train: {e}", file=sys.stderr, flush=True)
        return 2
    torch.set_num_threads(o.threads)
    device = None if o.device == "auto" else o.device
    ctx = lrd.init(device=device, timeout=o.timeout)
    global _DEVICE
    _DEVICE = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    try:
        check_world(o, ctx.world_size)
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)
        return Trainer(o, ctx).run()
    except UsageError as e:
        print(f"lightring.train (rank {ctx.rank}): {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
