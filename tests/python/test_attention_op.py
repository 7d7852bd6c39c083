"""The Python op's autograd is the C++ Function of csrc/model/attention_function.h (the one
lightring-train's model uses): lightring::attention's Autograd kernel (csrc/attention_op.cpp).

Checks: the autograd node of an eager local call is the C++ node; its gradients (q, k, v, the
initial state, with a cotangent on the final state) match the float64 oracle; a finite-difference
gradcheck (the kernels take fp32 at most, and the attention is linear in each single input
element, so central differences are exact up to fp32 rounding); inference mode; the
non-differentiable [0] final state when none is asked for.
"""
import pytest
import torch

import lightring
import oracle

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and lightring.cuda_available() else [])
FP32_TOL = {"cpu": 1e-5, "cuda": 2e-3}
CPP_NODE = "LightningAttentionFunction"


def inputs(b, h, n, d, e, device, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g) * 0.5
    k = torch.randn(b, h, n, d, generator=g) * 0.5
    v = torch.randn(b, h, n, e, generator=g)
    s0 = torch.randn(b, h, d, e, generator=g) * 0.3
    return [t.to(device).requires_grad_() for t in (q, k, v, s0)]


def test_grad_fn_is_the_cpp_function():
    q, k, v, s0 = inputs(1, 2, 9, 4, 6, "cpu", 0)
    o = lightring.lightning_attention(q, k, v, lightring.slopes(2))
    assert CPP_NODE in o.grad_fn.name(), o.grad_fn.name()
    o, final = lightring.lightning_attention(q, k, v, initial_state=s0, output_final_state=True)
    assert CPP_NODE in o.grad_fn.name() and CPP_NODE in final.grad_fn.name()
    # [B, N, H, D] inputs: the op runs on their transposed views; the node under the transpose.
    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
    o = lightring.lightning_attention(qt, kt, vt, layout="bnhd")
    below = [f.name() for f, _ in o.grad_fn.next_functions if f is not None]
    assert CPP_NODE in o.grad_fn.name() or any(CPP_NODE in name for name in below), below


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,d,e", [(1, 3, 5), (37, 16, 24), (97, 5, 3), (130, 32, 32)])
def test_gradients_vs_float64_oracle(device, n, d, e):
    b, h = 2, 3
    q, k, v, s0 = inputs(b, h, n, d, e, device, n + d)
    decay = lightring.slopes(h).to(device)
    o, final = lightring.lightning_attention(q, k, v, decay, scale=0.7, initial_state=s0,
                                             output_final_state=True)
    assert CPP_NODE in o.grad_fn.name()
    g = torch.Generator().manual_seed(1)
    w_o = torch.randn(o.shape, generator=g).to(device)
    w_s = torch.randn(final.shape, generator=g).to(device)
    grads = torch.autograd.grad((o * w_o).sum() + (final * w_s).sum(), (q, k, v, s0))

    leaves = [t.detach().double().cpu().requires_grad_() for t in (q, k, v, s0)]
    ro, rs = oracle.attention(*leaves[:3], decay.cpu(), 0.7, leaves[3])
    ref = torch.autograd.grad((ro * w_o.double().cpu()).sum() + (rs * w_s.double().cpu()).sum(),
                              leaves)
    tol = FP32_TOL[device]
    assert oracle.rel_err(o, ro) < tol and oracle.rel_err(final, rs) < tol
    for name, x, r in zip(("dq", "dk", "dv", "ds0"), grads, ref):
        assert oracle.rel_err(x, r) < tol, (name, oracle.rel_err(x, r))


@pytest.mark.filterwarnings("ignore:Input #:UserWarning")  # fp32 inputs: the kernels' widest
def test_gradcheck_finite_differences():
    q, k, v, s0 = inputs(1, 2, 11, 3, 4, "cpu", 5)
    decay = lightring.slopes(2)

    def f(q, k, v, s0):
        return lightring.lightning_attention(q, k, v, decay, scale=0.9, initial_state=s0,
                                             output_final_state=True)

    assert torch.autograd.gradcheck(f, (q, k, v, s0), eps=1e-2, atol=2e-3, rtol=1e-3,
                                    nondet_tol=0.0)


def test_no_final_state_and_inference_mode():
    q, k, v, _ = inputs(2, 3, 21, 8, 8, "cpu", 7)
    decay = lightring.slopes(3)
    o, final = torch.ops.lightring.attention(q, k, v, decay, 1.0, None, False, 0)
    assert final.numel() == 0 and not final.requires_grad and o.requires_grad
    o.sum().backward()
    assert q.grad is not None and k.grad is not None and v.grad is not None
    with torch.inference_mode():
        o_inf = lightring.lightning_attention(q, k, v, decay)
    assert torch.equal(o_inf, o.detach())
    ro, _ = oracle.attention(q.detach(), k.detach(), v.detach(), decay)
    assert oracle.rel_err(o, ro) < FP32_TOL["cpu"]


def test_gradient_through_unused_output():
    """A gradient that reaches only the final state (o unused) is the oracle's."""
    q, k, v, s0 = inputs(1, 2, 17, 4, 4, "cpu", 9)
    decay = lightring.slopes(2)
    _, final = lightring.lightning_attention(q, k, v, decay, initial_state=s0,
                                             output_final_state=True)
    grads = torch.autograd.grad(final.square().sum(), (q, k, v, s0), allow_unused=True)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v, s0)]
    _, rs = oracle.attention(*leaves[:3], decay, 1.0, leaves[3])
    ref = torch.autograd.grad(rs.square().sum(), leaves, allow_unused=True)
    assert grads[0].abs().max() == 0  # q does not reach the final state
    for x, r in zip(grads[1:], ref[1:]):
        assert oracle.rel_err(x, r) < FP32_TOL["cpu"]
