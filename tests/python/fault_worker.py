"""One rank of a fault-injection scenario (test_faults.py starts P of them, torchrun-style:
RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in the environment; gloo on CPU).

    python3 fault_worker.py SCENARIO [--victim R]

Prints "READY" after a first successful call, "PASS <scenario> rank <r>" when every expected
error came with the expected message; any unexpected outcome raises (a non-zero exit). In the
"stall" and "exit" scenarios the live ranks end with the uncaught lightring.CommError, as a user
program would, so that test_faults.py checks how the process exits.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import lightring  # noqa: E402
from lightring import distributed as lrd  # noqa: E402

LA = lightring.lightning_attention


def inputs(n=12, h=3, d=4, e=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (0.5 * torch.randn(1, h, n, d, generator=g) for _ in range(2))
    v = torch.randn(1, h, n, e, generator=g)
    return q, k, v


def expect(fn, error, *fragments):
    try:
        fn()
    except error as e:
        for fragment in fragments:
            assert fragment in str(e), f"expected {fragment!r} in {type(e).__name__}: {e}"
        return str(e)
    raise AssertionError(f"expected {error.__name__} containing {fragments}")


def step(world, schedule="ring", seed=0):
    """One sharded forward and backward of a small layer."""
    q, k, v = (t.requires_grad_() for t in inputs(seed=seed))
    o = LA(q, k, v, lightring.slopes(3), group=world, schedule=schedule)
    o.square().sum().backward()


def scenario_mismatch(rank, size, world):
    """Disagreements between ranks: every rank raises, in words, naming the ranks; the group
    stays usable after each one (nothing was sent but the agreement)."""
    culprit = size - 1
    me = rank == culprit
    q, k, v = inputs()
    decay = lightring.slopes(3)
    # Decay values with the same sum and index-weighted sum as the others' (a check of those
    # two moments would miss the difference; the agreement digests the exact bytes).
    d2 = decay.clone()
    if me:
        eps = 1.0 / 1024
        d2[0] += eps
        d2[1] -= 2 * eps
        d2[2] += eps
    assert torch.allclose(d2.double().sum(), decay.double().sum())
    assert torch.allclose((d2.double() * torch.arange(1, 4)).sum(),
                          (decay.double() * torch.arange(1, 4)).sum())
    expect(lambda: LA(q, k, v, d2, group=world), ValueError, "decay values")
    # dtype, schedule, layout, scale: named in words, not as codes.
    qd = (q.bfloat16(), k.bfloat16(), v.bfloat16()) if me else (q, k, v)
    expect(lambda: LA(*qd, decay, group=world), ValueError, "same dtype", "bfloat16", "float32")
    expect(lambda: LA(q, k, v, decay, group=world, schedule="scan" if me else "ring"),
           ValueError, "same schedule", "'scan'", "'ring'")
    if me:
        ql, kl, vl = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        call = lambda: LA(ql, kl, vl, decay, group=world, layout="bnhd")  # noqa: E731
    else:
        call = lambda: LA(q, k, v, decay, group=world)  # noqa: E731
    expect(call, ValueError, "same layout", "'bnhd'", "'bhnd'")
    expect(lambda: LA(q, k, v, decay, group=world, scale=0.5 if me else 1.0), ValueError,
           "same scale", "0.5")
    # D or E of 257 on one rank: that rank's own error, and every other rank reports it.
    big = torch.randn(1, 3, 12, 257)
    args = (big, big, v) if me else (q, k, v)
    if me:
        expect(lambda: LA(*args, decay, group=world), ValueError, "must be <= 256")
    else:
        expect(lambda: LA(*args, decay, group=world), ValueError,
               f"group rank {culprit} rejected its inputs", "must be <= 256")
    # Double backward through the sharded op raises where the second derivative is taken.
    qg, kg, vg = (t.requires_grad_() for t in inputs(seed=1))
    o = LA(qg, kg, vg, decay, group=world)
    (g,) = torch.autograd.grad(o.sum(), qg, create_graph=True)
    expect(lambda: (o.sum() + g.square().sum()).backward(), RuntimeError,
           "second derivative through lightning_attention")
    # Decay with requires_grad: a clear error, on every rank (through the agreement).
    dg = decay.clone().requires_grad_()
    if me:
        expect(lambda: LA(q, k, v, dg, group=world), ValueError, "decay requires grad")
    else:
        expect(lambda: LA(q, k, v, decay, group=world), ValueError,
               f"group rank {culprit} rejected its inputs", "decay requires grad")
    step(world)  # still usable


def scenario_stall(rank, size, world):
    """Calls in a loop; the test stops the victim with SIGSTOP after READY. The live ranks
    must raise CommError naming the victim within the deadline and exit."""
    step(world)
    print("READY", flush=True)
    start = time.monotonic()
    while True:
        try:
            step(world)
        except lightring.CommError as e:
            print(f"ELAPSED {time.monotonic() - start:.1f} after the first wait", flush=True)
            raise e
        start = time.monotonic()


def scenario_skip_backward(rank, size, world, victim):
    """The victim skips one backward and runs its next forward: every rank raises an error
    saying so (the agreement of the backward meets the victim's forward)."""
    step(world)
    print("READY", flush=True)
    q, k, v = (t.requires_grad_() for t in inputs())
    o = LA(q, k, v, lightring.slopes(3), group=world)
    if rank == victim:
        expect(lambda: LA(q, k, v, lightring.slopes(3), group=world), RuntimeError,
               "every rank must run forward and then backward")
    else:
        expect(lambda: o.sum().backward(), RuntimeError,
               f"group rank {victim} is in its forward", "skipped a backward")


def scenario_exit(rank, size, world, victim):
    """The victim skips its backward and ends its program: the others name it."""
    step(world)
    print("READY", flush=True)
    q, k, v = (t.requires_grad_() for t in inputs())
    o = LA(q, k, v, lightring.slopes(3), group=world)
    if rank == victim:
        print(f"PASS exit rank {rank}", flush=True)
        os._exit(0)  # gone without a word: no backward, no destroy_process_group
    o.sum().backward()  # raises CommError


def scenario_bad_timeout(rank, size, world):
    """Set by the test to a malformed LIGHTRING_COMM_TIMEOUT_S: never reached (init fails)."""
    raise AssertionError("lightring.distributed.init() accepted a malformed deadline")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--victim", type=int, default=1)
    args = parser.parse_args()
    if args.scenario == "bad_timeout":
        expect(lambda: lrd.init(device="cpu"), ValueError, "LIGHTRING_COMM_TIMEOUT_S must be a positive")
        print(f"PASS bad_timeout rank {os.environ['RANK']}", flush=True)
        return
    ctx = lrd.init(device="cpu")  # gloo on CPU tensors, also on a GPU machine
    world = dist.group.WORLD
    extra = {"victim": args.victim} if args.scenario in ("skip_backward", "exit") else {}
    globals()[f"scenario_{args.scenario}"](ctx.rank, ctx.world_size, world, **extra)
    print(f"PASS {args.scenario} rank {ctx.rank}", flush=True)


if __name__ == "__main__":
    main()
