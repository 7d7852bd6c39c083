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
import math
import signal
import sys
import time

import torch
import torch.distributed as dist

from . import distributed as lrd
from .data import Pipeline, shard_indices
from .models import TransNormerLM
from .train_options import (FORTUNES, UsageError, build_parser, check_options, check_world,
                            model_config)
from .train_state import (JsonlLog, apply_checkpoint, check_save_dir, format_count,
                          format_duration, max_rss_mb, read_checkpoint, save_checkpoint)

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


def as_flags(placement_error, sp):
    """new_groups' placement error in the words of lightring-train's (--sp, --sp-across-nodes)."""
    return (placement_error.replace(f"sp={sp} puts", f"--sp {sp} puts", 1)
            .replace("pick an sp that", "pick an --sp that")
            .replace("with sp dividing", "with --sp dividing")
            .replace("sp_across_nodes=True", "--sp-across-nodes"))


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
        try:  # the same names on every rank: every rank raises the same error
            self.dp_group, self.sp_group = lrd.new_groups(o.dp, o.sp,
                                                          sp_across_nodes=o.sp_across_nodes)
        except ValueError as e:
            raise UsageError(as_flags(str(e), o.sp))
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
                        ("max_rss_mb", max_rss_mb()), ("peak_mem_mb", self.peak_mem_mb()),
                        ("peak_mem_kind", "cuda-peak" if self.device.type == "cuda" else
                         "max-rss")])
        if step % o.log_every == 0 or step == self.first_step + 1 or step == o.steps:
            mfu_s = f"{mfu * 100:.2f}%" if math.isfinite(mfu) else "-"
            print(f"step {step:6d}/{o.steps} | loss {loss:.4f} | lr {lr:.2e} | gnorm "
                  f"{grad_norm:.3f} | {format_count(tps)} tok/s | mfu {mfu_s} | mem "
                  f"{self.peak_mem_mb():.0f} MB | {format_duration(elapsed)} | eta "
                  f"{format_duration(eta)}", flush=True)

    def peak_mem_mb(self):
        """As lightring-train: the CUDA caching allocator's peak of allocated bytes, or the
        process's peak resident set on the CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 1e6
        return max_rss_mb()

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
