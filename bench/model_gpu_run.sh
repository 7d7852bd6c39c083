#!/usr/bin/env bash
# One call on the one-GPU machine for the end-to-end model benchmark (bench/model_bench.py):
# builds the extension against the machine's torch, then TransNormerLM training steps with the
# token mixer on lightring and on FLA's chunk_simple_gla (from .anchors/fla), the same weights
# and batches, bf16 autocast, AdamW: the table at 4K / 32K / 128K for 350m and 125m, the longest
# context of one step for 350m (each mixer in its own process: an FLA failure that is not an
# out-of-memory error must not end lightring's search), and the torch.compile row. Every phase
# has a timeout; rows go to $OUT/model-h200.jsonl as they are measured, the summary tables to
# $OUT/model-summary.md. Plan: build ~90 s + 130 + 80 + 2 x 70 + 90 s < 9 min.
set -uo pipefail
OUT=${OUT:-/tmp/lightring-model-gpu}
BP=${BP:-/tmp/build-docs-py}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# shellcheck source=bench/build_extension.sh
. bench/build_extension.sh
export LIGHTRING_BUILD_DIR="$BP" PYTHONPATH=python
# Both mixers under one allocator setting: expandable segments keep a long-context step from
# failing on fragmentation after an earlier out-of-memory try.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
rows="$OUT/model-h200.jsonl"
phase() {  # name timeout bench-args...
  local name=$1 limit=$2; shift 2
  local t=$(date +%s)
  timeout -k 5 "$limit" python3 bench/model_bench.py --anchors .anchors --out "$rows" "$@" \
    >"$OUT/model-$name.log" 2>&1
  echo "$name: rc=$? in $(($(date +%s) - t)) s"
  grep -E '^# [0-9]|Error|error' "$OUT/model-$name.log" | tail -6
}
phase table-350m 130 --phases table --sizes 350m
phase table-125m 80 --phases table --sizes 125m
phase longest-lightring 70 --phases longest --mixers lightring --longest-cap-s 45
phase longest-fla 70 --phases longest --mixers fla --longest-cap-s 45
phase compile 90 --phases compile
python3 bench/model_bench.py --summarize "$rows" >"$OUT/model-summary.md" 2>&1
cat "$OUT/model-summary.md"
