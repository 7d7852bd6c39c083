#!/usr/bin/env bash
# The 2-GPU checks of the sequence-parallel runtime (run on the GPU machine):
#   1. the MPI GoogleTest suite on 1 and 2 ranks (NcclTest.* run instead of skipping:
#      NCCL bootstrap from MPI and from raw id bytes, split, sharded fwd/bwd on
#      Device::kCuda vs the float64 oracle for ring/allgather/scan, the deadline);
#      the GPU cases cover ring/allgather/scan x bf16/fp32 x decay on/off x equal/unequal
#      shards, and the NCCL deadline (a peer that never sends -> an error, not a hang);
#      same-host messages go over CUDA IPC (copy engines), so the suite runs a second
#      time with LIGHTRING_COMM_IPC=0 (NCCL's kernels move them);
#   2. lightring-bench --backend cuda --check for every schedule on 2 ranks (odd lengths,
#      global states, bf16; fp32 with decay off).
# Usage: parallel/gpu_check.sh [BUILD_DIR]   (default build-gpu; configured here if absent)
#   BOOST_PREFIX=/path/with/usr  points at Boost.Program_options unpacked from the
#   Debian packages (docs/gpu-build.md); without it lightring-bench is not built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
NP=${NP:-2}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
# The deadline tests set their own short timeouts (an explicit CommOptions::timeout_s wins);
# the variable is unset so that the other cases keep the default.
unset LIGHTRING_COMM_TIMEOUT_S

if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "gpu_check: using the prebuilt binaries in $BUILD"
elif [ ! -f "$BUILD/build.ninja" ]; then
  EXTRA=()
  if [ -n "${BOOST_PREFIX:-}" ]; then
    EXTRA+=(-DBoost_ROOT="$BOOST_PREFIX/usr" -DBoost_NO_SYSTEM_PATHS=ON)
    export LD_LIBRARY_PATH="$BOOST_PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  fi
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a -DLIGHTRING_TORCH=OFF "${EXTRA[@]}"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  TARGETS=(lightring_parallel_tests)
  grep -q "lightring-bench" "$BUILD/build.ninja" && TARGETS+=(lightring-bench)
  ninja -C "$BUILD" "${TARGETS[@]}"
fi

nvidia-smi -L
ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
PASS=()
for v in NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS OMP_NUM_THREADS \
         LD_LIBRARY_PATH NCCL_DEBUG LIGHTRING_COMM_IPC; do
  [ -n "${!v+x}" ] && PASS+=(-x "$v")
done
run() { mpirun "${ROOT_FLAGS[@]}" --oversubscribe --bind-to none -np "$1" "${PASS[@]}" "${@:2}"; }

status=0
for np in ${CHECK_NPS:-1 $NP}; do
  echo "== MPI/NCCL test suite on $np rank(s)"
  run "$np" "$BUILD/tests/cpp/parallel/lightring_parallel_tests" || status=1
done
# Same-host messages go over CUDA IPC by default; the suite again with NCCL moving them.
echo "== MPI/NCCL test suite on $NP ranks with LIGHTRING_COMM_IPC=0 (NCCL's kernels)"
LIGHTRING_COMM_IPC=0 mpirun "${ROOT_FLAGS[@]}" --oversubscribe --bind-to none -np "$NP" \
  "${PASS[@]}" -x LIGHTRING_COMM_IPC "$BUILD/tests/cpp/parallel/lightring_parallel_tests" || status=1
if [ -x "$BUILD/launch/lightring-bench" ]; then
  # bf16 with decay and global states, odd lengths (unequal shards), every schedule;
  # then fp32 with decay off. --check compares with the unsharded CPU result on rank 0.
  for s in ring allgather scan; do
    echo "== lightring-bench --backend cuda --check --schedule $s on $NP ranks (bf16, decay, states)"
    run "$NP" "$BUILD/launch/lightring-bench" --backend cuda --check --schedule "$s" \
      -b 4097 -e 4097 --heads 8 --states -n 2 --no-baseline --no-ceilings --timeout 120 || status=1
  done
  echo "== lightring-bench --backend cuda --check on $NP ranks (fp32, decay off, every schedule)"
  run "$NP" "$BUILD/launch/lightring-bench" --backend cuda --check --schedule ring,allgather,scan \
    --dtype fp32 --decay off -b 2049 -e 2049 --heads 8 --states -n 2 --no-baseline --no-ceilings --timeout 120 || status=1
else
  echo "lightring-bench was not built (Boost.Program_options missing: set BOOST_PREFIX)"
fi
echo "== gpu_check: $([ $status = 0 ] && echo PASSED || echo FAILED)"
exit $status
