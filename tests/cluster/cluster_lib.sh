# Sourced by the tests of tests/cluster: brings a namespace cluster up (skipping with 77 where
# it cannot), tears it down on any exit, and runs mpirun from node 0 over TCP on the veths.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LR_CLUSTER_RUN=${LR_CLUSTER_RUN:-/run/lightring-cluster}
CLUSTER=$HERE/netns_cluster.sh
AGENT=$HERE/netns_agent.sh

# cluster_up N: the cluster, torn down by an EXIT trap (also on failure, Ctrl-C, ctest's kill).
# Every cluster uses the same namespace names, so one cluster test at a time on this host,
# across ctest runs too: an exclusive lock on $LR_CLUSTER_RUN.lock (fd 9, closed for mpirun),
# held until the script exits; waits up to LR_CLUSTER_LOCK_WAIT_S (default 600) for it.
cluster_up() {
  local rc=0
  "$CLUSTER" check || rc=$?
  [ "$rc" = 0 ] || exit "$rc"            # 77: ctest reports the test skipped, with the reason
  exec 9>"$LR_CLUSTER_RUN.lock"
  flock -w "${LR_CLUSTER_LOCK_WAIT_S:-600}" 9 ||
    { echo "cluster_up: another cluster test holds $LR_CLUSTER_RUN.lock" >&2; exit 1; }
  trap '"$CLUSTER" down' EXIT
  trap 'exit 130' INT TERM
  "$CLUSTER" up "$1"
}

# cluster_mpirun ARGS...: mpirun on node 0 (the usual "launch from the first node"), the other
# nodes' daemons through netns_agent.sh; MPI and Open MPI's own traffic over the veths only.
# LR_CLUSTER_MPIRUN_ARGS: more mpirun arguments (split on spaces), e.g. --mca settings to try.
cluster_mpirun() {
  local extra=()
  read -r -a extra <<<"${LR_CLUSTER_MPIRUN_ARGS:-}"
  "$CLUSTER" exec 0 mpirun --allow-run-as-root --hostfile "$LR_CLUSTER_RUN/hostfile" \
    --mca plm_rsh_agent "$AGENT" \
    --mca btl tcp,self --mca btl_tcp_if_include 192.0.2.0/24 --mca oob_tcp_if_include 192.0.2.0/24 \
    --bind-to none -x OMP_NUM_THREADS=1 "${extra[@]}" "$@" 9>&-
}

# train_alive: "rank pid" of every lightring-train process alive (not a zombie) in a node of the
# cluster; the rank is OMPI_COMM_WORLD_RANK from its environment ("?" when unreadable).
train_alive() {
  local p r
  for p in $(pgrep -x lightring-train || true); do
    case "$(ip netns identify "$p" 2>/dev/null)" in lr-node*) ;; *) continue ;; esac
    [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" = Z ] && continue  # a zombie has ended
    r=$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p' || true)
    echo "${r:-?} $p"
  done
  return 0
}

# wait_train_steps LOG N PID: until the JSONL log LOG holds N "train" rows, or PID (mpirun) has
# exited; at most 60 s.
wait_train_steps() {
  for _ in $(seq 1 600); do
    [ -f "$1" ] && [ "$(grep -c '"train"' "$1")" -ge "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || return 0
    sleep 0.1
  done
}

# cut_link_and_judge NAME PID NOTE: takes lr-node1's link down under a running 4-rank
# lightring-train (mpirun PID, log $R/train.jsonl, output $R/mpirun.out), then judges the end:
# every rank and mpirun gone within $BOUND_S s of the cut, mpirun non-zero, and node 0's ranks
# (0, 1) printing the deadline error of --timeout $TIMEOUT_S. Sets fail=1 on any failure (the
# caller sets fail=0 first); a hung mpirun is killed.
cut_link_and_judge() {
  local name=$1 pid=$2 note=$3 t_down mpirun_rc= ranks_gone= t_mpirun r
  [ "$(train_alive | wc -l)" = 4 ] ||
    { echo "$name: expected 4 running ranks" >&2; cat "$R/mpirun.out" >&2; exit 1; }
  ip -n lr-node1 link set eth0 down
  t_down=$(now_ms)
  echo "$name: lr-node1 eth0 down after step $(grep -c '"train"' "$R/train.jsonl")" \
    "(--timeout $TIMEOUT_S, bound $BOUND_S s$note)"
  while [ $(($(now_ms) - t_down)) -lt $((BOUND_S * 1000)) ]; do
    if [ -z "$mpirun_rc" ] && ! kill -0 "$pid" 2>/dev/null; then
      mpirun_rc=0; wait "$pid" || mpirun_rc=$?
      t_mpirun=$(now_ms)
    fi
    [ -z "$ranks_gone" ] && [ -z "$(train_alive)" ] && ranks_gone=$(now_ms)
    [ -n "$mpirun_rc" ] && [ -n "$ranks_gone" ] && break
    sleep 0.2
  done
  if [ -n "$ranks_gone" ]; then
    echo "$name: every rank ended by +$((ranks_gone - t_down)) ms"
  else
    echo "$name: FAIL: ranks still running $BOUND_S s after the cut (hang)" >&2
    fail=1
  fi
  if [ -n "$mpirun_rc" ]; then
    echo "$name: mpirun exited $mpirun_rc at +$((t_mpirun - t_down)) ms"
    [ "$mpirun_rc" != 0 ] || { echo "$name: FAIL: mpirun exited 0" >&2; fail=1; }
  else
    echo "$name: FAIL: mpirun still running $BOUND_S s after the cut (hang); killing it" >&2
    kill -TERM "$pid" 2>/dev/null || true
    sleep 2
    kill -KILL "$pid" 2>/dev/null || true
    fail=1
  fi
  for r in 0 1; do
    grep -Eq "^lightring error \[rank $r\]: .*(timed out after|no answer within) $TIMEOUT_S s" "$R/mpirun.out" ||
      { echo "$name: FAIL: rank $r (lr-node0) printed no deadline error" >&2; fail=1; }
  done
}
