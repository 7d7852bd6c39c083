"""lightring.nn.LightningAttention: a TransNormerLLM-style linear attention layer.

    qkvu = x W_qkvu;  q, k = act(q), act(k)          (x: [B, N, C], this rank's shard)
    o    = lightning_attention(q, k, v, decay)        (per-head decay, layout "bnhd")
    y    = W_o (u ⊙ norm(o))                          (gate u and SimpleRMSNorm optional)

Per-head decay as in TransNormerLLM: slopes(H) scaled by (1 - l/(L-1) + 1e-5)
for layer l of L (L = 1: the plain slopes). It is a fixed fp32 buffer.
"""
import torch
from torch import nn

from .functional import lightning_attention
from . import slopes as _slopes


class SimpleRMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) over the last dim, computed in fp32 (no weight)."""

    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


_ACTIVATIONS = {"silu": nn.functional.silu, "relu": nn.functional.relu,
                "elu1": lambda x: nn.functional.elu(x) + 1, "identity": lambda x: x}


class LightningAttention(nn.Module):
    """Causal Lightning Attention-2 layer over [B, N, embed_dim] inputs.

    group: a torch.distributed group for sequence parallelism (x is then this
    rank's shard; see lightring.distributed.shard), or None. It can also be
    given per call. decay: "slopes" (TransNormerLLM), None (no decay) or a [H]
    tensor of rates >= 0. exchange: None ($LIGHTRING_EXCHANGE, else
    "auto": lightring's own NCCL communicator on NCCL groups, torch.distributed
    otherwise), "torch" or "lightring" (see lightring.lightning_attention).
    """

    def __init__(self, embed_dim, num_heads, head_dim=None, *, bias=False, gate=True, norm=True,
                 activation="silu", decay="slopes", layer_idx=0, num_layers=1, scale=1.0,
                 group=None, schedule="auto", block_size=None, exchange=None, device=None,
                 dtype=None):
        super().__init__()
        if embed_dim < 1 or num_heads < 1:
            raise ValueError(f"embed_dim and num_heads must be >= 1 (got {embed_dim}, "
                             f"{num_heads})")
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                                 f"({num_heads}), or pass head_dim")
            head_dim = embed_dim // num_heads
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} "
                             f"(got {activation!r})")
        if not 0 <= layer_idx < num_layers:
            raise ValueError(f"layer_idx must be in [0, num_layers) (got {layer_idx}, "
                             f"{num_layers})")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.hidden = num_heads * head_dim
        self.scale, self.group, self.schedule, self.block_size = scale, group, schedule, block_size
        self.activation, self.exchange = activation, exchange
        parts = 4 if gate else 3
        factory = {"device": device, "dtype": dtype}
        self.qkvu_proj = nn.Linear(embed_dim, parts * self.hidden, bias=bias, **factory)
        self.out_proj = nn.Linear(self.hidden, embed_dim, bias=bias, **factory)
        self.gate = gate
        self.norm = SimpleRMSNorm() if norm else None

        if isinstance(decay, str):
            if decay != "slopes":
                raise ValueError(f"decay must be 'slopes', None or a [H] tensor (got {decay!r})")
            rate = _slopes(num_heads)
            if num_layers > 1:
                rate = rate * (1 - layer_idx / (num_layers - 1) + 1e-5)
        elif decay is None:
            rate = None
        else:
            rate = torch.as_tensor(decay, dtype=torch.float32).detach().clone()
            if rate.shape != (num_heads,):
                raise ValueError(f"decay must have shape [num_heads] = [{num_heads}] "
                                 f"(got {list(rate.shape)})")
        self.register_buffer("decay", None if rate is None else rate.to(device))

    def forward(self, x, initial_state=None, output_final_state=False, group=None,
                cu_seqlens=None):
        """x: [B, N, embed_dim]. Returns y [B, N, embed_dim] (and the final state).
        cu_seqlens: the document offsets of a packed stream (B = 1), as in
        lightning_attention; initial_state and the final state are then per document."""
        if x.dim() != 3:
            raise ValueError(f"x must be [B, N, embed_dim] (got shape {list(x.shape)})")
        q, k, v, parts = self._project(x)
        decay = None if self.decay is None else self.decay.float()
        out = lightning_attention(q, k, v, decay, scale=self.scale, initial_state=initial_state,
                                  output_final_state=output_final_state, layout="bnhd",
                                  group=self.group if group is None else group,
                                  schedule=self.schedule, block_size=self.block_size,
                                  exchange=self.exchange, cu_seqlens=cu_seqlens)
        o, final = out if output_final_state else (out, None)
        y = self._output(o, parts)
        return (y, final) if output_final_state else y

    def _project(self, x):
        """q, k, v [B, N, H, D] of x (activation on q and k) and the projection's parts
        (parts[3] is the gate u)."""
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        act = _ACTIVATIONS[self.activation]
        parts = self.qkvu_proj(x).split(self.hidden, dim=-1)
        q = act(parts[0]).view(b, n, h, d)
        k = act(parts[1]).view(b, n, h, d)
        v = parts[2].view(b, n, h, d)
        return q, k, v, parts

    def _output(self, o, parts):
        """out_proj(u ⊙ norm(o)) of the attention output o [B, N, H, D]."""
        o = o.reshape(o.shape[0], o.shape[1], self.hidden)
        if self.norm is not None:
            o = self.norm(o)
        if self.gate:
            o = parts[3] * o
        return self.out_proj(o)
