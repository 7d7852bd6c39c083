"""Multi-process checks, one process per rank, launched by test_distributed.py as

    mpirun --allow-run-as-root --oversubscribe -np P python3 mp_worker.py CHECK...

with gloo on CPU (or NCCL on GPUs with --device cuda). Every check compares the
sequence-parallel result with the unsharded one computed on every rank from the
same seeded inputs, asserts, and prints "PASS <check> rank <r>"; any failure
raises (a non-zero exit fails the mpirun).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import lightring  # noqa: E402
from lightring import distributed as lrd  # noqa: E402
from lightring.sequence_parallel import group_ranks  # noqa: E402
import oracle  # noqa: E402

# Sharded vs unsharded: fp32 on the CPU is exact to rounding; the CUDA kernels run fp32
# inputs through TF32 tensor cores (~3e-4 relative, the same bound the single-GPU
# tests use), and bf16 rounds every stored output.
TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2}
TOL_CUDA_FP32 = 2e-3


def leaf(t):
    return t.detach().clone().requires_grad_()


def all_sum(t, group):
    t = t.clone()
    dist.all_reduce(t, group=group)
    return t


def sharded_vs_unsharded(group, schedule, layout, n, device, dtype=torch.float32, seed=0,
                         with_state=True, label="", exchange=None):
    """Runs one attention call sharded over group and unsharded; asserts they agree."""
    b, h, d, e = 2, 3, 6, 5
    g = torch.Generator().manual_seed(seed)
    shape = (lambda x: (b, h, n, x)) if layout == "bhnd" else (lambda x: (b, n, h, x))
    seq = 2 if layout == "bhnd" else 1
    q, k = (0.5 * torch.randn(shape(d), generator=g) for _ in range(2))
    v = torch.randn(shape(e), generator=g)
    w_o = torch.randn(shape(e), generator=g)
    s0 = 0.3 * torch.randn(b, h, d, e, generator=g) if with_state else None
    decay = lightring.slopes(h).to(device)
    q, k, v, w_o = (t.to(device=device, dtype=dtype) for t in (q, k, v, w_o))
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    # A different final-state loss weight on each rank: their gradients must add up.
    w_f = [torch.randn(b, h, d, e, generator=g).to(device) for _ in range(size)]

    # Unsharded reference (every rank computes the same).
    rq, rk, rv = leaf(q), leaf(k), leaf(v)
    rs0 = leaf(s0.to(device)) if with_state else None
    ro, rfinal = lightring.lightning_attention(rq, rk, rv, decay, scale=0.8, initial_state=rs0,
                                               output_final_state=True, layout=layout)
    ((ro.float() * w_o.float()).sum() + sum((rfinal * w).sum() for w in w_f)).backward()

    # Sharded: this rank's piece of the sequence.
    lq, lk, lv = (leaf(lrd.shard(t, group, dim=seq)) for t in (q, k, v))
    ls0 = leaf(s0.to(device)) if with_state else None
    lo, lfinal = lightring.lightning_attention(lq, lk, lv, decay, scale=0.8, initial_state=ls0,
                                               output_final_state=True, layout=layout,
                                               group=group, schedule=schedule,
                                               exchange=exchange)
    lw = lrd.shard(w_o, group, dim=seq)
    ((lo.float() * lw.float()).sum() + (lfinal * w_f[rank]).sum()).backward()

    tol = TOL_CUDA_FP32 if (dtype == torch.float32 and lo.is_cuda) else TOL[dtype]
    where = (f"{label} schedule={schedule} layout={layout} n={n} dtype={dtype} "
             f"exchange={exchange} rank={rank}")
    assert lo.shape == lrd.shard(ro, group, dim=seq).shape, where
    checks = [("o", lrd.gather(lo.detach(), group, dim=seq), ro),
              ("final", lfinal, rfinal),
              ("dq", lrd.gather(lq.grad, group, dim=seq), rq.grad),
              ("dk", lrd.gather(lk.grad, group, dim=seq), rk.grad),
              ("dv", lrd.gather(lv.grad, group, dim=seq), rv.grad)]
    if with_state:
        checks.append(("ds0", all_sum(ls0.grad, group), rs0.grad))
    for name, got, ref in checks:
        err = oracle.rel_err(got, ref)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol} ({where})"


def check_init(args):
    ctx = lrd.init(device=args.device if args.device == "cpu" else None)
    assert ctx.rank == int(os.environ["OMPI_COMM_WORLD_RANK"]), ctx
    assert ctx.world_size == int(os.environ["OMPI_COMM_WORLD_SIZE"]), ctx
    assert ctx.local_rank == int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"]), ctx
    assert os.environ["RANK"] == str(ctx.rank) and os.environ["WORLD_SIZE"] == str(ctx.world_size)
    assert dist.is_initialized() and dist.get_rank() == ctx.rank
    expected_backend = "nccl" if args.device == "cuda" else "gloo"
    assert ctx.backend == expected_backend and ctx.device.type == args.device, ctx
    total = all_sum(torch.tensor([float(ctx.rank)], device=ctx.device), None)
    assert total.item() == ctx.world_size * (ctx.world_size - 1) / 2
    assert lrd.init(device=ctx.device) == ctx  # idempotent
    return ctx


def check_schedules(ctx, args):
    world = dist.group.WORLD
    p = ctx.world_size
    for schedule in lightring.SCHEDULES:
        for layout in ("bhnd", "bnhd"):
            for n in (37, p, 2 * p + 1):
                sharded_vs_unsharded(world, schedule, layout, n, ctx.device, seed=n)
        sharded_vs_unsharded(world, schedule, "bhnd", 29, ctx.device, with_state=False, seed=5)
    if args.device == "cuda":
        for schedule in lightring.SCHEDULES:
            sharded_vs_unsharded(world, schedule, "bnhd", 257, ctx.device, dtype=torch.bfloat16)


def check_dpsp(ctx, args):
    p = ctx.world_size
    layouts = [(p // 2, 2), (1, p)] if p >= 4 else [(1, p), (p, 1)]
    for dp, sp in layouts:
        dp_group, sp_group = lrd.new_groups(dp, sp)
        d_index, s_index = ctx.rank // sp, ctx.rank % sp
        assert group_ranks(sp_group) == [d_index * sp + s for s in range(sp)]
        assert group_ranks(dp_group) == [d * sp + s_index for d in range(dp)]
        assert dist.get_rank(sp_group) == s_index and dist.get_rank(dp_group) == d_index
        # Each data-parallel replica has its own data; the sequence is split over sp.
        for schedule in ("allgather", "ring", "scan"):
            sharded_vs_unsharded(sp_group, schedule, "bnhd", 23, ctx.device, seed=100 + d_index,
                                 label=f"dp={dp} sp={sp}")
        replicas = all_sum(torch.tensor([float(d_index)], device=ctx.device), dp_group)
        assert replicas.item() == dp * (dp - 1) / 2
        check_module(sp_group, ctx.device, seed=d_index)


def check_module(group, device, seed, exchange=None):
    """lightring.nn.LightningAttention sharded over group equals it unsharded, and the
    parameter gradients summed over the group equal the unsharded ones."""
    torch.manual_seed(seed)
    ref = lightring.nn.LightningAttention(24, 4, layer_idx=1, num_layers=3).to(device)
    mod = lightring.nn.LightningAttention(24, 4, layer_idx=1, num_layers=3, group=group,
                                          exchange=exchange).to(device)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(2, 31, 24, device=device)
    w = torch.randn(2, 31, 24, device=device)
    (ref(x) * w).sum().backward()
    y = mod(lrd.shard(x, group, dim=1))
    (y * lrd.shard(w, group, dim=1)).sum().backward()
    tol = TOL_CUDA_FP32 if y.is_cuda else 2e-5  # TF32 tensor cores on CUDA
    assert oracle.rel_err(lrd.gather(y.detach(), group, dim=1), ref(x)) < tol
    for (name, p_ref), p in zip(ref.named_parameters(), mod.parameters()):
        err = oracle.rel_err(all_sum(p.grad, group), p_ref.grad)
        assert err < tol, f"module grad {name}: {err:.2e}"


def expect_error(fn, error, match):
    try:
        fn()
    except error as e:
        assert match in str(e), f"expected {match!r} in {e!r}"
        return
    raise AssertionError(f"expected {error.__name__} containing {match!r}")


def check_errors(ctx, args):
    rank, world, dev = ctx.rank, dist.group.WORLD, ctx.device
    q = torch.randn(1, 2, 5, 4, device=dev)
    v = torch.randn(1, 2, 5, 3, device=dev)
    la = lightring.lightning_attention
    # A disagreement between ranks fails every rank before any state exchange.
    qd = torch.randn(1, 2, 5, 6, device=dev) if rank == 1 else q
    expect_error(lambda: la(qd, qd, v, group=world), ValueError,
                 "every rank of the sequence-parallel group must pass the same head dim D")
    s0 = torch.zeros(1, 2, 4, 3, device=dev) if rank == 0 else None
    expect_error(lambda: la(q, q, v, initial_state=s0, group=world), ValueError,
                 "initial_state (given or None)")
    decay = lightring.slopes(2).to(dev) * (2.0 if rank == ctx.world_size - 1 else 1.0)
    expect_error(lambda: la(q, q, v, decay, group=world), ValueError, "decay values")
    # An invalid input on one rank: that rank gets its error, the others name it.
    last = ctx.world_size - 1
    qb = q.double() if rank == last else q
    if rank == last:
        expect_error(lambda: la(qb, qb, v, group=world), TypeError, "q must be float32")
    else:  # every rank reports the culprit's own reason
        expect_error(lambda: la(qb, qb, v, group=world), ValueError,
                     f"group rank {last} rejected its inputs: q must be float32")
    # The group is still usable afterwards.
    sharded_vs_unsharded(world, "auto", "bhnd", 11, dev, label="after errors")
    with_bad = lambda: lrd.new_groups(3, 5)  # noqa: E731
    expect_error(with_bad, ValueError, "dp x sp must equal the world size")


def check_lightring(ctx, args):
    """exchange="lightring": lightring's own NCCL communicator per group (CUDA), or the
    clear error where it is unavailable (gloo, CPU builds)."""
    from lightring import nccl_exchange
    world, dev = dist.group.WORLD, ctx.device
    la = lightring.lightning_attention
    q = torch.randn(1, 2, 5, 4, device=dev)
    v = torch.randn(1, 2, 5, 3, device=dev)
    if args.device != "cuda" or not nccl_exchange.built():
        expect_error(lambda: la(q, q, v, group=world, exchange="lightring"), RuntimeError,
                     "the lightring NCCL exchange (exchange='lightring' or "
                     "LIGHTRING_EXCHANGE=lightring) is unavailable")
        os.environ[nccl_exchange.ENV] = "lightring"
        try:
            expect_error(lambda: la(q, q, v, group=world), RuntimeError, "is unavailable")
        finally:
            del os.environ[nccl_exchange.ENV]
        sharded_vs_unsharded(world, "auto", "bhnd", 11, dev, label="torch exchange after")
        return
    # Count bootstraps: one per (group, device), whatever the number of calls.
    boots = []
    bootstrap = nccl_exchange._bootstrap
    nccl_exchange._bootstrap = lambda *a: boots.append(a) or bootstrap(*a)
    nccl_exchange.release()
    p = ctx.world_size
    for schedule in lightring.SCHEDULES:
        for dtype in (torch.float32, torch.bfloat16):
            for layout in ("bhnd", "bnhd"):
                for n in (37, 2 * p + 1):
                    sharded_vs_unsharded(world, schedule, layout, n, dev, dtype=dtype,
                                         seed=n, exchange="lightring", label="lightring")
            sharded_vs_unsharded(world, schedule, "bhnd", 29, dev, dtype=dtype,
                                 with_state=False, seed=5, exchange="lightring",
                                 label="lightring")
        sharded_vs_unsharded(world, schedule, "bnhd", 257, dev, dtype=torch.bfloat16,
                             exchange="lightring", label="lightring long")
    comm = nccl_exchange.cached(world)
    assert len(boots) == 1 and comm is not None, f"{len(boots)} bootstraps"
    assert (comm.rank(), comm.size(), comm.device()) == (ctx.rank, p, dev.index)
    # Another group over the same ranks gets its own communicator, cached too.
    other = dist.new_group(list(range(p)))
    assert nccl_exchange.cached(other) is None
    for _ in range(2):
        sharded_vs_unsharded(other, "ring", "bhnd", 19, dev, exchange="lightring",
                             label="other group")
    assert len(boots) == 2 and nccl_exchange.cached(other) is not None
    assert nccl_exchange.cached(other) is not comm and nccl_exchange.cached(world) is comm
    # Opt-in through the environment (a fresh bootstrap proves the path was taken);
    # the nn module.
    nccl_exchange.release(world)
    assert nccl_exchange.cached(world) is None and nccl_exchange.cached(other) is not None
    os.environ[nccl_exchange.ENV] = "lightring"
    try:
        sharded_vs_unsharded(world, "scan", "bnhd", 23, dev, label="env")
    finally:
        del os.environ[nccl_exchange.ENV]
    assert len(boots) == 3
    comm = nccl_exchange.cached(world)
    check_module(world, dev, seed=3, exchange="lightring")
    assert len(boots) == 3 and nccl_exchange.cached(world) is comm
    # One agreement per forward and per backward (the C++ ops agree nothing more).
    counter = AgreementRounds()
    try:
        sharded_vs_unsharded(world, "auto", "bnhd", 37, dev, exchange="lightring",
                             label="agreement rounds")
        rounds = counter.take()
    finally:
        counter.close()
    assert rounds == {"forward": 1, "backward": 1}, rounds
    # A disagreement between ranks still fails every rank before any exchange.
    qd = torch.randn(1, 2, 5, 6, device=dev) if ctx.rank == 1 else q
    expect_error(lambda: la(qd, qd, v, group=world, exchange="lightring"), ValueError,
                 "every rank of the sequence-parallel group must pass the same head dim D")
    sharded_vs_unsharded(world, "auto", "bhnd", 11, dev, exchange="lightring",
                         label="after errors")
    nccl_exchange.release(other)
    assert nccl_exchange.cached(other) is None and nccl_exchange.cached(world) is comm
    nccl_exchange._bootstrap = bootstrap


class _StandInComm:
    """Stands in for torch.classes.lightring.NcclCommunicator in check_lightring_glue."""

    def __init__(self, group):
        self.group = group

    def rank(self):
        return dist.get_rank(self.group)

    def size(self):
        return dist.get_world_size(self.group)

    def aborted(self):
        return False


def _check_agreed(comm, q, schedule, lengths):
    """What sp_forward / sp_backward require of their caller (parallel::Options::agreed_lengths): a resolved
    schedule and every rank's agreed shard length."""
    size, rank = comm.size(), comm.rank()
    assert schedule in ("ring", "allgather", "scan"), f"unresolved schedule {schedule!r}"
    assert len(lengths) == size and lengths[rank] == q.shape[2], (lengths, q.shape)


def _stand_in_forward(q, k, v, decay, scale, s0, output_final_state, block_size, comm,
                      schedule, lengths):
    """The contract of lightring::sp_forward (csrc/nccl_ops.cpp) from the torch exchange,
    which agrees nothing, as the C++ op: (o, S_in, global final state on the last rank)."""
    from lightring import sequence_parallel as sp
    _check_agreed(comm, q, schedule, lengths)
    ex = sp.TorchExchange(comm.group, schedule)
    assert s0 is None or ex.rank == 0, "initial_state must be None except on rank 0"
    o, s_in, total = ex.forward(q, k, v, decay, s0, scale, block_size, output_final_state)
    if s_in is None:
        s_in = sp.zero_state(q, v)
    last = ex.rank == ex.size - 1
    final = total if (output_final_state and last) else q.new_empty((0,), dtype=torch.float32)
    return o, s_in, final


def _stand_in_backward(q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size, comm,
                       schedule, lengths):
    """The contract of lightring::sp_backward: G read on the last rank, dS0 on rank 0."""
    from lightring import sequence_parallel as sp
    _check_agreed(comm, q, schedule, lengths)
    ex = sp.TorchExchange(comm.group, schedule)
    assert g is None or ex.rank == ex.size - 1, "d_final_state must be None except on the last rank"
    return ex.backward(q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size)


class AgreementRounds:
    """Counts the agreement rounds (all-gathers of the agreement record, TAG_AGREE) of each
    call kind, at the message level: any second agreement path would show."""

    def __init__(self):
        from lightring import collectives
        self.collectives, self.saved = collectives, collectives.exchange
        self.rounds = {"forward": 0, "backward": 0}

        def counting(peers, sends, recvs, tag, what):
            if tag == collectives.TAG_AGREE:
                self.rounds[what.rsplit(" ", 1)[-1]] += 1
            return self.saved(peers, sends, recvs, tag, what)
        collectives.exchange = counting

    def take(self):
        rounds, self.rounds = self.rounds, {"forward": 0, "backward": 0}
        return rounds

    def close(self):
        self.collectives.exchange = self.saved


def check_agreement_once(ctx, exchange, label):
    """One forward and one backward of every schedule: exactly one agreement round each;
    "auto" runs the C++ cost model's choice for this P, state size and transport."""
    from lightring import sequence_parallel as sp
    world, p = dist.group.WORLD, ctx.world_size
    ran = []
    prefix = sp.TorchExchange.prefix

    def recording(self, *a, **kw):
        ran.append(self.schedule)
        return prefix(self, *a, **kw)
    sp.TorchExchange.prefix = recording
    counter = AgreementRounds()
    try:
        for schedule in lightring.SCHEDULES:
            for layout in ("bhnd", "bnhd"):
                ran.clear()
                n = 3 * p + 1
                sharded_vs_unsharded(world, schedule, layout, n, ctx.device, seed=9,
                                     exchange=exchange, label=label)
                # The reference (group=None) agrees nothing; the sharded call once each way.
                rounds = counter.take()
                assert rounds == {"forward": 1, "backward": 1}, f"{label} {schedule}: {rounds}"
                n_local = lrd.shard(torch.empty(n), world, dim=0).shape[0]
                expected = schedule if schedule != "auto" else lightring._C.schedule_choice(
                    p, 2, 3, 6, 5, n_local, "float32", "gloo")
                assert ran and set(ran) == {expected}, f"{label} {schedule}: ran {set(ran)}"
    finally:
        counter.close()
        sp.TorchExchange.prefix = prefix
    return ran


def check_agree_once(ctx, args):
    check_agreement_once(ctx, "torch", "torch exchange")


def check_lightring_glue(ctx, args):
    """The Python side of exchange="lightring" (autograd, final-state broadcast, G reduce,
    dS0 on rank 0, the per-group cache) on gloo, with the C++ ops and communicator replaced
    by stand-ins that honour their contract; and the bootstrap's failure on a build
    without the NCCL exchange, on every rank."""
    from lightring import nccl_exchange as nx
    world = dist.group.WORLD
    if not nx.built():
        # Group rank 0 cannot make an id: every rank fails (none waits forever).
        expected = "built without the NCCL exchange" if ctx.rank == 0 else \
            "group rank 0 could not create an NCCL unique id"
        expect_error(lambda: nx._bootstrap(world, ctx.device), RuntimeError, expected)
    saved = nx.check_available, nx._bootstrap, nx._sp_forward, nx._sp_backward
    boots = []
    nx.check_available = lambda group: None
    nx._bootstrap = lambda group, device: boots.append(group) or _StandInComm(group)
    nx._sp_forward, nx._sp_backward = _stand_in_forward, _stand_in_backward
    try:
        nx.release()
        for schedule in lightring.SCHEDULES:
            for layout in ("bhnd", "bnhd"):
                sharded_vs_unsharded(world, schedule, layout, 2 * ctx.world_size + 3, ctx.device,
                                     seed=7, exchange="lightring", label="glue")
            sharded_vs_unsharded(world, schedule, "bhnd", 13, ctx.device, with_state=False,
                                 seed=8, exchange="lightring", label="glue")
        assert len(boots) == 1 and isinstance(nx.cached(world, ctx.device), _StandInComm)
        check_module(world, ctx.device, seed=4, exchange="lightring")
        assert len(boots) == 1
        # One agreement per forward and per backward: the Python one (the stand-ins, like
        # the C++ ops, agree nothing); "auto" resolved as the C++ cost model does for NCCL.
        counter = AgreementRounds()
        try:
            for schedule in lightring.SCHEDULES:
                sharded_vs_unsharded(world, schedule, "bnhd", 3 * ctx.world_size + 1,
                                     ctx.device, seed=9, exchange="lightring", label="glue")
                rounds = counter.take()
                assert rounds == {"forward": 1, "backward": 1}, f"glue {schedule}: {rounds}"
        finally:
            counter.close()
    finally:
        nx.check_available, nx._bootstrap, nx._sp_forward, nx._sp_backward = saved
        nx.release()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checks", nargs="+",
                        choices=["init", "schedules", "dpsp", "errors", "lightring",
                                 "lightring_glue", "agree_once"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    ctx = check_init(args)
    print(f"PASS init rank {ctx.rank}", flush=True)
    for name in args.checks:
        if name == "init":
            continue
        globals()[f"check_{name}"](ctx, args)
        print(f"PASS {name} rank {ctx.rank}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
