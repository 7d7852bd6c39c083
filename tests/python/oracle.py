"""Float64 reference of docs/algorithm.md §1 (the closed form), differentiable
with torch autograd, in the [B, H, N, D] layout.

    o_t = c·( λ^{t+1} q_t S0 + Σ_{j≤t} λ^{t-j} (q_t·k_j) v_j )
    S_{N-1} = λ^N S0 + Σ_j λ^{N-1-j} k_jᵀ v_j
"""
import torch


def attention(q, k, v, decay=None, scale=1.0, initial_state=None):
    """Returns (o, final_state) in float64; exponents are never negative."""
    q, k, v = q.double(), k.double(), v.double()
    _, h, n, _ = q.shape
    s = torch.zeros(h, dtype=torch.float64) if decay is None else decay.double().cpu()
    s = s.to(q.device)
    t = torch.arange(n, dtype=torch.float64, device=q.device)
    diff = t[:, None] - t[None, :]
    mask = diff >= 0
    m = torch.where(mask, torch.exp(-s[:, None, None] * diff.clamp(min=0)), torch.zeros(()).to(q))
    o = ((q @ k.transpose(-1, -2)) * m) @ v
    w = torch.exp(-s[:, None] * (n - 1 - t))  # λ^{N-1-j}, [H, N]
    final = (k * w[None, :, :, None]).transpose(-1, -2) @ v
    if initial_state is not None:
        s0 = initial_state.double()
        o = o + torch.exp(-s[:, None] * (t + 1))[None, :, :, None] * (q @ s0)
        final = final + torch.exp(-s * n)[None, :, None, None] * s0
    return scale * o, final


def rel_err(x, ref):
    """max |x - ref| / max |ref| (max |ref| floored at 1e-6)."""
    x, ref = x.double().cpu(), ref.double().cpu()
    return ((x - ref).abs().max() / ref.abs().max().clamp(min=1e-6)).item()
