"""Bad inputs fail with readable messages, in the Python API and at the C++ op boundary."""
import pytest
import torch

import lightring

LA = lightring.lightning_attention


def qkv(b=2, h=3, n=7, d=4, e=5):
    return torch.randn(b, h, n, d), torch.randn(b, h, n, d), torch.randn(b, h, n, e)


@pytest.mark.parametrize("mutate,error,match", [
    (lambda a: dict(a, q=a["q"].double()), TypeError, "q must be float32, bfloat16 or float16"),
    (lambda a: dict(a, k=a["k"].half()), TypeError, "k must have the dtype of q"),
    (lambda a: dict(a, q=a["q"][0]), ValueError, r"q must be 4-D \[B, H, N, D\]"),
    (lambda a: dict(a, q="x"), TypeError, "q must be a torch.Tensor"),
    (lambda a: dict(a, k=a["k"][:, :, :5]), ValueError,
     r"k must have the same batch, heads and length \[B, H, N\] as q \(got \[2, 3, 5\]"),
    (lambda a: dict(a, v=a["v"][:, :2]), ValueError, "v must have the same batch, heads"),
    (lambda a: dict(a, k=torch.randn(2, 3, 7, 6)), ValueError,
     "q and k must have the same head dim D \\(got 4 and 6\\)"),
    (lambda a: dict(a, q=torch.randn(2, 3, 4, 7).transpose(2, 3)), ValueError,
     "q must have a contiguous last dim"),
    (lambda a: dict(a, decay=torch.ones(2)), ValueError, r"decay must have shape \[H\] = \[3\]"),
    (lambda a: dict(a, decay=torch.ones(3, dtype=torch.float64)), TypeError,
     "decay must be float32"),
    (lambda a: dict(a, decay=-torch.ones(3)), ValueError, "decay must be finite and >= 0"),
    (lambda a: dict(a, decay=[0.1, 0.2, 0.3]), TypeError, "decay must be a float32 tensor"),
    (lambda a: dict(a, initial_state=torch.zeros(2, 3, 5, 4)), ValueError,
     r"initial_state must have shape \[B, H, D, E\] = \[2, 3, 4, 5\]"),
    (lambda a: dict(a, initial_state=torch.zeros(2, 3, 4, 5, dtype=torch.bfloat16)), TypeError,
     "initial_state must be float32 whatever the input dtype"),
    (lambda a: dict(a, layout="nhd"), ValueError, "layout must be 'bhnd' or 'bnhd'"),
    (lambda a: dict(a, schedule="tree"), ValueError, "schedule must be one of"),
    (lambda a: dict(a, block_size=0), ValueError, "block_size must be None or an int"),
    (lambda a: dict(a, block_size=1000), ValueError, "block_size must be None or an int"),
    (lambda a: dict(a, scale=float("nan")), TypeError, "scale must be a finite float"),
    (lambda a: dict(a, q=torch.randn(2, 3, 7, 300), k=torch.randn(2, 3, 7, 300)), ValueError,
     "head dims D and E must be <= 256"),
])
def test_python_api_errors(mutate, error, match):
    q, k, v = qkv()
    args = mutate(dict(q=q, k=k, v=v, decay=None))
    with pytest.raises(error, match=match):
        LA(**args)


def test_bnhd_shape_errors_name_the_layout():
    q = torch.randn(2, 7, 3, 4)
    v = torch.randn(2, 7, 2, 4)  # H differs
    with pytest.raises(ValueError, match="layout='bnhd'"):
        LA(q, q, v, layout="bnhd")


def test_group_without_distributed():
    q, k, v = qkv()
    if torch.distributed.is_initialized():
        pytest.skip("torch.distributed is initialised in this process")
    with pytest.raises(RuntimeError, match="needs torch.distributed to be initialised"):
        LA(q, k, v, group=object())


# --- the C++ op boundary (csrc/params.cpp) -----------------------------------------------


def fwd(q, k, v, decay=None, s0=None, block_size=0):
    return torch.ops.lightring.forward(q, k, v, decay, 1.0, s0, True, block_size)


@pytest.mark.parametrize("call,match", [
    (lambda q, k, v: fwd(q.double(), k.double(), v.double()),
     "q must be float32, bfloat16 or float16"),
    (lambda q, k, v: fwd(q, k, v.half()), "v must have the same dtype as q"),
    (lambda q, k, v: fwd(q[0], k, v), r"q must be 4-D \[B, H, N, dim\]"),
    (lambda q, k, v: fwd(q, k[:, :, :6], v), r"k must have the same \[B, H, N\] as q"),
    (lambda q, k, v: fwd(q, torch.randn(2, 3, 7, 3), v), "q and k must have the same head dim"),
    (lambda q, k, v: fwd(q, k, torch.randn(2, 3, 5, 7).transpose(2, 3)),
     "v must have a contiguous last dim"),
    (lambda q, k, v: fwd(q, k, v, decay=torch.ones(4)), r"decay must have shape \[H\] = \[3\]"),
    (lambda q, k, v: fwd(q, k, v, decay=torch.ones(3).double()), "decay must be float32"),
    (lambda q, k, v: fwd(q, k, v, decay=torch.tensor([0.1, -1.0, 0.1])),
     r"decay\[1\] must be finite and >= 0"),
    (lambda q, k, v: fwd(q, k, v, s0=torch.zeros(2, 3, 5, 4)),
     r"initial_state must have shape \[B, H, D, E\] = \[2, 3, 4, 5\]"),
    (lambda q, k, v: fwd(q, k, v, s0=torch.zeros(2, 3, 4, 5).double()),
     "initial_state must be float32"),
    (lambda q, k, v: fwd(q, k, v, s0=torch.zeros(2, 3, 5, 4).transpose(2, 3)),
     "initial_state must be contiguous"),
    (lambda q, k, v: fwd(q, k, v, block_size=512), "block_size must be <= 256"),
    (lambda q, k, v: torch.ops.lightring.backward(q, k, v, v[:, :, :3], None, 1.0, None, None,
                                                  False, 0), "d_o must have the shape of v"),
])
def test_op_boundary_errors(call, match):
    q, k, v = qkv()
    with pytest.raises(RuntimeError, match=match):
        call(q, k, v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_op_device_mismatch():
    q, k, v = qkv()
    with pytest.raises(RuntimeError, match="k must be on the same device as q"):
        fwd(q.cuda(), k, v.cuda())
    with pytest.raises(ValueError, match="k must be on the device of q"):
        LA(q.cuda(), k, v.cuda())


def test_double_backward_raises_at_point_of_use():
    """create_graph=True gives first-order gradients; differentiating them raises (a gradient
    penalty would otherwise silently miss lightring's second-order term)."""
    q, k, v = (t.requires_grad_() for t in qkv())
    o = LA(q, k, v, lightring.slopes(3))
    (g,) = torch.autograd.grad(o.sum(), q, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="second derivative through lightning_attention"):
        (o.sum() + g.square().sum()).backward()
    # First-order uses of create_graph=True still work, and match a plain backward.
    q.grad = None
    o = LA(q, k, v, lightring.slopes(3))
    torch.autograd.grad(o.sum(), q, create_graph=True)
    o2 = LA(q, k, v, lightring.slopes(3))
    o2.sum().backward()
    (ref,) = torch.autograd.grad(LA(q, k, v, lightring.slopes(3)).sum(), q)
    assert torch.equal(q.grad, ref)


def test_decay_requires_grad_raises():
    q, k, v = qkv()
    decay = lightring.slopes(3).requires_grad_()
    with pytest.raises(ValueError, match="decay requires grad"):
        LA(q, k, v, decay)
    with torch.no_grad():  # no gradient is asked for: fine
        LA(q, k, v, decay)
    LA(q, k, v, decay.detach())


@pytest.mark.parametrize("value", ["5abc", "0", "-1", "nan", "inf", "", "1e999"])
def test_timeout_variable_is_checked(monkeypatch, value):
    from lightring import collectives
    monkeypatch.setenv("LIGHTRING_COMM_TIMEOUT_S", value)
    with pytest.raises(ValueError, match="LIGHTRING_COMM_TIMEOUT_S must be a positive number"):
        collectives.timeout_s()


def test_timeout_precedence(monkeypatch):
    from lightring import collectives
    monkeypatch.delenv("LIGHTRING_COMM_TIMEOUT_S", raising=False)
    assert collectives.timeout_s() == collectives.DEFAULT_TIMEOUT_S
    monkeypatch.setenv("LIGHTRING_COMM_TIMEOUT_S", "12.5")
    assert collectives.timeout_s() == 12.5
    collectives.set_timeout(3)
    try:
        assert collectives.timeout_s() == 3.0
    finally:
        collectives.set_timeout(None)
    assert collectives.timeout_s() == 12.5
