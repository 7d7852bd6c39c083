"""The command line of python -m lightring.train (lightring/train.py): the flags of
lightring-train (docs/training.md), their checks, and the errors they raise (UsageError)."""
import argparse
import math

from .data import FORMATS
from .models import PRESETS, TransNormerConfig

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
    a("--sp-across-nodes", action="store_true",
      help="let an SP group span nodes (default: every SP group on one node, else an error)")
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
