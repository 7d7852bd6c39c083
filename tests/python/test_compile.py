"""torch.compile(fullgraph=True) over lightring (torch >= 2.4: fake impls registered).
Skips on older torch; the CUDA variant also needs a GPU."""
import pytest
import torch

import lightring
import oracle

needs_fakes = pytest.mark.skipif(not lightring.HAS_FAKE_IMPLS,
                                 reason=f"torch {torch.__version__} < 2.4: no fake impls")


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = lightring.nn.LightningAttention(64, 4)
        self.mlp = torch.nn.Linear(64, 64)

    def forward(self, x):
        return self.mlp(x + self.attn(x))


def run(device, dtype, backend):
    torch.manual_seed(0)
    model = Tiny().to(device=device, dtype=dtype)
    x = torch.randn(2, 70, 64, device=device, dtype=dtype, requires_grad=True)
    eager = model(x)
    eager.float().square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out = compiled(x2)
    out.float().square().sum().backward()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert oracle.rel_err(out, eager) < tol
    assert oracle.rel_err(x2.grad, x.grad) < tol
    for g, p in zip(grads, model.parameters()):
        assert oracle.rel_err(p.grad, g) < tol


@needs_fakes
def test_compile_fullgraph_cpu():
    run("cpu", torch.float32, backend="aot_eager")


@needs_fakes
def test_fake_impls_match_real_strides():
    from torch._subclasses.fake_tensor import FakeTensorMode
    q = torch.randn(2, 9, 3, 4).transpose(1, 2)  # a [B, N, H, D] view
    v = torch.randn(2, 9, 3, 5).transpose(1, 2)
    real_o, real_f = torch.ops.lightring.forward(q, q, v, None, 1.0, None, True, 0)
    with FakeTensorMode() as mode:
        fq, fv = mode.from_tensor(q), mode.from_tensor(v)
        fake_o, fake_f = torch.ops.lightring.forward(fq, fq, fv, None, 1.0, None, True, 0)
    assert fake_o.shape == real_o.shape and fake_o.stride() == real_o.stride()
    assert fake_f.shape == real_f.shape and fake_f.dtype == real_f.dtype


@needs_fakes
@pytest.mark.skipif(not (torch.cuda.is_available() and lightring.cuda_available()),
                    reason="needs a GPU and the CUDA backend")
def test_compile_fullgraph_cuda_bf16():
    run("cuda", torch.bfloat16, backend="inductor")
