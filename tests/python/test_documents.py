"""Packed documents (lightring/documents.py): lightning_attention(..., cu_seqlens=...) on one
process against the per-document float64 oracle (outputs, per-document final states, every
gradient), the nn layer, argument errors, torch.compile; and under mpirun over gloo
(mp_documents_worker.py) every schedule with documents spanning shards."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import lightring
import doc_oracle
from oracle import rel_err

HERE = os.path.dirname(os.path.abspath(__file__))
MPIRUN = shutil.which("mpirun")
TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}

LAYOUTS = {
    "one_token_documents": [1, 1, 1, 1, 1],
    "block_edges": [16, 17, 1, 15, 32],
    "one_document": [70],
    "mixed": [5, 64, 1, 130, 3],
}


def leaf(t):
    return t.detach().clone().requires_grad_()


def run_case(lengths, dtype, with_s0=True, block_size=16, layout="bhnd", seed=0, device="cpu"):
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    t, h, d, e, docs = cu[-1], 3, 8, 6, len(lengths)
    g = torch.Generator().manual_seed(seed)
    q, k = (0.5 * torch.randn(1, h, t, d, generator=g) for _ in range(2))
    v = torch.randn(1, h, t, e, generator=g)
    w_o = torch.randn(1, h, t, e, generator=g)
    w_f = torch.randn(docs, h, d, e, generator=g)
    s0 = 0.3 * torch.randn(docs, h, d, e, generator=g) if with_s0 else None
    decay = lightring.slopes(h)
    # float64 reference
    rq, rk, rv = (leaf(x.to(dtype).double()) for x in (q, k, v))  # the rounded inputs
    w_o = w_o.to(dtype).float()  # o's gradient arrives in o's dtype
    rs0 = leaf(s0.double()) if with_s0 else None
    ro, rf = doc_oracle.documents(rq, rk, rv, cu, decay, 0.7, rs0)
    ((ro * w_o.double()).sum() + (rf * w_f.double()).sum()).backward()
    # lightring
    lq, lk, lv = (leaf(x.to(device=device, dtype=dtype)) for x in (q, k, v))
    ls0 = leaf(s0.to(device)) if with_s0 else None
    w_o, w_f, decay = w_o.to(device), w_f.to(device), decay.to(device)
    args = (lq, lk, lv) if layout == "bhnd" else tuple(x.transpose(1, 2) for x in (lq, lk, lv))
    o, f = lightring.lightning_attention(*args, decay, scale=0.7, initial_state=ls0,
                                         output_final_state=True, layout=layout,
                                         block_size=block_size,
                                         cu_seqlens=torch.tensor(cu, dtype=torch.int32))
    if layout == "bnhd":
        o = o.transpose(1, 2)
    ((o.float() * w_o).sum() + (f * w_f).sum()).backward()
    tol = TOL[dtype] * 2 if device == "cpu" else 2e-2  # CUDA: tf32 / 16-bit products
    state_tol = 2e-5 if device == "cpu" else 2e-2
    assert rel_err(o, ro) < tol
    assert rel_err(f, rf) < state_tol
    for got, want in ((lq, rq), (lk, rk), (lv, rv)):
        assert rel_err(got.grad, want.grad) < tol
    if with_s0:
        assert rel_err(ls0.grad, rs0.grad) < state_tol


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("with_s0", [True, False], ids=["states", "no_states"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_cuda_matches_oracle(name, dtype, with_s0):
    run_case(LAYOUTS[name], dtype, with_s0=with_s0, block_size=None, layout="bnhd",
             device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("path", ["auto", "pieces"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_documents_paths_match_oracle(dtype, path):
    """Both paths of packed documents (inside the scans where the family has them, pieces)."""
    ext = lightring._ext.load()
    before = ext.set_documents_path(path)
    try:
        run_case(LAYOUTS["mixed"], dtype, with_s0=True, block_size=None, layout="bnhd",
                 device="cuda")
    finally:
        ext.set_documents_path(before)


def test_set_documents_path_names_the_choices():
    ext = lightring._ext.load()
    assert ext.set_documents_path("auto") == "auto"
    assert ext.set_documents_path("pieces") == "auto"
    assert ext.set_documents_path("auto") == "pieces"
    with pytest.raises(Exception, match="'auto' or 'pieces'.*got 'fast'"):
        ext.set_documents_path("fast")
    assert ext.set_documents_path("auto") == "auto"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_matches_oracle(name, dtype):
    run_case(LAYOUTS[name], dtype)


def test_no_states_default_block_bnhd():
    run_case([33, 1, 70, 128], torch.float32, with_s0=False, block_size=None, layout="bnhd")


def test_cu_seqlens_on_the_device_of_q_or_int64():
    q = torch.randn(1, 2, 9, 4)
    d = lightring.slopes(2)
    a = lightring.lightning_attention(q, q, q, d, cu_seqlens=torch.tensor([0, 4, 9]))
    b = lightring.lightning_attention(q, q, q, d, cu_seqlens=torch.tensor([0, 4, 9],
                                                                          dtype=torch.int32))
    assert torch.equal(a, b)
    # Documents are independent: the second one alone gives the same rows.
    c = lightring.lightning_attention(q[:, :, 4:], q[:, :, 4:], q[:, :, 4:], d)
    assert rel_err(a[:, :, 4:], c) < 1e-6


def test_nn_layer_passes_cu_seqlens():
    torch.manual_seed(0)
    layer = lightring.nn.LightningAttention(16, 2, decay="slopes")
    x = torch.randn(1, 20, 16)
    cu = torch.tensor([0, 7, 20])
    y = layer(x, cu_seqlens=cu)
    y1, y2 = layer(x[:, :7]), layer(x[:, 7:])
    assert rel_err(y, torch.cat([y1, y2], dim=1)) < 1e-5


@pytest.mark.parametrize("cu, kind, match", [
    ([0, 5, 5, 9], ValueError, "cu_seqlens must be strictly increasing (cu_seqlens[1] = 5, "
                               "cu_seqlens[2] = 5)"),
    ([0, 6, 4, 9], ValueError, "strictly increasing"),
    ([1, 9], ValueError, "cu_seqlens[0] must be 0 (got 1)"),
    ([0, 4, 8], ValueError, "cu_seqlens[-1] must be the stream's length T = 9 (got 8)"),
    ([0], ValueError, "at least 2 offsets"),
])
def test_bad_offsets_name_the_argument(cu, kind, match):
    q = torch.randn(1, 2, 9, 4)
    with pytest.raises(kind, match=None) as info:
        lightring.lightning_attention(q, q, q, cu_seqlens=torch.tensor(cu))
    assert match in str(info.value)


def test_bad_arguments():
    q = torch.randn(1, 2, 9, 4)
    la = lightring.lightning_attention
    with pytest.raises(TypeError, match="cu_seqlens must be int32 or int64"):
        la(q, q, q, cu_seqlens=torch.tensor([0.0, 9.0]))
    with pytest.raises(TypeError, match="cu_seqlens must be a 1-D int32 or int64 tensor"):
        la(q, q, q, cu_seqlens=[0, 9])
    q2 = torch.randn(2, 2, 9, 4)
    with pytest.raises(ValueError, match=r"cu_seqlens needs batch size B = 1: .*got B = 2"):
        la(q2, q2, q2, cu_seqlens=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match=r"initial_state must have shape \[N, H, D, E\]"):
        la(q, q, q, initial_state=torch.zeros(3, 2, 4, 4), cu_seqlens=torch.tensor([0, 4, 9]))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="cu_seqlens must be on the cpu or on the device"):
            la(q, q, q, cu_seqlens=torch.tensor([0, 9], device="cuda"))


@pytest.mark.skipif(not hasattr(torch.library, "register_fake"), reason="needs torch >= 2.4")
def test_compile_fullgraph():
    q = torch.randn(1, 2, 30, 4, requires_grad=True)
    cu = torch.tensor([0, 11, 30])
    d = lightring.slopes(2)

    def f(q):
        o, fin = lightring.lightning_attention(q, q, q, d, cu_seqlens=cu, output_final_state=True)
        return o.sum() + fin.sum()

    eager = f(q)
    compiled = torch.compile(f, fullgraph=True)(q)
    assert rel_err(compiled, eager) < 1e-6


@pytest.mark.skipif(MPIRUN is None or not torch.distributed.is_available(),
                    reason="needs mpirun and torch.distributed")
@pytest.mark.parametrize("np", [2, 4], ids=lambda n: f"np{n}")
def test_sharded_gloo(np):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), sys.executable,
           os.path.join(HERE, "mp_documents_worker.py")]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpirun -np {np} timed out: {e.stdout}")
    passed = [r for r in range(np) if f"PASS documents rank {r}" in proc.stdout]
    assert proc.returncode == 0 and len(passed) == np, proc.stdout[-6000:]
