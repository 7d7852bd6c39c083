"""torch.compile(fullgraph=True) of lightring.models.TransNormerLM (no group): the compiled
model's loss and every parameter gradient equal eager's. Needs torch >= 2.4 (lightring's fake
impls); skips with the reason on older torch (Debian's 1.13); the CUDA case also needs a GPU.

Sizes are odd on purpose: V = 97, T = 70 (not a multiple of any block), H = 3, d = 48.
Tolerances (oracle.rel_err: max |x − ref| / max |ref|): 1e-5 in fp32 (aot_eager: the same
kernels, traced), 3e-2 in bf16 autocast with inductor (other fusions, bf16 rounding;
tests/python/test_compile.py uses the same bound).
"""
import pytest
import torch

import lightring
import oracle
from lightring.models import TransNormerConfig, TransNormerLM

needs_fakes = pytest.mark.skipif(not lightring.HAS_FAKE_IMPLS,
                                 reason=f"torch {torch.__version__} < 2.4: no fake impls, "
                                        "no torch.compile of lightring ops")


class Loss(torch.nn.Module):
    """model.loss as a module (what a training step compiles)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, targets):
        return self.model.loss(ids, targets)


def loss_and_grads(fn, model, ids, targets, autocast):
    model.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = fn(ids, targets)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return loss.detach(), grads


def run(device, autocast, backend, tol):
    torch.manual_seed(0)
    config = TransNormerConfig(vocab_size=97, d_model=48, num_layers=2, num_heads=3)
    model = TransNormerLM(config, device=device)
    with torch.no_grad():  # weights large enough that the mixers shape the loss
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 70), generator=g).to(device)
    targets = torch.randint(0, 97, (2, 70), generator=g).to(device)
    targets[0, :5] = -1  # ignored targets: the count is a traced tensor
    eager_loss, eager_grads = loss_and_grads(model.loss, model, ids, targets, autocast)
    compiled = torch.compile(Loss(model), fullgraph=True, backend=backend)
    loss, grads = loss_and_grads(compiled, model, ids, targets, autocast)
    assert torch.isfinite(loss) and loss.item() > 0
    assert oracle.rel_err(loss.reshape(1), eager_loss.reshape(1)) < tol
    assert sorted(grads) == sorted(eager_grads)
    for name, ref in eager_grads.items():
        assert ref.abs().max() > 0, name  # every parameter is reached
        assert oracle.rel_err(grads[name], ref) < tol, name
    # Compiled once, the graph is reused: a second call on new ids gives eager's loss too.
    ids2 = torch.randint(0, 97, (2, 70), generator=g).to(device)
    with torch.no_grad(), torch.autocast(ids.device.type, dtype=torch.bfloat16,
                                         enabled=autocast):
        again, ref = compiled(ids2, targets), model.loss(ids2, targets)
    assert oracle.rel_err(again.reshape(1), ref.reshape(1)) < tol


@needs_fakes
def test_transnormer_compile_fullgraph_cpu_fp32():
    run("cpu", autocast=False, backend="aot_eager", tol=1e-5)


@needs_fakes
@pytest.mark.skipif(not (torch.cuda.is_available() and lightring.cuda_available()),
                    reason="needs a GPU and the CUDA backend")
def test_transnormer_compile_fullgraph_cuda_bf16():
    run("cuda", autocast=True, backend="inductor", tol=3e-2)


def test_loss_count_is_a_tensor_and_equals_the_mean():
    """The fullgraph-friendly count (no int()) gives the mean over counted targets, in eager
    mode on any torch."""
    torch.manual_seed(0)
    model = TransNormerLM(TransNormerConfig(vocab_size=11, d_model=16, num_layers=1,
                                            num_heads=2))
    ids = torch.randint(0, 11, (1, 9))
    targets = torch.randint(0, 11, (1, 9))
    targets[0, 3] = -1
    logits = model(ids).float()
    expect = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1),
                                               ignore_index=-1)
    assert oracle.rel_err(model.loss(ids, targets).reshape(1), expect.reshape(1)) < 1e-6
    total, count = model.loss(ids, targets, reduction="sum")
    assert count == 8 and isinstance(count, int)
    assert oracle.rel_err((total / count).reshape(1), expect.reshape(1)) < 1e-6
