#!/usr/bin/env bash
# Runs lightring-bench on NP ranks (one per GPU) with NVLink multicast off, as
# the GPU machines need (docs/gpu-build.md), passing the variables to
# every rank with -x.
#   launch/mpirun_bench.sh NP [lightring-bench flags...]
#   launch/mpirun_bench.sh NP [mpirun options...] -- [lightring-bench flags...]
#   launch/mpirun_bench.sh 16 --hostfile hosts -x NCCL_SOCKET_IFNAME -- --local-len 65536
#   BENCH=build/launch/lightring-bench launch/mpirun_bench.sh 2 --check
# With a `--`, the words before it go to mpirun (after this script's own options, so that they
# can add to or override them), the words after it to lightring-bench; without one, every word
# goes to lightring-bench. MPIRUN=... picks the launcher (default: mpirun on PATH).
# Open MPI's out-of-band keepalive gets bounded defaults derived from the deadline unless given
# (launch/oob_keepalive.sh states the rule): a node that drops off the network ends the job.
set -euo pipefail
NP=${1:?usage: mpirun_bench.sh NP [mpirun options... --] [lightring-bench flags...]}
shift
[[ "$NP" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun_bench.sh: NP must be a positive integer (got '$NP')" >&2; exit 2; }
MPI_OPTS=()
for a in "$@"; do
  if [ "$a" = "--" ]; then
    while [ "$1" != "--" ]; do MPI_OPTS+=("$1"); shift; done
    shift
    break
  fi
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/build/launch/lightring-bench}
MPIRUN=${MPIRUN:-mpirun}
[ -x "$BENCH" ] || { echo "lightring-bench not found at $BENCH (set BENCH=...)" >&2; exit 1; }

export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export LIGHTRING_COMM_TIMEOUT_S=${LIGHTRING_COMM_TIMEOUT_S:-300}
source "$ROOT/launch/oob_keepalive.sh"
oob_keepalive_defaults mpirun_bench.sh "$@"
# Under mpirun a rank's stdout is a pseudo-terminal even when ours is a file: progress lines
# (launch/README.md) only when this script's stdout is a terminal, unless set.
if [ -z "${LIGHTRING_BENCH_PROGRESS+x}" ]; then
  if [ -t 1 ]; then export LIGHTRING_BENCH_PROGRESS=1; else export LIGHTRING_BENCH_PROGRESS=0; fi
fi
ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
# Forward these to every rank (only those that are set, to keep mpirun quiet).
PASS=()
for v in NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS OMP_NUM_THREADS \
         LIGHTRING_COMM_TIMEOUT_S LIGHTRING_BENCH_PROGRESS LD_LIBRARY_PATH NCCL_DEBUG \
         CUDA_VISIBLE_DEVICES; do
  [ -n "${!v+x}" ] && PASS+=(-x "$v")
done
exec "$MPIRUN" "${ROOT_FLAGS[@]}" --oversubscribe -np "$NP" --bind-to none "${PASS[@]}" \
  ${MPI_OPTS[@]+"${MPI_OPTS[@]}"} "$BENCH" "$@"
