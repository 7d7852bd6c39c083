#!/usr/bin/env bash
# lightring-bench --check across 2 namespace "nodes" x 2 ranks (MPI over TCP between them),
# every schedule (docs/multinode-testing.md). Exits with the benchmark's status; 77 (skip)
# where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_bench_check.sh [path/to/lightring-bench]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
BENCH=$(realpath "${1:-$HERE/../../build/launch/lightring-bench}")
[ -x "$BENCH" ] || { echo "run_bench_check: no lightring-bench at $BENCH" >&2; exit 1; }
cluster_up 2

# The layout first: 2 ranks on each node, each node its own hostname.
layout=$(cluster_mpirun -np 4 --map-by ppr:2:node sh -c 'echo "$OMPI_COMM_WORLD_RANK $(hostname)"' | sort)
echo "$layout"
expected=$'0 lr-node0\n1 lr-node0\n2 lr-node1\n3 lr-node1'
[ "$layout" = "$expected" ] || { echo "run_bench_check: ranks are not 2 per node as expected" >&2; exit 1; }

start=$(date +%s%N)
rc=0
cluster_mpirun -np 4 --map-by ppr:2:node "$BENCH" --backend cpu --check \
  --schedule ring,allgather,scan -b 1001 -e 4004 -f 4 --states --heads 3 --dim 40 --vdim 24 \
  -w 0 -n 1 --no-ceilings --timeout 60 | tee "$LR_CLUSTER_RUN/bench.out" || rc=$?
echo "run_bench_check: lightring-bench exit status $rc after $((($(date +%s%N) - start) / 1000000)) ms"
[ "$rc" = 0 ] || exit "$rc"
# Status 0 must come with 6 checked rows (2 lengths x 3 schedules) and the summary line.
rows=$(grep -cE '^ +[0-9]+ .* (ring|allgather|scan) +[0-9.e+-]+ +0$' "$LR_CLUSTER_RUN/bench.out" || true)
grep -q '^# check: all rows within tolerance' "$LR_CLUSTER_RUN/bench.out" && [ "$rows" = 6 ] ||
  { echo "run_bench_check: expected 6 checked rows and the check summary, got $rows rows" >&2; exit 1; }
