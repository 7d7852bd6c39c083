#!/usr/bin/env bash
# lightring-train --dp 2 --sp 2 across 2 namespace "nodes" x 2 ranks (each SP group inside a
# node, the DP all-reduce across the nodes) against the same run on one node (4 ranks of
# lr-node0): every step's loss within RTOL (default 1e-5) relative and the final weights and
# AdamW moments within RTOL (train_log_check.py; it also says whether the run is bit-exact).
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_train_dp.sh [path/to/lightring-train]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
TRAIN=$(realpath "${1:-$HERE/../../build/launch/lightring-train}")
[ -x "$TRAIN" ] || { echo "run_train_dp: no lightring-train at $TRAIN" >&2; exit 1; }
PYTHON=${LIGHTRING_PYTHON:-/usr/bin/python3}
CHECK=$HERE/train_log_check.py
RTOL=${RTOL:-1e-5}
cluster_up 2
R=$LR_CLUSTER_RUN

layout=$(cluster_mpirun -np 4 --map-by ppr:2:node sh -c 'echo "$OMPI_COMM_WORLD_RANK $(hostname)"' | sort)
expected=$'0 lr-node0\n1 lr-node0\n2 lr-node1\n3 lr-node1'
[ "$layout" = "$expected" ] || { echo "run_train_dp: ranks are not 2 per node:" >&2; echo "$layout" >&2; exit 1; }
echo "run_train_dp: SP groups {0,1} on lr-node0, {2,3} on lr-node1; DP pairs (0,2), (1,3) across the nodes"

flags=(--dp 2 --sp 2 --data fortunes --steps 12 --seq-len 96 --batch 2 --warmup 4
       --eval-sequences 0 --log-every 4 --timeout 60)
train() {  # train NAME MPIRUN-PLACEMENT...: one run, its log and final checkpoint under $R/NAME
  local name=$1 start rc=0
  shift
  start=$(date +%s%N)
  cluster_mpirun -np 4 "$@" "$TRAIN" "${flags[@]}" --log "$R/$name.jsonl" --save-dir "$R/$name" \
    >"$R/$name.out" 2>&1 || rc=$?
  echo "run_train_dp: $name: exit status $rc after $((($(date +%s%N) - start) / 1000000)) ms"
  [ "$rc" = 0 ] || { cat "$R/$name.out" >&2; exit 1; }
}
train two_nodes --map-by ppr:2:node
train one_node --host lr-node0:4
"$PYTHON" "$CHECK" losses "$R/one_node.jsonl" "$R/two_nodes.jsonl" --rtol "$RTOL" --steps 12
"$PYTHON" "$CHECK" ckpt "$R/one_node/ckpt-00000012.pt" "$R/two_nodes/ckpt-00000012.pt" --rtol "$RTOL"
