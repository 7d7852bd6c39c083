#!/usr/bin/env bash
# The keepalive rule of launch/oob_keepalive.sh through both launchers, without MPI: MPIRUN is a
# stub that prints the OMPI_MCA_oob_tcp_keepalive_* it was given and its arguments. Checks
#   - the values for --timeout 10, --timeout=6, 5, 3, LIGHTRING_COMM_TIMEOUT_S=20 and the
#     default 300 (T = 1; L = ceil(D + min(D,10)/4); D >= 6: 3 probes of ceil(L/3) s; else
#     L probes of 1 s), and for each that L <= P*I and T + P*I < D + min(D, 10);
#   - a keepalive the user gave (environment, or --mca among the mpirun options) is left alone:
#     the other two are not exported, and the launcher says "as given";
#   - the program's flags reach mpirun unchanged, after the user's mpirun options.
#   tests/cluster/run_launcher_keepalive.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAUNCH=$(realpath "$HERE/../../launch")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/mpirun" <<'STUB'
#!/bin/sh
echo "keepalive=${OMPI_MCA_oob_tcp_keepalive_time-unset},${OMPI_MCA_oob_tcp_keepalive_intvl-unset},${OMPI_MCA_oob_tcp_keepalive_probes-unset}"
echo "args=$*"
STUB
printf '#!/bin/sh\n' >"$tmp/program" && chmod +x "$tmp/mpirun" "$tmp/program"
unset OMPI_MCA_oob_tcp_keepalive_time OMPI_MCA_oob_tcp_keepalive_intvl OMPI_MCA_oob_tcp_keepalive_probes
unset LIGHTRING_COMM_TIMEOUT_S
fail=0
launch() {  # launch LAUNCHER ARGS...: the stub's output and the launcher's stderr
  MPIRUN=$tmp/mpirun TRAIN=$tmp/program BENCH=$tmp/program "$LAUNCH/$1" "${@:2}" 2>&1
}
expect() {  # expect WHAT OUTPUT NEEDLE
  grep -qF -- "$3" <<<"$2" || { echo "run_launcher_keepalive: FAIL: $1: no '$3' in:" >&2; echo "$2" >&2; fail=1; }
}
for case in "10 --timeout 10" "6 --timeout=6" "5 --timeout 5" "3 --timeout 3" "300" "2.5 --timeout 2.5"; do
  read -r D flags <<<"$case"
  for l in mpirun_train.sh mpirun_bench.sh; do
    out=$(launch "$l" 4 --map-by slot -- $flags --steps 3)
    read -r t i p <<<"$(sed -n 's/^keepalive=//p' <<<"$out" | tr , ' ')"
    awk -v D="$D" -v T="$t" -v I="$i" -v P="$p" 'BEGIN { G = D < 10 ? D : 10; L = D + G / 4
      L = L == int(L) ? L : int(L) + 1
      if (T != 1 || P * I < L || (D >= 3 && T + P * I >= D + G)) exit 1
      if (D >= 6 ? (P != 3 || I != int((L + 2) / 3)) : (I != 1 || P != L)) exit 1 }' ||
      { echo "run_launcher_keepalive: FAIL: $l D=$D: keepalive $t,$i,$p breaks the rule" >&2; fail=1; }
    expect "$l D=$D" "$out" "$l: Open MPI out-of-band keepalive $t s idle + $p probes x $i s (deadline $D s)"
    expect "$l D=$D" "$out" "--map-by slot $tmp/program ${flags:+$flags }--steps 3"
  done
  echo "run_launcher_keepalive: D=$D s -> time 1, intvl $i, probes $p"
done
out=$(LIGHTRING_COMM_TIMEOUT_S=20 launch mpirun_train.sh 2 --steps 3)
expect "LIGHTRING_COMM_TIMEOUT_S=20" "$out" "keepalive=1,8,3"
out=$(OMPI_MCA_oob_tcp_keepalive_time=7 launch mpirun_train.sh 2 -- --timeout 10)
expect "environment" "$out" "keepalive=7,unset,unset"
expect "environment" "$out" "keepalive as given: OMPI_MCA_oob_tcp_keepalive_time=7"
out=$(launch mpirun_bench.sh 2 --mca oob_tcp_keepalive_probes 4 -- --timeout 10)
expect "--mca" "$out" "keepalive=unset,unset,unset"
expect "--mca" "$out" "--mca oob_tcp_keepalive_probes 4 $tmp/program --timeout 10"
[ "$fail" = 0 ] && echo "run_launcher_keepalive: all cases pass"
exit "$fail"
