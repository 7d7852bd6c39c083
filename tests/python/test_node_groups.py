"""lightring.distributed.new_groups keeps every SP group on one node (docs/multinode.md): the
placement rule on given node names, and under mpirun -np 4 (gloo) with LIGHTRING_NODE_NAME
making this host look like 2 nodes x 2 ranks (blocked, and dealt round robin): the error on
every rank, the allowed layouts, sp_across_nodes=True (node_groups_worker.py)."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from lightring import distributed as lrd

HERE = os.path.dirname(os.path.abspath(__file__))
MPIRUN = shutil.which("mpirun")


def test_placement_rule():
    two_by_two = ["n0", "n0", "n1", "n1"]
    assert lrd.sp_placement_error(two_by_two, 1) is None
    assert lrd.sp_placement_error(two_by_two, 2) is None
    assert lrd.sp_placement_error(two_by_two, 4) == (
        "sp=4 puts SP group 0 (ranks 0-3) on 2 nodes (n0, n1); the job has 2 nodes x 2 ranks "
        "(n0: ranks 0-1; n1: ranks 2-3): pick an sp that divides 2 (the ranks per node), or pass "
        "sp_across_nodes=True to let SP groups span nodes")
    # 2 nodes x 3 ranks, sp 2: group 1 (ranks 2-3) straddles the boundary.
    e = lrd.sp_placement_error(["a"] * 3 + ["b"] * 3, 2)
    assert e.startswith("sp=2 puts SP group 1 (ranks 2-3) on 2 nodes (a, b)") and "divides 3" in e
    assert lrd.sp_placement_error(["a"] * 3 + ["b"] * 3, 3) is None
    # Uneven nodes, node order by first rank.
    e = lrd.sp_placement_error(["z", "z", "z", "a", "m", "m"], 2)
    assert "3 nodes, 1-3 ranks each (z: ranks 0-2; a: rank 3; m: ranks 4-5)" in e, e


def test_node_name_override(monkeypatch):
    monkeypatch.setenv("LIGHTRING_NODE_NAME", "fake-7")
    assert lrd.node_name() == "fake-7"
    monkeypatch.setenv("LIGHTRING_NODE_NAME", "")
    assert lrd.node_name() != ""  # the host name


@pytest.mark.skipif(MPIRUN is None or not torch.distributed.is_available(),
                    reason="needs mpirun and torch.distributed")
@pytest.mark.parametrize("layout,node_of", [("blocked", "r / 2"), ("round-robin", "r % 2")])
def test_groups_under_mpirun(layout, node_of):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "--timeout", "150", "-np", "4",
           "-x", f"NODE_OF={node_of}", "sh", "-c",
           'r=$OMPI_COMM_WORLD_RANK; LIGHTRING_NODE_NAME=sim-node$(($NODE_OF)) exec "$0" "$@"',
           sys.executable, os.path.join(HERE, "node_groups_worker.py"), layout]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=180)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpirun -np 4 ({layout}) did not end within 180 s: {e.stdout}")
    passed = [r for r in range(4) if f"PASS node_groups rank {r}" in proc.stdout]
    assert proc.returncode == 0 and len(passed) == 4, \
        f"mpirun -np 4 ({layout}) exit {proc.returncode}:\n{proc.stdout[-4000:]}"
