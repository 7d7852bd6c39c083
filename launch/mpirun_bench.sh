#!/usr/bin/env bash
# Runs lightring-bench on NP ranks (one per GPU) with NVLink multicast off, as
# the GPU machines need (docs/gpu-build.md), passing the variables to
# every rank with -x.
#   launch/mpirun_bench.sh NP [lightring-bench flags...]
#   BENCH=build/launch/lightring-bench launch/mpirun_bench.sh 2 --check
set -euo pipefail
NP=${1:?usage: mpirun_bench.sh NP [lightring-bench flags...]}
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/build/launch/lightring-bench}
[ -x "$BENCH" ] || { echo "lightring-bench not found at $BENCH (set BENCH=...)" >&2; exit 1; }

export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export LIGHTRING_COMM_TIMEOUT_S=${LIGHTRING_COMM_TIMEOUT_S:-300}
ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
# Forward these to every rank (only those that are set, to keep mpirun quiet).
PASS=()
for v in NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS OMP_NUM_THREADS \
         LIGHTRING_COMM_TIMEOUT_S LD_LIBRARY_PATH NCCL_DEBUG CUDA_VISIBLE_DEVICES; do
  [ -n "${!v+x}" ] && PASS+=(-x "$v")
done
exec mpirun "${ROOT_FLAGS[@]}" --oversubscribe -np "$NP" --bind-to none "${PASS[@]}" "$BENCH" "$@"
