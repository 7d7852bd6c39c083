"""python -m lightring.train --sp-across-nodes (docs/multinode.md, section 3) under mpirun -np 4
(gloo, CPU), LIGHTRING_NODE_NAME making this host look like 2 nodes x 2 ranks (sim-node0: ranks
0-1, sim-node1: ranks 2-3):
- --dp 1 --sp 4 without the flag: every rank prints the placement error in lightring-train's
  words (naming --sp 4, the group, both nodes, the layout and --sp-across-nodes), exit status 2,
  and no step runs;
- the same with --sp-across-nodes: it trains, and every step's loss equals one process's
  (--sp 1, the same global batch) within 1e-5 relative.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MPIRUN = shutil.which("mpirun")
FLAGS = ["--data", "fortunes", "--seq-len", "64", "--batch", "2", "--steps", "3", "--warmup",
         "1", "--eval-sequences", "0", "--log-every", "1", "--timeout", "60"]
# Rank r of mpirun's 4 is on sim-node<r / 2>.
ON_TWO_NODES = ["sh", "-c",
                'LIGHTRING_NODE_NAME=sim-node$((OMPI_COMM_WORLD_RANK / 2)) exec "$0" "$@"']

pytestmark = [
    pytest.mark.skipif(MPIRUN is None, reason="needs mpirun"),
    pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes"),
                       reason="needs Debian's fortunes"),
]


def run(cmd, timeout=90):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.path.join(REPO, "python") + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    env.pop("LIGHTRING_NODE_NAME", None)
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd[:8])} ... did not end within {timeout} s: {e.stdout}")


def train_on_two_nodes(args):
    return run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "--timeout", "80", "-np", "4"] +
               ON_TWO_NODES + [sys.executable, "-m", "lightring.train"] + args)


def losses(path):
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "train"}


def test_sp_across_nodes_flag(tmp_path):
    proc = train_on_two_nodes(FLAGS + ["--dp", "1", "--sp", "4"])
    error = ("--sp 4 puts SP group 0 (ranks 0-3) on 2 nodes (sim-node0, sim-node1); the job has "
             "2 nodes x 2 ranks (sim-node0: ranks 0-1; sim-node1: ranks 2-3): pick an --sp that "
             "divides 2 (the ranks per node), or pass --sp-across-nodes to let SP groups span "
             "nodes")
    named = [r for r in range(4) if f"lightring.train (rank {r}): {error}" in proc.stdout]
    assert proc.returncode != 0 and named == [0, 1, 2, 3], \
        f"exit {proc.returncode}, the error on ranks {named}:\n{proc.stdout[-4000:]}"
    assert "step " not in proc.stdout and "done:" not in proc.stdout

    proc = train_on_two_nodes(FLAGS + ["--dp", "1", "--sp", "4", "--sp-across-nodes", "--log",
                                       str(tmp_path / "across.jsonl")])
    assert proc.returncode == 0 and "done: 3 steps" in proc.stdout, proc.stdout[-4000:]
    one = run([sys.executable, "-m", "lightring.train"] + FLAGS +
              ["--log", str(tmp_path / "one.jsonl")])
    assert one.returncode == 0, one.stdout[-4000:]
    across, ref = losses(tmp_path / "across.jsonl"), losses(tmp_path / "one.jsonl")
    assert sorted(across) == sorted(ref) == [1, 2, 3]
    for step, loss in ref.items():
        assert abs(across[step] - loss) <= 1e-5 * abs(loss), (step, across[step], loss)
