# Sourced by launch/mpirun_bench.sh and launch/mpirun_train.sh: bounded defaults for Open MPI's
# out-of-band (mpirun <-> remote daemon) TCP keepalive, derived from lightring's deadline.
#
# Why: when a node drops off the network, lightring's ranks end by themselves at D + G (D the
# deadline of every wait, G = min(D, 10 s) the report wait, then MPI_Abort), but mpirun waits for
# the unreachable daemon until its keepalive declares it lost. Open MPI's default keepalive
# (300 s idle + 9 probes x 20 s) comes after D + G, and once lightring's abort has queued data on
# the dead connection the keepalive no longer runs at all: mpirun then waits without bound
# (docs/multinode-testing.md). With time T, interval I and P probes, the keepalive declares the
# daemon lost between P*I and T + P*I seconds after the cut (the last answered probe was at most
# T before it). The rule, with L = ceil(D + G/4):
#   T = 1 s;  D >= 6: P = 3, I = ceil(L / 3);  D < 6: I = 1 s, P = L.
# Then L <= P*I and T + P*I < D + G for every D >= 3: the ranks print their deadline error first,
# and mpirun ends the job before lightring's abort. D = 300 (the default): 1 + 3 x 101 s.
#
# oob_keepalive_defaults NAME FLAGS...: NAME prefixes the one line printed (stderr); FLAGS are
# the program's flags (their last --timeout is D, else $LIGHTRING_COMM_TIMEOUT_S, else 300).
# Reads the global array MPI_OPTS (the user's mpirun options): when the user set any of the three
# parameters (OMPI_MCA_oob_tcp_keepalive_* in the environment, or oob_tcp_keepalive_* in
# MPI_OPTS) nothing is exported and the line says so. Exports OMPI_MCA_oob_tcp_keepalive_time,
# _intvl and _probes otherwise; Open MPI's rsh/ssh launcher passes OMPI_MCA_* variables of
# mpirun's environment on every remote daemon's command line (plm_rsh_pass_environ_mca_params,
# on by default), so both ends of every out-of-band connection use them.
oob_keepalive_defaults() {
  local name=$1 deadline= a v given= t i p total end
  shift
  for v in time intvl probes; do
    v=OMPI_MCA_oob_tcp_keepalive_$v
    [ -n "${!v+x}" ] && given+=" $v=${!v}"
  done
  for a in ${MPI_OPTS[@]+"${MPI_OPTS[@]}"}; do
    case "$a" in oob_tcp_keepalive_*) given+=" --mca $a" ;; esac
  done
  if [ -n "$given" ]; then
    echo "$name: Open MPI out-of-band keepalive as given:$given (docs/multinode.md: keep" \
      "time + intvl x probes below the deadline + 10 s)" >&2
    return 0
  fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --timeout) [ $# -ge 2 ] && deadline=$2 && shift ;;
      --timeout=*) deadline=${1#--timeout=} ;;
    esac
    shift
  done
  deadline=${deadline:-${LIGHTRING_COMM_TIMEOUT_S:-300}}
  # A malformed deadline is the program's to reject (it names the flag); price the default then.
  [[ "$deadline" =~ ^[0-9]*\.?[0-9]+$ ]] && awk "BEGIN { exit !($deadline > 0) }" || deadline=300
  read -r t i p total end <<<"$(awk -v D="$deadline" 'function ceil(x) { return x == int(x) ? x : int(x) + 1 }
    BEGIN {
      G = D < 10 ? D : 10; L = ceil(D + G / 4)
      if (D >= 6) { P = 3; I = ceil(L / 3) } else { I = 1; P = L }
      print 1, I, P, 1 + P * I, D + G
    }')"
  export OMPI_MCA_oob_tcp_keepalive_time=$t OMPI_MCA_oob_tcp_keepalive_intvl=$i
  export OMPI_MCA_oob_tcp_keepalive_probes=$p
  local when="after the ranks' deadline error and before their abort at $end s"
  awk "BEGIN { exit !($total >= $end) }" && when="not surely before their abort at $end s (D < 3 s)"
  echo "$name: Open MPI out-of-band keepalive ${t} s idle + $p probes x $i s (deadline" \
    "$deadline s): a node cut off ends the job within about $total s, $when;" \
    "set OMPI_MCA_oob_tcp_keepalive_* or --mca to override" >&2
}
