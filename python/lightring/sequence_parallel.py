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
import hashlib
import struct

import torch
import torch.distributed as dist

from . import collectives, functional
from .collectives import TAG_AGREE, TAG_AGREE_TEXT

_DTYPES = (None, torch.float32, torch.bfloat16, torch.float16)
_CALLS = ("forward", "backward")
_EXCHANGES = ("torch", "lightring")
# The agreement record: (field, name in messages, how to print a value).
_FIELDS = (
    ("call", "call", lambda v: _CALLS[v]),
    ("ok", "validity", str),
    ("batch", "batch size B", str),
    ("heads", "number of heads H", str),
    ("d", "head dim D", str),
    ("e", "value dim E", str),
    ("dtype", "dtype", lambda v: str(_DTYPES[v]).replace("torch.", "")),
    ("layout", "layout", lambda v: repr(functional._LAYOUTS[v])),
    ("s0", "initial_state (given or None)", lambda v: "given" if v else "None"),
    ("final", "output_final_state", lambda v: str(bool(v))),
    ("schedule", "schedule", lambda v: repr(functional.SCHEDULES[v])),
    ("scale", "scale", lambda v: f"{struct.unpack('<d', struct.pack('<q', v))[0]:g}"),
    ("block_size", "block_size", str),
    ("decay", "decay (given or None)", lambda v: "given" if v else "None"),
    ("digest0", "decay values", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("digest1", "decay values", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("exchange", "exchange", lambda v: repr(_EXCHANGES[v])),
)


def group_ranks(group):
    """Global ranks of the members of group, in group-rank order."""
    if group is None or group is dist.group.WORLD:
        return list(range(dist.get_world_size()))
    get = getattr(dist, "get_process_group_ranks", None)  # torch >= 2.0
    if get is not None:
        return list(get(group))
    mapping = dist.distributed_c10d._pg_group_ranks[group]  # torch 1.13: global -> group rank
    return [g for g, _ in sorted(mapping.items(), key=lambda item: item[1])]


def _digest(decay):
    """Two int64 words of a 128-bit digest of the exact bytes of decay ((0, 0) for None)."""
    if decay is None:
        return 0, 0
    data = decay.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return struct.unpack("<qq", hashlib.blake2b(data, digest_size=16).digest())


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
        collectives.check_usable(group)
        self.requested = schedule
        if schedule == "auto":
            schedule = "allgather" if self.size <= 8 else "scan"
        self.schedule = schedule
        self.peers = collectives.Peers(group, self.ranks)
        cuda = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda \
            else torch.device("cpu")

    # --- the agreement ------------------------------------------------------------

    def agree(self, call, error, q=None, v=None, decay=None, has_s0=False, layout="bhnd",
              scale=1.0, block_size=0, output_final_state=False, exchange="torch"):
        """Fails every rank, with the same readable message, when any rank's inputs are invalid,
        disagree with the others', or belong to another call (forward / backward): one small
        bounded all-gather before any message whose size depends on them. `error` is this
        rank's own validation error (None when its inputs are valid); it is raised on this
        rank, and its text is reported on every other rank."""
        record = dict.fromkeys((f for f, _, _ in _FIELDS), 0)
        record.update(call=_CALLS.index(call), ok=int(error is None),
                      exchange=_EXCHANGES.index(exchange))
        if error is None:
            h_dim = 1 if layout == "bhnd" else 2
            digest = _digest(decay)
            record.update(batch=q.shape[0], heads=q.shape[h_dim], d=q.shape[3], e=v.shape[3],
                          dtype=_DTYPES.index(q.dtype), layout=functional._LAYOUTS.index(layout),
                          s0=int(has_s0), final=int(bool(output_final_state)),
                          schedule=functional.SCHEDULES.index(self.requested),
                          scale=struct.unpack("<q", struct.pack("<d", float(scale)))[0],
                          block_size=block_size, decay=int(decay is not None),
                          digest0=digest[0], digest1=digest[1])
        mine = torch.tensor([record[f] for f, _, _ in _FIELDS], dtype=torch.int64,
                            device=self.device)
        what = f"the agreement of a sequence-parallel {call}"
        table = [r.cpu().tolist() for r in
                 collectives.all_gather(self.peers, mine, TAG_AGREE, what)]
        where = f"lightring: sequence-parallel {call} over {self.size} ranks"
        for r, row in enumerate(table):
            if row[0] != table[self.rank][0]:
                raise RuntimeError(
                    f"{where}: group rank {r} is in its {_CALLS[row[0]]} while group rank "
                    f"{self.rank} is in its {call}: every rank must run forward and then "
                    "backward for every call (a rank skipped a backward, or ran one more "
                    "forward)")
        bad = [r for r in range(self.size) if table[r][1] != 1]
        if bad:
            texts = collectives.all_gather_bytes(
                self.peers, b"" if error is None else str(error).encode(), TAG_AGREE_TEXT, what)
            if error is not None:
                raise error
            reasons = "".join(f"\n  group rank {r} rejected its inputs: {texts[r].decode()}"
                              for r in bad)
            raise ValueError(f"{where}: nothing was run:{reasons}")
        for col, (_, name, show) in enumerate(_FIELDS):
            column = [row[col] for row in table]
            if all(c == column[0] for c in column):
                continue
            values = "; ".join(f"group rank {r}: {show(c)}" for r, c in enumerate(column))
            raise ValueError(f"every rank of the sequence-parallel group must pass the same "
                             f"{name} to lightning_attention ({values})")

    # --- positions -----------------------------------------------------------------

    def position(self, reverse):
        return self.size - 1 - self.rank if reverse else self.rank

    # --- the exclusive prefix ------------------------------------------------------------

    def prefix(self, a, x, reverse=False, need_total=False):
        """Exclusive ⊕-prefix of the pairs (a, x) in sequence order (reverse: from the end).

        Returns (the X part of the pairs before this rank, or None at the first position;
        the X part of all pairs, or None unless need_total)."""
        run = {"allgather": self._allgather, "ring": self._ring, "scan": self._scan}
        return run[self.schedule](a, x, reverse, need_total)

    def _what(self, reverse):
        return (f"the {'backward' if reverse else 'forward'} state exchange "
                f"({self.schedule})"), (collectives.TAG_BACKWARD if reverse else
                                        collectives.TAG_FORWARD)

    def _to_group(self, position, reverse):
        """Group rank of the member at a sequence position (reversed: from the end)."""
        return self.size - 1 - position if reverse else position

    def _allgather(self, a, x, reverse, need_total):
        heads = a.shape[0]
        packed = torch.cat([a, x.reshape(-1)])
        what, tag = self._what(reverse)
        parts = collectives.all_gather(self.peers, packed, tag, what)
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
        what, tag = self._what(reverse)
        excl = None
        if me > 0:
            excl = torch.empty_like(x)
            collectives.exchange(self.peers, [], [(self._to_group(me - 1, reverse), excl)], tag,
                                 what)
            out = combine_x(excl, a, x)
        else:
            out = x
        if me < self.size - 1:
            collectives.exchange(self.peers, [(self._to_group(me + 1, reverse), out.contiguous())],
                                 [], tag, what)
        total = None
        if need_total:
            total = out.clone() if me == self.size - 1 else torch.empty_like(x)
            collectives.broadcast(self.peers, total, self._to_group(self.size - 1, reverse),
                                  collectives.TAG_FINAL, "the broadcast of the final state")
        return excl, total

    def _scan(self, a, x, reverse, need_total):
        me = self.position(reverse)
        heads = a.shape[0]
        what, tag = self._what(reverse)
        incl_a, incl_x = a, x  # pairs of positions (me - d, me]
        excl_a = excl_x = None  # pairs of positions (me - d, me), None = identity
        d = 1
        while d < self.size:
            sends, recvs, inbox = [], [], None
            if me + d < self.size:
                message = torch.cat([incl_a, incl_x.reshape(-1)])
                sends.append((self._to_group(me + d, reverse), message))
            if me - d >= 0:
                inbox = torch.empty(heads + x.numel(), dtype=x.dtype, device=x.device)
                recvs.append((self._to_group(me - d, reverse), inbox))
            collectives.exchange(self.peers, sends, recvs, tag, f"{what}, round d={d}")
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
            collectives.broadcast(self.peers, total, self._to_group(last, reverse),
                                  collectives.TAG_FINAL, "the broadcast of the final state")
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
    @functional.first_order_only
    def backward(ctx, d_o, d_final):
        q, k, v, decay, s_in, a = ctx.saved_tensors
        ex = ctx.ex
        ex.agree("backward", None, q, v, decay, ctx.has_s0, "bhnd", ctx.scale, ctx.block_size,
                 ctx.output_final_state)
        d_o = functional.rows(torch.zeros_like(v) if d_o is None else d_o)
        x = torch.ops.lightring.local_state(q, d_o, decay, ctx.scale, True, ctx.block_size)  # C
        last = ex.position(True) == 0
        g = None
        if ctx.output_final_state:
            # The final state is returned on every rank: the loss sees it P times.
            g = functional.state(d_final if d_final is not None else
                                 torch.zeros(x.shape, dtype=torch.float32, device=x.device)).clone()
            g = collectives.reduce_sum(ex.peers, g, ex.size - 1, collectives.TAG_FINAL_GRAD,
                                       "the sum of the final-state gradients")
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
