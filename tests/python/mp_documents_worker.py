"""Packed documents under sequence parallelism, one process per rank, launched by
test_documents.py as

    mpirun --allow-run-as-root --oversubscribe -np P python3 mp_documents_worker.py

over gloo. For every schedule and layout of documents over shards (a document spanning every
shard, a boundary on every shard edge, one-token documents, unequal shards) the sharded call
with the global cu_seqlens on every rank is compared with the per-document float64 oracle
(outputs, per-document final states, gradients of q, k, v and the initial states, summed
over ranks); then argument errors are checked to be raised on every rank. Any failure raises
(a non-zero exit fails the mpirun); "PASS documents rank <r>" is printed at the end.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import lightring  # noqa: E402
from lightring import distributed as lrd  # noqa: E402
import doc_oracle  # noqa: E402
from oracle import rel_err  # noqa: E402

TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2}


def leaf(t):
    return t.detach().clone().requires_grad_()


def all_sum(t):
    t = t.clone()
    dist.all_reduce(t)
    return t


def layouts(p):
    """(name, document lengths, shard lengths) for P ranks."""
    edges = [7 + 3 * r for r in range(p)]
    out = [
        ("one_document_everywhere", [sum(edges)], edges),
        ("boundary_on_every_edge", edges, edges),
        ("one_token_documents", [1] * (2 * p + 1), [2] * (p - 1) + [3]),
        ("unequal_mixed", [3, 40, 1, 17, 2 * p], None),
    ]
    return out


def shards_of(total, shards, p):
    if shards is not None:
        return shards
    base = [total // p] * p
    base[0] += total - sum(base)
    base[-1] = max(1, base[-1])
    return [max(1, n) for n in base]


def check_case(name, lengths, shards, schedule, dtype, with_s0, seed):
    p, rank = dist.get_world_size(), dist.get_rank()
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    total, docs, h, d, e = cu[-1], len(lengths), 3, 6, 5
    shards = shards_of(total, shards, p)
    assert sum(shards) == total, (name, shards, total)
    g = torch.Generator().manual_seed(seed)
    q, k = (0.5 * torch.randn(1, h, total, d, generator=g) for _ in range(2))
    v = torch.randn(1, h, total, e, generator=g)
    w_o = torch.randn(1, h, total, e, generator=g)
    # A different final-state loss weight on each rank: their gradients must add up.
    w_f = [torch.randn(docs, h, d, e, generator=g) for _ in range(p)]
    s0 = 0.3 * torch.randn(docs, h, d, e, generator=g) if with_s0 else None
    decay = lightring.slopes(h)

    rq, rk, rv = (leaf(x.to(dtype).double()) for x in (q, k, v))  # the rounded inputs
    w_o = w_o.to(dtype).float()  # o's gradient arrives in o's dtype
    rs0 = leaf(s0.double()) if with_s0 else None
    ro, rf = doc_oracle.documents(rq, rk, rv, cu, decay, 0.5, rs0)
    ((ro * w_o.double()).sum() + (rf * sum(w_f).double()).sum()).backward()

    lo = sum(shards[:rank])
    n = shards[rank]
    mine = lambda t: t[:, :, lo:lo + n]  # noqa: E731
    lq, lk, lv = (leaf(mine(x).to(dtype)) for x in (q, k, v))
    ls0 = leaf(s0) if with_s0 else None
    o, f = lightring.lightning_attention(lq, lk, lv, decay, scale=0.5, initial_state=ls0,
                                         output_final_state=True, group=dist.group.WORLD,
                                         schedule=schedule, block_size=4, exchange="torch",
                                         cu_seqlens=torch.tensor(cu))
    ((o.float() * mine(w_o)).sum() + (f * w_f[rank]).sum()).backward()
    tol = TOL[dtype] * 2
    label = f"{name} {schedule} {dtype} rank {rank}"
    assert rel_err(o, mine(ro)) < tol, label
    assert rel_err(f, rf) < 2e-5, label
    assert rel_err(lq.grad, mine(rq.grad)) < tol, label
    assert rel_err(lk.grad, mine(rk.grad)) < tol, label
    assert rel_err(lv.grad, mine(rv.grad)) < tol, label
    if with_s0:
        assert rel_err(all_sum(ls0.grad), rs0.grad) < 2e-5, label


def expect_error(fn, error, match):
    try:
        fn()
    except error as e:
        assert match in str(e), f"expected {match!r} in {e!r}"
        return
    raise AssertionError(f"expected {error.__name__} containing {match!r}")


def check_errors():
    p, rank, world = dist.get_world_size(), dist.get_rank(), dist.group.WORLD
    q = torch.randn(1, 2, 5, 4)
    la = lightring.lightning_attention
    total = 5 * p
    # The offsets do not end at the stream's length: every rank says so.
    expect_error(lambda: la(q, q, q, group=world, cu_seqlens=torch.tensor([0, 3, total - 1])),
                 ValueError, f"cu_seqlens[-1] must be the packed stream's length T = {total}")
    # Different offsets on one rank.
    cu = torch.tensor([0, 2, total]) if rank == p - 1 else torch.tensor([0, 3, total])
    expect_error(lambda: la(q, q, q, group=world, cu_seqlens=cu), ValueError,
                 "cu_seqlens values (the global offsets)")
    # Offsets on some ranks only.
    cu = torch.tensor([0, total]) if rank == 0 else None
    expect_error(lambda: la(q, q, q, group=world, cu_seqlens=cu), ValueError,
                 "cu_seqlens (given or None)")
    # An invalid argument on one rank: that rank gets its own error, the others name it.
    bad = torch.tensor([0, 3, 3, total]) if rank == p - 1 else torch.tensor([0, 3, 4, total])
    if rank == p - 1:
        expect_error(lambda: la(q, q, q, group=world, cu_seqlens=bad), ValueError,
                     "cu_seqlens must be strictly increasing")
    else:
        expect_error(lambda: la(q, q, q, group=world, cu_seqlens=bad), ValueError,
                     f"group rank {p - 1} rejected its inputs: cu_seqlens must be strictly")
    # The wrong number of initial states: every rank of the group.
    s0 = torch.zeros(3, 2, 4, 4)
    expect_error(lambda: la(q, q, q, group=world, initial_state=s0,
                            cu_seqlens=torch.tensor([0, 4, total])), ValueError,
                 "initial_state must have shape [N, H, D, E]")


def main():
    lrd.init(backend="gloo", device="cpu")
    p, rank = dist.get_world_size(), dist.get_rank()
    seed = 0
    for name, lengths, shards in layouts(p):
        for schedule in ("ring", "allgather", "scan"):
            for dtype in (torch.float32, torch.bfloat16):
                seed += 1
                check_case(name, lengths, shards, schedule, dtype, with_s0=(seed % 3 != 0),
                           seed=seed)
    check_errors()
    print(f"PASS documents rank {rank}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
