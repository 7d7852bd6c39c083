#!/usr/bin/env bash
# One call on the one-GPU machine for the end-to-end model benchmark (bench/model_bench.py):
# builds the extension against the machine's torch, then TransNormerLM training steps with the
# token mixer on lightring and on FLA's chunk_simple_gla (from .anchors/fla), the same weights
# and batches, bf16 autocast, AdamW: the table at 4K / 32K / 128K for 350m, then 125m, the
# torch.compile row, and the longest context of one step for 350m (each mixer in its own
# process: an FLA failure that is not an out-of-memory error must not end lightring's search).
# Every phase has a timeout, cut to what is left of BUDGET_S (default 560 s from the start, so
# that the call ends within 10 minutes with its summary); rows go to $OUT/model-h200.jsonl as
# they are measured, the summary tables to $OUT/model-summary.md; then, in what time is left,
# tests/python/test_model_compile.py. MODEL_PREBUILT=DIR uses an
# extension already built in DIR; MODEL_BENCH_ARGS go after every phase's own flags (e.g. a
# CPU dry run: MODEL_PREBUILT=build-cpu MODEL_BENCH_ARGS="--device cpu --quick --sizes tiny
# --longest-size tiny --compile-size tiny --mixers lightring,torch-reference").
set -uo pipefail
start=$(date +%s)
BUDGET_S=${BUDGET_S:-560}
OUT=${OUT:-/tmp/lightring-model-gpu}
BP=${BP:-/tmp/build-docs-py}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# While the extension builds, FLA's Triton kernels compile into Triton's on-disk cache (fwd +
# bwd at the head counts of 350m and 125m), so that the table's first FLA row does not spend
# its time limit compiling; the timed steps come after warmup steps either way.
if [ -z "${MODEL_PREBUILT:-}" ] && [ -d .anchors/fla ]; then
  timeout -k 5 100 python3 - >"$OUT/fla-warmup.log" 2>&1 <<'PY' &
import sys, time
import torch
sys.path.insert(0, ".anchors")
from fla.ops.simple_gla import chunk_simple_gla
t0 = time.time()
for heads in (16, 12):
    q, k, v = (torch.randn(1, 4096, heads, 64, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    o, _ = chunk_simple_gla(q, k, v, g_gamma=-torch.rand(heads, device="cuda"), scale=1.0)
    o.float().square().sum().backward()
    torch.cuda.synchronize()
    print(f"FLA warm-up H={heads}: {time.time() - t0:.1f} s", flush=True)
PY
  warmup_pid=$!
fi
if [ -n "${MODEL_PREBUILT:-}" ]; then
  BP=$MODEL_PREBUILT
else
  # shellcheck source=bench/build_extension.sh
  . bench/build_extension.sh
fi
if [ -n "${warmup_pid:-}" ]; then
  wait "$warmup_pid"
  echo "FLA warm-up: rc=$? $(tail -1 "$OUT/fla-warmup.log")"
fi
export LIGHTRING_BUILD_DIR="$BP" PYTHONPATH=python
# Both mixers under one allocator setting: expandable segments keep a long-context step from
# failing on fragmentation after an earlier out-of-memory try.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
rows="$OUT/model-h200.jsonl"
phase() {  # name timeout bench-args...
  local name=$1 limit=$2; shift 2
  local t=$(date +%s)
  local left=$((BUDGET_S - 15 - (t - start)))  # 15 s kept for the summary
  [ "$left" -lt "$limit" ] && limit=$left
  [ "$limit" -lt 20 ] && { echo "$name: skipped (${left} s of the budget left)"; return; }
  # shellcheck disable=SC2086 (MODEL_BENCH_ARGS is a list of flags)
  timeout -k 5 "$limit" python3 bench/model_bench.py --anchors .anchors --out "$rows" \
    "$@" ${MODEL_BENCH_ARGS:-} >"$OUT/model-$name.log" 2>&1
  echo "$name: rc=$? in $(($(date +%s) - t)) s"
  grep -v '^{' "$OUT/model-$name.log" | grep -v '^$' | grep -v '^|' | tail -6
}
phase table-350m 130 --phases table --sizes 350m
phase table-125m 80 --phases table --sizes 125m
phase compile 110 --phases compile
phase longest-lightring 70 --phases longest --mixers lightring --longest-cap-s 40
phase longest-fla 70 --phases longest --mixers fla --longest-cap-s 40
# What is left of the budget: the torch.compile pytest (CPU aot_eager and CUDA inductor).
left=$((BUDGET_S - 15 - ($(date +%s) - start)))
if [ "$left" -ge 45 ]; then
  t=$(date +%s)
  timeout -k 5 "$left" python3 -m pytest -q -rs tests/python/test_model_compile.py \
    >"$OUT/pytest-model-compile.log" 2>&1
  echo "pytest test_model_compile.py: rc=$? in $(($(date +%s) - t)) s: $(tail -1 "$OUT/pytest-model-compile.log")"
else
  echo "pytest test_model_compile.py: skipped (${left} s of the budget left)"
fi
python3 bench/model_bench.py --summarize "$rows" >"$OUT/model-summary.md" 2>&1
cat "$OUT/model-summary.md"
echo "model_gpu_run: $(($(date +%s) - start)) s"
