"""The native API's traps of issue 20 made explicit or loud: pair=True (always (o, final_state)),
a warning when tensors given without a layout look like FLA's [B, T, H, D], and a decay shape
error that names the layout when the heads sit in the other dim."""
import warnings

import pytest
import torch

import lightring
from oracle import attention as oracle, rel_err


def qkv(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) * 0.5 for _ in range(3)]


def test_pair_always_returns_two():
    q, k, v = qkv((2, 3, 37, 8))
    decay = torch.tensor([0.1, 0.2, 0.5])
    o = lightring.lightning_attention(q, k, v, decay)
    out = lightring.lightning_attention(q, k, v, decay, pair=True)
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is None
    assert torch.equal(out[0], o)
    ref_o, ref_f = oracle(q, k, v, decay)
    assert rel_err(out[0], ref_o) < 1e-5
    o2, f2 = lightring.lightning_attention(q, k, v, decay, pair=True, output_final_state=True)
    assert rel_err(o2, ref_o) < 1e-5 and rel_err(f2, ref_f) < 1e-5
    # The trap pair=True avoids: without it, B = 2 unpacks o along the batch without an error.
    a, b = lightring.lightning_attention(q, k, v, decay)
    assert a.shape == (3, 37, 8)


def test_layout_warning_for_fla_shaped_tensors():
    q, k, v = qkv((1, 256, 4, 16), seed=1)  # FLA's [B, T, H, D]
    with pytest.warns(UserWarning, match="layout='bnhd'"):
        lightring.lightning_attention(q, k, v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lightring.lightning_attention(q, k, v, layout="bhnd")  # said explicitly: no warning
        o = lightring.lightning_attention(q, k, v, layout="bnhd")
        lightring.lightning_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        layer = lightring.nn.LightningAttention(32, 4)
        layer(torch.randn(1, 300, 32))
    ref, _ = oracle(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert rel_err(o.transpose(1, 2), ref) < 1e-5


def test_decay_shape_error_names_the_layout():
    q, k, v = qkv((1, 40, 4, 8), seed=2)  # [B, T, H, D] with 4 heads, no layout given
    with pytest.raises(ValueError, match=r"decay must have shape \[H\] = \[40\].*layout='bnhd'"):
        lightring.lightning_attention(q, k, v, torch.full((4,), 0.1))
    qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # [B, H, T, D]
    with pytest.raises(ValueError, match=r"= \[40\].*layout='bhnd'"):
        lightring.lightning_attention(qt, kt, vt, torch.full((4,), 0.1), layout="bnhd")
    with pytest.raises(ValueError, match=r"got shape \[3\]\)$"):  # no hint when neither dim fits
        lightring.lightning_attention(q, k, v, torch.full((3,), 0.1), layout="bnhd")
