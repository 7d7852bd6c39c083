"""Packed documents: ``lightning_attention(..., cu_seqlens=...)`` (docs/algorithm.md §5).

A packed stream is one sequence (B = 1) of T tokens holding N documents; ``cu_seqlens =
[0, c_1, …, T]`` are the document offsets (the FlashAttention / FLA convention, int32 or int64,
strictly increasing). Each document is an independent causal sequence: at its first token the
state restarts from ``initial_state[doc]`` (zero when None), and no state flows from one
document into the next. ``initial_state`` and the returned final state are ``[N, H, D, E]``
fp32.

Under sequence parallelism every rank passes the *global* ``cu_seqlens`` (FLA's convention) and
its contiguous shard of the stream (``lightring.distributed.shard``; shards may be unequal, a
document may span any number of ranks, a boundary may fall on a shard edge). Each rank cuts its
shard into pieces at the boundaries inside it (``local_pieces``); only the last piece's state
travels right, and only the first piece's state gradient travels left: the pair of a shard that
contains a document start has scalar 0 (nothing before the start passes through it). A
document's initial state is read on the rank where the document starts (the other ranks get a
zero gradient for that row); its final state is computed on the rank where the document ends
and returned on every rank (gathered), so the loss may use it anywhere.
"""
import bisect

import torch

from . import collectives, functional

_INDEX_DTYPES = (torch.int32, torch.int64)


def check_cu_seqlens(cu_seqlens, batch, total, device, compiling=False):
    """Checks cu_seqlens against the stream; returns it as a contiguous int64 cpu tensor.

    total: the stream's length T (None under sequence parallelism: the ranks check the sum of
    their shards after agreeing them). Raises TypeError / ValueError naming the argument."""
    if not isinstance(cu_seqlens, torch.Tensor):
        raise TypeError(f"cu_seqlens must be a 1-D int32 or int64 tensor of document offsets "
                        f"[0, c_1, ..., T] (got {type(cu_seqlens).__name__})")
    if cu_seqlens.dtype not in _INDEX_DTYPES:
        raise TypeError(f"cu_seqlens must be int32 or int64 (got {cu_seqlens.dtype})")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with at least 2 offsets [0, ..., T] (got shape "
                         f"{list(cu_seqlens.shape)})")
    if cu_seqlens.device.type != "cpu" and cu_seqlens.device != device:
        raise ValueError(f"cu_seqlens must be on the cpu or on the device of q (got "
                         f"{cu_seqlens.device} and {device})")
    if batch != 1:
        raise ValueError(f"cu_seqlens needs batch size B = 1: a packed stream is one sequence "
                         f"(got B = {batch}); concatenate the rows into one stream")
    host = cu_seqlens.to("cpu", torch.int64).contiguous()
    if compiling:  # values are checked by the kernels (as docs.offsets): no graph break here
        return host
    values = host.tolist()
    if values[0] != 0:
        raise ValueError(f"cu_seqlens[0] must be 0 (got {values[0]})")
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(f"cu_seqlens must be strictly increasing (cu_seqlens[{i - 1}] = "
                             f"{values[i - 1]}, cu_seqlens[{i}] = {values[i]}): every document "
                             "needs at least one token")
    if total is not None and values[-1] != total:
        raise ValueError(f"cu_seqlens[-1] must be the stream's length T = {total} (got "
                         f"{values[-1]})")
    return host


def check_doc_states(initial_state, num_docs, h, d, e, device):
    if initial_state is not None:
        functional.check_state(initial_state, "initial_state", (num_docs, h, d, e), device,
                               "[N, H, D, E] (one state per document, N = len(cu_seqlens) - 1)")


class Pieces:
    """The pieces of the shard [start, start + length) of a stream with offsets cu (a list)."""

    def __init__(self, cu, start, length):
        end = start + length
        self.first = bisect.bisect_right(cu, start) - 1
        last = bisect.bisect_right(cu, end - 1) - 1
        self.offsets = [0] + [c - start for c in cu[self.first + 1:last + 1]] + [length]
        self.count = len(self.offsets) - 1
        self.continues = cu[self.first] < start
        self.ends = cu[last + 1] == end
        self.length = length

    def forward_reset(self):
        return self.count > 1 or not self.continues

    def backward_reset(self):
        return self.count > 1 or self.ends or not self.continues

    def tensor(self):
        return torch.tensor(self.offsets, dtype=torch.int64)


class LocalDocuments(torch.autograd.Function):
    """The whole stream on this process: offsets = cu_seqlens (host int64)."""

    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, offsets, scale, block_size,
                output_final_state):
        s0 = None if initial_state is None else functional.state(initial_state)
        o, finals, _ = torch.ops.lightring.forward_docs(q, k, v, decay, scale, offsets, False,
                                                        True, None, s0, output_final_state, False,
                                                        block_size)
        ctx.save_for_backward(q, k, v, decay, s0, offsets)
        ctx.scale, ctx.block_size = scale, block_size
        ctx.output_final_state = output_final_state
        if not output_final_state:
            ctx.mark_non_differentiable(finals)
        return o, finals

    @staticmethod
    @functional.first_order_only
    def backward(ctx, d_o, d_finals):
        q, k, v, decay, s0, offsets = ctx.saved_tensors
        want_ds0 = s0 is not None and ctx.needs_input_grad[4]
        g = functional.state(d_finals) if ctx.output_final_state and d_finals is not None \
            else None
        d_o = functional.rows(torch.zeros_like(v) if d_o is None else d_o)
        dq, dk, dv, ds0, _ = torch.ops.lightring.backward_docs(
            q, k, v, d_o, decay, ctx.scale, offsets, False, True, None, s0, g, None, want_ds0,
            False, ctx.block_size)
        return dq, dk, dv, None, (ds0 if want_ds0 else None), None, None, None, None


def _pair_scalar(decay, heads, length, reset, device):
    if reset:
        return torch.zeros(heads, dtype=torch.float32, device=device)
    from .sequence_parallel import segment_decay
    return segment_decay(decay, heads, length, device)


def _rows(t, start, stop):
    """t[:, :, start:stop] of a [1, H, N, dim] view."""
    return t.narrow(2, start, stop - start)


def _decayed(state, decay, heads, length, x):
    """λ^length·state + x per head (state may be None: x)."""
    if state is None:
        return x
    from .sequence_parallel import combine_x, segment_decay
    return combine_x(state, segment_decay(decay, heads, length, x.device), x)


class ShardedDocuments(torch.autograd.Function):
    """One rank's shard of a packed stream over `ex` (a TorchExchange); `pieces` is this
    rank's Pieces, `num_docs` the stream's N. The inputs were agreed before apply."""

    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, scale, block_size, output_final_state, ex,
                pieces, num_docs):
        p, heads = pieces, q.shape[1]
        first, count = p.first, p.count
        s0 = None if initial_state is None else \
            functional.state(initial_state.narrow(0, first, count))
        # The pair (a, X) of the shard: X = the state after its last token from S_in = 0, i.e.
        # the last piece run from its own start (its document's initial state when it starts
        # one in this shard).
        a = _pair_scalar(decay, heads, p.length, p.forward_reset(), q.device)
        lo = p.offsets[-2] if p.forward_reset() else 0
        x = torch.ops.lightring.local_state(_rows(k, lo, p.length), _rows(v, lo, p.length), decay,
                                            1.0, False, block_size)
        if p.forward_reset() and s0 is not None:
            x = _decayed(s0[count - 1:count], decay, heads, p.length - lo, x)
        excl, _ = ex.prefix(a, x, reverse=False)
        s_in = excl.contiguous() if p.continues else None
        o, finals, _ = torch.ops.lightring.forward_docs(
            q, k, v, decay, scale, p.tensor(), p.continues, p.ends, s_in, s0, output_final_state,
            False, block_size)
        if output_final_state:
            full = q.new_zeros((num_docs,) + tuple(finals.shape[1:]), dtype=torch.float32)
            full.narrow(0, first, count).copy_(finals)  # rows of the documents that end here
            total = collectives.reduce_sum(ex.peers, full, ex.size - 1, collectives.TAG_FINAL,
                                           "the sum of the per-document final states")
            full = total if total is not None else full
            finals = collectives.broadcast(ex.peers, full, ex.size - 1, collectives.TAG_FINAL,
                                           "the broadcast of the per-document final states")
        else:
            finals = q.new_empty((0,), dtype=torch.float32)
            ctx.mark_non_differentiable(finals)
        ctx.save_for_backward(q, k, v, decay, s0, s_in)
        ctx.scale, ctx.block_size, ctx.ex, ctx.pieces = scale, block_size, ex, p
        ctx.output_final_state, ctx.num_docs = output_final_state, num_docs
        ctx.has_s0 = initial_state is not None
        return o, finals

    @staticmethod
    @functional.first_order_only
    def backward(ctx, d_o, d_finals):
        q, k, v, decay, s0, s_in = ctx.saved_tensors
        ex, p, heads = ctx.ex, ctx.pieces, q.shape[1]
        ex.agree("backward", None, q, v, decay, ctx.has_s0, "bhnd", ctx.scale, ctx.block_size,
                 ctx.output_final_state, docs=ex.docs_record)
        d_o = functional.rows(torch.zeros_like(v) if d_o is None else d_o)
        g = None
        if ctx.output_final_state:
            # Returned on every rank: the loss sees the final states P times.
            full = (functional.state(d_finals) if d_finals is not None else
                    q.new_zeros((ctx.num_docs, heads, q.shape[3], v.shape[3]),
                                dtype=torch.float32)).clone()
            total = collectives.reduce_sum(ex.peers, full, ex.size - 1,
                                           collectives.TAG_FINAL_GRAD,
                                           "the sum of the per-document final-state gradients")
            full = total if total is not None else full
            full = collectives.broadcast(ex.peers, full, ex.size - 1, collectives.TAG_FINAL_GRAD,
                                         "the broadcast of the per-document final-state gradients")
            g = full.narrow(0, p.first, p.count).contiguous()
        # The backward pair (b, C) of the shard: C = dS_in from G = 0, i.e. piece 0's gradient
        # of S_in (its document's final-state gradient when piece 0 ends in this shard); 0 when
        # the shard does not read S_in.
        b = _pair_scalar(decay, heads, p.length, p.backward_reset(), q.device)
        if p.continues:
            hi = p.offsets[1] if p.backward_reset() else p.length
            c = torch.ops.lightring.local_state(_rows(q, 0, hi), _rows(d_o, 0, hi), decay,
                                                ctx.scale, True, ctx.block_size)
            if p.backward_reset() and g is not None:
                c = _decayed(g[0:1], decay, heads, hi, c)
        else:
            c = q.new_zeros((1, heads, q.shape[3], v.shape[3]), dtype=torch.float32)
        excl, _ = ex.prefix(b, c, reverse=True)
        ds_out = None if p.ends else excl.contiguous()
        want = ctx.has_s0 and ctx.needs_input_grad[4]
        dq, dk, dv, d_s0, _ = torch.ops.lightring.backward_docs(
            q, k, v, d_o, decay, ctx.scale, p.tensor(), p.continues, p.ends, s_in, s0, g, ds_out,
            want, False, ctx.block_size)
        d_init = None
        if want:
            # Rows of the documents that start on this rank; the others' copies are unused here.
            d_init = q.new_zeros((ctx.num_docs,) + tuple(d_s0.shape[1:]), dtype=torch.float32)
            d_init.narrow(0, p.first, p.count).copy_(d_s0)
        return dq, dk, dv, None, d_init, None, None, None, None, None, None


def digest(host_cu):
    """Two int64 words of a 128-bit digest of the exact offsets (for the agreement)."""
    import hashlib
    import struct
    data = host_cu.numpy().tobytes()
    return struct.unpack("<qq", hashlib.blake2b(data, digest_size=16).digest())
