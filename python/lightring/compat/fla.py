"""FLA-compatible entry points: ``chunk_simple_gla`` and ``chunk_lightning_attn``.

The signatures, defaults and return values are those of flash-linear-attention
(fla-org/flash-linear-attention, ``fla/ops/simple_gla/chunk.py`` and
``fla/ops/lightning_attn/chunk.py``), so a model written against FLA runs on lightring by
changing its import. Per sequence and head, with λ_h = exp(g_gamma[h]) (FLA's ``g_gamma`` is the
natural-log decay, ≤ 0 here):

    S_t = λ_h·S_{t-1} + k_tᵀ v_t        (S_{-1} = initial_state, [K, V] per head)
    o_t = scale · q_t S_t               (scale None: 1/sqrt(K))

which is ``lightring.lightning_attention(q, k, v, decay=-g_gamma, scale=scale,
layout="bnhd")``. The conventions (FLA's, which differ from the native API's):

- q, k: ``[B, T, H, K]``, v: ``[B, T, H, V]``; o: a contiguous ``[B, T, H, V]`` in q's dtype
  (the native API returns a transposed view for ``layout="bnhd"``).
- ``scale=None`` means ``1/sqrt(K)`` (the native API's default is 1.0).
- ``g_gamma``: ``[H]`` log-decay, ``λ = exp(g_gamma)``; lightring's ``decay`` is ``-g_gamma``.
- Always returns ``(o, final_state)``; ``final_state`` is None unless ``output_final_state``.
- States are ``[N, H, K, V]`` fp32 (``[N, H, V, K]`` with ``state_v_first=True``), N = B, or the
  number of sequences with ``cu_seqlens`` (B = 1). An initial state of another float dtype is
  converted to fp32.
- ``chunk_lightning_attn(layer_idx, num_layers)`` uses FLA's decay formula, which is not
  TransNormerLLM's (``lightring.nn.LightningAttention``, csrc/model/transnormer.h):
  FLA sets ``g_gamma_h = -(8/H)·(1 − layer_idx/num_layers)·h`` for h = 0 … H−1, so head 0 has
  no decay and the layer factor divides by L (not L−1) and has no +1e-5, while TransNormerLLM's
  rate is ``slopes(H)[h]·(1 − l/(L−1) + 1e-5)`` (slopes ``2^(-8(h+1)/H)``). Use
  ``lightring_rates`` / ``fla_lightning_rates`` to compare them.

Not supported (each raises, naming what to do instead): a data-dependent gate ``g`` (``[B, T, H]``
forget gates: lightring's decay is a per-head constant), a positive ``g_gamma`` (λ > 1),
FLA's removed ``head_first``. ``chunk_size`` is checked as FLA checks it and otherwise ignored
(lightring picks its own block size; the result is exact either way). Gradients flow to q, k, v
and initial_state, not to g_gamma (FLA's backward returns none for it either).

lightring extensions, keyword-only: ``group=`` (a torch.distributed group: q, k, v are this rank's
shard of the sequence, as in ``lightring.lightning_attention``; cu_seqlens then the global
offsets) and ``schedule=``.
"""
import math

import torch

from ..functional import lightning_attention

__all__ = ["chunk_simple_gla", "chunk_lightning_attn", "fla_lightning_rates", "lightring_rates"]


def fla_lightning_rates(num_heads, layer_idx, num_layers):
    """FLA's chunk_lightning_attn decay as lightring rates (−g_gamma), [H] fp32 on the cpu:
    s_h = (8/H)·(1 − layer_idx/num_layers)·h, h = 0 … H−1 (head 0: no decay)."""
    _check_layer(layer_idx, num_layers)
    factor = 8.0 / num_heads * (1.0 - layer_idx / num_layers)
    return factor * torch.arange(num_heads, dtype=torch.float32)


def lightring_rates(num_heads, layer_idx, num_layers):
    """TransNormerLLM's rates, as lightring.nn.LightningAttention and lightring-train use them:
    slopes(H)·(1 − l/(L−1) + 1e-5) (the plain slopes when L = 1), [H] fp32 on the cpu."""
    from .. import slopes
    _check_layer(layer_idx, num_layers)
    rate = slopes(num_heads)
    if num_layers > 1:
        rate = rate * (1 - layer_idx / (num_layers - 1) + 1e-5)
    return rate


def _check_layer(layer_idx, num_layers):
    for name, value in (("layer_idx", layer_idx), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int (got {value!r})")
    if num_layers < 1 or not 0 <= layer_idx <= num_layers:
        raise ValueError(f"layer_idx must be in [0, num_layers] and num_layers >= 1 "
                         f"(got layer_idx={layer_idx}, num_layers={num_layers})")


def _check_kwargs(kwargs, name):
    if "head_first" in kwargs:
        raise ValueError(f"{name}: head_first was removed from FLA and is not taken here; "
                         "inputs are [B, T, H, ...] (for [B, H, T, ...] tensors call "
                         "lightring.lightning_attention(..., layout='bhnd'))")
    chunk_size = kwargs.pop("chunk_size", None)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1 or
                                   chunk_size & (chunk_size - 1)):
        raise ValueError(f"`chunk_size` must be a power of 2, got {chunk_size}.")
    kwargs.pop("cu_seqlens_cpu", None)  # lightring reads cu_seqlens on the host itself
    if kwargs:
        raise TypeError(f"{name}: unexpected keyword arguments {sorted(kwargs)}")


def chunk_simple_gla(q, k, v, g=None, g_gamma=None, scale=None, initial_state=None,
                     output_final_state=False, state_v_first=False, cu_seqlens=None, *,
                     group=None, schedule="auto", **kwargs):
    """FLA's chunk_simple_gla with a head-wise constant decay ``g_gamma`` ([H], log-decay).

    q, k: [B, T, H, K]; v: [B, T, H, V]. Returns (o [B, T, H, V], final_state [N, H, K, V] fp32
    or None). See the module docstring for every convention."""
    _check_kwargs(kwargs, "chunk_simple_gla")
    if g is not None:
        raise NotImplementedError(
            "chunk_simple_gla: a data-dependent gate g ([B, T, H] forget gates) is not supported "
            "by lightring, whose decay is one constant per head: pass g_gamma ([H] log-decay) "
            "instead, or use FLA for data-dependent gates")
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ValueError(f"q must be a 4-D tensor [B, T, H, K] (got "
                         f"{list(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__})")
    h = q.shape[2]
    decay = None
    if g_gamma is not None:
        if not isinstance(g_gamma, torch.Tensor):
            g_gamma = torch.as_tensor(g_gamma, dtype=torch.float32)
        if g_gamma.dim() != 1 or g_gamma.shape[0] != h:
            raise ValueError(f"g_gamma must have shape [H] = [{h}], one log-decay per head (got "
                             f"shape {list(g_gamma.shape)})")
        decay = (-g_gamma.detach()).to(device=q.device, dtype=torch.float32)
        if decay.device.type == "cpu" and not bool((decay >= 0).all()):
            raise ValueError(f"g_gamma must be <= 0 (a decay λ = exp(g_gamma) <= 1; got "
                             f"{g_gamma.tolist()}): lightring does not grow states")
        decay = decay + 0.0  # -0.0 -> 0.0
    if scale is None:
        scale = k.shape[-1] ** -0.5
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite (got {scale})")
    s0 = initial_state
    if s0 is not None:
        if not isinstance(s0, torch.Tensor):
            raise TypeError(f"initial_state must be a tensor or None (got {type(s0).__name__})")
        if state_v_first:
            s0 = s0.transpose(-1, -2)
        if s0.dtype != torch.float32:
            s0 = s0.float()
    o, final = lightning_attention(q, k, v, decay, scale=scale, initial_state=s0,
                                   output_final_state=bool(output_final_state), pair=True,
                                   layout="bnhd", group=group, schedule=schedule,
                                   cu_seqlens=cu_seqlens)
    o = o.contiguous()  # FLA's o is a contiguous [B, T, H, V] (o.view(B, T, -1) works)
    if final is not None and state_v_first:
        final = final.transpose(-1, -2)
    return o, final


def chunk_lightning_attn(q, k, v, layer_idx, num_layers, scale=None, initial_state=None,
                         output_final_state=False, cu_seqlens=None, *, group=None,
                         schedule="auto", **kwargs):
    """FLA's chunk_lightning_attn: chunk_simple_gla with FLA's per-layer decay
    g_gamma_h = -(8/H)·(1 − layer_idx/num_layers)·h (not TransNormerLLM's slopes: see the module
    docstring). Returns (o [B, T, H, V], final_state or None)."""
    _check_kwargs(kwargs, "chunk_lightning_attn")
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ValueError(f"q must be a 4-D tensor [B, T, H, K] (got "
                         f"{list(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__})")
    g_gamma = -fla_lightning_rates(q.shape[2], layer_idx, num_layers)
    return chunk_simple_gla(q, k, v, g_gamma=g_gamma, scale=scale, initial_state=initial_state,
                            output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                            group=group, schedule=schedule)
