#!/usr/bin/env bash
# Sets up (tools/setup.sh), then runs the main job on its embedded default:
# lightring-bench under mpirun, forward + backward of one sequence-parallel
# attention layer with --check against the unsharded result. One rank per GPU
# when GPUs are visible (CUDA backend), otherwise 4 ranks on the CPU backend.
# Extra arguments go to lightring-bench (see launch/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build_dir=${BUILD_DIR:-build}
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
gpus=0
command -v nvidia-smi >/dev/null && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -gt 0 ]; then
  np=$gpus
  backend=cuda
else
  np=${LIGHTRING_NP:-4}
  backend=cpu
fi
for v in NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1; do
  export "$v"
  mpi_flags+=(-x "${v%%=*}")
done
echo "== mpirun -np $np lightring-bench --backend $backend --check $*"
mpirun "${mpi_flags[@]}" -np "$np" "$build_dir"/launch/lightring-bench --backend "$backend" --check "$@"
