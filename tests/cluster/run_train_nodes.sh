#!/usr/bin/env bash
# lightring-train keeps every SP group on one node (docs/multinode.md), on 2 "nodes" x 2 ranks:
#   --sp 4                    every rank exits non-zero within 60 s, each printing the error that
#                             names --sp 4, the nodes and the layout (2 nodes x 2 ranks)
#   --sp 2 (--dp 2)           runs; every step's loss equals the same run on one host
#   --sp 4 --sp-across-nodes  runs; every step's loss equals --sp 4 on one host (within 1e-5)
#   (simulated only) ranks dealt round robin over the nodes, --sp 2: the error on every rank,
#                             advising mpirun --map-by slot
# MODE cluster: the namespace cluster of cluster_lib.sh (77, skip, where it cannot be made; torn
# down on any exit). MODE simulated: one host, each rank's LIGHTRING_NODE_NAME set to
# sim-node<rank / 2> (docs/environment.md: for tests only).
#   tests/cluster/run_train_nodes.sh path/to/lightring-train cluster|simulated
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TRAIN=$(realpath "${1:?usage: run_train_nodes.sh TRAIN cluster|simulated}")
MODE=${2:?usage: run_train_nodes.sh TRAIN cluster|simulated}
[ -x "$TRAIN" ] || { echo "run_train_nodes: no lightring-train at $TRAIN" >&2; exit 1; }
# mpirun --timeout ends any run that hangs (the job is killed, mpirun exits non-zero and says so).
local_mpirun=(mpirun --allow-run-as-root --oversubscribe --timeout 90 -np 4 --bind-to none
              -x OMP_NUM_THREADS=1)
case $MODE in
  cluster)
    source "$HERE/cluster_lib.sh"
    cluster_up 2
    work=$LR_CLUSTER_RUN/train-nodes
    nodes=(lr-node0 lr-node1)
    on_nodes() { cluster_mpirun --timeout 90 -np 4 --map-by ppr:2:node "$TRAIN" "$@"; } ;;
  simulated)
    work=$(mktemp -d /tmp/lightring-train-nodes.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    nodes=(sim-node0 sim-node1)
    # NODE_OF names the node of rank r in sh arithmetic: blocks of 2 by default.
    on_nodes() {
      "${local_mpirun[@]}" -x NODE_OF="${NODE_OF:-r / 2}" sh -c \
        'r=$OMPI_COMM_WORLD_RANK; LIGHTRING_NODE_NAME=sim-node$(($NODE_OF)) exec "$0" "$@"' \
        "$TRAIN" "$@"
    } ;;
  *) echo "run_train_nodes: MODE must be cluster or simulated (got '$MODE')" >&2; exit 2 ;;
esac
mkdir -p "$work"
cd "$work"
common=(--steps 4 --seq-len 96 --batch 2 --warmup 2 --eval-sequences 0 --log-every 1000
        --timeout 30)

# expect_error NAME NEEDLE ARGS...: non-zero within 60 s, and each of the 4 ranks printed NEEDLE.
# (ARGS may be a shell function: the bound is mpirun's own --timeout, checked here.)
expect_error() {
  local name=$1 needle=$2
  shift 2
  local rc=0 start=$SECONDS
  "$@" > "$name.out" 2>&1 || rc=$?
  local ranks elapsed=$((SECONDS - start))
  ranks=$({ grep -F -- "$needle" "$name.out" || true; } |
    { grep -oE '^lightring error \[rank [0-9]+\]' || true; } | sort -u | wc -l)
  if [ "$rc" = 0 ] || [ "$elapsed" -ge 60 ] || [ "$ranks" != 4 ]; then
    cat "$name.out"
    echo "run_train_nodes: FAILED: $name: exit status $rc after $((SECONDS - start)) s, the" \
      "error on $ranks of 4 ranks: $needle" >&2
    exit 1
  fi
  echo "run_train_nodes: ok: $name: exit $rc after $((SECONDS - start)) s, every rank: $needle"
}

# run NAME ARGS...: exit 0 (within mpirun's --timeout; its JSONL log is NAME.jsonl).
run() {
  local name=$1
  shift
  local rc=0
  "$@" --log "$work/$name.jsonl" > "$name.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$name.out"; echo "run_train_nodes: FAILED: $name: exit $rc" >&2; exit 1; }
}

# same_losses A B TOL: every step's loss of A.jsonl equals B.jsonl's within TOL (relative).
same_losses() {
  python3 - "$1.jsonl" "$2.jsonl" "$3" <<'EOF'
import json, math, sys
def losses(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train"]
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
if not a or [s for s, _ in a] != [s for s, _ in b]:
    sys.exit(f"steps differ: {[s for s, _ in a]} vs {[s for s, _ in b]}")
for (step, x), (_, y) in zip(a, b):
    if not (math.isfinite(x) and math.isclose(x, y, rel_tol=tol, abs_tol=0)):
        sys.exit(f"step {step}: loss {x!r} vs {y!r} (tolerance {tol})")
print(f"run_train_nodes: ok: {len(a)} losses of {sys.argv[1]} equal {sys.argv[2]} within {tol}")
EOF
}

layout="2 nodes x 2 ranks (${nodes[0]}: ranks 0-1; ${nodes[1]}: ranks 2-3)"
expect_error sp4 "--sp 4 puts SP group 0 (ranks 0-3) on 2 nodes (${nodes[0]}, ${nodes[1]}); the job has $layout: pick an --sp that divides 2" \
  on_nodes "${common[@]}" --sp 4
run sp2-nodes on_nodes "${common[@]}" --sp 2
run sp2-host "${local_mpirun[@]}" "$TRAIN" "${common[@]}" --sp 2
same_losses sp2-nodes sp2-host 1e-6
run sp4-across on_nodes "${common[@]}" --sp 4 --sp-across-nodes
run sp4-host "${local_mpirun[@]}" "$TRAIN" "${common[@]}" --sp 4
same_losses sp4-across sp4-host 1e-5
if [ "$MODE" = simulated ]; then
  NODE_OF="r % 2" expect_error round-robin \
    "--sp 2 puts SP group 0 (ranks 0-1) on 2 nodes (sim-node0, sim-node1); the job has 2 nodes x 2 ranks (sim-node0: ranks 0,2; sim-node1: ranks 1,3): start the ranks node by node (mpirun --map-by slot)" \
    on_nodes "${common[@]}" --sp 2
fi
echo "run_train_nodes: $MODE: all cases passed"
