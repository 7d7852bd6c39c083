"""One rank of test_node_groups.py, launched as

    mpirun -np 4 sh -c 'LIGHTRING_NODE_NAME=<node of this rank> exec python3 "$0" LAYOUT' \
        node_groups_worker.py

LAYOUT blocked: ranks 0-1 on sim-node0, 2-3 on sim-node1; round-robin: even ranks on sim-node0.
Asserts, then prints "PASS node_groups rank <r>"; any failure raises (non-zero exit).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from lightring import distributed as lrd  # noqa: E402
from lightring.sequence_parallel import group_ranks  # noqa: E402


def expect_value_error(call, needle):
    try:
        call()
    except ValueError as e:
        assert needle in str(e), f"expected {needle!r} in {str(e)!r}"
        return
    raise AssertionError(f"no ValueError (expected {needle!r})")


def rank_sum(group):
    t = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(t, group=group)
    return t.item()


def main():
    layout = sys.argv[1]
    ctx = lrd.init(device="cpu")
    assert ctx.world_size == 4, ctx
    r = ctx.rank
    assert lrd.node_name() == os.environ["LIGHTRING_NODE_NAME"]
    if layout == "blocked":
        expect_value_error(lambda: lrd.new_groups(1, 4),
                           "sp=4 puts SP group 0 (ranks 0-3) on 2 nodes (sim-node0, sim-node1); "
                           "the job has 2 nodes x 2 ranks (sim-node0: ranks 0-1; sim-node1: ranks "
                           "2-3): pick an sp that divides 2")
        dp, sp = lrd.new_groups(2, 2)  # each SP group on its node, DP across the nodes
        assert group_ranks(sp) == [r // 2 * 2, r // 2 * 2 + 1]
        assert group_ranks(dp) == [r % 2, r % 2 + 2]
        assert rank_sum(sp) == (1 if r < 2 else 5) and rank_sum(dp) == (2 if r % 2 == 0 else 4)
    else:
        expect_value_error(lambda: lrd.new_groups(2, 2),
                           "sp=2 puts SP group 0 (ranks 0-1) on 2 nodes (sim-node0, sim-node1); "
                           "the job has 2 nodes x 2 ranks (sim-node0: ranks 0,2; sim-node1: ranks "
                           "1,3): start the ranks node by node (mpirun --map-by slot)")
        dp, sp = lrd.new_groups(4, 1)  # sp = 1: nothing to place
        assert group_ranks(sp) == [r]
    dp, sp = lrd.new_groups(1, 4, sp_across_nodes=True)  # asked for: one group over both nodes
    assert group_ranks(sp) == [0, 1, 2, 3] and rank_sum(sp) == 6
    print(f"PASS node_groups rank {r}", flush=True)


if __name__ == "__main__":
    main()
