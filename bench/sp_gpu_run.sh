#!/bin/bash
# One call on the 2-GPU machine (nvidia-h200-x2) for issue 5: build, 2-GPU
# correctness, weak scaling P=1 vs P=2, the exchange micro-benchmark, LASP
# side by side, the longest sequence, and a summary (bench/sp_report.py).
#
#   bash bench/sp_gpu_run.sh            (carry .deps and .anchors; results under $OUT)
#
# Files under $OUT (at most 8): sp_gpu.log (everything printed), weak-p1.json,
# weak-p2.json, exchange.json, findmax.json, lasp.json, sp-<device>-<date>.json
# (merged + summary). Every step runs under `timeout`, capped by what is left
# of SP_BUDGET_S (default 470 s), so one hang cannot eat the call.
#
# Knobs (for a CPU dry run of everything but the GPU-only steps):
#   SP_BACKEND=cpu SP_TINY=1 BUILD=build-sp OUT=/tmp/sp bash bench/sp_gpu_run.sh
#   SP_STEPS=build,check,weak,exchange,lasp,findmax,report   (default: all)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/sp-gpu-run}
BUILD=${BUILD:-build-sp-gpu}
SP_BACKEND=${SP_BACKEND:-cuda}
SP_STEPS=${SP_STEPS:-build,check,weak,exchange,lasp,findmax,report}
BUDGET=${SP_BUDGET_S:-470}
NP=${NP:-2}
mkdir -p "$OUT"
LOG="$OUT/sp_gpu.log"
: >"$LOG"
T_START=$(date +%s)
has() { [[ ",$SP_STEPS," == *",$1,"* ]]; }
log() { echo "$*" | tee -a "$LOG"; }

# NVLink multicast off (docs/gpu-build.md), passed to every rank with -x.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} PYTHONUNBUFFERED=1
# Deadlines go through --timeout: LIGHTRING_COMM_TIMEOUT_S would override the short
# deadlines of the test suite's timeout tests (it wins over CommOptions).
unset LIGHTRING_COMM_TIMEOUT_S
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}

# Sizes: the issue's shapes on GPUs; SP_TINY=1 shrinks everything for a CPU dry run.
if [ "${SP_TINY:-0}" = 1 ]; then
  SHAPE=(--heads 2 --dim 16 --dtype fp32)
  LOCAL_LENS=256,1024
  MSGS=4096,65536,262144
  FINDMAX=(-b 4096 --max-seconds 20)
  LASP_LENS=1024
  ITERS=(-w 1 -n 3)
  XITERS=(-w 2 -n 10)
else
  SHAPE=(--batch 1 --heads 32 --dim 128 --vdim 128 --dtype bf16 --decay on)
  LOCAL_LENS=16384,65536,262144,1048576
  MSGS=4096,16384,65536,262144,1048576,2097152,4194304,16777216
  FINDMAX=(-b 2097152 -e 16777216 --max-seconds "${FINDMAX_S:-100}" --refine 2)
  LASP_LENS=16384,65536,262144
  read -r -a ITERS <<<"${SP_ITERS:--w 2 -n 7}"  # SP_ITERS overrides
  XITERS=(-w 10 -n 100)
fi

# Boost.Program_options from the carried Debian packages (the GPU image lacks the library).
CMAKE_EXTRA=()
if compgen -G ".deps/boost/*.deb" >/dev/null && [ "${SP_SYSTEM_BOOST:-0}" != 1 ]; then
  rm -rf /tmp/boost && mkdir -p /tmp/boost
  for f in .deps/boost/*.deb; do dpkg -x "$f" /tmp/boost; done
  CMAKE_EXTRA+=(-DBoost_ROOT=/tmp/boost/usr -DBoost_NO_SYSTEM_PATHS=ON)
  export LD_LIBRARY_PATH=/tmp/boost/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export BOOST_PREFIX=/tmp/boost
fi

ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
PASS=()
for v in NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS OMP_NUM_THREADS \
         LD_LIBRARY_PATH OMPI_MCA_btl_vader_single_copy_mechanism NCCL_DEBUG \
         LIGHTRING_NCCL_MAX_CTAS LIGHTRING_NCCL_LEAN LIGHTRING_NCCL_HOST_AGREE  \
         LIGHTRING_COMM_IPC; do
  [ -n "${!v+x}" ] && PASS+=(-x "$v")
done
BENCH="$BUILD/launch/lightring-bench"
MPIRUN=(mpirun "${ROOT_FLAGS[@]}" --oversubscribe --bind-to none "${PASS[@]}")

# step NAME CAP_S CMD...: runs CMD under timeout min(CAP_S, budget left), output to the log.
STATUS=()
step() {
  local name=$1 cap=$2
  shift 2
  # The report keeps a reserve of 20 s; every other step stops at BUDGET - 20.
  local reserve=20
  [ "$name" = report ] && reserve=0
  local left=$((BUDGET - reserve - ($(date +%s) - T_START)))
  local t=$((cap < left ? cap : left))
  if [ "$t" -lt 5 ]; then
    log "== $name: skipped (budget of ${BUDGET}s spent)"
    STATUS+=("$name=skipped")
    return 0
  fi
  log "== $name (timeout ${t}s) $(date +%T)"
  local t0=$(date +%s)
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "== $name: rc=$rc in $(($(date +%s) - t0))s"
  STATUS+=("$name=$rc")
  return 0
}

{
  echo "# sp_gpu_run: $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) backend $SP_BACKEND"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
  command -v nvidia-smi >/dev/null && nvidia-smi topo -m | head -4
} 2>&1 | tee -a "$LOG"

# Build (configure once; only the two targets this run needs), each command under timeout.
build() {
  local left=$((BUDGET - ($(date +%s) - T_START)))
  local t=$((260 < left ? 260 : left))
  log "== build (timeout ${t}s) $(date +%T)"
  local t0=$(date +%s) rc=0
  if [ ! -f "$BUILD/build.ninja" ]; then
    timeout -k 10 "$t" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DLIGHTRING_TORCH=OFF "${CMAKE_EXTRA[@]}" >"$OUT/.build.log" 2>&1 || rc=$?
  fi
  local t2=$((t - ($(date +%s) - t0)))
  if [ "$rc" = 0 ]; then
    timeout -k 10 "$t2" ninja -C "$BUILD" -j16 lightring-bench lightring_parallel_tests \
      >>"$OUT/.build.log" 2>&1 || rc=$?
  fi
  grep -E "lightring:|error|FAILED" "$OUT/.build.log" | head -40 | tee -a "$LOG"
  [ "$rc" = 0 ] || tail -25 "$OUT/.build.log" | tee -a "$LOG"
  log "== build: rc=$rc in $(($(date +%s) - t0))s"
  STATUS+=("build=$rc")
  rm -f "$OUT/.build.log"
}
# SP_PREBUILT=DIR: binaries built elsewhere (same layout as a build dir); used when
# every library they need resolves here, otherwise the build step runs as usual.
if [ -n "${SP_PREBUILT:-}" ]; then
  if ldd "$SP_PREBUILT/launch/lightring-bench" "$SP_PREBUILT/tests/cpp/parallel/lightring_parallel_tests" \
      2>&1 | grep -q "not found"; then
    log "prebuilt binaries in $SP_PREBUILT miss libraries here: building"
    ldd "$SP_PREBUILT/launch/lightring-bench" 2>&1 | grep "not found" | tee -a "$LOG"
  else
    log "using prebuilt binaries in $SP_PREBUILT"
    BUILD=$SP_PREBUILT
    BENCH="$BUILD/launch/lightring-bench"
    SP_STEPS=${SP_STEPS//build/}
    export SKIP_BUILD=1
  fi
fi
if has build; then build; fi
if [ ! -x "$BENCH" ]; then
  log "lightring-bench missing at $BENCH: nothing else can run"
fi

if has check && [ "$SP_BACKEND" = cuda ]; then
  step gpu_check "${CHECK_CAP:-150}" env NP="$NP" bash parallel/gpu_check.sh "$BUILD"
fi

if has weak && [ -x "$BENCH" ]; then
  # Weak scaling: the same n_local on 1 GPU (the baseline) and on NP GPUs.
  for np in 1 "$NP"; do
    step "weak_p$np" "${WEAK_CAP:-100}" "${MPIRUN[@]}" -np "$np" "$BENCH" --backend "$SP_BACKEND" "${SHAPE[@]}" \
      --local-len "$LOCAL_LENS" --schedule auto "${ITERS[@]}" --timeout 60 --json "$OUT/weak-p$np.json"
  done
fi

if has exchange && [ -x "$BENCH" ]; then
  step exchange "${EXCHANGE_CAP:-45}" "${MPIRUN[@]}" -np "$NP" "$BENCH" --backend "$SP_BACKEND" --exchange-only --msg-bytes "$MSGS" \
    "${XITERS[@]}" --timeout 60 --json "$OUT/exchange.json"
fi

if has lasp; then
  if [ "$SP_BACKEND" = cuda ]; then
    TORCHRUN=(torchrun)
    command -v torchrun >/dev/null || TORCHRUN=(python3 -m torch.distributed.run)
    step lasp "${LASP_CAP:-140}" "${TORCHRUN[@]}" --nproc_per_node "$NP" bench/lasp_bench.py --anchors .anchors \
      --local-lens "$LASP_LENS" --variants "${LASP_VARIANTS:-naive,cache,fuse,fuse_parallel}" -w 2 -n 5 \
      --json "$OUT/lasp.json"
  else
    log "== lasp: skipped (needs GPUs and torchrun)"
  fi
fi

if has findmax && [ -x "$BENCH" ]; then
  # Bounded twice: --max-seconds stops starting new lengths, timeout stops the rest.
  step findmax "${FINDMAX_CAP:-140}" "${MPIRUN[@]}" -np "$NP" "$BENCH" --backend "$SP_BACKEND" "${SHAPE[@]}" --find-max \
    "${FINDMAX[@]}" --schedule auto --timeout 60 --json "$OUT/findmax.json"
fi

if has report; then
  DEV=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['device'].split()[-1].lower())" \
    "$OUT/weak-p$NP.json" 2>/dev/null || echo "$SP_BACKEND")
  step report 30 python3 bench/sp_report.py --weak "$OUT/weak-p1.json" "$OUT/weak-p$NP.json" \
    --exchange "$OUT/exchange.json" --findmax "$OUT/findmax.json" --lasp "$OUT/lasp.json" \
    --bench "$BENCH" --out "$OUT/sp-${DEV}x$NP-$(date +%Y%m%d).json"
fi

log "# steps: ${STATUS[*]}  (total $(($(date +%s) - T_START))s)"
ls -la "$OUT" | tee -a "$LOG"
