#!/usr/bin/env bash
# A cluster of N "nodes" on one Linux host (docs/multinode-testing.md).
#
#   tests/cluster/netns_cluster.sh up N       create lr-node0..N-1
#   tests/cluster/netns_cluster.sh down       remove everything `up` made
#   tests/cluster/netns_cluster.sh exec I CMD...   run CMD on node I (its network, hostname, /etc/hosts)
#   tests/cluster/netns_cluster.sh check      exit 0 if a cluster can be made here, else print why, exit 77
#
# Node i is a network namespace lr-node<i> with a persistent UTS namespace of its own
# (hostname lr-node<i>, bound at $LR_CLUSTER_RUN/uts/lr-node<i>), loopback up and eth0, one end of
# a veth pair whose other end, lr-v<i>, is a port of the bridge lr-br0. The bridge lives in a
# namespace of its own, lr-hub, so nothing touches the host's network: traffic stays inside
# namespaces this script created. eth0 has 192.0.2.(10+i)/24 (the documentation range).
# /etc/netns/lr-node<i>/hosts (which `ip netns exec` mounts over /etc/hosts) maps every node
# name to its address; $LR_CLUSTER_RUN/hostfile is an Open MPI hostfile of the nodes
# (slots=$LR_CLUSTER_SLOTS each). tests/cluster/netns_agent.sh is the plm_rsh_agent that starts
# Open MPI's daemons inside a node instead of over ssh.
#
# Exit status 77 (ctest SKIP_RETURN_CODE) when namespaces cannot be made: not root, no `ip`,
# no `unshare`/`nsenter`, or the kernel refuses a network namespace.
set -euo pipefail

RUN=${LR_CLUSTER_RUN:-/run/lightring-cluster}
SLOTS=${LR_CLUSTER_SLOTS:-2}
HUB=lr-hub
BR=lr-br0
PREFIX=192.0.2

skip() { echo "netns_cluster: SKIP: $*" >&2; exit 77; }

can_make() {
  [ "$(id -u)" = 0 ] || skip "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
  command -v ip >/dev/null || skip "no 'ip' (install iproute2)"
  command -v unshare >/dev/null || skip "no 'unshare' (install util-linux)"
  command -v nsenter >/dev/null || skip "no 'nsenter' (install util-linux)"
  local probe=lr-probe-$$
  ip netns add "$probe" 2>/dev/null || skip "'ip netns add' failed (no network namespaces in this container?)"
  local ok=1
  ip netns exec "$probe" unshare --uts true 2>/dev/null || ok=0
  if ip -n "$probe" link add lr-pa type veth peer name lr-pb 2>/dev/null; then :; else ok=0; fi
  ip netns del "$probe"
  [ "$ok" = 1 ] || skip "network namespace made, but UTS namespaces or veth pairs are refused"
}

node_name() { echo "lr-node$1"; }
node_addr() { echo "$PREFIX.$((10 + $1))"; }

down() {
  # Best effort: every piece, whatever state a failed `up` or test left behind.
  local n
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lr-node[0-9]+$' || true); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
    rm -rf "/etc/netns/$n"
  done
  rmdir /etc/netns 2>/dev/null || true       # only if empty (not ours otherwise)
  ip netns del "$HUB" 2>/dev/null || true   # takes the bridge and the lr-v* ends with it
  if [ -d "$RUN/uts" ]; then
    for n in "$RUN"/uts/*; do
      [ -e "$n" ] || continue
      umount "$n" 2>/dev/null || true
      rm -f "$n"
    done
  fi
  rm -rf "$RUN"
}

up() {
  local N=${1:?usage: netns_cluster.sh up N}
  [[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 200 ] || { echo "up: N must be 1..200" >&2; exit 2; }
  can_make
  down
  mkdir -p "$RUN/uts"
  ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add "$BR" type bridge
  ip -n "$HUB" link set "$BR" up
  local hosts="127.0.0.1 localhost"$'\n' i name
  for ((i = 0; i < N; i++)); do hosts+="$(node_addr $i) $(node_name $i)"$'\n'; done
  : >"$RUN/hostfile"
  for ((i = 0; i < N; i++)); do
    name=$(node_name $i)
    ip netns add "$name"
    ip link add "lr-v$i" netns "$HUB" type veth peer name eth0 netns "$name"
    ip -n "$HUB" link set "lr-v$i" master "$BR" up
    ip -n "$name" link set lo up
    ip -n "$name" addr add "$(node_addr $i)/24" dev eth0
    ip -n "$name" link set eth0 up
    # A persistent UTS namespace: the bind mount keeps it alive without a holder process.
    touch "$RUN/uts/$name"
    unshare --uts="$RUN/uts/$name" hostname "$name"
    mkdir -p "/etc/netns/$name"
    printf '%s' "$hosts" >"/etc/netns/$name/hosts"
    printf '%s\n' "$name" >"/etc/netns/$name/hostname"
    echo "$name slots=$SLOTS" >>"$RUN/hostfile"
  done
  printf '%s' "$hosts" >"$RUN/hosts"
  echo "$N" >"$RUN/nodes"
  # Every node reaches every other one (and the bridge has learnt them) before anyone uses it.
  for ((i = 1; i < N; i++)); do
    reachable 0 "$(node_addr $i)" || { echo "up: lr-node0 cannot reach $(node_addr $i)" >&2; exit 1; }
  done
  echo "netns_cluster: $N nodes up (hostfile $RUN/hostfile)"
}

# reachable I ADDR: a TCP connect from node I to a closed port of ADDR is answered (refused)
# within 3 s; a timeout means no route. (No ping needed: Debian's slim images lack it.)
reachable() {
  local rc=0
  ip netns exec "$(node_name "$1")" timeout 3 bash -c "exec 3<>/dev/tcp/$2/9" 2>/dev/null || rc=$?
  [ "$rc" != 124 ]
}

# exec I CMD...: CMD on node I, as the launch agent runs a daemon there.
node_exec() {
  local i=${1:?usage: netns_cluster.sh exec I CMD...}
  shift
  local name
  name=$(node_name "$i")
  [ -e "$RUN/uts/$name" ] || { echo "exec: no node $name (run: netns_cluster.sh up N)" >&2; exit 2; }
  exec ip netns exec "$name" nsenter --uts="$RUN/uts/$name" -- "$@"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  exec) shift; node_exec "$@" ;;
  check) can_make; echo "netns_cluster: namespaces can be made here" ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
