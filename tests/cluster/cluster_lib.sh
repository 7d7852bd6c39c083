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
