"""The functional API: ``lightning_attention`` and its autograd.

Per batch element and head (docs/algorithm.md §1), with λ = exp(-decay[h]):

    S_t = λ·S_{t-1} + k_tᵀ v_t      (S_{-1} = initial_state, fp32 [B, H, D, E])
    o_t = scale · q_t S_t

Autograd covers q, k, v and initial_state, and accepts a gradient on the final
state; it is first order only (a second derivative through lightring raises at the
point of use), and decay is a constant (decay.requires_grad raises). Inputs are checked here, with messages that name the argument, before
anything runs (and, with a group, before any rank waits on another).
"""
import math

import functools
import warnings

import torch

from . import _ext

_LAYOUTS = ("bhnd", "bnhd")
SCHEDULES = ("auto", "ring", "allgather", "scan")
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_MAX_BLOCK = 256


def _looks_bnhd(q):
    """Whether q, given without a layout (so read as [B, H, N, D]), looks like FLA's [B, T, H, D]:
    more "heads" than models use (>= 64) and at least 4 times the "length", which itself is a
    plausible head count (<= 128)."""
    return q.dim() == 4 and q.shape[1] >= 64 and q.shape[1] >= 4 * q.shape[2] and \
        q.shape[2] <= 128


def _warn_layout(q):
    warnings.warn(
        f"lightning_attention: q has shape {_shape(q)} and no layout was given, so it is read as "
        f"[B, H, N, D] (H = {q.shape[1]} heads of length N = {q.shape[2]}); it looks like FLA's "
        f"[B, T, H, D] layout: pass layout='bnhd' for [B, T, H, D] tensors (or "
        f"lightring.compat.fla), or layout='bhnd' to say that this is meant",
        UserWarning, stacklevel=3)


def _compiling():
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling()
    dynamo = getattr(torch, "_dynamo", None)
    return bool(dynamo is not None and hasattr(dynamo, "is_compiling") and dynamo.is_compiling())


def _shape(t):
    return list(t.shape)


def check_inputs(q, k, v, decay, initial_state, layout, scale, block_size):
    """Validates the arguments of lightning_attention; returns (B, H, N, D, E).

    Raises TypeError / ValueError naming the argument and what was passed.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'bhnd' or 'bnhd' (got {layout!r})")
    dims = "[B, H, N, D]" if layout == "bhnd" else "[B, N, H, D]"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D {dims} for layout={layout!r} "
                             f"(got shape {_shape(t)})")
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name} must be float32, bfloat16 or float16 (got {t.dtype}); "
                            "lightring computes in fp32 with fp32 states")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} must be on cpu or cuda (got {t.device})")
        if t.numel() == 0:
            raise ValueError(f"{name} must not be empty (got shape {_shape(t)})")
        if t.shape[-1] > 1 and t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim (stride 1, got "
                             f"{t.stride(-1)}); call .contiguous() first")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} must be on the device of q (got {t.device} and {q.device})")
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have the dtype of q (got {t.dtype} and {q.dtype})")
    if layout == "bnhd":
        (b, n, h, d), e = q.shape, v.shape[3]
        bhn = lambda t: [t.shape[0], t.shape[2], t.shape[1]]  # noqa: E731
    else:
        (b, h, n, d), e = q.shape, v.shape[3]
        bhn = lambda t: [t.shape[0], t.shape[1], t.shape[2]]  # noqa: E731
    for name, t in (("k", k), ("v", v)):
        if bhn(t) != bhn(q):
            raise ValueError(f"{name} must have the same batch, heads and length [B, H, N] as q "
                             f"(got {bhn(t)} and {bhn(q)}; layout={layout!r})")
    if k.shape[3] != d:
        raise ValueError(f"q and k must have the same head dim D (got {d} and {k.shape[3]})")
    if d > 256 or e > 256:
        raise ValueError(f"head dims D and E must be <= 256 (got D={d}, E={e})")
    if decay is not None:
        if not isinstance(decay, torch.Tensor):
            raise TypeError(f"decay must be a float32 tensor of shape [H] or None "
                            f"(got {type(decay).__name__}); see lightring.slopes(H)")
        if decay.dim() != 1 or decay.shape[0] != h:
            other = q.shape[2] if layout == "bhnd" else q.shape[1]
            hint = (f"; with {dims} q's heads are dim {1 if layout == 'bhnd' else 2}: for "
                    f"{'[B, N, H, D]' if layout == 'bhnd' else '[B, H, N, D]'} tensors pass "
                    f"layout={'bnhd' if layout == 'bhnd' else 'bhnd'!r}") \
                if decay.dim() == 1 and decay.shape[0] == other else ""
            raise ValueError(f"decay must have shape [H] = [{h}], one rate per head "
                             f"(got shape {_shape(decay)}){hint}")
        if decay.dtype != torch.float32:
            raise TypeError(f"decay must be float32 (got {decay.dtype})")
        if decay.device != q.device:
            raise ValueError(f"decay must be on the device of q (got {decay.device} and "
                             f"{q.device})")
        if decay.requires_grad and torch.is_grad_enabled():
            raise ValueError("decay requires grad, but lightring does not differentiate with "
                             "respect to the decay rates (they are constants, as in "
                             "TransNormerLLM and Lightning Attention-2): pass decay.detach(), or "
                             "register it as a buffer rather than a parameter")
        # Values are checked on the cpu in eager mode only (the CUDA backend checks its own;
        # reading them would synchronise, or break a torch.compile graph).
        if decay.device.type == "cpu" and not _compiling() and \
                not bool(torch.isfinite(decay).all() and (decay >= 0).all()):
            raise ValueError(f"decay must be finite and >= 0 (got {decay.tolist()})")
    if initial_state is not None:
        check_state(initial_state, "initial_state", (b, h, d, e), q.device)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise TypeError(f"scale must be a finite float (got {scale!r})")
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or \
                not 1 <= block_size <= _MAX_BLOCK:
            raise ValueError(f"block_size must be None or an int in [1, {_MAX_BLOCK}] "
                             f"(got {block_size!r})")
    return b, h, n, d, e


def check_state(s, name, shape, device, dims="[B, H, D, E]"):
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or None (got {type(s).__name__})")
    if list(s.shape) != list(shape):
        raise ValueError(f"{name} must have shape {dims} = {list(shape)} "
                         f"(got {_shape(s)})")
    if s.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 whatever the input dtype (got {s.dtype})")
    if s.device != device:
        raise ValueError(f"{name} must be on the device of q (got {s.device} and {device})")


def first_order_only(backward):
    """Marks an autograd.Function's backward as first order only.

    With create_graph=True the gradients it returns would otherwise be constants to autograd
    (they are computed by opaque ops from saved tensors), so a second derivative through them,
    e.g. a gradient penalty, would silently miss its lightring term. Here every gradient gets
    a node that raises when it is differentiated: the error comes at the point of use, and
    first-order uses of create_graph=True keep working.
    """
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outputs
        single = not isinstance(outputs, tuple)
        outputs = (outputs,) if single else outputs
        err_fn = torch._C._functions.DelayedError(
            b"lightring: a second derivative through lightning_attention was requested "
            b"(create_graph=True, then a backward through the gradients it returned); lightring "
            b"computes first-order gradients only", len(outputs))

        def alias(t):
            if not isinstance(t, torch.Tensor):
                return t
            t = t.detach()
            t.requires_grad = True
            return t

        wrapped = err_fn(*[alias(t) for t in outputs])
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        return wrapped[0] if single else wrapped
    return wrapper


def rows(t):
    """t as a [B, H, N, dim] view the kernels accept (contiguous last dim, rows
    that do not overlap); copies only when it must (e.g. an expanded gradient)."""
    if (t.shape[3] > 1 and t.stride(3) != 1) or (t.shape[2] > 1 and t.stride(2) < t.shape[3]) \
            or (t.shape[1] > 1 and t.stride(1) == 0) or (t.shape[0] > 1 and t.stride(0) == 0):
        return t.contiguous()
    return t


def state(t):
    return t if t.is_contiguous() else t.contiguous()


class _LocalAttention(torch.autograd.Function):
    """The whole sequence on this process: one forward op, one backward op. Used under
    torch.compile only, where the compiler sees the two ops through their fakes (lightring/_ops.py);
    eager calls go to lightring::attention, whose autograd is the C++ Function of
    csrc/model/attention_function.h, and both compute the same kernels."""

    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, scale, block_size, output_final_state):
        s0 = None if initial_state is None else state(initial_state)
        o, final = torch.ops.lightring.forward(q, k, v, decay, scale, s0, output_final_state,
                                               block_size)
        ctx.save_for_backward(q, k, v, decay, s0)
        ctx.scale, ctx.block_size = scale, block_size
        ctx.output_final_state = output_final_state
        if not output_final_state:
            ctx.mark_non_differentiable(final)
        return o, final

    @staticmethod
    @first_order_only
    def backward(ctx, d_o, d_final):
        q, k, v, decay, s0 = ctx.saved_tensors
        want_ds0 = s0 is not None and ctx.needs_input_grad[4]
        g = state(d_final) if ctx.output_final_state and d_final is not None else None
        if d_o is None:
            d_o = torch.zeros_like(v)
        dq, dk, dv, ds0 = torch.ops.lightring.backward(q, k, v, rows(d_o), decay, ctx.scale, s0,
                                                       g, want_ds0, ctx.block_size)
        return dq, dk, dv, None, (ds0 if want_ds0 else None), None, None, None


def lightning_attention(q, k, v, decay=None, *, scale=1.0, initial_state=None,
                        output_final_state=False, pair=False, layout=None, group=None,
                        schedule="auto", block_size=None, exchange=None, cu_seqlens=None):
    """Causal Lightning Attention-2 with per-head decay.

    q, k: [B, H, N, D]; v: [B, H, N, E] (layout="bhnd"), or [B, N, H, *] with
    layout="bnhd" (read through strides, no copy). decay: [H] fp32 rates s >= 0,
    λ = exp(-s) (None: s = 0). scale: c in o_t = c·q_t S_t (1.0 as in Lightning
    Attention; FLA uses 1/sqrt(D)). initial_state: [B, H, D, E] fp32.

    group: None, or a torch.distributed process group over which the sequence is
    sharded: q, k, v are this rank's contiguous shard, rank order = sequence
    order (see lightring.distributed.shard). initial_state is then the state
    before the first token of the global sequence, read on the group's first
    rank (the other ranks receive a zero gradient for theirs); every rank must
    pass one or none. The returned final state is the global one, on every
    rank, and its gradients from all ranks are summed. schedule picks the state
    exchange: "allgather", "ring", "scan" or "auto" (docs/algorithm.md §3); "auto"
    is the C++ cost model's choice for the group size, the [B, H, D, E] state
    size and the transport (lightring._C.schedule_choice), the same choice
    lightring-bench makes.

    exchange: how the states travel when group is given (default: the environment
    variable LIGHTRING_EXCHANGE, else "auto"). "lightring" uses lightring's own
    NCCL communicator, created once per group by broadcasting a 128-byte unique
    id over it and cached, and runs the C++ sequence-parallel ops on it, ordered
    against torch's current CUDA stream; it needs an NCCL group, CUDA tensors on
    the current device and a build with NCCL and a CUDA torch, and raises
    RuntimeError otherwise.
    "torch" runs the schedules over torch.distributed (any backend, e.g. gloo).
    "auto" is "lightring" on NCCL groups where this build has it, else "torch".
    See lightring.nccl_exchange.

    cu_seqlens: None, or the document offsets [0, c_1, ..., T] (int32 or int64, on the cpu or
    the device of q) of a packed stream (B = 1): every document is then an independent causal
    sequence (lightring/documents.py, docs/algorithm.md §5). initial_state and the final state
    are then [N, H, D, E], one per document. With a group, pass the global offsets on every
    rank; only the torch exchange takes documents so far.

    layout: "bhnd" ([B, H, N, D]) or "bnhd" ([B, N, H, D], FLA's [B, T, H, D]); None means
    "bhnd", and warns when q looks like [B, T, H, D] (dim 1 >= 64 and >= 4x dim 2, dim 2 <= 128):
    pass the layout explicitly to silence it.

    Returns o (in the layout of q), or (o, final_state) when output_final_state. With
    pair=True it always returns (o, final_state), final_state None unless output_final_state
    (FLA's convention; `o, _ = lightning_attention(q, k, v)` would otherwise unpack o along the
    batch when B = 2).
    """
    if layout is None:
        layout = "bhnd"
        if isinstance(q, torch.Tensor) and not _compiling() and _looks_bnhd(q):
            _warn_layout(q)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)} (got {schedule!r})")
    if _ext.MODULE is None:
        _ext.load()
    bs = 0 if block_size is None else block_size
    from . import nccl_exchange
    if group is None and exchange not in (None, "auto", "torch"):
        nccl_exchange.resolve(exchange)  # a bad name is reported first
        raise ValueError(f"exchange={exchange!r} applies to sequence-parallel calls only: pass "
                         "group= (the torch.distributed group the sequence is sharded over)")
    if group is None:
        if cu_seqlens is None:
            check_inputs(q, k, v, decay, initial_state, layout, scale, block_size)
        else:
            offsets = _check_documents(q, k, v, decay, initial_state, layout, scale, block_size,
                                       cu_seqlens, sharded=False)
        if layout == "bnhd":
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cu_seqlens is None and not _compiling():
            # The C++ autograd Function (csrc/attention_op.cpp): the node, the backward and the
            # saved tensors of lightring-train's model.
            o, final = torch.ops.lightring.attention(q, k, v, decay, float(scale), initial_state,
                                                     bool(output_final_state), bs)
        elif cu_seqlens is None:
            o, final = _LocalAttention.apply(q, k, v, decay, initial_state, float(scale), bs,
                                             bool(output_final_state))
        else:
            from . import documents
            o, final = documents.LocalDocuments.apply(q, k, v, decay, initial_state, offsets,
                                                      float(scale), bs, bool(output_final_state))
    else:
        from . import sequence_parallel
        # A bad input on one rank must fail every rank of the group, not hang them:
        # the error travels in the consistency check that precedes any exchange.
        offsets = None
        try:
            if cu_seqlens is None:
                check_inputs(q, k, v, decay, initial_state, layout, scale, block_size)
            else:
                offsets = _check_documents(q, k, v, decay, initial_state, layout, scale,
                                           block_size, cu_seqlens, sharded=True)
            error = None
        except (TypeError, ValueError) as e:
            error = e
            if cu_seqlens is not None:
                offsets = torch.zeros(2, dtype=torch.int64)
        o, final = sequence_parallel.attention(q, k, v, decay, initial_state, layout, scale, bs,
                                               bool(output_final_state), group, schedule,
                                               exchange, error, offsets)
    if layout == "bnhd":
        o = o.transpose(1, 2)
    if output_final_state:
        return o, final
    return (o, None) if pair else o


def _check_documents(q, k, v, decay, initial_state, layout, scale, block_size, cu_seqlens,
                     sharded):
    """check_inputs for a packed stream: initial_state is [N, H, D, E] (one per document).
    Returns cu_seqlens as a host int64 tensor (lightring/documents.py)."""
    from . import documents
    b, h, n, d, e = check_inputs(q, k, v, decay, None, layout, scale, block_size)
    host = documents.check_cu_seqlens(cu_seqlens, b, None if sharded else n, q.device,
                                      _compiling())
    documents.check_doc_states(initial_state, host.numel() - 1, h, d, e, q.device)
    return host
