"""Sequence parallelism over a torch.distributed group (docs/algorithm.md §3).

Each rank of the group holds one contiguous shard of the sequence (group rank
order = sequence order). A shard of length L, run from a zero state, yields the
pair (a, X) = (λ^L, A) with A its local final state (the `local_state` op reads
only k and v, so it runs before any rank waits on another). Pairs combine as

    (a1, X1) ⊕ (a2, X2) = (a1·a2, a2·X1 + X2)        (left = earlier)

Forward: the state entering shard r is the exclusive prefix of the pairs, with
S0 folded into the first one: (a_0, a_0·S0 + A_0). Backward mirrors it with
(a, C), C = Σ c·λ^{t+1} q_tᵀ dO_t, combined right to left from the final-state
gradient G (summed over ranks) folded into the last pair: (a_P-1, a·G + C).
Then every rank runs the ordinary local forward / backward ops with that
initial state and final-state gradient. Messages are [B, H, D, E] fp32 (+ [H]).

Schedules, all producing the same states:
  allgather  one all_gather of every pair; each rank folds its own prefix.
  ring       P-1 dependent send/recv hops along the sequence (the baseline).
  scan       Hillis-Steele recursive doubling with isend/irecv: ceil(log2 P)
             rounds; the exclusive prefix rides on the same messages.
  auto       allgather for P <= 8, scan above.
These run over torch.distributed point-to-point and collectives, so they work
on gloo (CPU tensors) and NCCL (CUDA tensors) groups alike.
"""
import torch
import torch.distributed as dist

from . import functional

_DTYPE_CODE = {torch.float32: 1, torch.bfloat16: 2, torch.float16: 3}
_FIELDS = ("ok", "batch size B", "number of heads H", "head dim D", "value dim E", "dtype",
           "layout", "initial_state (given or None)", "output_final_state", "schedule", "scale",
           "block_size", "decay (given or None)", "decay values", "decay values")


def group_ranks(group):
    """Global ranks of the members of group, in group-rank order."""
    if group is None or group is dist.group.WORLD:
        return list(range(dist.get_world_size()))
    get = getattr(dist, "get_process_group_ranks", None)  # torch >= 2.0
    if get is not None:
        return list(get(group))
    mapping = dist.distributed_c10d._pg_group_ranks[group]  # torch 1.13: global -> group rank
    return [g for g, _ in sorted(mapping.items(), key=lambda item: item[1])]


class Exchange:
    """The state exchange of one call over one group; positions are sequence order."""

    def __init__(self, group, schedule):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("lightning_attention(group=...) needs torch.distributed to be "
                               "initialised first (lightring.distributed.init())")
        self.group = group
        self.rank = dist.get_rank(group)
        if self.rank < 0:
            raise ValueError(f"this process (global rank {dist.get_rank()}) is not a member of "
                             "the group passed to lightning_attention")
        self.size = dist.get_world_size(group)
        self.ranks = group_ranks(group)
        if len(self.ranks) != self.size:
            raise ValueError(f"group has {self.size} ranks but lists {len(self.ranks)}")
        if schedule == "auto":
            schedule = "allgather" if self.size <= 8 else "scan"
        self.schedule = schedule
        cuda = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda \
            else torch.device("cpu")

    # --- checks ------------------------------------------------------------------

    def check_consistent(self, error, q, k, v, decay, initial_state, layout, scale, block_size,
                         output_final_state):
        """Fails every rank, with a readable message, when any rank's inputs are invalid or
        disagree with the others' (one small all_gather before any state exchange)."""
        from . import functional as F
        ok = error is None
        meta = torch.zeros(len(_FIELDS), dtype=torch.float64)
        if ok:
            b, h, _, d, e = (q.shape[0], q.shape[1] if layout == "bhnd" else q.shape[2], 0,
                             q.shape[3], v.shape[3])
            meta[:13] = torch.tensor([
                1, b, h, d, e, _DTYPE_CODE[q.dtype], F._LAYOUTS.index(layout),
                initial_state is not None, bool(output_final_state),
                F.SCHEDULES.index(self.schedule), float(scale), block_size, decay is not None],
                dtype=torch.float64)
        meta = meta.to(self.device)
        if ok and decay is not None:
            weights = torch.arange(1, decay.shape[0] + 1, dtype=torch.float64, device=decay.device)
            meta[13] = decay.double().sum().to(self.device)
            meta[14] = (decay.double() * weights).sum().to(self.device)
        rows = [torch.empty_like(meta) for _ in range(self.size)]
        dist.all_gather(rows, meta, group=self.group)
        table = torch.stack(rows).cpu()
        bad = [r for r in range(self.size) if table[r, 0] != 1]
        if error is not None:
            raise error
        if bad:
            raise ValueError(f"lightring: rank(s) {bad} of the sequence-parallel group passed "
                             "invalid inputs to lightning_attention (see the error on those ranks)")
        for col in range(1, len(_FIELDS)):
            if not bool((table[:, col] == table[0, col]).all()):
                r = next(r for r in range(self.size) if table[r, col] != table[0, col])
                raise ValueError(
                    f"every rank of the sequence-parallel group must pass the same {_FIELDS[col]} "
                    f"to lightning_attention (group rank 0: {table[0, col].item():g}, group rank "
                    f"{r}: {table[r, col].item():g})")

    # --- positions -----------------------------------------------------------------

    def position(self, reverse):
        return self.size - 1 - self.rank if reverse else self.rank

    def peer(self, position, reverse):
        """Global rank of the member at a sequence position (reversed: from the end)."""
        return self.ranks[self.size - 1 - position if reverse else position]

    # --- the exclusive prefix ------------------------------------------------------------

    def prefix(self, a, x, reverse=False, need_total=False):
        """Exclusive ⊕-prefix of the pairs (a, x) in sequence order (reverse: from the end).

        Returns (the X part of the pairs before this rank, or None at the first position;
        the X part of all pairs, or None unless need_total)."""
        run = {"allgather": self._allgather, "ring": self._ring, "scan": self._scan}
        return run[self.schedule](a, x, reverse, need_total)

    def _allgather(self, a, x, reverse, need_total):
        heads = a.shape[0]
        packed = torch.cat([a, x.reshape(-1)])
        parts = [torch.empty_like(packed) for _ in range(self.size)]
        dist.all_gather(parts, packed, group=self.group)
        if reverse:
            parts = parts[::-1]
        me = self.position(reverse)
        excl = total = None
        acc = None
        for pos, part in enumerate(parts):
            if pos == me:
                excl = acc
                if not need_total:
                    break
            ag, xg = part[:heads], part[heads:].view_as(x)
            acc = xg.clone() if acc is None else combine_x(acc, ag, xg)
        if need_total:
            total = acc
        return excl, total

    def _ring(self, a, x, reverse, need_total):
        me = self.position(reverse)
        excl = None
        if me > 0:
            excl = torch.empty_like(x)
            dist.recv(excl, src=self.peer(me - 1, reverse), group=self.group)
            out = combine_x(excl, a, x)
        else:
            out = x
        if me < self.size - 1:
            dist.send(out.contiguous(), dst=self.peer(me + 1, reverse), group=self.group)
        total = None
        if need_total:
            total = out.clone() if me == self.size - 1 else torch.empty_like(x)
            dist.broadcast(total, src=self.peer(self.size - 1, reverse), group=self.group)
        return excl, total

    def _scan(self, a, x, reverse, need_total):
        me = self.position(reverse)
        heads = a.shape[0]
        incl_a, incl_x = a, x  # pairs of positions (me - d, me]
        excl_a = excl_x = None  # pairs of positions (me - d, me), None = identity
        d = 1
        while d < self.size:
            requests, inbox = [], None
            if me + d < self.size:
                message = torch.cat([incl_a, incl_x.reshape(-1)])
                requests.append(dist.isend(message, dst=self.peer(me + d, reverse),
                                           group=self.group))
            if me - d >= 0:
                inbox = torch.empty(heads + x.numel(), dtype=x.dtype, device=x.device)
                requests.append(dist.irecv(inbox, src=self.peer(me - d, reverse),
                                           group=self.group))
            for request in requests:
                request.wait()
            if inbox is not None:
                ra, rx = inbox[:heads], inbox[heads:].view_as(x)
                if excl_x is None:
                    excl_a, excl_x = ra, rx
                else:
                    excl_a, excl_x = ra * excl_a, combine_x(rx, excl_a, excl_x)
                incl_a, incl_x = ra * incl_a, combine_x(rx, incl_a, incl_x)
            d *= 2
        total = None
        if need_total:
            last = self.size - 1
            total = incl_x.clone() if me == last else torch.empty_like(x)
            dist.broadcast(total, src=self.peer(last, reverse), group=self.group)
        return excl_x, total


def combine_x(x1, a2, x2):
    """X part of (a1, X1) ⊕ (a2, X2) = a2·X1 + X2, with a2 [H] over X [B, H, D, E]."""
    return a2.view(1, -1, 1, 1) * x1 + x2


def segment_decay(decay, heads, length, device):
    """a = λ^L = exp(-s·L) per head, [H] fp32 (computed in float64, never λ^{-t})."""
    if decay is None:
        return torch.ones(heads, dtype=torch.float32, device=device)
    return torch.exp(-decay.double() * length).float()


class _ShardedAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, scale, block_size, output_final_state, ex):
        heads, length = q.shape[1], q.shape[2]
        a = segment_decay(decay, heads, length, q.device)
        x = torch.ops.lightring.local_state(k, v, decay, 1.0, False, block_size)  # A, no wait
        first = ex.position(False) == 0
        s0 = None if initial_state is None else functional.state(initial_state)
        if first and s0 is not None:
            x = combine_x(s0, a, x)
        excl, total = ex.prefix(a, x, reverse=False, need_total=output_final_state)
        s_in = s0 if first else excl
        o, _ = torch.ops.lightring.forward(q, k, v, decay, scale, s_in, False, block_size)
        final = total if output_final_state else q.new_empty((0,), dtype=torch.float32)
        ctx.save_for_backward(q, k, v, decay, s_in, a)
        ctx.scale, ctx.block_size, ctx.ex = scale, block_size, ex
        ctx.output_final_state, ctx.has_s0, ctx.first = output_final_state, s0 is not None, first
        if not output_final_state:
            ctx.mark_non_differentiable(final)
        return o, final

    @staticmethod
    def backward(ctx, d_o, d_final):
        q, k, v, decay, s_in, a = ctx.saved_tensors
        ex = ctx.ex
        d_o = functional.rows(torch.zeros_like(v) if d_o is None else d_o)
        x = torch.ops.lightring.local_state(q, d_o, decay, ctx.scale, True, ctx.block_size)  # C
        last = ex.position(True) == 0
        g = None
        if ctx.output_final_state:
            # The final state is returned on every rank: the loss sees it P times.
            g = functional.state(d_final if d_final is not None else
                                 torch.zeros(x.shape, dtype=torch.float32, device=x.device)).clone()
            dist.reduce(g, dst=ex.peer(0, True), op=dist.ReduceOp.SUM, group=ex.group)
            if last:
                x = combine_x(g, a, x)
        excl, _ = ex.prefix(a, x, reverse=True)
        ds_out = g if last else excl
        want_ds0 = ctx.first and ctx.has_s0 and ctx.needs_input_grad[4]
        dq, dk, dv, ds0 = torch.ops.lightring.backward(q, k, v, d_o, decay, ctx.scale, s_in,
                                                       ds_out, want_ds0, ctx.block_size)
        d_s0 = None
        if ctx.has_s0 and ctx.needs_input_grad[4]:
            # S0 is read on the first rank only; the other ranks' copies are unused.
            d_s0 = ds0 if want_ds0 else torch.zeros(x.shape, dtype=torch.float32,
                                                    device=x.device)
        return dq, dk, dv, None, d_s0, None, None, None, None


def attention(q, k, v, decay, initial_state, scale, block_size, output_final_state, ex):
    """q, k, v: this rank's shard as [B, H, N_local, *] views. Returns (o, final_state)."""
    return _ShardedAttention.apply(q, k, v, decay, initial_state, scale, block_size,
                                   output_final_state, ex)
