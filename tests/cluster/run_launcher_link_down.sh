#!/usr/bin/env bash
# Issue 21, "taking a node's link down: the deadline error, no hang", through the launcher a user
# runs: launch/mpirun_train.sh (4 ranks, lightring-train --dp 2 --sp 2 on 2 namespace "nodes" x 2
# ranks, --timeout TIMEOUT_S, default 10) with NO keepalive option from this test (none in the
# environment, none on the command line): the launcher's own defaults (launch/oob_keepalive.sh;
# D = 10: 1 s idle + 3 probes x 5 s) must end the job. lr-node1's eth0 goes down after 5 steps.
# Passes when
#   - the launcher printed the keepalive it set (one line naming the deadline);
#   - node 0's ranks print the deadline error ("timed out after D s" / "no answer within D s")
#     before Open MPI ends the job;
#   - every rank's process and mpirun have ended within BOUND_S (default 40 = D + 10 s of report
#     wait + 20 s of slack) of the cut, mpirun non-zero; what is still running then is reported
#     as a hang and killed.
# 77 (skip) where namespaces cannot be made; the cluster is always torn down.
#   tests/cluster/run_launcher_link_down.sh [path/to/lightring-train]
set -euo pipefail
source "$(dirname "$0")/cluster_lib.sh"
TRAIN=$(realpath "${1:-$HERE/../../build/launch/lightring-train}")
[ -x "$TRAIN" ] || { echo "run_launcher_link_down: no lightring-train at $TRAIN" >&2; exit 1; }
LAUNCHER=$(realpath "$HERE/../../launch/mpirun_train.sh")
TIMEOUT_S=${TIMEOUT_S:-10}
BOUND_S=${BOUND_S:-40}
unset OMPI_MCA_oob_tcp_keepalive_time OMPI_MCA_oob_tcp_keepalive_intvl OMPI_MCA_oob_tcp_keepalive_probes
unset LR_CLUSTER_MPIRUN_ARGS
cluster_up 2
R=$LR_CLUSTER_RUN
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The launcher on node 0 with the cluster's placement options (those of cluster_mpirun, less the
# launcher's own --allow-run-as-root / --bind-to none / OMP_NUM_THREADS).
TRAIN=$TRAIN "$CLUSTER" exec 0 "$LAUNCHER" 4 --hostfile "$R/hostfile" --mca plm_rsh_agent "$AGENT" \
  --mca btl tcp,self --mca btl_tcp_if_include 192.0.2.0/24 --mca oob_tcp_if_include 192.0.2.0/24 \
  --map-by ppr:2:node -- --dp 2 --sp 2 --data fortunes --steps 400 --seq-len 96 --batch 2 \
  --warmup 4 --eval-sequences 0 --log-every 5 --timeout "$TIMEOUT_S" --log "$R/train.jsonl" \
  >"$R/mpirun.out" 2>&1 9>&- &
mpirun_pid=$!
wait_train_steps "$R/train.jsonl" 5 "$mpirun_pid"  # cluster_lib.sh
fail=0
cut_link_and_judge run_launcher_link_down "$mpirun_pid" ", keepalive: the launcher's"  # cluster_lib.sh
grep -q "^mpirun_train.sh: Open MPI out-of-band keepalive 1 s idle + 3 probes x 5 s (deadline $TIMEOUT_S s)" \
  "$R/mpirun.out" || [ "$TIMEOUT_S" != 10 ] ||
  { echo "run_launcher_link_down: FAIL: the launcher did not print the keepalive it set" >&2; fail=1; }
grep -q "^mpirun_train.sh: Open MPI out-of-band keepalive .*(deadline $TIMEOUT_S s)" "$R/mpirun.out" ||
  { echo "run_launcher_link_down: FAIL: no keepalive line from the launcher" >&2; fail=1; }
echo "--- launcher and mpirun output, without progress lines (last 30 lines)"
grep -v '^step ' "$R/mpirun.out" | cut -c1-300 | tail -n 30
exit "$fail"
