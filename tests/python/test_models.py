"""lightring.models.TransNormerLM: the forward and its gradients against a plain-PyTorch float64
reference of csrc/model/transnormer.h, generation (the recurrent form) against the full forward
token by token, and lightring-train's checkpoints: the C++ driver trains the tiny preset, Python
loads the checkpoint and reproduces the eval loss and the train loss the JSONL log reports and
the greedy sample of `--generate`."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

import lightring
from lightring.models import TransNormerConfig, TransNormerLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rel(x, ref):
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp(min=1e-12)).item()


# --- float64 reference of the architecture -------------------------------------------------

def ref_norm(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def ref_attention(q, k, v, rate, cu=None):
    """[B, N, H, D] float64, causal, λ_h = exp(-rate_h), states restart at every offset of cu."""
    b, n, h, _ = q.shape
    t = torch.arange(n, dtype=torch.float64)
    diff = t[:, None] - t[None, :]
    same = torch.ones(n, n, dtype=torch.bool)
    if cu is not None:
        doc = torch.bucketize(torch.arange(n), torch.as_tensor(cu)[1:], right=True)
        same = doc[:, None] == doc[None, :]
    mask = (diff >= 0) & same
    w = torch.exp(-rate.double()[:, None, None] * diff.clamp(min=0)) * mask  # [H, N, N]
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * w
    return torch.einsum("bhij,bjhe->bihe", scores, v)


def ref_logits(params, c, ids, cu_rows=None):
    """The model of csrc/model/transnormer.h in float64 from a {name: tensor} dict."""
    h_, dh = c.num_heads, c.resolved_head_dim
    hd = h_ * dh
    x = params["embed.weight"][ids]
    if c.scale_embedding:
        x = x * math.sqrt(c.d_model)
    b, n, _ = x.shape
    for l in range(c.num_layers):
        p = f"layers.{l}."
        rate = lightring.slopes(h_).double()  # 2^(-8(h+1)/H) for H a power of two
        if h_ & (h_ - 1) == 0:
            assert torch.allclose(rate, torch.tensor([2.0 ** (-8.0 * (i + 1) / h_)
                                                      for i in range(h_)], dtype=torch.float64))
        if c.num_layers > 1:
            rate = rate * (1 - l / (c.num_layers - 1) + 1e-5)
        y = ref_norm(x, c.norm_eps) @ params[p + "token_mixer.qkvu_proj.weight"].T
        q, k, v, u = y.split(hd, -1)
        q = torch.nn.functional.silu(q).view(b, n, h_, dh)
        k = torch.nn.functional.silu(k).view(b, n, h_, dh)
        v = v.reshape(b, n, h_, dh)
        if cu_rows is None:
            o = ref_attention(q, k, v, rate)
        else:
            o = torch.cat([ref_attention(q[r:r + 1], k[r:r + 1], v[r:r + 1], rate, cu_rows[r])
                           for r in range(b)], 0)
        o = ref_norm(o.reshape(b, n, hd), c.norm_eps)
        x = x + (u * o) @ params[p + "token_mixer.out_proj.weight"].T
        m = ref_norm(x, c.norm_eps)
        x = x + ((m @ params[p + "channel_mixer.w1.weight"].T) *
                 (m @ params[p + "channel_mixer.w2.weight"].T)) @ params[p + "channel_mixer.w3.weight"].T
    return ref_norm(x, c.norm_eps) @ params["lm_head.weight"].T


def small_model(seed=0, **overrides):
    fields = dict(vocab_size=37, d_model=24, num_layers=3, num_heads=3, ffn_dim=40,
                  init_std=0.2)
    fields.update(overrides)
    torch.manual_seed(seed)
    return TransNormerLM(TransNormerConfig(**fields))


def test_parameter_names_and_count():
    m = TransNormerLM(TransNormerConfig.from_preset("tiny", 257))
    names = [n for n, _ in m.named_parameters()]
    assert names[:6] == ["embed.weight", "layers.0.token_mixer.qkvu_proj.weight",
                         "layers.0.token_mixer.out_proj.weight", "layers.0.channel_mixer.w1.weight",
                         "layers.0.channel_mixer.w2.weight", "layers.0.channel_mixer.w3.weight"]
    assert names[-1] == "lm_head.weight"
    # docs/training.md: 2·V·d + L·(5·H·dh·d + 3·d·f); tiny: 123008 (lightring-train's header).
    assert sum(p.numel() for p in m.parameters()) == m.config.parameter_count() == 123008
    assert TransNormerConfig.from_preset("125m", 50257).resolved_ffn_dim == 2048
    assert TransNormerConfig.from_preset("350m", 50257).resolved_ffn_dim == 2752


@pytest.mark.parametrize("heads", [3, 4])
@pytest.mark.parametrize("rows", [None, "documents"])
def test_forward_backward_vs_float64_reference(rows, heads):
    m = small_model(1, num_heads=heads)
    c = m.config
    ids = torch.randint(0, c.vocab_size, (2, 29), generator=torch.Generator().manual_seed(2))
    cu = None if rows is None else [torch.tensor([0, 11, 29]), torch.tensor([0, 1, 5, 28, 29])]
    targets = torch.roll(ids, -1, 1)
    targets[0, -1] = -1
    loss = m.loss(ids, targets, cu_seqlens=cu)
    loss.backward()
    params = {n: p.detach().double().clone().requires_grad_() for n, p in m.named_parameters()}
    logits = ref_logits(params, c, ids, cu)
    ref_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, c.vocab_size),
                                                 targets.reshape(-1), ignore_index=-1)
    ref_loss.backward()
    with torch.no_grad():
        assert rel(m(ids, cu_seqlens=cu), logits) < 1e-5
    assert abs(loss.item() - ref_loss.item()) < 1e-5 * ref_loss.item()
    for n, p in m.named_parameters():
        assert rel(p.grad, params[n].grad) < 1e-4, n


def test_documents_restart_the_state():
    m = small_model(3)
    ids = torch.randint(0, 37, (1, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        packed = m(ids, cu_seqlens=torch.tensor([0, 7, 20]))
        assert rel(packed[:, :7], m(ids[:, :7])) < 1e-5
        assert rel(packed[:, 7:], m(ids[:, 7:])) < 1e-5
        assert rel(packed[:, 7:], m(ids)[:, 7:]) > 1e-3  # the state did restart


def test_decode_step_equals_forward_token_by_token():
    m = small_model(5).eval()
    ids = torch.randint(0, 37, (2, 23), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full, finals = m(ids, return_states=True)
        states = m.initial_states(2)
        for t in range(ids.shape[1]):
            logits, states = m.decode_step(ids[:, t], states)
            assert rel(logits, full[:, t]) < 1e-5, t
        for s, f in zip(states, finals):
            assert rel(s, f) < 1e-5
        # Prefill then decode: the states of a prefix carry on.
        part, st = m(ids[:, :15], return_states=True)
        rest = m(ids[:, 15:], states=st)
        assert rel(rest, full[:, 15:]) < 1e-5


@pytest.mark.parametrize("prefill", ["parallel", "recurrent"])
def test_generate_greedy_equals_full_forward(prefill):
    m = small_model(7, init_std=0.5)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    new = m.generate(prompt, 25, temperature=0, prefill=prefill)
    assert isinstance(new, list) and len(new) == 25
    seq = torch.tensor([prompt + new])
    with torch.no_grad():
        greedy = m(seq)[0, len(prompt) - 1:-1].argmax(-1)
    assert greedy.tolist() == new
    assert len(set(new)) > 1  # not a degenerate model
    batch = m.generate(torch.tensor([prompt, prompt[::-1]]), 10, temperature=0)
    assert batch.shape == (2, 10) and batch[0].tolist() == new[:10]


def test_generate_sampling():
    m = small_model(8, init_std=0.5)
    a = m.generate([1, 2, 3], 30, temperature=1.0, top_k=5, seed=11)
    b = m.generate([1, 2, 3], 30, temperature=1.0, top_k=5, seed=11, prefill="recurrent")
    assert a == b
    assert m.generate([1, 2, 3], 30, temperature=1.0, top_k=1, seed=3) == \
        m.generate([1, 2, 3], 30, temperature=0)
    # top_k restricts every draw to the k likeliest tokens of that step.
    seq = torch.tensor([[1, 2, 3] + a])
    with torch.no_grad():
        top = m(seq)[0, 2:-1].topk(5, -1).indices
    assert all(tok in top[i].tolist() for i, tok in enumerate(a))
    with pytest.raises(ValueError, match="at least one token"):
        m.generate([], 3)


# --- lightring-train checkpoints --------------------------------------------------------------

def find_train():
    for build in ("build-train", "build-cpu"):
        path = os.path.join(REPO, build, "launch", "lightring-train")
        if os.access(path, os.X_OK):
            return path
    return None


DOC = (b"Sphinx of black quartz, judge my vow! The five boxing wizards jump quickly.\n"
       b"How vexingly quick.")
EOS, FILES, VAL, T, BATCH, STEPS = 256, 12, 3, 48, 3, 30


def packed(num_docs):
    """docs/data.md's packing of num_docs copies of DOC (identical documents, so the order the
    split and the shuffle pick does not matter): (inputs, targets, cu_seqlens) per sequence."""
    doc = list(DOC) + [EOS]
    stream = doc * num_docs
    n = len(stream)
    out = []
    for i in range(-(-n // T)):
        lo = i * T
        inputs = [stream[p] if p < n else EOS for p in range(lo, lo + T)]
        targets = [stream[p + 1] if p + 1 < n else -1 for p in range(lo, lo + T)]
        cuts = {p - lo for p in range(lo + 1, lo + T) if p < n and p % len(doc) == 0}
        if lo < n < lo + T:
            cuts.add(n - lo)  # the padding is its own segment
        out.append((inputs, targets, [0] + sorted(cuts) + [T]))
    return out


def loss_of(model, sequences):
    ids = torch.tensor([s[0] for s in sequences])
    targets = torch.tensor([s[1] for s in sequences])
    cu = [torch.tensor(s[2]) for s in sequences]
    with torch.no_grad():
        total, count = model.loss(ids, targets, cu_seqlens=cu, reduction="sum")
    return total.item(), count


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = find_train()
    if train is None:
        pytest.skip("no lightring-train binary under build-train/launch/ or build-cpu/launch/ "
                    "(build the lightring-train target)")
    root = tmp_path_factory.mktemp("train")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(FILES):
        (corpus / f"doc{i:02d}.txt").write_bytes(DOC)
    common = ["--data", "text", "--data-path", str(corpus), "--seq-len", str(T)]
    cmd = [train, "--preset", "tiny", *common, "--steps", str(STEPS), "--batch", str(BATCH),
           "--val-fraction", str(VAL / FILES), "--eval-sequences", "16", "--warmup", "3",
           "--save-dir", str(root / "ckpt"), "--save-every", str(STEPS - 1),
           "--log", str(root / "log.jsonl"), "--seed", "7", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [json.loads(line) for line in (root / "log.jsonl").read_text().splitlines()]
    return {"train": train, "root": root, "rows": rows, "common": common, "env": env}


def test_checkpoint_eval_loss_equals_cpp(trained):
    model = TransNormerLM.from_checkpoint(str(trained["root"] / "ckpt"))  # the folder: latest
    assert model.config.preset == "tiny" and model.config.vocab_size == 257
    ev = [r for r in trained["rows"] if r["kind"] == "eval"][-1]
    assert ev["step"] == STEPS
    val = packed(VAL)[:16]
    assert ev["eval_sequences"] == len(val)
    total, count = loss_of(model, val)
    assert count == ev["eval_tokens"]
    assert abs(total / count - ev["eval_loss"]) < 1e-5 * ev["eval_loss"], (total / count, ev)
    # The loss moved from the initial ~log(257) = 5.55: the comparison is on a trained model.
    assert ev["eval_loss"] < 4.0


def test_checkpoint_train_loss_equals_cpp(trained):
    # The loss logged at the last step is that of its batch under the weights saved one step
    # earlier (--save-every STEPS - 1). Global sequence g = (step - 1)·BATCH + j, epochs roll over.
    model = TransNormerLM.from_checkpoint(str(trained["root"] / "ckpt" / f"ckpt-{STEPS - 1:08d}.pt"))
    row = [r for r in trained["rows"] if r["kind"] == "train" and r["step"] == STEPS][0]
    epoch = packed(FILES - VAL)
    batch = [epoch[g % len(epoch)] for g in range((STEPS - 1) * BATCH, STEPS * BATCH)]
    total, count = loss_of(model, batch)
    assert count == row["target_tokens"]
    assert abs(total / count - row["loss"]) < 1e-5 * row["loss"], (total / count, row)


def render(tokens):
    """lightring-train's sample text for byte-level data (launch/train_loop.cpp)."""
    out = ""
    for t in tokens:
        if t == EOS:
            out += "<|eos|>"
        elif t >= 0x20 or t in (10, 9):
            out += chr(t)
        else:
            out += "\\x" + str(t)
    return out


@pytest.mark.parametrize("temperature,top_k", [(0, 0), (0.8, 5)])
def test_generate_equals_cpp(trained, temperature, top_k):
    prompt = "Sphinx of"
    cmd = [trained["train"], "--resume", str(trained["root"] / "ckpt"), "--generate",
           "--sample", "60", "--temperature", str(temperature), "--top-k", str(top_k),
           "--prompt", prompt, "--seed", "7", *trained["common"]]
    run = subprocess.run(cmd, capture_output=True, timeout=120, env=trained["env"])
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout.decode("latin-1")
    marker = "):\n"
    cpp = text[text.index("sample ("):]
    cpp = cpp[cpp.index(marker) + len(marker):].rstrip("\n")
    model = TransNormerLM.from_checkpoint(str(trained["root"] / "ckpt"))
    ids = [EOS] + list(prompt.encode())
    new = model.generate(ids, 60, temperature=temperature, top_k=top_k, seed=7,
                         prefill="recurrent")
    assert prompt + render(new) == cpp
    if temperature == 0:  # the parallel prefill gives the same continuation
        assert model.generate(ids, 60, temperature=0) == new


# --- sequence parallel ------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("mpirun") is None or not torch.distributed.is_available(),
                    reason="needs mpirun and torch.distributed")
def test_sequence_parallel_equals_unsharded():
    np_ = 2
    cmd = [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
           sys.executable, os.path.join(REPO, "tests", "python", "mp_model_worker.py")]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    for case in ("rows", "documents"):
        passed = [r for r in range(np_) if f"PASS model_sp {case} rank {r}" in proc.stdout]
        assert proc.returncode == 0 and len(passed) == np_, proc.stdout[-6000:]
