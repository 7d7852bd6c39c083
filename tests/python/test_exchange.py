"""exchange= selection and the clear errors of the lightring NCCL exchange where it
cannot run (in-process; the multi-process checks, gloo errors and the 2-GPU
comparisons, are the "lightring" check of mp_worker.py run by test_distributed.py)."""
import pytest
import torch

import lightring
from lightring import nccl_exchange


def small():
    q = torch.randn(1, 2, 5, 4)
    return q, q.clone(), torch.randn(1, 2, 5, 3)


def test_build_flag_matches_the_ops():
    """The NCCL exchange is compiled exactly when NCCL was found and torch has CUDA; its
    class and ops are registered exactly then."""
    try:
        torch.ops.lightring.sp_forward
        has_ops = True
    except (AttributeError, RuntimeError):
        has_ops = False
    assert has_ops == nccl_exchange.built()
    if not lightring._C.torch_cuda:
        assert not nccl_exchange.built()
    if not nccl_exchange.built():
        with pytest.raises(RuntimeError, match="built without the NCCL exchange"):
            lightring._C.nccl_unique_id()
    else:
        assert len(lightring._C.nccl_unique_id()) == 128


def test_resolve(monkeypatch):
    monkeypatch.delenv(nccl_exchange.ENV, raising=False)
    assert nccl_exchange.resolve(None) == "auto"  # the default
    assert nccl_exchange.resolve("lightring") == "lightring"
    monkeypatch.setenv(nccl_exchange.ENV, "lightring")
    assert nccl_exchange.resolve(None) == "lightring"
    assert nccl_exchange.resolve("torch") == "torch"  # the argument wins
    monkeypatch.setenv(nccl_exchange.ENV, "mpi")
    with pytest.raises(ValueError,
                       match=r"\$LIGHTRING_EXCHANGE must be one of auto, torch, lightring"):
        nccl_exchange.resolve(None)


def test_select_auto_follows_the_group_and_the_build(monkeypatch):
    # "auto" is "lightring" exactly where the lightring exchange can run.
    for reason in (None, "it needs an NCCL process group"):
        monkeypatch.setattr(nccl_exchange, "unavailable_reason", lambda group, r=reason: r)
        assert nccl_exchange.select("auto", object()) == ("lightring" if reason is None
                                                          else "torch")
        assert nccl_exchange.select("torch", object()) == "torch"
        assert nccl_exchange.select("lightring", object()) == "lightring"


def test_bad_exchange_name():
    q, k, v = small()
    with pytest.raises(ValueError, match="exchange must be one of auto, torch, lightring"):
        lightring.lightning_attention(q, k, v, exchange="nccl")


def test_lightring_exchange_needs_a_group():
    q, k, v = small()
    with pytest.raises(ValueError, match="applies to sequence-parallel calls only"):
        lightring.lightning_attention(q, k, v, exchange="lightring")
    # "torch" and "auto" without a group are the plain local call.
    ref = lightring.lightning_attention(q, k, v)
    assert torch.equal(lightring.lightning_attention(q, k, v, exchange="torch"), ref)
    assert torch.equal(lightring.lightning_attention(q, k, v, exchange="auto"), ref)


def test_module_passes_exchange():
    layer = lightring.nn.LightningAttention(8, 2, exchange="lightring")
    with pytest.raises(ValueError, match="applies to sequence-parallel calls only"):
        layer(torch.randn(1, 5, 8))
