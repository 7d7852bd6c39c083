"""python -m lightring.train launched by torchrun (python -m torch.distributed.run), CPU, gloo.

lightring.distributed.init() reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT. Against one process on the same flags (tiny, fortunes with documents, 4 AdamW
steps), torchrun --nproc_per_node 2 with --sp 2 and with --dp 2 (half the per-rank batch, the
same global batch) give every train loss within 1e-5 relative and the last checkpoint's weights
within 1e-5 (norm of the difference / norm), as the mpirun runs of test_train_script.py do.
A world that --sp does not divide fails on every rank, naming the flag, within the timeout.

torchrun's --redirects / --tee are given as 1 (stdout): torch 1.13's parser maps the default 0
to None under Python 3.11 (an IntFlag of value 0 is not iterated), which crashes the launcher.
"""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FLAGS = ["--data", "fortunes", "--seq-len", "64", "--batch", "4", "--steps", "4", "--warmup",
         "2", "--eval-sequences", "4", "--timeout", "60"]
TIMEOUT_S = 150

pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes"),
                                reason="needs Debian's fortunes")


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1",
             PYTHONPATH=os.path.join(REPO, "python") + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        e.pop(name, None)  # the launcher under test sets them, nothing inherited
    return e


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, tmp_path, nproc=None):
    """Runs lightring.train alone (nproc None) or under torchrun; returns the process result."""
    cmd = [sys.executable]
    if nproc is not None:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                "--redirects", "1", "--tee", "1", "--log_dir", str(tmp_path / "torchrun-logs")]
    cmd += ["-m", "lightring.train"] + args
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=TIMEOUT_S, env=env(), cwd=REPO)


def train_losses(path):
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "train"}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("one-process")
    proc = launch(FLAGS + ["--save-dir", str(d / "ck"), "--log", str(d / "log.jsonl")], d)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return d


@pytest.mark.parametrize("layout", [["--sp", "2"], ["--dp", "2", "--batch", "2"]],
                         ids=["sp2", "dp2"])
def test_torchrun_equals_one_process(reference, tmp_path, layout):
    proc = launch(FLAGS + layout + ["--save-dir", str(tmp_path / "ck"), "--log",
                                    str(tmp_path / "log.jsonl")], tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "2 ranks = --dp" in proc.stdout  # both workers joined one world of 2
    ref, got = train_losses(reference / "log.jsonl"), train_losses(tmp_path / "log.jsonl")
    assert sorted(got) == sorted(ref) == [1, 2, 3, 4]
    for step in ref:
        assert abs(got[step] - ref[step]) <= 1e-5 * abs(ref[step]), (step, got, ref)
    a = torch.load(tmp_path / "ck" / "ckpt-00000004.pt")["model"]
    b = torch.load(reference / "ck" / "ckpt-00000004.pt")["model"]
    for name in b:
        assert rel(a[name], b[name]) < 1e-5, name


def test_torchrun_bad_world_fails_naming_the_flag(tmp_path):
    proc = launch(FLAGS + ["--sp", "3"], tmp_path, nproc=2)
    assert proc.returncode != 0
    assert "--sp 3 does not divide the number of ranks (2)" in proc.stdout, proc.stdout[-4000:]
