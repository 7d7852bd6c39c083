"""schedule="auto" is the C++ cost model's choice (parallel::choose_schedule), the same choice
lightring-bench makes for the same P, sizes and transport: lightring._C.schedule_choice against
`lightring-bench --model` (its JSON rows), for the host link (gloo, mpi: --backend cpu) and the
NCCL link (--backend cuda). The multi-process side (the schedule a group call runs is this
choice) is the agree_once check of mp_worker.py."""
import json
import os
import subprocess

import pytest

import lightring

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("LIGHTRING_BUILD_DIR", os.path.join(REPO, "build"))
BENCH = os.path.join(BUILD, "launch", "lightring-bench")

RANKS = [1, 2, 3, 4, 5, 6, 8, 12, 16, 64, 256, 4096]
# (B, H, D, E): a 4-byte state up to 64 MiB, across the crossovers of both link models.
SIZES = [(1, 1, 1, 1), (2, 3, 6, 5), (2, 4, 16, 8), (1, 8, 64, 64), (1, 32, 128, 128),
         (4, 64, 256, 256)]
TRANSPORTS = {"gloo": "cpu", "mpi": "cpu", "nccl": "cuda"}


def choice(p, size, transport, length=100, dtype="float32"):
    return lightring._C.schedule_choice(p, *size, length, dtype, transport)


def bench_model(backend, size, tmp_path):
    b, h, d, e = size
    out = tmp_path / f"model_{backend}_{b}_{h}_{d}_{e}.json"
    cmd = [BENCH, "--model", "--backend", backend, "--batch", str(b), "--heads", str(h),
           "--dim", str(d), "--vdim", str(e), "--model-ranks", ",".join(map(str, RANKS)),
           "--json", str(out)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["P"] for r in rows] == RANKS
    assert all(r["msg_bytes"] == b * h * d * e * 4 for r in rows)
    return {r["P"]: r["auto"] for r in rows}


@pytest.mark.skipif(not os.path.exists(BENCH), reason="needs a built lightring-bench")
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_auto_is_the_bench_choice(transport, size, tmp_path):
    bench = bench_model(TRANSPORTS[transport], size, tmp_path)
    mine = {p: choice(p, size, transport) for p in RANKS}
    assert mine == bench


def test_choices_cover_every_schedule():
    """The sizes above reach every schedule (the comparison is not vacuous): all three on the
    host link; ring and scan on the NCCL link, whose model never prefers the all-gather on
    one level. P <= 2 is always one ring hop."""
    expected = {"gloo": {"ring", "allgather", "scan"}, "nccl": {"ring", "scan"}}
    for transport, schedules in expected.items():
        seen = {choice(p, s, transport) for p in RANKS for s in SIZES}
        assert seen == schedules, (transport, seen)
        assert {choice(p, s, transport) for p in (1, 2) for s in SIZES} == {"ring"}


def test_length_and_dtype_do_not_change_the_choice():
    # The messages are fp32 [B, H, D, E] states whatever the input dtype and length.
    for p in (3, 4, 16):
        for size in SIZES:
            ref = choice(p, size, "nccl")
            assert all(choice(p, size, "nccl", length=n, dtype=t) == ref
                       for n in (1, 4096) for t in ("float32", "bfloat16", "float16"))


@pytest.mark.parametrize("args, match", [
    ((4, 1, 2, 4, 4, 10, "float32", "tcp"), "transport must be one of nccl, gloo, mpi"),
    ((4, 1, 2, 4, 4, 10, "float64", "gloo"), "dtype must be one of fp32, bf16, fp16"),
    ((0, 1, 2, 4, 4, 10, "float32", "gloo"), "P must be >= 1"),
    ((4, 1, 2, 4, 4, 0, "float32", "gloo"), "must be >= 1"),
])
def test_bad_arguments(args, match):
    with pytest.raises(RuntimeError, match=match):
        lightring._C.schedule_choice(*args)
