#!/usr/bin/env bash
# The Python training script (python -m lightring.train: gloo on the CPU) under
# `mpirun --hostfile` on 2 namespace "nodes" x 2 ranks, --dp 2 --sp 2, against the same run on
# one node (4 ranks of lr-node0): both finish, and every step's loss is within RTOL (default
# 1e-5) relative (train_log_check.py says whether it is bit-exact). MASTER_ADDR is not set:
# lightring.distributed.init() picks it on rank 0 and broadcasts it over MPI. Each node has its
# own network namespace, so a loopback address of node 0 is unreachable from node 1: the run
# across nodes finishing shows that init() offered an address the other node reaches.
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
# Then a LIGHTRING_MASTER_ADDR that does not resolve: every rank names it and exits non-zero.
#   tests/cluster/run_python_hostfile.sh [LIGHTRING_BUILD_DIR]   (the build holding csrc/_C*.so)
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
BUILD=$(realpath "${1:-$HERE/../../build}")
PYTHON=${LIGHTRING_PYTHON:-/usr/bin/python3}
compgen -G "$BUILD/csrc/_C*.so" >/dev/null ||
  { echo "run_python_hostfile: no extension $BUILD/csrc/_C*.so (build lightring_python)" >&2; exit 1; }
CHECK=$HERE/train_log_check.py
RTOL=${RTOL:-1e-5}
cluster_up 2
R=$LR_CLUSTER_RUN
export PYTHONPATH=$(realpath "$HERE/../../python") LIGHTRING_BUILD_DIR=$BUILD
unset MASTER_ADDR MASTER_PORT LIGHTRING_MASTER_ADDR

flags=(--dp 2 --sp 2 --data fortunes --steps 6 --seq-len 96 --batch 2 --warmup 4
       --eval-sequences 0 --log-every 2 --timeout 60)
train() {  # train NAME MPIRUN-PLACEMENT...: one run of the Python driver, its log $R/NAME.jsonl
  local name=$1 start rc=0
  shift
  start=$(date +%s%N)
  cluster_mpirun -np 4 "$@" -x PYTHONPATH -x LIGHTRING_BUILD_DIR "$PYTHON" -m lightring.train \
    "${flags[@]}" --log "$R/$name.jsonl" >"$R/$name.out" 2>&1 || rc=$?
  echo "run_python_hostfile: $name: exit status $rc after $((($(date +%s%N) - start) / 1000000)) ms"
  [ "$rc" = 0 ] && grep -q "^done: 6 steps" "$R/$name.out" || { cat "$R/$name.out" >&2; exit 1; }
}
train two_nodes --map-by ppr:2:node   # cluster_mpirun passes --hostfile
train one_node --host lr-node0:4
"$PYTHON" "$CHECK" losses "$R/one_node.jsonl" "$R/two_nodes.jsonl" --rtol "$RTOL" --steps 6

# A LIGHTRING_MASTER_ADDR that does not resolve: rank 0 rejects it before the rendezvous and
# every rank raises the reason naming the variable (not a rendezvous timeout), within 30 s.
start=$(date +%s%N)
rc=0
LIGHTRING_MASTER_ADDR=garbage:12:34 timeout 30 bash -c "source '$HERE/cluster_lib.sh'; cluster_mpirun \
  -np 2 --map-by ppr:1:node -x PYTHONPATH -x LIGHTRING_BUILD_DIR -x LIGHTRING_MASTER_ADDR \
  '$PYTHON' -c 'import lightring.distributed as d; d.init(timeout=20)'" >"$R/master.out" 2>&1 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
# rank 0 raises the ValueError itself, rank 1 the RuntimeError that carries it.
needle='\$LIGHTRING_MASTER_ADDR='"'garbage:12:34' is neither an address nor a host name"
on_rank0=$(grep -c "^ValueError: $needle" "$R/master.out" || true)
on_rank1=$(grep -c "^RuntimeError: lightring.distributed.init(): rank 0 could not choose the rendezvous address: ValueError: $needle" "$R/master.out" || true)
if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$on_rank0" -lt 1 ] || [ "$on_rank1" -lt 1 ]; then
  echo "run_python_hostfile: FAIL: LIGHTRING_MASTER_ADDR=garbage:12:34: exit $rc after $ms ms, named by rank 0: $on_rank0, rank 1: $on_rank1" >&2
  cat "$R/master.out" >&2
  exit 1
fi
echo "run_python_hostfile: LIGHTRING_MASTER_ADDR=garbage:12:34: exit $rc after $ms ms, named on both ranks"
