#!/bin/bash
# One call on the GPU machine: build the CUDA backend, its tests and the kernel
# benchmark; run the GPU tests, compute-sanitizer (memcheck + racecheck) on a
# small sweep, lightring's benchmark and the peers' benchmark in the same run.
#
#   STEPS=build,sass,test,bench,variants,envs,sanitize,peers bash bench/gpu_run.sh   (run in this order)
#
# The test binary covers every kernel family itself (kernels::KernelTuning, set per test);
# the variants step times the mma family next to the default (kernel_bench --family mma) and
# the sanitize step checks both 16-bit families and tf32.
# BUILD: a build folder; without the build step, one carried from the development machine
# (bench/kernel_bench and tests/cpp/cuda/test_kernels_cuda, built with -DCMAKE_CUDA_ARCHITECTURES=90a).
#
# Logs and JSON rows go to $OUT (at most 8 files, which the device tool brings
# back); peers need their packages under .anchors/ (git-ignored, carried with
# the call). Then: python3 bench/merge_results.py --run <files> --commit <sha>
#   --variant lightring-waves16.jsonl:waves16 --variant lightring-mma.jsonl:mma
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/lightring-gpu-run}
STEPS=${STEPS:-build,sass,test,bench,variants,sanitize,peers}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
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

# Resources and instruction mix of the scan kernels (appended to build.log): registers, spills and
# shared memory per kernel; counts of HMMA, LDSM, 16-byte cp.async (LDGSTS.E.BYPASS.128) and
# local-memory traffic (STL/LDL: spills) in the SASS of each kernel.
if has sass; then
  LIB="$BUILD/bench/kernel_bench"  # links the kernels statically
  {
    echo "== cuobjdump --dump-resource-usage"
    cuobjdump --dump-resource-usage "$LIB" | grep -E "Function|REG" | paste - - | grep -E "scan_kernel|output_kernel" |
      sed -E 's/_ZN9lightring7kernels4cuda9scan_tf3211scan_kernelI//'
    echo "== SASS counts per kernel: HMMA HGMMA LDSM LDGSTS.128 STL LDL WARPGROUP.DEPBAR"
    cuobjdump --dump-sass "$LIB" | awk '
      /Function : .*(scan_kernel|output_kernel)/ { if (f) print f, h, w, l, g, st, ld, d; f = $3; h = w = l = g = st = ld = d = 0 }
      /HMMA/ { h++ } /HGMMA/ { w++ } /LDSM/ { l++ } /LDGSTS.*128/ { g++ } /STL/ { st++ } /LDL/ { ld++ } /WARPGROUP.DEPBAR/ { d++ }
      END { if (f) print f, h, w, l, g, st, ld, d }' |
      sed -E 's/_ZN9lightring7kernels4cuda9scan_tf3211scan_kernelI//'
  } >>"$OUT/build.log" 2>&1
  grep -A60 "== cuobjdump" "$OUT/build.log" | grep -E "Li128|wgmma|==" | head -30
fi

TEST="$BUILD/tests/cpp/cuda/test_kernels_cuda"
if has test; then
  t0=$(date +%s)
  "$TEST" --gtest_brief=1 >>"$OUT/test.log" 2>&1
  echo "tests: rc=$? in $(($(date +%s) - t0)) s"
  grep -E "^====|^\[  (PASSED|FAILED|SKIPPED) |FAILED|info|Failure|rel_err|Expected|Which is" "$OUT/test.log" | head -80
fi

if has bench; then
  # shellcheck disable=SC2086
  "$BUILD/bench/kernel_bench" --check -w 3 -n 10 --out "$OUT/lightring.jsonl" $SHAPES
fi

# The same build under other tunings (bench/NOTES.md): more, shorter segments (wave
# quantisation) and the mma family (--check: its small shape also checked against float64).
VARIANT_SHAPES=${VARIANT_SHAPES:-"1,32,16384,128 1,32,65536,128 1,32,262144,128 8,16,2048,128 1,32,65536,256"}
if has variants; then
  # shellcheck disable=SC2086
  [ "${WAVES16:-1}" = 1 ] && "$BUILD/bench/kernel_bench" --waves 16 -w 3 -n 10 --out "$OUT/lightring-waves16.jsonl" $VARIANT_SHAPES
  # shellcheck disable=SC2086
  "$BUILD/bench/kernel_bench" --family mma --check -w 3 -n 10 \
    --out "$OUT/lightring-mma.jsonl" 1,4,2048,128 $VARIANT_SHAPES
fi

# ENV_RUNS: more configurations of the same build, "tag:FLAG[,FLAG...]" each (kernel_bench's
# tuning flags), timed at ENV_SHAPES; their rows, tagged "variant": tag, go to
# lightring-envs.jsonl (e.g. ENV_RUNS="twopass:--no-fused seg512:--seg-len,512").
ENV_SHAPES=${ENV_SHAPES:-"1,32,16384,128 1,32,65536,128 1,32,262144,128"}
if has envs; then
  for run in ${ENV_RUNS:-}; do
    tag=${run%%:*}
    echo "==== $run" >>"$OUT/envs.log"
    # shellcheck disable=SC2086,SC2046
    "$BUILD/bench/kernel_bench" $(echo "${run#*:}" | tr , ' ') -w 3 -n 10 \
      --out "$OUT/env-rows.tmp" $ENV_SHAPES >>"$OUT/envs.log" 2>&1
    echo "$tag: rc=$?"
    grep -E '^\{"(impl|device)' "$OUT/env-rows.tmp" | grep -v ceiling |
      sed -E "s/^\{/{\"variant\": \"$tag\", /" >>"$OUT/lightring-envs.jsonl"
    rm -f "$OUT/env-rows.tmp"
  done
fi

# After the timings, so that a slow sanitizer run cannot cost them; each run is capped at
# SAN_TIMEOUT seconds (rc 124 then).
if has sanitize; then
  t0=$(date +%s)
  # Both 16-bit families (auto: wgmma on an H100/H200; mma) at every dk block they instantiate
  # (D = 16, 48, 128, 192, 256), tf32 (fp32), partial slices, both layouts.
  F='CudaLayout.EveryFamilyShapeMatchesFloat64:CudaLayout.BnhdStridesMatchFloat64:CudaLayout.WideOddValueDimMatchesFloat64'
  F="$F:Short/CudaOracle.MatchesFloat64/N130_D128E128_decay_states_bf16_*:Short/CudaOracle.MatchesFloat64/N130_D48E80_decay_states_bf16_*"
  F="$F:Short/CudaOracle.MatchesFloat64/N37_D16E16_decay_states_fp32_auto:Short/CudaOracle.MatchesFloat64/N130_D16E16_nodecay_nostates_fp16_*"
  F="$F:Short/CudaOracle.MatchesFloat64/N130_D192E192_decay_states_bf16_*"
  for tool in memcheck racecheck; do
    echo "==== $tool" >>"$OUT/sanitize.log"
    timeout "${SAN_TIMEOUT:-240}" compute-sanitizer --tool $tool \
      --error-exitcode 17 "$TEST" --gtest_filter="$F" --gtest_brief=1 >>"$OUT/sanitize.log" 2>&1
    echo "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize.log" | tail -1)"
  done
  echo "sanitize: $(($(date +%s) - t0)) s"
fi

if has peers; then
  # shellcheck disable=SC2086
  python3 bench/peer_bench.py --anchors .anchors --check -w 2 -n 5 --fa2-max-n 16384 ${PEER_ARGS:-} \
    --out "$OUT/peers.jsonl" ${PEER_SHAPES:-$SHAPES}
fi

# Stall reasons of the output-pass scan kernel (NCU_KERNEL, default the wgmma one) at one shape
# (NCU_FAMILY: kernel_bench --family).
if has ncu; then
  ncu --clock-control none --kernel-name-base mangled -k "regex:${NCU_KERNEL:-scan_wgmma11scan_kernel.*Lb1}" \
    -c 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \
    "$BUILD/bench/kernel_bench" --family "${NCU_FAMILY:-auto}" -w 1 -n 1 ${NCU_SHAPE:-1,32,65536,128} >"$OUT/ncu.txt" 2>&1
  grep -E "Duration|Issue Slots Busy|Warp Cycles Per Issued|Stall|Executed Ipc|Registers|Achieved Occupancy" "$OUT/ncu.txt" | head -40
fi
