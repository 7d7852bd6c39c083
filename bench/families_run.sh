#!/usr/bin/env bash
# One call on the one-GPU machine for the kernel families (kernels/cuda/family.h): builds the
# kernels with the default architectures (sm_80 + sm_90a), runs the GPU tests (every family
# through kernels::KernelTuning), times kernel_bench rows (bf16, both layouts, both 16-bit
# families) and FLA's chunk_simple_gla on the same shapes in the same call, then
# compute-sanitizer memcheck and racecheck on a small sweep of every family (timings first, so a
# call cut short still brings them back). Logs and rows go
# to $OUT; peers need .anchors/ (git-ignored, carried).
set -uo pipefail
OUT=${OUT:-/tmp/lightring-families}
BUILD=${BUILD:-build-families}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIGHTRING_MPI=OFF -DLIGHTRING_NCCL=OFF \
  -DLIGHTRING_TORCH=OFF >"$OUT/build.log" 2>&1 &&
  ninja -C "$BUILD" test_kernels_cuda kernel_bench >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build (80;90a): $(($(date +%s) - t0)) s"; grep -m1 "CUDA_ARCHITECTURES\|lightring: CUDA" "$OUT/build.log"
TEST="$BUILD/tests/cpp/cuda/test_kernels_cuda"
KB="$BUILD/bench/kernel_bench"
# The shapes of issue 16: D/E in {64, 96x80, 128, 200x136, 256} at 4K / 64K / 1M, D=128 E=64, and
# both layouts at 4K-1M.
SHAPES=${SHAPES:-"1,32,4096,64 1,32,65536,64 1,32,1048576,64 1,32,4096,96,80 1,32,65536,96,80 1,32,1048576,96,80 1,32,4096,128 1,32,65536,128 1,32,1048576,128 1,32,4096,200,136 1,32,65536,200,136 1,32,1048576,200,136 1,32,4096,256 1,32,65536,256 1,32,1048576,256 1,32,4096,128,64 1,32,65536,128,64 1,32,1048576,128,64"}
LAYOUT_SHAPES=${LAYOUT_SHAPES:-"1,32,4096,128 1,32,65536,128 1,32,262144,128 1,32,1048576,128"}
FLA_SHAPES=${FLA_SHAPES:-"1,32,4096,128 1,32,65536,128 1,32,262144,128 1,32,65536,128,64 1,32,65536,256 1,32,65536,64 1,32,65536,96,80 1,32,65536,200,136"}
# shellcheck disable=SC2086
if [ "${BENCH:-1}" = 1 ]; then
  {
    "$KB" --check -w 3 -n 10 --out "$OUT/rows-bhnd.jsonl" 1,4,2048,128 1,4,2048,128,64 $SHAPES
    "$KB" -w 3 -n 10 --out "$OUT/rows-bhnd-layout.jsonl" $LAYOUT_SHAPES
    "$KB" --layout bnhd -w 3 -n 10 --out "$OUT/rows-bnhd.jsonl" $LAYOUT_SHAPES
    "$KB" --family mma -w 3 -n 10 --out "$OUT/rows-mma.jsonl" 1,32,65536,128 1,32,65536,128,64 1,32,65536,256
  } >"$OUT/bench.log" 2>&1
  grep -E "fwdbwd|family" "$OUT/bench.log"
fi
# FLA's autotuner makes its speed vary between processes: FLA_RUNS processes, the faster kept.
for run in $(seq 1 "${FLA_RUNS:-0}"); do
  t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout "${FLA_TIMEOUT:-240}" python3 bench/peer_bench.py --anchors .anchors --impls fla -w 2 -n 5 \
    --out "$OUT/fla-$run.jsonl" $FLA_SHAPES >"$OUT/fla-$run.log" 2>&1
  echo "FLA run $run: rc=$? in $(($(date +%s) - t0)) s"; grep -E "fwdbwd" "$OUT/fla-$run.log" | head -20
done
if [ "${TESTS:-1}" = 1 ]; then
  # SHARDS processes share the GPU (the float64 references are the long part, on the CPUs).
  t0=$(date +%s)
  shards=${SHARDS:-8}
  for i in $(seq 0 $((shards - 1))); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$TEST" --gtest_brief=1 >"$OUT/test-$i.log" 2>&1 &
  done
  rc=0
  for job in $(jobs -p); do wait "$job" || rc=$?; done
  cat "$OUT"/test-*.log >"$OUT/test.log" && rm -f "$OUT"/test-*.log
  echo "GPU tests ($shards shards): rc=$rc in $(($(date +%s) - t0)) s; $(grep -E '^\[  PASSED|^\[  FAILED|tests ran|worst error' "$OUT/test.log" | tr '\n' ' ')"
  grep -E "FAILED|Failure" -A3 "$OUT/test.log" | head -40
fi
# Sanitizers (SANITIZERS, default "memcheck racecheck"; empty: none) on a small sweep of every family: tf32 (fp32), mma and wgmma (bf16/fp16 under
# --family auto and mma), every wgmma instantiation (dk block 64, 128, split-K 128 and 256).
F='Short/CudaOracle.MatchesFloat64/N130_D128E128_decay_states_*:Short/CudaOracle.MatchesFloat64/N130_D128E64_decay_states_*'
F="$F:Short/CudaOracle.MatchesFloat64/N37_D16E16_decay_states_*:Short/CudaOracle.MatchesFloat64/N130_D192E192_decay_states_bf16_*"
F="$F:Short/CudaOracle.MatchesFloat64/N130_D64E64_decay_states_bf16_*"
for tool in ${SANITIZERS-memcheck racecheck}; do
  t0=$(date +%s)
  timeout "${SAN_TIMEOUT:-150}" compute-sanitizer --tool $tool --error-exitcode 17 "$TEST" \
    --gtest_filter="$F" --gtest_brief=1 >"$OUT/sanitize-$tool.log" 2>&1
  echo "compute-sanitizer $tool: rc=$? in $(($(date +%s) - t0)) s $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|tests ran|PASSED' "$OUT/sanitize-$tool.log" | tr '\n' ' ')"
done
# The device tool brings back at most 8 files: PACK=1 leaves one archive of every log and row.
if [ "${PACK:-0}" = 1 ]; then
  tar -czf /tmp/families.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/families.tgz "$OUT/"
fi
