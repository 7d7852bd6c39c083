#!/usr/bin/env bash
# One call on the one-GPU machine for the kernel families (kernels/cuda/family.h): builds the
# kernels with the default architectures (sm_80 + sm_90a), runs the GPU tests (every family
# through kernels::KernelTuning), times kernel_bench rows (bf16, both layouts, both 16-bit
# families) and FLA's chunk_simple_gla on the same shapes in the same call, then
# compute-sanitizer memcheck and racecheck on a small sweep of every family. Logs and rows go
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
t0=$(date +%s)
"$TEST" --gtest_brief=1 >"$OUT/test.log" 2>&1
echo "GPU tests: rc=$? in $(($(date +%s) - t0)) s; $(grep -E '^\[  PASSED|^\[  FAILED|tests ran' "$OUT/test.log" | tr '\n' ' ')"
grep -E "FAILED|Failure" "$OUT/test.log" | head -10
KB="$BUILD/bench/kernel_bench"
SHAPES=${SHAPES:-"1,32,4096,128 1,32,65536,128 1,32,1048576,128 1,32,65536,128,64 1,32,65536,64 1,32,65536,96,80 1,32,65536,200,136 1,32,65536,256"}
BNHD=${BNHD:-"1,32,4096,128 1,32,65536,128 1,32,262144,128 1,32,1048576,128"}
# shellcheck disable=SC2086
{
  "$KB" --check -w 3 -n 10 --out "$OUT/rows-bhnd.jsonl" 1,4,2048,128 $SHAPES
  "$KB" --layout bnhd -w 3 -n 10 --out "$OUT/rows-bnhd.jsonl" $BNHD
  "$KB" --family mma -w 3 -n 10 --out "$OUT/rows-mma.jsonl" 1,32,65536,128 1,32,65536,128,64 1,32,65536,256
} >"$OUT/bench.log" 2>&1
grep -E "fwdbwd|family" "$OUT/bench.log"
t0=$(date +%s)
# shellcheck disable=SC2086
timeout "${FLA_TIMEOUT:-240}" python3 bench/peer_bench.py --anchors .anchors --impls fla -w 2 -n 5 \
  --out "$OUT/fla.jsonl" $SHAPES >"$OUT/fla.log" 2>&1
echo "FLA: rc=$? in $(($(date +%s) - t0)) s"; grep -E "fwdbwd" "$OUT/fla.log" | head -20
F='CudaLayout.EveryFamilyShapeMatchesFloat64:Short/CudaOracle.MatchesFloat64/N130_D128E128_decay_states_*'
F="$F:Short/CudaOracle.MatchesFloat64/N37_D16E16_decay_states_*:Short/CudaOracle.MatchesFloat64/N130_D192E192_decay_states_bf16_*"
for tool in memcheck racecheck; do
  timeout "${SAN_TIMEOUT:-100}" compute-sanitizer --tool $tool --error-exitcode 17 "$TEST" \
    --gtest_filter="$F" --gtest_brief=1 >"$OUT/sanitize-$tool.log" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$tool.log" | tail -1)"
done
