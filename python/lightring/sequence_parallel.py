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
  auto       the choice of the C++ cost model (parallel/schedule.cpp) for this P,
             state size and transport: lightring._C.schedule_choice, the same
             choice lightring-bench makes.
These run over torch.distributed point-to-point messages, so they work on gloo
(CPU tensors) and NCCL (CUDA tensors) groups alike.

One autograd Function (_ShardedAttention) serves both exchanges. An exchange is
an object with the interface of GroupExchange:

  forward(q, k, v, decay, s0, scale, block_size, need_final) -> (o, s_in, final)
      s0: the global S0 on group rank 0 only (None elsewhere); s_in: what backward
      needs besides the inputs; final: the global final state on every rank when
      need_final, else None.
  backward(q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size)
      -> (dq, dk, dv, ds0)
      g: the global final-state gradient on the last rank only (None elsewhere);
      ds0: the global dS0 on rank 0 when want_ds0.

TorchExchange runs the schedules below over torch.distributed;
lightring.nccl_exchange.LightringExchange runs the C++ ops on lightring's own
communicator. The Function agrees the inputs once per forward and once per
backward (lightring/agreement.py); the exchanges do not agree them again.
"""
import torch
import torch.distributed as dist

from . import _ext, agreement, collectives, functional


def group_ranks(group):
    """Global ranks of the members of group, in group-rank order."""
    if group is None or group is dist.group.WORLD:
        return list(range(dist.get_world_size()))
    get = getattr(dist, "get_process_group_ranks", None)  # torch >= 2.0
    if get is not None:
        return list(get(group))
    mapping = dist.distributed_c10d._pg_group_ranks[group]  # torch 1.13: global -> group rank
    return [g for g, _ in sorted(mapping.items(), key=lambda item: item[1])]


def schedule_choice(size, batch, heads, d, e, length, dtype, transport):
    """The schedule "auto" runs: the C++ cost model's choice (parallel::choose_schedule) for
    `size` ranks, [B, H, D, E] fp32 state messages and a transport ("nccl", "gloo", "mpi"),
    the choice lightring-bench makes for the same P, sizes and transport."""
    name = str(dtype).replace("torch.", "")
    return _ext.load().schedule_choice(size, batch, heads, d, e, length, name, transport)


class GroupExchange:
    """What every exchange knows of one call over one group; positions are sequence order.
    Subclasses set `name` (the agreement's "exchange") and implement forward / backward."""

    name = None

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
        self.schedule = None if schedule == "auto" else schedule
        self.lengths = None  # every rank's shard length, set by each agreement
        self.peers = collectives.Peers(group, self.ranks)
        self.backend = dist.get_backend(group)
        cuda = self.backend == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda \
            else torch.device("cpu")

    def transport(self):
        """The transport whose link model resolves "auto" (lightring._C.schedule_choice)."""
        if self.backend in ("nccl", "gloo", "mpi"):
            return self.backend
        return "nccl" if self.device.type == "cuda" else "gloo"

    def local_error(self, q):
        """This rank's reason why this exchange cannot take q (reported in the agreement)."""
        return None

    def agree(self, call, error, q=None, v=None, decay=None, has_s0=False, layout="bhnd",
              scale=1.0, block_size=0, output_final_state=False, docs=None):
        """The one agreement of a forward or a backward (lightring/agreement.py); then "auto"
        is resolved, the same on every rank (the agreed P, B, H, D, E, dtype, transport)."""
        self.lengths = agreement.agree(self, call, error, q, v, decay, has_s0, layout, scale,
                                       block_size, output_final_state, docs)
        if self.schedule is None:
            h_dim = 1 if layout == "bhnd" else 2
            self.schedule = schedule_choice(self.size, q.shape[0], q.shape[h_dim], q.shape[3],
                                            v.shape[3], self.lengths[self.rank], q.dtype,
                                            self.transport())

    def broadcast_final(self, final, like_q, like_v):
        """The global final state of the last rank, on every rank."""
        if self.rank != self.size - 1:
            final = zero_state(like_q, like_v)
        return collectives.broadcast(self.peers, final, self.size - 1, collectives.TAG_FINAL,
                                     "the broadcast of the final state")


def zero_state(like_q, like_v):
    b, h, d, e = like_q.shape[0], like_q.shape[1], like_q.shape[3], like_v.shape[3]
    return torch.zeros(b, h, d, e, dtype=torch.float32, device=like_q.device)


class TorchExchange(GroupExchange):
    """The schedules over torch.distributed point-to-point messages (lightring.collectives),
    around the local ops."""

    name = "torch"

    def forward(self, q, k, v, decay, s0, scale, block_size, need_final):
        heads, length = q.shape[1], q.shape[2]
        a = segment_decay(decay, heads, length, q.device)
        x = torch.ops.lightring.local_state(k, v, decay, 1.0, False, block_size)  # A, no wait
        if s0 is not None:  # rank 0 only: X_0 = a_0·S0 + A_0
            x = combine_x(s0, a, x)
        excl, total = self.prefix(a, x, reverse=False, need_total=need_final)
        s_in = s0 if self.rank == 0 else excl
        o, _ = torch.ops.lightring.forward(q, k, v, decay, scale, s_in, False, block_size)
        return o, s_in, total

    def backward(self, q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size):
        a = segment_decay(decay, q.shape[1], q.shape[2], q.device)
        x = torch.ops.lightring.local_state(q, d_o, decay, scale, True, block_size)  # C
        if g is not None:  # the last rank only: X_{P-1} = a·G + C
            x = combine_x(g, a, x)
        excl, _ = self.prefix(a, x, reverse=True)
        ds_out = g if self.rank == self.size - 1 else excl
        return torch.ops.lightring.backward(q, k, v, d_o, decay, scale, s_in, ds_out, want_ds0,
                                            block_size)

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
    """One rank's shard; `ex` moves the states (TorchExchange or LightringExchange). The
    forward's inputs were agreed before apply (attention()); the backward agrees its own."""

    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, scale, block_size, output_final_state, ex):
        first = ex.rank == 0
        s0 = functional.state(initial_state) if (first and initial_state is not None) else None
        o, s_in, final = ex.forward(q, k, v, decay, s0, scale, block_size, output_final_state)
        if not output_final_state:
            final = q.new_empty((0,), dtype=torch.float32)
        ctx.save_for_backward(q, k, v, decay, s_in)
        ctx.scale, ctx.block_size, ctx.ex = scale, block_size, ex
        ctx.output_final_state, ctx.has_s0 = output_final_state, initial_state is not None
        if not output_final_state:
            ctx.mark_non_differentiable(final)
        return o, final

    @staticmethod
    @functional.first_order_only
    def backward(ctx, d_o, d_final):
        q, k, v, decay, s_in = ctx.saved_tensors
        ex = ctx.ex
        ex.agree("backward", None, q, v, decay, ctx.has_s0, "bhnd", ctx.scale, ctx.block_size,
                 ctx.output_final_state)
        d_o = functional.rows(torch.zeros_like(v) if d_o is None else d_o)
        g = None
        if ctx.output_final_state:
            # The final state is returned on every rank: the loss sees it P times.
            g = (functional.state(d_final) if d_final is not None else zero_state(q, v)).clone()
            g = collectives.reduce_sum(ex.peers, g, ex.size - 1, collectives.TAG_FINAL_GRAD,
                                       "the sum of the final-state gradients")
        want_ds0 = ex.rank == 0 and ctx.has_s0 and ctx.needs_input_grad[4]
        dq, dk, dv, ds0 = ex.backward(q, k, v, d_o, decay, ctx.scale, s_in, g, want_ds0,
                                      ctx.block_size)
        d_s0 = None
        if ctx.has_s0 and ctx.needs_input_grad[4]:
            # S0 is read on the first rank only; the other ranks' copies are unused.
            d_s0 = ds0 if want_ds0 else zero_state(q, v)
        return dq, dk, dv, None, d_s0, None, None, None, None


def attention(q, k, v, decay, initial_state, layout, scale, block_size, output_final_state,
              group, schedule, exchange, error, cu_seqlens=None):
    """A sequence-parallel call: q, k, v are this rank's shard in `layout`; `error` is this
    rank's validation error or None (scale is then not yet known to be a number); cu_seqlens
    the global document offsets as a host int64 tensor (checked), or None. Agrees the forward
    once, then runs the Function.
    Returns (o as a [B, H, N_local, E] view, final_state)."""
    from . import nccl_exchange
    asked = nccl_exchange.resolve(exchange)
    if cu_seqlens is not None:
        return _documents(q, k, v, decay, initial_state, layout, scale, block_size,
                          output_final_state, group, schedule, asked, error, cu_seqlens)
    if nccl_exchange.select(asked, group) == "lightring":
        # Same answer on every rank (build, backend): no rank is left waiting.
        nccl_exchange.check_available(group)
        ex = nccl_exchange.LightringExchange(group, schedule)
    else:
        ex = TorchExchange(group, schedule)
    if error is None:
        error = ex.local_error(q)
    ex.agree("forward", error, q, v, decay, initial_state is not None, layout, scale,
             block_size, output_final_state)
    if layout == "bnhd":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    return _ShardedAttention.apply(q, k, v, decay, initial_state, float(scale), block_size,
                                   output_final_state, ex)


def _documents(q, k, v, decay, initial_state, layout, scale, block_size, output_final_state,
               group, schedule, asked, error, cu_seqlens):
    """attention() for a packed stream (lightring/documents.py) over the torch exchange."""
    from . import documents
    if asked == "lightring" and error is None:
        # Reported to every rank by the agreement below (no rank is left waiting).
        error = ValueError("cu_seqlens with exchange='lightring' is not supported yet: the C++ "
                           "sequence-parallel ops take no documents from Python; pass "
                           "exchange='torch' (states travel over torch.distributed)")
    ex = TorchExchange(group, schedule)
    num_docs = cu_seqlens.numel() - 1
    words = documents.digest(cu_seqlens) if error is None else (0, 0)
    ex.docs_record = (num_docs, words[0], words[1])
    ex.agree("forward", error, q, v, decay, initial_state is not None, layout, scale, block_size,
             output_final_state, docs=ex.docs_record)
    total = sum(ex.lengths)
    if int(cu_seqlens[-1]) != total:  # the same on every rank: agreed offsets and lengths
        raise ValueError(f"cu_seqlens[-1] must be the packed stream's length T = {total}, the "
                         f"sum of the shard lengths {ex.lengths} (got {int(cu_seqlens[-1])})")
    start = sum(ex.lengths[:ex.rank])
    pieces = documents.Pieces(cu_seqlens.tolist(), start, ex.lengths[ex.rank])
    if layout == "bnhd":
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    return documents.ShardedDocuments.apply(q, k, v, decay, initial_state, float(scale),
                                            block_size, output_final_state, ex, pieces, num_docs)
