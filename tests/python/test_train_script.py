"""python -m lightring.train (python/lightring/train.py) end to end on the CPU (gloo, mpirun).

One reference run (1 process, tiny, fortunes with --documents on, 4 AdamW steps, a checkpoint
every 2 steps); against it:
- SP = 2 (mpirun -np 2 --sp 2), DP = 2 with half the per-rank batch (the same global batch), and
  DP 2 x SP 2 (-np 4): every train loss within 1e-5 relative, the last checkpoint's weights
  within 1e-5 (norm of the difference / norm);
- --resume from the step-2 checkpoint: steps 3 and 4 and the final weights bit-identical;
- lightring-train (when built at build-train/launch/lightring-train) on the same flags: the
  first-step loss within 1e-6 relative (measured: identical, as are the later steps), the same
  JSONL keys per row kind, and it resumes the Python checkpoint;
- --generate: the same sample text as lightring-train --generate (byte for byte);
- SIGTERM: the step finishes, a checkpoint is saved, exit status 0;
- lightring.models.from_checkpoint reads the Python checkpoint; tools/plot_train.py plots the log;
- bad flags fail before any process group, naming the flag.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CPP = os.path.join(REPO, "build-train", "launch", "lightring-train")
MPIRUN = shutil.which("mpirun")
FLAGS = ["--data", "fortunes", "--seq-len", "64", "--batch", "4", "--steps", "4", "--warmup",
         "2", "--eval-sequences", "4"]

needs_fortunes = pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes"),
                                    reason="needs Debian's fortunes")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="needs mpirun")


def env():
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=os.path.join(REPO, "python") + os.pathsep +
                os.environ.get("PYTHONPATH", ""))


def run(args, np_=None, cpp=False, check=True):
    prog = [CPP] if cpp else [sys.executable, "-m", "lightring.train"]
    cmd = prog + args
    if np_ is not None:
        cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_)] + cmd
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=120, env=env(), cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def rows(path, kind):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def losses(path):
    return {r["step"]: r["loss"] for r in rows(path, "train")}


def weights(path):
    return torch.load(path)["model"]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not os.path.isdir("/usr/share/games/fortunes"):
        pytest.skip("needs Debian's fortunes")
    d = tmp_path_factory.mktemp("ref")
    proc = run(FLAGS + ["--save-dir", str(d / "ck"), "--save-every", "2", "--log",
                        str(d / "log.jsonl")])
    return d, proc.stdout


def test_reference_run_trains_and_reports(reference):
    d, out = reference
    loss = losses(d / "log.jsonl")
    assert sorted(loss) == [1, 2, 3, 4]
    assert loss[4] < loss[1]
    assert "step      1/4 | loss" in out and "eval   4 | val loss" in out
    start = rows(d / "log.jsonl", "start")[0]
    assert (start["dp"], start["sp"], start["documents"], start["seq_len"]) == (1, 1, 1, 64)
    assert sorted(os.listdir(d / "ck")) == ["ckpt-00000002.pt", "ckpt-00000004.pt", "latest"]


@needs_mpirun
@pytest.mark.parametrize("np_,layout", [(2, ["--sp", "2"]), (2, ["--dp", "2", "--batch", "2"]),
                                        (4, ["--dp", "2", "--sp", "2", "--batch", "2"])],
                         ids=["sp2", "dp2", "dp2xsp2"])
def test_parallel_equals_one_process(reference, tmp_path, np_, layout):
    d, _ = reference
    run(FLAGS + layout + ["--save-dir", str(tmp_path), "--log", str(tmp_path / "log.jsonl")],
        np_=np_)
    ref, got = losses(d / "log.jsonl"), losses(tmp_path / "log.jsonl")
    assert sorted(got) == sorted(ref)
    for s in ref:
        assert abs(got[s] - ref[s]) <= 1e-5 * abs(ref[s]), (s, got, ref)
    start = rows(tmp_path / "log.jsonl", "start")[0]
    assert start["dp"] * start["sp"] == np_
    assert rows(tmp_path / "log.jsonl", "train")[0]["tokens"] == 4 * 64  # the same global batch
    a, b = weights(tmp_path / "ckpt-00000004.pt"), weights(d / "ck" / "ckpt-00000004.pt")
    for name in b:
        assert rel(a[name], b[name]) < 1e-5, name


def test_resume_equals_uninterrupted(reference, tmp_path):
    d, _ = reference
    out = run(FLAGS + ["--resume", str(d / "ck" / "ckpt-00000002.pt"), "--save-dir",
                       str(tmp_path), "--log", str(tmp_path / "log.jsonl")]).stdout
    assert "resumed from" in out and "at step 2" in out
    ref, got = losses(d / "log.jsonl"), losses(tmp_path / "log.jsonl")
    assert got == {3: ref[3], 4: ref[4]}
    a, b = weights(tmp_path / "ckpt-00000004.pt"), weights(d / "ck" / "ckpt-00000004.pt")
    for name in b:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.skipif(not os.access(CPP, os.X_OK), reason="lightring-train not built in build-train")
def test_same_as_lightring_train(reference, tmp_path):
    d, _ = reference
    run(FLAGS + ["--log", str(tmp_path / "c.jsonl")], cpp=True)
    ref, cpp = losses(d / "log.jsonl"), losses(tmp_path / "c.jsonl")
    assert abs(ref[1] - cpp[1]) <= 1e-6 * abs(cpp[1]), (ref, cpp)
    for kind in ("start", "train", "eval"):  # the same log format, row by row
        py_rows, c_rows = rows(d / "log.jsonl", kind), rows(tmp_path / "c.jsonl", kind)
        assert [list(r) for r in py_rows] == [list(r) for r in c_rows], kind
    py_start, c_start = rows(d / "log.jsonl", "start")[0], rows(tmp_path / "c.jsonl", "start")[0]
    for key in ("config", "parameters", "data", "documents", "flops_per_token"):
        assert py_start[key] == c_start[key], key
    # lightring-train resumes the Python checkpoint and continues as the Python run did.
    out = run(FLAGS + ["--resume", str(d / "ck" / "ckpt-00000002.pt"), "--log",
                       str(tmp_path / "cr.jsonl")], cpp=True).stdout
    assert "resumed from" in out
    resumed = losses(tmp_path / "cr.jsonl")
    for s in (3, 4):
        assert abs(resumed[s] - ref[s]) <= 1e-6 * abs(ref[s]), (resumed, ref)


@pytest.mark.skipif(not os.access(CPP, os.X_OK), reason="lightring-train not built in build-train")
def test_generate_same_as_lightring_train(reference):
    d, _ = reference
    args = FLAGS[:4] + ["--generate", "--resume", str(d / "ck"), "--sample", "40",
                        "--temperature", "0.8", "--top-k", "5", "--prompt", "The "]
    def sample(cpp):  # the raw bytes: a sample of a barely trained model is not UTF-8
        prog = [CPP] if cpp else [sys.executable, "-m", "lightring.train"]
        out = subprocess.run(prog + args, stdout=subprocess.PIPE, timeout=120, env=env(),
                             cwd=REPO, check=True).stdout
        return out.split(b"sample (", 1)[1]
    py = sample(False)
    assert py.startswith(b"40 tokens, temperature 0.8, top-k 5):\nThe ")
    assert py == sample(True)


@needs_fortunes
def test_sigterm_saves_and_exits_0(tmp_path):
    cmd = [sys.executable, "-m", "lightring.train"] + FLAGS[:4] + [
        "--steps", "100000", "--save-dir", str(tmp_path / "ck"), "--log", str(tmp_path / "l")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env(), cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.exists(tmp_path / "l") and
                                          len(rows(tmp_path / "l", "train")) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stop requested (SIGTERM/SIGINT): saving and exiting" in out
    last = rows(tmp_path / "l", "train")[-1]["step"]
    assert open(tmp_path / "ck" / "latest").read().strip() == f"ckpt-{last:08d}.pt"


def test_from_checkpoint_and_plot(reference, tmp_path):
    d, _ = reference
    from lightring.models import TransNormerLM
    model = TransNormerLM.from_checkpoint(str(d / "ck"))  # the folder's latest: step 4
    saved = weights(d / "ck" / "ckpt-00000004.pt")
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), saved[name]), name
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = tmp_path / "train.png"
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "plot_train.py"),
                    str(d / "log.jsonl"), "-o", str(png)], check=True, timeout=60)
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    (["--lr", "0"], "--lr must be > 0"),
    (["--data", "nope"], "--data: unknown format 'nope'"),
    (["--preset", "big"], "--preset: unknown preset 'big'"),
    (["--data", "text"], "--data-path is required for --data text"),
    (["--seq-len", "3", "--sp", "4"], "--seq-len (3) must be at least --sp (4)"),
    (["--heads", "3"], "d_model (64) must be divisible by num_heads (3)"),
    (["--save-every", "2"], "--save-every needs --save-dir"),
])
def test_bad_flags(capsys, args, message):
    from lightring import train
    assert train.main(args) == 2
    assert message in capsys.readouterr().err


@needs_fortunes
def test_bad_world_and_resume(tmp_path):
    proc = run(["--dp", "2", "--sp", "1"] + FLAGS[:2], check=False)
    assert proc.returncode != 0 and "--dp 2 x --sp 1 = 2 ranks, but the job has 1" in proc.stdout
    bad = tmp_path / "ckpt-00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = run(FLAGS + ["--resume", str(bad)], check=False)
    assert proc.returncode != 0 and "is not readable: truncated or corrupt" in proc.stdout
