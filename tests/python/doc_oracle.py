"""Float64 reference for packed documents: each document run on its own through oracle.py
(states chained only within a document), differentiable with torch autograd."""
import torch

import oracle


def documents(q, k, v, cu, decay=None, scale=1.0, initial_state=None):
    """q, k, v: [1, H, T, *] (bhnd); cu: list of offsets. Returns (o [1, H, T, E], final
    states [N, H, D, E]) in float64."""
    outs, finals = [], []
    for i in range(len(cu) - 1):
        lo, hi = cu[i], cu[i + 1]
        s0 = None if initial_state is None else initial_state[i:i + 1]
        o, f = oracle.attention(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], decay, scale, s0)
        outs.append(o)
        finals.append(f)
    return torch.cat(outs, dim=2), torch.cat(finals, dim=0)
