"""lightring.compat.fla against a float64 reference written from FLA's documented semantics.

The reference is the recurrence of FLA's chunk_simple_gla docstring and naive recurrent form
(fla/ops/simple_gla), in FLA's [B, T, H, K] layout: per sequence and head, with
λ = exp(g_gamma[h]),
    S_t = λ·S_{t-1} + k_tᵀ v_t,   o_t = scale·q_t S_t,   scale None -> 1/sqrt(K),
states [N, H, K, V], cu_seqlens restarting the state (from initial_state[n]) at each sequence.
chunk_lightning_attn's decay is FLA's fla/ops/lightning_attn/chunk.py formula
g_gamma_h = -(8/H)·(1 − layer_idx/num_layers)·h, restated here independently.
"""
import math

import pytest
import torch

import lightring
from lightring.compat import fla


def reference(q, k, v, g_gamma=None, scale=None, initial_state=None, cu_seqlens=None):
    """FLA semantics in float64: returns (o [B, T, H, V], final [N, H, K, V])."""
    q, k, v = q.double(), k.double(), v.double()
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    scale = dk ** -0.5 if scale is None else scale
    lam = torch.ones(h, dtype=torch.float64) if g_gamma is None else g_gamma.double().exp()
    bounds = [(0, t)] if cu_seqlens is None else list(zip(cu_seqlens[:-1].tolist(),
                                                          cu_seqlens[1:].tolist()))
    o = torch.zeros(b, t, h, dv, dtype=torch.float64)
    finals = []
    for row in range(b):
        for n, (start, end) in enumerate(bounds):
            seq = row if cu_seqlens is None else n
            s = torch.zeros(h, dk, dv, dtype=torch.float64) if initial_state is None \
                else initial_state[seq].double()
            for i in range(start, end):
                s = lam[:, None, None] * s + k[row, i][:, :, None] * v[row, i][:, None, :]
                o[row, i] = scale * torch.einsum("hk,hkv->hv", q[row, i], s)
            finals.append(s)
    return o, torch.stack(finals)


def rel(x, ref):
    return ((x.double() - ref).abs().max() / ref.abs().max().clamp(min=1e-6)).item()


def inputs(b, t, h, dk, dv, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=g) * 0.5
    k = torch.randn(b, t, h, dk, generator=g) * 0.5
    v = torch.randn(b, t, h, dv, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def fla_gamma(h, layer_idx, num_layers):
    return torch.tensor([-(8.0 / h) * (1.0 - layer_idx / num_layers) * i for i in range(h)])


def test_returns_pair_shapes_and_default_scale():
    b, t, h, dk, dv = 2, 97, 3, 16, 24
    q, k, v = inputs(b, t, h, dk, dv)
    gamma = -torch.tensor([0.05, 0.3, 1.0])
    out = fla.chunk_simple_gla(q, k, v, g_gamma=gamma)
    assert isinstance(out, tuple) and len(out) == 2
    o, final = out
    assert final is None
    assert o.shape == (b, t, h, dv) and o.dtype == q.dtype and o.is_contiguous()
    o.view(b, t, h * dv)  # FLA users reshape with view
    ref, ref_final = reference(q, k, v, gamma)  # scale None -> 1/sqrt(K)
    assert rel(o, ref) < 1e-5
    # The default is 1/sqrt(K), not lightring's 1.0: the two differ by a factor of 4 here.
    assert rel(o, ref * math.sqrt(dk)) > 0.5
    o2, final2 = fla.chunk_simple_gla(q, k, v, g_gamma=gamma, scale=0.3, output_final_state=True)
    ref2, ref2_final = reference(q, k, v, gamma, scale=0.3)
    assert rel(o2, ref2) < 1e-5
    assert final2.shape == (b, h, dk, dv) and final2.dtype == torch.float32
    assert rel(final2, ref2_final) < 1e-5


def test_no_decay_and_positional_g_gamma():
    q, k, v = inputs(1, 40, 2, 8, 8, seed=1)
    o, _ = fla.chunk_simple_gla(q, k, v)  # neither g nor g_gamma: no decay
    assert rel(o, reference(q, k, v)[0]) < 1e-5
    gamma = torch.tensor([-0.5, 0.0])
    o, _ = fla.chunk_simple_gla(q, k, v, None, gamma)  # FLA's positional order: g, g_gamma
    assert rel(o, reference(q, k, v, gamma)[0]) < 1e-5


@pytest.mark.parametrize("layer_idx,num_layers", [(0, 1), (0, 4), (3, 4), (5, 6), (4, 4)])
def test_lightning_attn_decay_formula(layer_idx, num_layers):
    h = 4
    q, k, v = inputs(2, 33, h, 8, 8, seed=2)
    s0 = torch.randn(2, h, 8, 8, generator=torch.Generator().manual_seed(3))
    o, final = fla.chunk_lightning_attn(q, k, v, layer_idx, num_layers, initial_state=s0,
                                        output_final_state=True)
    gamma = fla_gamma(h, layer_idx, num_layers)
    ref, ref_final = reference(q, k, v, gamma, initial_state=s0)
    assert rel(o, ref) < 1e-5 and rel(final, ref_final) < 1e-5
    # Head 0 has no decay in FLA's formula.
    ref0, _ = reference(q[:, :, :1], k[:, :, :1], v[:, :, :1], None, initial_state=s0[:, :1])
    assert rel(o[:, :, :1], ref0) < 1e-5
    assert torch.equal(fla.fla_lightning_rates(h, layer_idx, num_layers), -gamma.float())


def test_lightning_attn_is_not_transnormer_decay():
    # The trap of issue 20: FLA's formula (head 0 undecayed, L not L-1) is not the slopes that
    # lightring.nn / lightring-train use; a port must choose one knowingly.
    h, layer, layers = 4, 1, 3
    fla_rate = fla.fla_lightning_rates(h, layer, layers)
    tn_rate = fla.lightring_rates(h, layer, layers)
    expect_tn = lightring.slopes(h) * (1 - layer / (layers - 1) + 1e-5)
    assert torch.allclose(tn_rate, expect_tn)
    assert torch.allclose(lightring.nn.LightningAttention(16, h, layer_idx=layer,
                                                          num_layers=layers).decay, tn_rate)
    assert fla_rate[0] == 0 and (tn_rate > 0).all()
    assert (fla_rate - tn_rate).abs().max() > 0.5
    q, k, v = inputs(1, 50, h, 8, 8, seed=4)
    o_fla, _ = fla.chunk_lightning_attn(q, k, v, layer, layers)
    o_tn, _ = fla.chunk_simple_gla(q, k, v, g_gamma=-tn_rate)
    assert rel(o_fla, o_tn.double()) > 0.05


def test_cu_seqlens_and_states():
    h, dk, dv = 3, 8, 12
    cu = torch.tensor([0, 5, 37, 38, 97], dtype=torch.long)
    q, k, v = inputs(1, 97, h, dk, dv, seed=5)
    s0 = torch.randn(4, h, dk, dv, generator=torch.Generator().manual_seed(6))
    gamma = -torch.tensor([0.02, 0.2, 0.9])
    o, final = fla.chunk_simple_gla(q, k, v, g_gamma=gamma, initial_state=s0,
                                    output_final_state=True, cu_seqlens=cu)
    ref, ref_final = reference(q, k, v, gamma, initial_state=s0, cu_seqlens=cu)
    assert final.shape == (4, h, dk, dv)
    assert rel(o, ref) < 1e-5 and rel(final, ref_final) < 1e-5
    # int32 offsets as FlashAttention passes them; chunk_lightning_attn takes them too.
    o32, f32 = fla.chunk_lightning_attn(q, k, v, 1, 2, cu_seqlens=cu.int(),
                                        output_final_state=True)
    ref32, reff32 = reference(q, k, v, fla_gamma(h, 1, 2), cu_seqlens=cu)
    assert rel(o32, ref32) < 1e-5 and rel(f32, reff32) < 1e-5


def test_cu_seqlens_errors_as_fla():
    q, k, v = inputs(2, 10, 2, 4, 4)
    with pytest.raises(ValueError, match="B = 1"):
        fla.chunk_simple_gla(q, k, v, cu_seqlens=torch.tensor([0, 4, 10]))
    q, k, v = inputs(1, 10, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\[N, H, D, E\]"):
        fla.chunk_simple_gla(q, k, v, cu_seqlens=torch.tensor([0, 4, 10]),
                             initial_state=torch.zeros(3, 2, 4, 4))


def test_state_v_first_and_state_dtype():
    q, k, v = inputs(2, 21, 2, 8, 4, seed=7)
    s0 = torch.randn(2, 2, 8, 4, generator=torch.Generator().manual_seed(8))
    gamma = -torch.tensor([0.1, 0.4])
    ref, ref_final = reference(q, k, v, gamma, initial_state=s0)
    o, final = fla.chunk_simple_gla(q, k, v, g_gamma=gamma, initial_state=s0.transpose(-1, -2),
                                    output_final_state=True, state_v_first=True)
    assert final.shape == (2, 2, 4, 8)
    assert rel(o, ref) < 1e-5 and rel(final.transpose(-1, -2), ref_final) < 1e-5
    # A float64 initial state is taken (converted to fp32).
    o64, _ = fla.chunk_simple_gla(q, k, v, g_gamma=gamma, initial_state=s0.double())
    assert rel(o64, ref) < 1e-5


def test_bf16_output_dtype():
    q, k, v = inputs(1, 64, 2, 16, 16, seed=9, dtype=torch.bfloat16)
    gamma = -torch.tensor([0.1, 0.4])
    o, final = fla.chunk_simple_gla(q, k, v, g_gamma=gamma, output_final_state=True)
    assert o.dtype == torch.bfloat16 and final.dtype == torch.float32
    assert rel(o, reference(q, k, v, gamma)[0]) < 2e-2


def test_gradients():
    h, dk, dv = 2, 8, 4
    cu = torch.tensor([0, 7, 19])
    q, k, v = inputs(1, 19, h, dk, dv, seed=10)
    s0 = torch.randn(2, h, dk, dv, generator=torch.Generator().manual_seed(11))
    gamma = torch.tensor([-0.3, -0.05])
    wo = torch.randn(1, 19, h, dv, generator=torch.Generator().manual_seed(12))
    wf = torch.randn(2, h, dk, dv, generator=torch.Generator().manual_seed(13))
    leaves = [t.clone().requires_grad_() for t in (q, k, v, s0)]
    o, final = fla.chunk_simple_gla(*leaves[:3], g_gamma=gamma, initial_state=leaves[3],
                                    output_final_state=True, cu_seqlens=cu)
    ((o * wo).sum() + (final * wf).sum()).backward()
    ref_leaves = [t.double().clone().requires_grad_() for t in (q, k, v, s0)]
    ro, rf = reference(*ref_leaves[:3], gamma, initial_state=ref_leaves[3], cu_seqlens=cu)
    ((ro * wo.double()).sum() + (rf * wf.double()).sum()).backward()
    for name, a, r in zip("q k v initial_state".split(), leaves, ref_leaves):
        assert rel(a.grad, r.grad) < 1e-5, name


def test_unsupported_arguments_raise():
    q, k, v = inputs(1, 8, 2, 4, 4)
    g = torch.nn.functional.logsigmoid(torch.randn(1, 8, 2))
    with pytest.raises(NotImplementedError, match="data-dependent gate g"):
        fla.chunk_simple_gla(q, k, v, g)
    with pytest.raises(ValueError, match="g_gamma must be <= 0"):
        fla.chunk_simple_gla(q, k, v, g_gamma=torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match=r"g_gamma must have shape \[H\] = \[2\]"):
        fla.chunk_simple_gla(q, k, v, g_gamma=torch.tensor([-0.1, -0.1, -0.2]))
    with pytest.raises(ValueError, match="head_first"):
        fla.chunk_simple_gla(q, k, v, head_first=True)
    with pytest.raises(ValueError, match="power of 2"):
        fla.chunk_lightning_attn(q, k, v, 0, 2, chunk_size=48)
    with pytest.raises(ValueError, match="layer_idx"):
        fla.chunk_lightning_attn(q, k, v, 3, 2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fla.chunk_simple_gla(q, k, v, chunk_sise=64)
    o, _ = fla.chunk_simple_gla(q, k, v, chunk_size=32)  # taken and ignored: exact anyway
    assert rel(o, reference(q, k, v)[0]) < 1e-5
