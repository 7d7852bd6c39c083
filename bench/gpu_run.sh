#!/bin/bash
# One call on the GPU machine: build the CUDA backend, its tests and the kernel
# benchmark; run the GPU tests, compute-sanitizer (memcheck + racecheck) on a
# small sweep, lightring's benchmark and the peers' benchmark in the same run.
#
#   STEPS=build,test,sanitize,bench,variants,peers bash bench/gpu_run.sh
#
# Logs and JSON rows go to $OUT (at most 8 files, which the device tool brings
# back); peers need their packages under .anchors/ (git-ignored, carried with
# the call). Then: python3 bench/merge_results.py --run <files> --commit <sha>
#   --variant lightring-waves16.jsonl:waves16 --variant lightring-warps4.jsonl:warps4
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/lightring-gpu-run}
STEPS=${STEPS:-build,test,sanitize,bench,variants,peers}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
has() { [[ ",$STEPS," == *",$1,"* ]]; }

# B,H,N,D[,E]: issue 4's targets (B=1 H=32 D=128 at 16K..256K; constant speed to 1M at H=16 on
# an 80 GB H100; short and batched; D = 64 and 256) and one small shape checked against float64.
SHAPES=${SHAPES:-"1,4,2048,128 1,32,16384,128 1,32,65536,128 1,32,262144,128 1,16,16384,128 \
1,16,1048576,128 8,16,2048,128 4,32,4096,128 1,32,65536,64 1,32,65536,256"}

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.draw --format=csv

if has build; then
  t0=$(date +%s)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIGHTRING_MPI=OFF -DLIGHTRING_NCCL=OFF \
    -DLIGHTRING_TORCH=OFF >"$OUT/build.log" 2>&1 &&
    ninja -C "$BUILD" test_kernels_cuda kernel_bench >>"$OUT/build.log" 2>&1 ||
    { tail -60 "$OUT/build.log"; exit 1; }
  echo "build: $(($(date +%s) - t0)) s"
fi

TEST="$BUILD/tests/cpp/cuda/test_kernels_cuda"
if has test; then
  t0=$(date +%s)
  "$TEST" --gtest_brief=1 >"$OUT/test.log" 2>&1
  echo "tests: rc=$? in $(($(date +%s) - t0)) s"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|info|Failure|rel_err|Expected|Which is" "$OUT/test.log" | head -60
fi

if has sanitize; then
  t0=$(date +%s)
  F='Short/CudaOracle.MatchesFloat64/N130_D48E80_decay_states_bf16:Short/CudaOracle.MatchesFloat64/N37_D16E16_decay_states_fp32:Short/CudaOracle.MatchesFloat64/N130_D16E16_nodecay_nostates_fp16:CudaLayout.BnhdStridesMatchFloat64'
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 17 "$TEST" --gtest_filter="$F" --gtest_brief=1 \
      >>"$OUT/sanitize.log" 2>&1
    echo "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize.log" | tail -1)"
  done
  echo "sanitize: $(($(date +%s) - t0)) s"
fi

if has bench; then
  # shellcheck disable=SC2086
  "$BUILD/bench/kernel_bench" --check -w 3 -n 10 --out "$OUT/lightring.jsonl" $SHAPES
fi

# The same build under environment switches (bench/NOTES.md): more, shorter segments (wave
# quantisation) and the 4-warp CTA.
VARIANT_SHAPES=${VARIANT_SHAPES:-"1,32,16384,128 1,32,65536,128 1,32,262144,128 8,16,2048,128 1,32,65536,256"}
if has variants; then
  # shellcheck disable=SC2086
  LIGHTRING_CUDA_WAVES=16 "$BUILD/bench/kernel_bench" -w 3 -n 10 --out "$OUT/lightring-waves16.jsonl" $VARIANT_SHAPES
  # shellcheck disable=SC2086
  LIGHTRING_CUDA_WARPS=4 "$BUILD/bench/kernel_bench" -w 3 -n 10 --out "$OUT/lightring-warps4.jsonl" $VARIANT_SHAPES
fi

if has peers; then
  # shellcheck disable=SC2086
  python3 bench/peer_bench.py --anchors .anchors --check -w 2 -n 5 --fa2-max-n 16384 \
    --out "$OUT/peers.jsonl" ${PEER_SHAPES:-$SHAPES}
fi
