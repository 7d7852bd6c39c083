"""Token mixers and the training loss of bench/model_bench.py.

The model is lightring.models.TransNormerLM. Its token mixer computes, per head h,

    S_t = λ_h·S_{t-1} + k_tᵀ v_t,   o_t = c·q_t S_t,   λ_h = exp(-s_h)    (c = 1)

through lightring.lightning_attention. ExternalMixer keeps every parameter, buffer and the rest
of the layer (qkvu projection, SiLU, SRMSNorm, gate, out projection) and swaps only that call
for a function with FLA's signature, kernel(q, k, v, g_gamma=-s, scale=c) -> (o, final_state)
on [B, T, H, D] tensors. Mixers:

- "lightring": the model as built (lightring.nn.LightningAttention).
- "fla": FLA's chunk_simple_gla (fla.ops.simple_gla), imported from an FLA source tree.
- "torch-reference": reference_simple_gla below, plain PyTorch in fp32, for checking the
  benchmark's plumbing on a machine without FLA (CPU, tiny sizes).

lm_loss is TransNormerLM.loss (mean next-token cross-entropy) computed as the benchmark runs it:
optionally each block under activation checkpointing (recompute), and the LM head and the
cross-entropy in chunks of loss_chunk tokens, each chunk checkpointed, so that the [T, V] fp32
logits never exist at once (they would dominate the memory at long context for any mixer).
"""
import math
import sys

import torch
from torch.utils.checkpoint import checkpoint

from lightring.nn import LightningAttention

MIXERS = ("lightring", "fla", "torch-reference")


def reference_simple_gla(q, k, v, g_gamma=None, scale=None, chunk=64):
    """S_t = exp(g_gamma)·S_{t-1} + k_tᵀ v_t, o_t = scale·q_t S_t on [B, T, H, D] in fp32, by
    chunks of `chunk` tokens (within a chunk the masked closed form, between chunks the state);
    returns (o in q's dtype, None) as chunk_simple_gla does without output_final_state."""
    b, t, h, d = q.shape
    scale = d ** -0.5 if scale is None else scale
    qf, kf, vf = (x.transpose(1, 2).float() for x in (q, k, v))  # [B, H, T, *]
    s = torch.zeros(h, device=q.device) if g_gamma is None else -g_gamma.float()
    s = s.view(1, h, 1, 1)
    state = qf.new_zeros(b, h, d, v.shape[-1])
    outs = []
    for lo in range(0, t, chunk):
        qc, kc, vc = qf[:, :, lo:lo + chunk], kf[:, :, lo:lo + chunk], vf[:, :, lo:lo + chunk]
        n = qc.shape[2]
        pos = torch.arange(n, device=q.device, dtype=torch.float32)
        diff = pos[:, None] - pos[None, :]
        mask = torch.exp(-s * diff.clamp(min=0)) * (diff >= 0)          # λ^{i-j}, j <= i
        intra = ((qc @ kc.transpose(-1, -2)) * mask) @ vc
        inter = (qc * torch.exp(-s * (pos + 1).view(1, 1, n, 1))) @ state  # λ^{i+1} q_i S
        outs.append(scale * (intra + inter))
        weights = torch.exp(-s * (n - 1 - pos).view(1, 1, n, 1))         # λ^{n-1-j}
        state = torch.exp(-s * n) * state + (kc * weights).transpose(-1, -2) @ vc
    return torch.cat(outs, 2).transpose(1, 2).to(q.dtype), None


def load_fla(anchors):
    """FLA's chunk_simple_gla from the source tree at `anchors` (its folder holds fla/)."""
    sys.path.insert(0, anchors)
    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError as e:
        raise RuntimeError(f"FLA is not importable from --anchors {anchors!r} (expected "
                           f"{anchors}/fla/ops/simple_gla): {e}") from e
    return chunk_simple_gla


def kernel_of(mixer, anchors):
    """The attention function of a mixer name (None for lightring: the model as built)."""
    if mixer == "lightring":
        return None
    if mixer == "fla":
        return load_fla(anchors)
    if mixer == "torch-reference":
        return reference_simple_gla
    raise ValueError(f"--mixers: unknown mixer {mixer!r} (known: {', '.join(MIXERS)})")


class ExternalMixer(LightningAttention):
    """LightningAttention with the attention call replaced by `kernel` (FLA's signature). Only
    the model of bench/model_bench.py uses it: no state, group or documents."""

    kernel = None

    def forward(self, x, initial_state=None, output_final_state=False, group=None,
                cu_seqlens=None):
        if initial_state is not None or output_final_state or group is not None or \
                cu_seqlens is not None:
            raise ValueError("ExternalMixer: initial_state, output_final_state, group and "
                             "cu_seqlens are not supported (benchmark mixer)")
        q, k, v, parts = self._project(x)  # the layer's own projection and output
        g_gamma = None if self.decay is None else -self.decay.float()
        o, _ = self.kernel(q, k, v, g_gamma=g_gamma, scale=self.scale)
        return self._output(o, parts)


def use_kernel(model, kernel):
    """Makes every token mixer of model call `kernel` (None: leave lightring). The parameters
    and buffers, and so the state_dict, are unchanged."""
    if kernel is None:
        return model
    for block in model.layers:
        block.token_mixer.__class__ = ExternalMixer
        block.token_mixer.kernel = kernel
    return model


def _chunk_ce(h, targets, weight):
    logits = torch.nn.functional.linear(h, weight).float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), reduction="sum")


def lm_loss(model, ids, targets, loss_chunk=0, recompute=False):
    """Mean cross-entropy of targets [B, T] (every target counted) under model, equal to
    model.loss(ids, targets) up to rounding; see the module docstring for recompute and
    loss_chunk (0: the whole [B, T, V] logits at once)."""
    h = model.embed_tokens(ids)
    for block in model.layers:
        h = checkpoint(block, h, use_reentrant=False) if recompute else block(h)
    h = model.norm(h)
    n = h.shape[1]
    weight = model.lm_head.weight
    if loss_chunk <= 0 or loss_chunk >= n:
        return _chunk_ce(h, targets, weight) / targets.numel()
    total = 0.0
    for lo in range(0, n, loss_chunk):
        total = total + checkpoint(_chunk_ce, h[:, lo:lo + loss_chunk],
                                   targets[:, lo:lo + loss_chunk], weight, use_reentrant=False)
    return total / targets.numel()


def rel_err(x, ref):
    """‖x − ref‖ / ‖ref‖ (Frobenius), in float64 on the cpu (docs/bench-json.md rel_err)."""
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    den = ref.norm().item()
    return (x - ref).norm().item() / den if den > 0 else math.inf
