"""lightning_attention forward and gradients vs the float64 oracle (CPU, and
CUDA when a GPU is visible): odd lengths, D != E, both layouts, states."""
import itertools

import pytest
import torch

import lightring
import oracle

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and lightring.cuda_available() else [])
# fp32 tolerance vs float64: the CPU backend accumulates in fp32 (~1e-6); the CUDA
# backend multiplies fp32 inputs on tensor cores in TF32 (10-bit mantissa, ~5e-4).
FP32_TOL = {"cpu": 1e-5, "cuda": 2e-3}


def make(b, h, n, d, e, layout, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (lambda x: (b, h, n, x)) if layout == "bhnd" else (lambda x: (b, n, h, x))
    q, k = (torch.randn(shape(d), generator=g) * 0.5 for _ in range(2))
    v = torch.randn(shape(e), generator=g)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (q, k, v)]


def to_bhnd(t, layout):
    return t if layout == "bhnd" else t.transpose(1, 2)


CASES = list(itertools.product([1, 7, 65, 97], [(5, 3), (16, 24)], ["bhnd", "bnhd"]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,de,layout", CASES)
@pytest.mark.parametrize("with_decay,with_state", [(True, True), (False, False), (True, False)])
def test_forward_backward_vs_oracle(device, n, de, layout, with_decay, with_state):
    b, h = 2, 3
    d, e = de
    q, k, v = make(b, h, n, d, e, layout, device=device, seed=n + d)
    decay = lightring.slopes(h).to(device) if with_decay else None
    s0 = (torch.randn(b, h, d, e) * 0.3).to(device).requires_grad_() if with_state else None
    scale = 0.7
    o, final = lightring.lightning_attention(q, k, v, decay, scale=scale, initial_state=s0,
                                             output_final_state=True, layout=layout,
                                             block_size=16 if n > 16 else None)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    s064 = None if s0 is None else s0.detach().double().requires_grad_()
    ro, rfinal = oracle.attention(to_bhnd(q64, layout), to_bhnd(k64, layout),
                                  to_bhnd(v64, layout), decay, scale, s064)
    ro = to_bhnd(ro, layout)  # back to the input layout
    assert o.shape == v.shape and o.dtype == v.dtype
    tol = FP32_TOL[device]
    assert oracle.rel_err(o, ro) < tol
    assert oracle.rel_err(final, rfinal) < tol

    w_o = torch.randn(o.shape, dtype=torch.float64, device=device)
    w_f = torch.randn(final.shape, dtype=torch.float64, device=device)
    ((o * w_o.to(o)).sum() + (final * w_f.to(final)).sum()).backward()
    ((ro * w_o).sum() + (rfinal * w_f).sum()).backward()
    for name, got, ref in (("q", q, q64), ("k", k, k64), ("v", v, v64)):
        assert got.grad.shape == got.shape
        assert oracle.rel_err(got.grad, ref.grad) < 2 * tol, name
    if s0 is not None:
        assert oracle.rel_err(s0.grad, s064.grad) < 2 * tol


@pytest.mark.parametrize("device", DEVICES)
def test_without_final_state_returns_tensor_and_grads(device):
    q, k, v = make(1, 2, 33, 8, 8, "bhnd", device=device)
    o = lightring.lightning_attention(q, k, v, lightring.slopes(2).to(device))
    assert isinstance(o, torch.Tensor)
    o.square().sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ro, _ = oracle.attention(q64, k64, v64, lightring.slopes(2))
    ro.square().sum().backward()
    assert oracle.rel_err(o, ro) < FP32_TOL[device]
    for got, ref in ((q, q64), (k, k64), (v, v64)):
        assert oracle.rel_err(got.grad, ref.grad) < 2 * FP32_TOL[device]


@pytest.mark.parametrize("device", DEVICES)
def test_bnhd_reads_through_strides_without_copy(device):
    # A fused projection: q, k, v are strided views of one [B, N, 3, H, D] tensor.
    b, n, h, d = 2, 19, 4, 8
    qkv = torch.randn(b, n, 3, h, d, device=device)
    q, k, v = qkv.unbind(2)
    assert not q.is_contiguous()
    o = lightring.lightning_attention(q, k, v, lightring.slopes(h).to(device), layout="bnhd")
    ro, _ = oracle.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                             lightring.slopes(h))
    assert oracle.rel_err(o, ro.transpose(1, 2)) < FP32_TOL[device]
    assert o.is_contiguous()  # [B, N, H, E] memory order, like the input layout


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward(device, dtype):
    q, k, v = make(2, 2, 97, 32, 16, "bnhd", dtype=dtype, device=device)
    decay = lightring.slopes(2).to(device)
    o = lightring.lightning_attention(q, k, v, decay, layout="bnhd")
    ro, _ = oracle.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), decay)
    ro = ro.transpose(1, 2)
    # Same-precision baseline: the oracle's result rounded to dtype.
    baseline = oracle.rel_err(ro.to(dtype), ro)
    assert o.dtype == dtype
    assert oracle.rel_err(o, ro) < max(4 * baseline, 1e-2)
    o.float().sum().backward()
    assert q.grad.dtype == dtype and torch.isfinite(q.grad.float()).all()


def test_gradcheck_float64_tiny():
    """torch.autograd.gradcheck with float64 inputs, cast to fp32 for the kernel.

    o is linear in each single element of q, k, v and S0, so central differences
    are exact for any eps; eps = 1e-2 keeps fp32 rounding (~1e-7 relative) far
    below the tolerance."""
    torch.manual_seed(0)
    b, h, n, d, e = 1, 2, 5, 3, 2
    decay = lightring.slopes(h)
    inputs = [torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True),
              torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True),
              torch.randn(b, h, n, e, dtype=torch.float64, requires_grad=True),
              torch.randn(b, h, d, e, dtype=torch.float64, requires_grad=True)]

    def fn(q, k, v, s0):
        o, final = lightring.lightning_attention(q.float(), k.float(), v.float(), decay,
                                                 scale=0.5, initial_state=s0.float(),
                                                 output_final_state=True, block_size=2)
        return o.double(), final.double()

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=1e-4, rtol=1e-3)


def test_local_state_op_matches_oracle():
    q, k, v = (t.detach() for t in make(2, 3, 41, 6, 7, "bhnd"))
    decay = lightring.slopes(3)
    a = torch.ops.lightring.local_state(k, v, decay, 1.0, False, 0)
    _, ref = oracle.attention(q, k, v, decay)
    assert oracle.rel_err(a, ref) < 1e-5
    # Backward pair: C = Σ c·λ^{t+1} q_tᵀ dO_t.
    d_o = torch.randn_like(v)
    c = torch.ops.lightring.local_state(q, d_o, decay, 0.5, True, 16)
    t = torch.arange(41, dtype=torch.float64)
    w = torch.exp(-decay.double()[:, None] * (t + 1))
    ref_c = 0.5 * (q.double() * w[None, :, :, None]).transpose(-1, -2) @ d_o.double()
    assert oracle.rel_err(c, ref_c) < 1e-5


def test_slopes():
    assert torch.allclose(lightring.slopes(4), torch.tensor([2.0 ** (-2 * (i + 1)) for i in
                                                               range(4)]))
    # Not a power of two: the 4 slopes, then every other one of 8.
    s8 = [2.0 ** (-(i + 1)) for i in range(8)]
    expect = [2.0 ** (-2 * (i + 1)) for i in range(4)] + s8[0::2][:2]
    assert torch.allclose(lightring.slopes(6), torch.tensor(expect))
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        lightring.slopes(0)
