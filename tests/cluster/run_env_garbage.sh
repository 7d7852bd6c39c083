#!/usr/bin/env bash
# A hostile environment at start, on one node (plain mpirun, 2 ranks, no namespaces): malformed
# LIGHTRING_* variables and a deadline of 0 or below, given to lightring-train and to the Python
# driver. Each case must end every rank non-zero within BOUND_S (default 30) with the message
# naming the variable or flag printed by every rank. (tests/python/test_faults.py covers more
# malformed values of LIGHTRING_COMM_TIMEOUT_S for lightring-bench.)
#   tests/cluster/run_env_garbage.sh LIGHTRING-TRAIN [LIGHTRING_BUILD_DIR]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TRAIN=$(realpath "${1:?usage: run_env_garbage.sh LIGHTRING-TRAIN [LIGHTRING_BUILD_DIR]}")
BUILD=${2:-}
PYTHON=${LIGHTRING_PYTHON:-/usr/bin/python3}
BOUND_S=${BOUND_S:-30}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
flags=(--sp 2 --data fortunes --steps 3 --seq-len 64 --eval-sequences 0)
fail=0

# expect ENV NEEDLE MIN_RANKS CMD...: with ENV (VAR=VALUE, or - for none) CMD must exit non-zero
# within BOUND_S and print NEEDLE on at least MIN_RANKS lines (one per rank).
expect() {
  local env=$1 needle=$2 min=$3
  shift 3
  local start rc=0 seen
  start=$(date +%s%N)
  if [ "$env" = - ]; then
    timeout "$BOUND_S" "${MPIRUN[@]}" "$@" >"$WORK/out" 2>&1 || rc=$?
  else
    env "$env" timeout "$BOUND_S" "${MPIRUN[@]}" -x "${env%%=*}" "$@" >"$WORK/out" 2>&1 || rc=$?
  fi
  local ms=$((($(date +%s%N) - start) / 1000000))
  seen=$(grep -F -c -- "$needle" "$WORK/out")
  if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$seen" -lt "$min" ]; then
    echo "run_env_garbage: FAIL: [$env] ${*:2}: exit $rc after $ms ms, '$needle' on $seen lines (want $min)" >&2
    tail -n 20 "$WORK/out" >&2
    fail=1
  else
    echo "run_env_garbage: ok: [$env] exit $rc after $ms ms, $seen ranks: $needle"
  fi
}

# lightring-train: the variables are read before the first step and the reason is agreed, so
# every rank prints it (exit 2, no MPI_Abort).
timeout_msg="LIGHTRING_COMM_TIMEOUT_S must be a positive number of seconds"
for value in abc 0 -1; do
  expect "LIGHTRING_COMM_TIMEOUT_S=$value" "$timeout_msg, e.g. 60 or 0.5 (got '$value')" 2 \
    "$TRAIN" "${flags[@]}"
done
expect "LIGHTRING_TRAIN_FAIL_AT=garbage" "LIGHTRING_TRAIN_FAIL_AT must be STEP@RANK (got 'garbage')" 2 \
  "$TRAIN" "${flags[@]}"
for value in 0 -5; do
  expect - "--timeout must be a positive number of seconds (got $value)" 2 \
    "$TRAIN" "${flags[@]}" --timeout "$value"
done

# The Python driver (where the extension is built): the variables raise on every rank, in
# lightring.distributed.init() (the deadline) or at the first attention call (the exchange).
if [ -n "$BUILD" ]; then
  export PYTHONPATH=$(realpath "$HERE/../../python") LIGHTRING_BUILD_DIR=$BUILD
  MPIRUN+=(-x PYTHONPATH -x LIGHTRING_BUILD_DIR)
  py=("$PYTHON" -m lightring.train "${flags[@]}")
  expect "LIGHTRING_COMM_TIMEOUT_S=abc" \
    "ValueError: \$LIGHTRING_COMM_TIMEOUT_S must be a positive number of seconds, e.g. 60 or 0.5 (got 'abc')" 2 "${py[@]}"
  expect "LIGHTRING_EXCHANGE=bogus" \
    "ValueError: \$LIGHTRING_EXCHANGE must be one of auto, torch, lightring (got 'bogus')" 2 "${py[@]}"
  expect - "lightring.train: --timeout must be a positive number of seconds (got 0.0)" 2 \
    "${py[@]}" --timeout 0
fi
exit "$fail"
