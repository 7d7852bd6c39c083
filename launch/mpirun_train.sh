#!/usr/bin/env bash
# Runs lightring-train (or, with --python, python -m lightring.train) on NP ranks under mpirun,
# the shape of launch/mpirun_bench.sh:
#   launch/mpirun_train.sh NP [lightring-train flags...]
#   launch/mpirun_train.sh NP [mpirun options...] -- [lightring-train flags...]
#   launch/mpirun_train.sh --python NP [mpirun options...] -- [python -m lightring.train flags...]
#   launch/mpirun_train.sh 16 --hostfile hosts --map-by ppr:8:node -x NCCL_SOCKET_IFNAME -- \
#       --dp 2 --sp 8 --data fortunes --timeout 60
# With a `--`, the words before it go to mpirun (after this script's own options, so that they
# can override them), the words after it to the program; without one, every word goes to the
# program. TRAIN=... picks lightring-train (default build/launch/lightring-train), PYTHON=... the
# interpreter of --python (default python3), MPIRUN=... the launcher (default: mpirun on PATH).
# Open MPI's out-of-band keepalive gets bounded defaults derived from the deadline unless given
# (launch/oob_keepalive.sh states the rule): a node that drops off the network ends the job.
set -euo pipefail
PYTHON_DRIVER=0
if [ "${1:-}" = --python ]; then PYTHON_DRIVER=1; shift; fi
NP=${1:?usage: mpirun_train.sh [--python] NP [mpirun options... --] [training flags...]}
shift
[[ "$NP" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun_train.sh: NP must be a positive integer (got '$NP')" >&2; exit 2; }
MPI_OPTS=()
for a in "$@"; do
  if [ "$a" = "--" ]; then
    while [ "$1" != "--" ]; do MPI_OPTS+=("$1"); shift; done
    shift
    break
  fi
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MPIRUN=${MPIRUN:-mpirun}
if [ "$PYTHON_DRIVER" = 1 ]; then
  PROGRAM=("${PYTHON:-python3}" -m lightring.train)
  # The package from this checkout unless the caller points elsewhere (pip install: no need).
  export PYTHONPATH=${PYTHONPATH:-$ROOT/python}
else
  TRAIN=${TRAIN:-$ROOT/build/launch/lightring-train}
  [ -x "$TRAIN" ] || { echo "lightring-train not found at $TRAIN (set TRAIN=...)" >&2; exit 1; }
  PROGRAM=("$TRAIN")
fi

export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$ROOT/launch/oob_keepalive.sh"
oob_keepalive_defaults mpirun_train.sh "$@"
ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
# Forward these to every rank (only those that are set: Open MPI does not copy the launching
# shell's environment to remote nodes).
PASS=()
for v in NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS OMP_NUM_THREADS \
         LIGHTRING_COMM_TIMEOUT_S LIGHTRING_NODE_NAME LD_LIBRARY_PATH NCCL_DEBUG \
         CUDA_VISIBLE_DEVICES PYTHONPATH LIGHTRING_BUILD_DIR MASTER_ADDR MASTER_PORT; do
  [ -n "${!v+x}" ] && PASS+=(-x "$v")
done
exec "$MPIRUN" "${ROOT_FLAGS[@]}" --oversubscribe -np "$NP" --bind-to none "${PASS[@]}" \
  ${MPI_OPTS[@]+"${MPI_OPTS[@]}"} "${PROGRAM[@]}" "$@"
