#!/usr/bin/env bash
# Fault: node 1's link goes down in the middle of a long lightring-bench run on 2 namespace
# "nodes" x 2 ranks with --timeout 15. Passes when every rank's process and mpirun have ended,
# non-zero, within BOUND_S (default 60) of the link going down; fails on a hang (what is still
# running after BOUND_S is killed, and the test says which) or on a rank exiting 0.
# KEEPALIVE=T,I,P (default 5,2,3) sets Open MPI's out-of-band TCP keepalive (oob_tcp_keepalive_time,
# _intvl, _probes: mpirun learns of an unreachable daemon after ~T+I*P s); KEEPALIVE=off keeps
# Open MPI's defaults (300,20,9), with which mpirun hangs (docs/multinode-testing.md).
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_link_down.sh [path/to/lightring-bench]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
BENCH=$(realpath "${1:-$HERE/../../build/launch/lightring-bench}")
[ -x "$BENCH" ] || { echo "run_link_down: no lightring-bench at $BENCH" >&2; exit 1; }
BOUND_S=${BOUND_S:-60}
DOWN_AFTER_S=${DOWN_AFTER_S:-6}
TIMEOUT_S=${TIMEOUT_S:-15}
KEEPALIVE=${KEEPALIVE:-5,2,3}
if [ "$KEEPALIVE" != off ]; then
  IFS=, read -r ka_t ka_i ka_p <<<"$KEEPALIVE"
  export LR_CLUSTER_MPIRUN_ARGS="${LR_CLUSTER_MPIRUN_ARGS:-} --mca oob_tcp_keepalive_time $ka_t --mca oob_tcp_keepalive_intvl $ka_i --mca oob_tcp_keepalive_probes $ka_p"
fi
cluster_up 2
R=$LR_CLUSTER_RUN
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Each rank writes "rank status end_ms" when its lightring-bench ends (a rank that hangs writes nothing).
# The run: many iterations of one row, far longer than the test (minutes on 2 cores).
wrapper="\"$BENCH\" --backend cpu --schedule ring -b 65536 -e 65536 -w 0 -n 100000 --no-baseline \
  --no-ceilings --timeout $TIMEOUT_S; s=\$?; echo \"\$OMPI_COMM_WORLD_RANK \$s \$((\$(date +%s%N) / 1000000)) \$(hostname)\" > $R/rank.\$OMPI_COMM_WORLD_RANK"
cluster_mpirun -np 4 --map-by ppr:2:node sh -c "$wrapper" >"$R/mpirun.out" 2>&1 &
mpirun_pid=$!
t0=$(now_ms)
# Wait until the row is running (the timed iterations: every rank has started), then cut the link.
sleep "$DOWN_AFTER_S"
if ! kill -0 "$mpirun_pid" 2>/dev/null; then
  echo "run_link_down: mpirun ended before the link went down:" >&2; cat "$R/mpirun.out" >&2; exit 1
fi
ip -n lr-node1 link set eth0 down
t_down=$(now_ms)
echo "run_link_down: lr-node1 eth0 down at +$((t_down - t0)) ms (--timeout $TIMEOUT_S, bound $BOUND_S s, oob keepalive $KEEPALIVE)"

# bench_alive: "rank pid" of every lightring-bench process still alive in a node of the cluster.
bench_alive() {
  local p r
  for p in $(pgrep -x lightring-bench || true); do
    case "$(ip netns identify "$p" 2>/dev/null)" in lr-node*) ;; *) continue ;; esac
    # (the process may end between pgrep and this read)
    r=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p' || true)
    [ -n "$r" ] && echo "$r $p"
  done
}
[ "$(bench_alive | wc -l)" = 4 ] || { echo "run_link_down: expected 4 running ranks at the cut" >&2; bench_alive >&2; exit 1; }

# Wait for mpirun and every rank, up to BOUND_S after the link went down; note when each rank's
# process was last seen alive (the wrapper's status line is lost when Open MPI kills the wrapper).
declare -A gone_ms
mpirun_rc=
while [ $(($(now_ms) - t_down)) -lt $((BOUND_S * 1000)) ]; do
  if [ -z "$mpirun_rc" ] && ! kill -0 "$mpirun_pid" 2>/dev/null; then
    mpirun_rc=0; wait "$mpirun_pid" || mpirun_rc=$?
    t_mpirun=$(now_ms)
  fi
  alive=$(bench_alive)
  for r in 0 1 2 3; do
    [ -z "${gone_ms[$r]:-}" ] && ! grep -q "^$r " <<<"$alive" && gone_ms[$r]=$(now_ms)
  done
  [ -n "$mpirun_rc" ] && [ -z "$alive" ] && break
  sleep 0.5
done

fail=0
for r in 0 1 2 3; do
  if [ -z "${gone_ms[$r]:-}" ]; then
    echo "run_link_down: FAIL: rank $r still running $BOUND_S s after the link went down (hang)" >&2
    fail=1
  elif [ -f "$R/rank.$r" ]; then
    read -r rank status end host <"$R/rank.$r"
    echo "run_link_down: rank $r ($host) exited $status at +$((end - t_down)) ms after the link went down"
    [ "$status" != 0 ] || { echo "run_link_down: FAIL: rank $r exited 0" >&2; fail=1; }
  else
    echo "run_link_down: rank $r ended (killed by Open MPI: no status) by +$((gone_ms[$r] - t_down)) ms after the link went down"
  fi
done
if [ -n "$mpirun_rc" ]; then
  echo "run_link_down: mpirun exited $mpirun_rc at +$((t_mpirun - t_down)) ms"
  [ "$mpirun_rc" != 0 ] || { echo "run_link_down: FAIL: mpirun exited 0" >&2; fail=1; }
else
  echo "run_link_down: FAIL: mpirun still running $BOUND_S s after the link went down (hang); killing it" >&2
  fail=1
  kill -TERM "$mpirun_pid" 2>/dev/null || true
  sleep 2
  kill -KILL "$mpirun_pid" 2>/dev/null || true
fi
echo "--- mpirun output (last 40 lines)"
tail -n 40 "$R/mpirun.out"
# The EXIT trap tears the cluster down, which also kills anything left in the nodes.
exit "$fail"
