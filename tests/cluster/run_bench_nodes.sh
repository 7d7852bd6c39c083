#!/usr/bin/env bash
# lightring-bench measures the nodes of its job: on 2 namespace "nodes" x 2 ranks its header and
# JSON must say 2 nodes x 2 ranks (lr-node0: 0-1, lr-node1: 2-3), the cost model must price the
# world group across the 2 nodes, and `auto` must follow it (bench_nodes_check.py parses the
# JSON and compares with the reference cost model). With a slow inter-node link (--inter-link
# 50,1: 50 us, 1 GB/s) auto picks ring (one hop between nodes); the same run forced to one level
# (--ranks-per-node 0) picks another schedule: the node layout changes the decision. Every row
# is --check'ed. 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_bench_nodes.sh [path/to/lightring-bench]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
BENCH=$(realpath "${1:-$HERE/../../build/launch/lightring-bench}")
[ -x "$BENCH" ] || { echo "run_bench_nodes: no lightring-bench at $BENCH" >&2; exit 1; }
cluster_up 2
out=$LR_CLUSTER_RUN/bench-nodes
mkdir -p "$out"
flags=(--backend cpu --check --schedule auto -b 1001 -e 2002 --heads 3 --dim 40 --vdim 24
       -w 0 -n 1 --no-baseline --no-ceilings --timeout 60 --link 1.5,5,5 --inter-link 50,1)

# run NAME [more flags]: the benchmark on the cluster, its stdout in NAME.out, its JSON NAME.json.
run() {
  local name=$1
  shift
  local rc=0
  cluster_mpirun -np 4 --map-by ppr:2:node "$BENCH" "${flags[@]}" --json "$out/$name.json" "$@" \
    > "$out/$name.out" || rc=$?
  cat "$out/$name.out"
  [ "$rc" = 0 ] || { echo "run_bench_nodes: lightring-bench ($name) exit status $rc" >&2; exit 1; }
}

check=(python3 "$HERE/bench_nodes_check.py")
common=(--nodes 2 --ranks-per-node 2 --names lr-node0,lr-node1 --link 1.5,5,5 --inter-link 50,1)
run measured
"${check[@]}" "$out/measured.json" "$out/measured.out" "${common[@]}"
run one-level --ranks-per-node 0
"${check[@]}" "$out/one-level.json" "$out/one-level.out" "${common[@]}" --forced-one-level

pick() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["auto"]["schedule"])' "$1"; }
measured=$(pick "$out/measured.json") one_level=$(pick "$out/one-level.json")
[ "$measured" = ring ] && [ "$one_level" != ring ] || {
  echo "run_bench_nodes: auto picked $measured across the nodes and $one_level on one level;" \
    "expected ring across 2 nodes behind the slow link and another schedule on one level" >&2
  exit 1
}
echo "run_bench_nodes: auto $measured across 2 nodes, $one_level on one level"
