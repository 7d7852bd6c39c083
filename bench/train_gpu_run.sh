#!/usr/bin/env bash
# One call on the one-GPU machine for the Python driver (python -m lightring.train): builds the
# extension against the machine's torch, then trains on one GPU (bf16 autocast): the tiny preset
# on fortunes with documents, and a few steps of 125m and 350m at long context for tokens/s,
# MFU and peak memory (the JSONL logs and progress lines go to $OUT).
set -uo pipefail
OUT=${OUT:-/tmp/lightring-train-gpu}
BP=${BP:-/tmp/build-docs-py}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# shellcheck source=bench/build_extension.sh
. bench/build_extension.sh
run() {  # name timeout args...
  local name=$1 limit=$2; shift 2
  local t=$(date +%s)
  LIGHTRING_BUILD_DIR="$BP" PYTHONPATH=python timeout "$limit" python3 -m lightring.train --device cuda \
    --peak-tflops 989 --log "$OUT/$name.jsonl" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: rc=$? in $(($(date +%s) - t)) s"; grep -E "step|params|error|Error" "$OUT/$name.log" | tail -4
}
run tiny-fortunes 40 --preset tiny --data fortunes --documents on --seq-len 1024 --batch 8 --steps 60 --eval-every 30
run 125m-32k 60 --preset 125m --data synthetic-recall --seq-len 32768 --batch 1 --steps 8 --log-every 1
[ "${BIG:-0}" = 1 ] && run 350m-32k 90 --preset 350m --data synthetic-recall --seq-len 32768 --batch 1 --steps 8 --log-every 1
