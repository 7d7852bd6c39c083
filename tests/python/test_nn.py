"""lightring.nn.LightningAttention vs the same layer written in plain torch
around the float64 oracle."""
import pytest
import torch

import lightring
import oracle

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and lightring.cuda_available() else [])


def reference(layer, x, initial_state=None):
    """The layer's math in float64: projections, SiLU, oracle attention, norm, gate."""
    b, n, _ = x.shape
    h, d = layer.num_heads, layer.head_dim
    w = layer.qkvu_proj.weight.double()
    parts = (x.double() @ w.t()).split(layer.hidden, dim=-1)
    q = torch.nn.functional.silu(parts[0]).view(b, n, h, d).transpose(1, 2)
    k = torch.nn.functional.silu(parts[1]).view(b, n, h, d).transpose(1, 2)
    v = parts[2].view(b, n, h, d).transpose(1, 2)
    o, final = oracle.attention(q, k, v, layer.decay, layer.scale, initial_state)
    o = o.transpose(1, 2).reshape(b, n, layer.hidden)
    if layer.norm is not None:
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-6)
    if layer.gate:
        o = parts[3] * o
    return o @ layer.out_proj.weight.double().t(), final


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gate,norm", [(True, True), (False, False)])
def test_module_vs_reference(device, gate, norm):
    torch.manual_seed(0)
    layer = lightring.nn.LightningAttention(32, 4, gate=gate, norm=norm, layer_idx=1,
                                            num_layers=4).to(device)
    x = torch.randn(2, 45, 32, device=device, requires_grad=True)
    s0 = torch.randn(2, 4, 8, 8, device=device) * 0.1
    y, final = layer(x, initial_state=s0, output_final_state=True)
    x64 = x.detach().double().requires_grad_()
    ry, rfinal = reference(layer, x64, s0.double())
    tol = 1e-4 if device == "cpu" else 3e-3  # CUDA: TF32 tensor cores
    assert oracle.rel_err(y, ry) < tol
    assert oracle.rel_err(final, rfinal) < tol
    y.square().sum().backward()
    ry.square().sum().backward()
    assert oracle.rel_err(x.grad, x64.grad) < tol
    assert layer.qkvu_proj.weight.grad is not None


def test_module_decay_follows_transnormer_layers():
    slopes = lightring.slopes(8)
    first = lightring.nn.LightningAttention(64, 8, layer_idx=0, num_layers=5)
    last = lightring.nn.LightningAttention(64, 8, layer_idx=4, num_layers=5)
    assert torch.allclose(first.decay, slopes * (1 + 1e-5))
    assert torch.allclose(last.decay, slopes * 1e-5)
    assert lightring.nn.LightningAttention(64, 8, decay=None).decay is None


def test_module_bf16_keeps_fp32_decay():
    layer = lightring.nn.LightningAttention(32, 2).to(torch.bfloat16)
    y = layer(torch.randn(1, 17, 32, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_module_errors():
    with pytest.raises(ValueError, match="must be divisible by num_heads"):
        lightring.nn.LightningAttention(30, 4)
    with pytest.raises(ValueError, match=r"decay must have shape \[num_heads\]"):
        lightring.nn.LightningAttention(32, 4, decay=torch.ones(3))
    with pytest.raises(ValueError, match="x must be"):
        lightring.nn.LightningAttention(32, 4)(torch.randn(4, 32))
