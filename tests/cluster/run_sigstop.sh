#!/usr/bin/env bash
# Fault: SIGSTOP of world rank 3 (on lr-node1) in the middle of lightring-train --dp 2 --sp 2 on
# 2 namespace "nodes" x 2 ranks with --timeout TIMEOUT_S (default 5). Passes when
#   - every other rank prints the deadline error, its own ("timed out after 5 s waiting for ...
#     (world rank 3)", "gradient all-reduce ...: no answer within 5 s") or the notice of the rank
#     that hit it ("world rank 2 gave up: ..."), the report wait names rank 3 and only it
#     ("ending the job: world rank 3 did not report within 5 s"), and each ends non-zero (its
#     exit status, or it called MPI_Abort(2) itself: "ending the job");
#   - mpirun and every rank's process have ended, mpirun non-zero, within TIMEOUT_S + the report
#     wait (min(TIMEOUT_S, 10) s) + SLACK_S (default 15) of the stop;
#   - the stopped process is gone too (Open MPI's abort kills it; if not, the test sends SIGCONT
#     and SIGKILL and fails).
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_sigstop.sh [path/to/lightring-train]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
TRAIN=$(realpath "${1:-$HERE/../../build/launch/lightring-train}")
[ -x "$TRAIN" ] || { echo "run_sigstop: no lightring-train at $TRAIN" >&2; exit 1; }
TIMEOUT_S=${TIMEOUT_S:-5}
SLACK_S=${SLACK_S:-15}
STOPPED=3
cluster_up 2
R=$LR_CLUSTER_RUN
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Each rank writes "rank status end_ms host" when lightring-train returns (a rank that Open MPI
# kills writes nothing). 400 steps: far longer than the test.
wrapper="\"$TRAIN\" --dp 2 --sp 2 --data fortunes --steps 400 --seq-len 96 --batch 2 \
  --warmup 4 --eval-sequences 0 --log-every 5 --timeout $TIMEOUT_S --log $R/train.jsonl; s=\$?; \
  echo \"\$OMPI_COMM_WORLD_RANK \$s \$((\$(date +%s%N) / 1000000)) \$(hostname)\" > $R/rank.\$OMPI_COMM_WORLD_RANK"
cluster_mpirun -np 4 --map-by ppr:2:node sh -c "$wrapper" >"$R/mpirun.out" 2>&1 &
mpirun_pid=$!

wait_train_steps "$R/train.jsonl" 5 "$mpirun_pid"  # cluster_lib.sh
stopped_pid=$(train_alive | awk -v r=$STOPPED '$1 == r {print $2}')
[ -n "$stopped_pid" ] && [ "$(train_alive | wc -l)" = 4 ] ||
  { echo "run_sigstop: expected 4 running ranks" >&2; cat "$R/mpirun.out" >&2; exit 1; }
kill -STOP "$stopped_pid"
t_stop=$(now_ms)
echo "run_sigstop: SIGSTOP of rank $STOPPED (pid $stopped_pid, lr-node1) after step" \
  "$(grep -c '"train"' "$R/train.jsonl") (--timeout $TIMEOUT_S)"

grace=$((TIMEOUT_S < 10 ? TIMEOUT_S : 10))
bound_ms=$(((TIMEOUT_S + grace + SLACK_S) * 1000))
declare -A gone_ms
mpirun_rc=
while [ $(($(now_ms) - t_stop)) -lt "$bound_ms" ]; do
  if [ -z "$mpirun_rc" ] && ! kill -0 "$mpirun_pid" 2>/dev/null; then
    mpirun_rc=0; wait "$mpirun_pid" || mpirun_rc=$?
    t_mpirun=$(now_ms)
  fi
  alive=$(train_alive)
  for r in 0 1 2 3; do
    [ -z "${gone_ms[$r]:-}" ] && ! grep -q "^$r " <<<"$alive" && gone_ms[$r]=$(now_ms)
  done
  [ -n "$mpirun_rc" ] && [ -z "$alive" ] && break
  sleep 0.2
done

fail=0
for r in 0 1 2 3; do
  if [ -z "${gone_ms[$r]:-}" ]; then
    echo "run_sigstop: FAIL: rank $r still running $((bound_ms / 1000)) s after the stop (hang)" >&2
    fail=1
  elif [ -f "$R/rank.$r" ]; then
    read -r rank status end host <"$R/rank.$r"
    echo "run_sigstop: rank $r ($host) exited $status at +$((end - t_stop)) ms"
    [ "$status" != 0 ] || { echo "run_sigstop: FAIL: rank $r exited 0" >&2; fail=1; }
  else
    echo "run_sigstop: rank $r ended (killed by Open MPI: no status) by +$((gone_ms[$r] - t_stop)) ms"
  fi
done
if [ -n "${gone_ms[$STOPPED]:-}" ] || ! kill -0 "$stopped_pid" 2>/dev/null; then :; else
  kill -CONT "$stopped_pid" 2>/dev/null || true
  kill -KILL "$stopped_pid" 2>/dev/null || true
fi
if [ -n "$mpirun_rc" ]; then
  echo "run_sigstop: mpirun exited $mpirun_rc at +$((t_mpirun - t_stop)) ms (bound $((bound_ms / 1000)) s)"
  [ "$mpirun_rc" != 0 ] || { echo "run_sigstop: FAIL: mpirun exited 0" >&2; fail=1; }
else
  echo "run_sigstop: FAIL: mpirun still running $((bound_ms / 1000)) s after the stop (hang)" >&2
  kill -CONT "$stopped_pid" 2>/dev/null || true
  kill -TERM "$mpirun_pid" 2>/dev/null || true
  sleep 2
  kill -KILL "$mpirun_pid" 2>/dev/null || true
  fail=1
fi

# The messages: every live rank prints the deadline error, its own or the notice of the rank
# that hit it (an all-gather names the peer it waited for; the gradient all-reduce, one MPI
# collective, cannot: "no answer within 5 s"); the report wait then names the stopped rank
# ("ending the job: world rank 3 did not report"), and no other. Every live rank ends non-zero.
for r in 0 1 2; do
  if ! grep -E "^lightring error \[rank $r\]: .*(timed out after|no answer within) $TIMEOUT_S s" \
      "$R/mpirun.out" >/dev/null; then
    echo "run_sigstop: FAIL: rank $r printed no deadline error" >&2
    fail=1
  fi
  if [ ! -f "$R/rank.$r" ] && ! grep -q "^lightring \[rank $r\]: ending the job" "$R/mpirun.out"; then
    echo "run_sigstop: FAIL: rank $r left no exit status and did not end the job itself" >&2
    fail=1
  fi
done
grep -q "ending the job: world rank $STOPPED did not report within" "$R/mpirun.out" ||
  { echo "run_sigstop: FAIL: no rank named the stopped world rank $STOPPED" >&2; fail=1; }
if grep "ending the job: world rank" "$R/mpirun.out" | grep -v "world rank $STOPPED did not" >/dev/null; then
  echo "run_sigstop: FAIL: a rank other than $STOPPED was named as silent" >&2
  fail=1
fi
echo "--- mpirun output, without progress lines (last 30 lines)"
grep -v '^step ' "$R/mpirun.out" | tail -n 30
exit "$fail"
