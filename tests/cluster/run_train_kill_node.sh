#!/usr/bin/env bash
# Fault: kill -9 of every process of node lr-node1 (its Open MPI daemon and its 2 ranks) in the
# middle of lightring-train --dp 2 --sp 2 on 2 namespace "nodes" x 2 ranks, after at least one
# checkpoint (--save-every 4, --timeout TIMEOUT_S). Passes when
#   1. every process of node 0's ranks and mpirun have ended within TIMEOUT_S + 10 s (the deadline
#      and lightring's report wait) + SLACK_S (default 5) of the kill, mpirun non-zero, with
#      Open MPI's message about the lost node (below) and lightring-train's header mapping the
#      host to its ranks ("lr-node1 (ranks 2-3)");
#   1b. (another run) kill -9 of node 1's ranks only: Open MPI names the rank and the host;
#   2. the checkpoint folder holds only complete checkpoints and `latest` (no temporary file),
#      one of them at step >= 4 (train_log_check.py ckpt-dir);
#   3. a fresh launch with --resume of that folder finishes, and its losses from the resumed step
#      on and its final checkpoint equal the uninterrupted run's bit for bit.
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_train_kill_node.sh [path/to/lightring-train]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
TRAIN=$(realpath "${1:-$HERE/../../build/launch/lightring-train}")
[ -x "$TRAIN" ] || { echo "run_train_kill_node: no lightring-train at $TRAIN" >&2; exit 1; }
PYTHON=${LIGHTRING_PYTHON:-/usr/bin/python3}
CHECK=$HERE/train_log_check.py
TIMEOUT_S=${TIMEOUT_S:-10}
SLACK_S=${SLACK_S:-5}
STEPS=20
cluster_up 2
R=$LR_CLUSTER_RUN
now_ms() { echo $(($(date +%s%N) / 1000000)); }
flags=(--dp 2 --sp 2 --data fortunes --steps $STEPS --seq-len 96 --batch 2 --warmup 4
       --eval-sequences 0 --log-every 10 --timeout "$TIMEOUT_S")

# The uninterrupted run (the reference).
cluster_mpirun -np 4 --map-by ppr:2:node "$TRAIN" "${flags[@]}" --save-every 4 \
  --log "$R/full.jsonl" --save-dir "$R/full" >"$R/full.out" 2>&1 || { cat "$R/full.out" >&2; exit 1; }
echo "run_train_kill_node: uninterrupted run: $(grep -c '"train"' "$R/full.jsonl") steps"

# The run that loses node 1: each rank's process is watched (a killed rank leaves no status).
cluster_mpirun -np 4 --map-by ppr:2:node "$TRAIN" "${flags[@]}" --save-every 4 \
  --log "$R/cut.jsonl" --save-dir "$R/cut" >"$R/cut.out" 2>&1 &
mpirun_pid=$!
for _ in $(seq 1 600); do  # until the first checkpoint is complete (up to 60 s)
  [ -f "$R/cut/latest" ] && break
  kill -0 "$mpirun_pid" 2>/dev/null || break
  sleep 0.1
done
[ -f "$R/cut/latest" ] && kill -0 "$mpirun_pid" 2>/dev/null ||
  { echo "run_train_kill_node: no checkpoint while running" >&2; cat "$R/cut.out" >&2; exit 1; }
# ranks_alive NODE: pids of lightring-train processes (not zombies) in that node's namespace.
ranks_alive() {
  local p
  for p in $(ip netns pids "$1" 2>/dev/null || true); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = lightring-train ] &&
      [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" != Z ] && echo "$p"
  done
  return 0
}
[ "$(ranks_alive lr-node1 | wc -l)" = 2 ] && [ "$(ranks_alive lr-node0 | wc -l)" = 2 ] ||
  { echo "run_train_kill_node: expected 2 ranks on each node" >&2; exit 1; }
ip netns pids lr-node1 | xargs -r kill -9
t_kill=$(now_ms)
done_steps=$(grep -c '"train"' "$R/cut.jsonl" || true)
echo "run_train_kill_node: kill -9 of every process of lr-node1 after step $done_steps of $STEPS" \
  "(checkpoint $(cat "$R/cut/latest"))"
[ "$done_steps" -lt "$STEPS" ] || { echo "run_train_kill_node: the run had finished" >&2; exit 1; }

bound_ms=$(((TIMEOUT_S + 10 + SLACK_S) * 1000))
mpirun_rc= survivors_gone=
while [ $(($(now_ms) - t_kill)) -lt "$bound_ms" ]; do
  if [ -z "$mpirun_rc" ] && ! kill -0 "$mpirun_pid" 2>/dev/null; then
    mpirun_rc=0; wait "$mpirun_pid" || mpirun_rc=$?
    t_mpirun=$(now_ms)
  fi
  [ -z "$survivors_gone" ] && [ -z "$(ranks_alive lr-node0)" ] && survivors_gone=$(now_ms)
  [ -n "$mpirun_rc" ] && [ -n "$survivors_gone" ] && break
  sleep 0.1
done
fail=0
if [ -z "$survivors_gone" ]; then
  echo "run_train_kill_node: FAIL: node 0's ranks still running $((bound_ms / 1000)) s after the kill" >&2
  fail=1
else
  echo "run_train_kill_node: node 0's ranks ended by +$((survivors_gone - t_kill)) ms"
fi
if [ -z "$mpirun_rc" ]; then
  echo "run_train_kill_node: FAIL: mpirun still running $((bound_ms / 1000)) s after the kill" >&2
  kill -KILL "$mpirun_pid" 2>/dev/null || true
  fail=1
else
  echo "run_train_kill_node: mpirun exited $mpirun_rc at +$((t_mpirun - t_kill)) ms (bound $((bound_ms / 1000)) s)"
  [ "$mpirun_rc" != 0 ] || { echo "run_train_kill_node: FAIL: mpirun exited 0" >&2; fail=1; }
fi
echo "--- output of the run that lost lr-node1, without progress lines (last 40 lines)"
grep -v '^step ' "$R/cut.out" | tail -n 40
grep -q "hosts lr-node0 (ranks 0-1), lr-node1 (ranks 2-3)" "$R/cut.out" ||
  { echo "run_train_kill_node: FAIL: no host map of the ranks in the header" >&2; fail=1; }
# Open MPI ends the job with one of two messages, by which it notices first: the daemon's
# connection closing ("Remote daemon ... on node lr-node1"), or its launch agent (the stand-in
# for ssh, killed with the node) exiting ("ORTE was unable to reliably start one or more
# daemons", which names no host: 4 runs of 9). Either is accepted; anything else fails.
if grep -Eq "Remote daemon: .* on node lr-node1" "$R/cut.out"; then
  echo "run_train_kill_node: Open MPI named the lost host lr-node1"
elif grep -q "ORTE was unable to reliably start one or more daemons" "$R/cut.out"; then
  echo "run_train_kill_node: Open MPI saw its launch agent for lr-node1 exit first (names no host)"
else
  echo "run_train_kill_node: FAIL: no message of Open MPI about the lost node" >&2
  fail=1
fi
[ "$fail" = 0 ] || exit 1

# 1b. kill -9 of node 1's two ranks only (its daemon survives and reports them): Open MPI names
# the rank and the host ("process rank 2 ... on node lr-node1 exited on signal 9").
cluster_mpirun -np 4 --map-by ppr:2:node "$TRAIN" "${flags[@]}" \
  --log "$R/ranks.jsonl" >"$R/ranks.out" 2>&1 &
mpirun_pid=$!
for _ in $(seq 1 600); do
  [ -f "$R/ranks.jsonl" ] && [ "$(grep -c '"train"' "$R/ranks.jsonl")" -ge 3 ] && break
  kill -0 "$mpirun_pid" 2>/dev/null || break
  sleep 0.1
done
victims=$(ranks_alive lr-node1)
[ "$(echo "$victims" | wc -w)" = 2 ] || { echo "run_train_kill_node: expected 2 ranks on lr-node1" >&2; exit 1; }
kill -9 $victims
t_kill=$(now_ms)
while kill -0 "$mpirun_pid" 2>/dev/null && [ $(($(now_ms) - t_kill)) -lt "$bound_ms" ]; do sleep 0.1; done
kill -0 "$mpirun_pid" 2>/dev/null &&
  { echo "run_train_kill_node: FAIL: mpirun still running after the ranks' kill" >&2; kill -KILL "$mpirun_pid"; exit 1; }
rc=0; wait "$mpirun_pid" || rc=$?
echo "run_train_kill_node: ranks 2-3 killed: mpirun exited $rc at +$(($(now_ms) - t_kill)) ms"
[ "$rc" != 0 ] && [ -z "$(ranks_alive lr-node0)" ] &&
  grep -Eq "process rank [23] with PID [0-9]+ on node lr-node1 exited on signal 9" "$R/ranks.out" ||
  { echo "run_train_kill_node: FAIL: exit $rc, ranks left or no message naming rank and host:" >&2
    grep -v '^step ' "$R/ranks.out" >&2; exit 1; }
grep -E "process rank [23] with PID" "$R/ranks.out"

# 2. What the killed run left on disk.
"$PYTHON" "$CHECK" ckpt-dir "$R/cut" --min-step 4

# 3. A fresh launch resumes from the folder and ends as the uninterrupted run did.
resumed_from=$(sed -n 's/^ckpt-0*\([0-9]*\)\.pt$/\1/p' "$R/cut/latest")
cluster_mpirun -np 4 --map-by ppr:2:node "$TRAIN" "${flags[@]}" --save-every 4 \
  --resume "$R/cut" --log "$R/cut.jsonl" --save-dir "$R/cut" >"$R/resume.out" 2>&1 || { cat "$R/resume.out" >&2; exit 1; }
grep -q "resumed from $R/cut/ckpt-0*$resumed_from.pt at step $resumed_from" "$R/resume.out" ||
  { cat "$R/resume.out" >&2; exit 1; }
echo "run_train_kill_node: --resume from step $resumed_from finished"
"$PYTHON" "$CHECK" losses "$R/full.jsonl" "$R/cut.jsonl" --rtol 0 --from-step "$resumed_from"
"$PYTHON" "$CHECK" final "$R/full.jsonl" "$R/cut.jsonl" --rtol 0
"$PYTHON" "$CHECK" ckpt "$R/full/ckpt-000000$STEPS.pt" "$R/cut/ckpt-000000$STEPS.pt" --rtol 0
