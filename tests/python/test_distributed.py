"""Sequence parallel over gloo under mpirun (-np 2 and -np 4): every schedule
sharded equals unsharded (outputs, final state, all gradients), DP x SP groups,
the nn module, lightring.distributed.init() and cross-rank input checks.

Each mpirun runs mp_worker.py once with all checks; the tests read its output.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = ["init", "schedules", "dpsp", "errors", "lightring", "lightring_glue", "agree_once"]
MPIRUN = shutil.which("mpirun")

pytestmark = pytest.mark.skipif(MPIRUN is None or not torch.distributed.is_available(),
                                reason="needs mpirun and torch.distributed")


def run_mpi(np, device="cpu", checks=CHECKS, timeout=300):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np)]
    if device == "cuda":
        for var in ("NCCL_NVLS_ENABLE=0", "TORCH_SYMM_MEM_DISABLE_MULTICAST=1",
                    "NVSHMEM_DISABLE_NVLS=1"):
            name, value = var.split("=")
            os.environ.setdefault(name, value)
            cmd += ["-x", name]
    cmd += [sys.executable, os.path.join(HERE, "mp_worker.py"), *checks, "--device", device]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode()
        pytest.fail(f"mpirun -np {np} timed out after {timeout} s:\n{out[-4000:]}")
    return proc.returncode, proc.stdout


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"np{n}")
def mpi_cpu(request):
    return request.param, *run_mpi(request.param)


@pytest.mark.parametrize("check", CHECKS)
def test_gloo(mpi_cpu, check):
    np, rc, out = mpi_cpu
    passed = [r for r in range(np) if f"PASS {check} rank {r}" in out]
    assert rc == 0 and len(passed) == np, f"mpirun -np {np} exit {rc}:\n{out[-6000:]}"


def gpus():
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.fixture(scope="module")
def mpi_cuda():
    import lightring
    if gpus() < 2:
        pytest.skip("needs 2 GPUs for NCCL groups")
    if not lightring.cuda_available():
        pytest.skip("lightring was built without the CUDA backend")
    return run_mpi(2, device="cuda", timeout=600)


# "lightring" on 2 GPUs: exchange="lightring" (lightring's own NCCL communicator)
# sharded vs unsharded for every schedule, fp32 and bf16, and the per-group cache.
@pytest.mark.parametrize("check", CHECKS)
def test_nccl_two_gpus(mpi_cuda, check):
    rc, out = mpi_cuda
    assert all(f"PASS {check} rank {r}" in out for r in range(2)), out[-6000:]
    assert rc == 0, out[-6000:]



INIT_SCRIPT = """
import os, sys
sys.path.insert(0, {python!r})
import torch.distributed as dist
from lightring import distributed as lrd
ctx = lrd.init(device="cpu")
assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (0, 1, 0, "gloo"), ctx
assert os.environ["RANK"] == "0" and os.environ["WORLD_SIZE"] == "1"
assert dist.get_world_size() == 1
print("OK", ctx.rank, ctx.world_size)
"""


@pytest.mark.parametrize("launcher", [
    {},
    {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "0"},
    {"PMI_RANK": "0", "PMI_SIZE": "1"},
    {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"},
], ids=["none", "openmpi", "pmi", "slurm"])
def test_init_maps_launcher_variables(launcher):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI_", "SLURM_", "PMIX_")) and
           k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                     "MASTER_PORT")}
    env.update(launcher)
    python = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")
    proc = subprocess.run([sys.executable, "-c", INIT_SCRIPT.format(python=python)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "OK 0 1" in proc.stdout, proc.stdout[-3000:]
