#!/usr/bin/env bash
# Open MPI launch agent for the namespace cluster of netns_cluster.sh, in place of ssh:
#   mpirun --mca plm_rsh_agent tests/cluster/netns_agent.sh --hostfile $RUN/hostfile ...
# Open MPI calls it as `AGENT HOST COMMAND...` (like `ssh HOST COMMAND...`); it runs COMMAND
# through `sh -c` (as sshd would) inside node HOST: its network namespace (and so its
# /etc/netns/HOST/hosts as /etc/hosts) and its UTS namespace (its hostname).
# HOST is a node name (lr-node3) or its address (192.0.2.13).
set -euo pipefail
RUN=${LR_CLUSTER_RUN:-/run/lightring-cluster}
# ssh-style options before the host (Open MPI passes none to a non-ssh agent; tolerate -x etc.).
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do shift; done
host=${1:?netns_agent.sh: usage: netns_agent.sh HOST COMMAND...}
shift
if [[ "$host" =~ ^192\.0\.2\.([0-9]+)$ ]]; then
  host=lr-node$((BASH_REMATCH[1] - 10))
fi
host=${host%%.*}
[ -e "$RUN/uts/$host" ] || { echo "netns_agent.sh: no node '$host' in $RUN (netns_cluster.sh up N)" >&2; exit 255; }
exec ip netns exec "$host" nsenter --uts="$RUN/uts/$host" -- /bin/sh -c "$*"
