"""bench/model_bench.py on the CPU: its pieces against references, and the script end to end.

- reference_simple_gla (the torch-reference mixer) = the float64 closed form (oracle.py), odd T;
- ExternalMixer with that kernel = lightring.nn.LightningAttention on the same weights;
- lm_loss (chunked LM head, recomputed blocks) = TransNormerLM.loss, loss and gradients;
- the script (--quick --device cpu --mixers lightring,torch-reference, every phase) writes a
  row per (T, mixer) with tokens_per_s = B·T / ms, check rows that pass, a longest-context
  summary and a compile row (an error row naming the torch version below 2.4), and prints the
  summary tables; --summarize reprints them from the file;
- a wrong mixer (no decay) fails its check row: the check can fail;
- simulated out-of-memory errors: the row is run again with recompute, and the longest-context
  search doubles, then bisects, to the first failure.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import lightring
import oracle
from lightring.models import TransNormerConfig, TransNormerLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench"))

import model_bench  # noqa: E402
import model_mixers  # noqa: E402


def tiny_model(seed=0, std=0.2):
    torch.manual_seed(seed)
    model = TransNormerLM(TransNormerConfig(vocab_size=61, d_model=24, num_layers=3,
                                            num_heads=3))
    with torch.no_grad():  # large weights: the mixers shape the loss
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


@pytest.mark.parametrize("t,chunk", [(97, 16), (64, 64), (5, 64)])
def test_reference_mixer_equals_float64_closed_form(t, chunk):
    torch.manual_seed(t)
    h, d, e = 3, 5, 7
    q, k = torch.randn(2, t, h, d), torch.randn(2, t, h, d)
    v = torch.randn(2, t, h, e)
    decay = torch.tensor([0.05, 0.3, 0.0])
    o, final = model_mixers.reference_simple_gla(q, k, v, g_gamma=-decay, scale=0.7,
                                                 chunk=chunk)
    assert final is None and o.shape == (2, t, h, e) and o.dtype == q.dtype
    ref, _ = oracle.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), decay,
                              scale=0.7)
    assert oracle.rel_err(o.transpose(1, 2), ref) < 1e-5


def test_external_mixer_equals_lightning_attention():
    model = tiny_model()
    other = tiny_model(seed=5)
    other.load_state_dict(model.state_dict())
    model_mixers.use_kernel(other, model_mixers.reference_simple_gla)
    assert type(other.layers[0].token_mixer) is model_mixers.ExternalMixer
    assert sorted(other.state_dict()) == sorted(model.state_dict())
    x = torch.randn(2, 41, 24)
    for a, b in zip(model.layers, other.layers):
        assert oracle.rel_err(b.token_mixer(x), a.token_mixer(x)) < 1e-5
    ids = torch.randint(0, 61, (2, 41))
    assert oracle.rel_err(other(ids), model(ids)) < 1e-5
    with pytest.raises(ValueError, match="not supported"):
        other.layers[0].token_mixer(x, output_final_state=True)


@pytest.mark.parametrize("loss_chunk,recompute", [(0, False), (7, True), (16, False)])
def test_lm_loss_equals_model_loss(loss_chunk, recompute):
    model = tiny_model()
    ids, targets = torch.randint(0, 61, (2, 37)), torch.randint(0, 61, (2, 37))
    expect = model.loss(ids, targets)
    expect.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got = model_mixers.lm_loss(model, ids, targets, loss_chunk, recompute)
    got.backward()
    assert oracle.rel_err(got.reshape(1), expect.reshape(1)) < 1e-6
    for n, p in model.named_parameters():
        assert oracle.rel_err(p.grad, ref[n]) < 1e-5, n


def read_rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_script_end_to_end(tmp_path):
    out = tmp_path / "model.jsonl"
    cmd = [sys.executable, os.path.join(REPO, "bench", "model_bench.py"), "--quick",
           "--device", "cpu", "--mixers", "lightring,torch-reference", "--contexts", "97,300",
           "--phases", "table,longest,compile", "--loss-chunk", "128", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:]
    rows = read_rows(out)
    table = [r for r in rows if r["phase"] == "table"]
    assert sorted((r["mixer"], r["T"]) for r in table) == [
        ("lightring", 97), ("lightring", 300), ("torch-reference", 97),
        ("torch-reference", 300)]
    for r in table:
        assert "error" not in r and r["ms"] > 0 and r["recompute"] is False, r
        assert abs(r["tokens_per_s"] - r["B"] * r["T"] / r["ms"] * 1e3) < 1e-6 * r["tokens_per_s"]
        assert abs(r["steps_per_s"] * r["ms"] - 1e3) < 1e-6
        assert (r["vocab"], r["size"], r["precision"]) == (256, "tiny", "fp32")
    checks = [r for r in rows if r["phase"] == "check"]
    assert sorted(r["T"] for r in checks) == [97, 300]
    for r in checks:
        assert r["ok"] and r["tol"] == 1e-4 and r["ref"] == "lightring", r
        assert r["recompute"] == {"lightring": False, "torch-reference": False}
        assert sorted(r["rel_err"]) == ["grad_qkvu_0", "loss", "mixer_out_0", "mixer_out_1"]
    longest = [r for r in rows if r["phase"] == "longest"]
    assert [r["mixer"] for r in longest] == ["lightring", "torch-reference"]
    for r in longest:  # the cpu never runs out of memory: the search ends at --longest-max
        assert r["longest_T"] == 1024 and r["first_fail_T"] is None and r["tries"] == 3, r
    compiled = [r for r in rows if r["phase"] == "compile"]
    assert len(compiled) == 1
    if lightring.HAS_FAKE_IMPLS:
        assert compiled[0]["ok"] and compiled[0]["compiled_ms"] > 0, compiled[0]
    else:
        assert "torch >= 2.4" in compiled[0]["error"] and compiled[0]["ok"] is False
    assert "| tiny | 300 | torch-reference | no |" in proc.stdout
    summary = subprocess.run([sys.executable, os.path.join(REPO, "bench", "model_bench.py"),
                              "--summarize", str(out)], stdout=subprocess.PIPE, text=True,
                             timeout=60, check=True).stdout
    assert "| tiny | 97 | lightring | no |" in summary and "longest T" in summary


def test_wrong_mixer_fails_its_check(tmp_path, monkeypatch):
    def no_decay(q, k, v, g_gamma=None, scale=None):
        return model_mixers.reference_simple_gla(q, k, v, g_gamma=None, scale=scale)
    real = model_bench.kernel_of
    monkeypatch.setattr(model_bench, "kernel_of", lambda mixer, anchors: no_decay
                        if mixer == "torch-reference" else real(mixer, anchors))
    out = tmp_path / "wrong.jsonl"
    assert model_bench.main(["--quick", "--device", "cpu", "--mixers",
                             "lightring,torch-reference", "--contexts", "128", "--out",
                             str(out)]) == 0
    checks = [r for r in read_rows(out) if r["phase"] == "check"]
    assert len(checks) == 1 and checks[0]["ok"] is False, checks
    assert checks[0]["rel_err"]["mixer_out_0"] > 1e-2


def test_out_of_memory_rows_recompute_and_bound_the_search(tmp_path, monkeypatch):
    """A simulated out-of-memory error (torch.cuda.OutOfMemoryError) above 300 tokens without
    recompute and above 600 tokens with it: the table keeps the OOM row and runs the row again
    with recompute, checked against the first mixer's row without; the longest-context search
    doubles to the first failure and bisects (steps of 128 tokens on the cpu)."""
    real = model_bench.lm_loss

    def limited(model, ids, targets, loss_chunk=0, recompute=False):
        if ids.shape[1] > (600 if recompute else 300):
            raise model_bench.OOM("CUDA out of memory (simulated)")
        return real(model, ids, targets, loss_chunk, recompute)
    monkeypatch.setattr(model_bench, "lm_loss", limited)
    out = tmp_path / "oom.jsonl"
    assert model_bench.main(["--quick", "--device", "cpu", "--mixers",
                             "lightring,torch-reference", "--contexts", "256,512",
                             "--phases", "table,longest", "--longest-start", "256",
                             "--out", str(out)]) == 0
    rows = read_rows(out)
    table = [(r["mixer"], r["T"], r["recompute"], r.get("oom"), r["ms"] is not None)
             for r in rows if r["phase"] == "table"]
    assert table == [("lightring", 256, False, False, True),
                     ("torch-reference", 256, False, False, True),
                     ("lightring", 512, False, True, False),
                     ("lightring", 512, True, False, True),
                     ("torch-reference", 512, False, True, False),
                     ("torch-reference", 512, True, False, True)]
    # each T's check row follows its rows (a time limit keeps every finished T whole)
    phases = [r["phase"] for r in rows if r["phase"] in ("table", "check")]
    assert phases == ["table", "table", "check", "table", "table", "table", "table", "check"]
    checks = {r["T"]: r for r in rows if r["phase"] == "check"}
    assert checks[512]["ok"] and checks[512]["recompute"] == {"lightring": True,
                                                              "torch-reference": True}
    tries = [(r["mixer"], r["T"], r["fits"]) for r in rows if r["phase"] == "longest_try"]
    assert tries[:5] == [("lightring", 256, True), ("lightring", 512, True),
                         ("lightring", 1024, False), ("lightring", 768, False),
                         ("lightring", 640, False)]
    longest = [r for r in rows if r["phase"] == "longest"]
    assert [(r["longest_T"], r["first_fail_T"], r["tries"]) for r in longest] == \
        [(512, 640, 5), (512, 640, 5)]
    assert longest[0]["stopped_by"].startswith("OutOfMemoryError")
