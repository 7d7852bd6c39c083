#!/usr/bin/env bash
# One call on the one-GPU machine for the C++ driver (lightring-train --device cuda, issue 19):
# builds lightring-train against the machine's torch (its CUDA libtorch; Boost.Program_options
# from the carried .deps/boost debs, docs/gpu-build.md), then trains with bf16 autocast and
# fp32 master weights on one GPU (SP = 1):
#   125m at 32K and 128K context (synthetic-recall, a few steps), 350m at 32K,
#   the longest context of 125m (seq-len doubled from 128K until a run fails with CUDA out of
#   memory, each attempt under a timeout; the largest that ran is recorded),
#   tools/plot_train.py on the 125m 32K log -> PNG;
# and, on a machine with 2 GPUs or more (nvidia-h200-x2), first the multi-GPU check: tiny preset,
# fp32, 6 steps: --dp 2 (NCCL gradient all-reduce) against --dp 1 with the same global batch,
# and --sp 2 (NCCL state exchange) against --sp 1, every step's loss compared (summary.txt).
# $OUT gets at most 7 files (the device tool returns 8): summary.txt (every step's result and
# the table of bench/train_cpp_report.py), train-logs.txt (every run's output, the build log's
# tail on failure), 125m-32k.jsonl, 125m-128k.jsonl, 350m-32k.jsonl, findmax-125m.jsonl (the
# longest context that ran) and train-cpp-125m-32k.png; the rest stays in $WORK. Each step runs
# under `timeout`, capped by what is left of TRAIN_BUDGET_S (default 460 s), so the call stays
# under 8 minutes.
#
#   bash bench/train_cpp_gpu_run.sh            (carry .deps)
#   TRAIN_STEPS=build,125m-32k bash bench/train_cpp_gpu_run.sh    (a subset)
#   TRAIN_TINY=1 TRAIN_DEVICE=cpu BT=build-x TRAIN_STEPS=125m-32k,findmax,plot bash ...
#     (a CPU dry run of the steps with the tiny preset and short contexts, binary prebuilt in BT)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/lightring-train-cpp-gpu}
BT=${BT:-build-train-cpp-gpu}  # in the checkout: the device machine keeps ignored build outputs between calls
WORK=${WORK:-/tmp/train-cpp-work}
BUDGET=${TRAIN_BUDGET_S:-460}
STEPS=${TRAIN_STEPS:-build,multi,125m-32k,125m-128k,350m-32k,findmax,plot}
PEAK=${PEAK_TFLOPS:-989}  # H200 dense bf16 TFLOP/s, for MFU
DEVICE=${TRAIN_DEVICE:-cuda}
if [ "${TRAIN_TINY:-0}" = 1 ]; then  # CPU dry run: every size divided by 256 (tiny preset)
  SMALL=tiny BIG=tiny K=4
else
  SMALL=125m BIG=350m K=1024
fi
mkdir -p "$OUT" "$WORK"
T_START=$(date +%s)
SUMMARY="$OUT/summary.txt"
LOGS="$OUT/train-logs.txt"
: >"$SUMMARY"
: >"$LOGS"
has() { [[ ",$STEPS," == *",$1,"* ]]; }
say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - T_START))); }

say "# train_cpp_gpu_run $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$SUMMARY"

# Boost.Program_options from the carried Debian packages (the GPU image lacks the library).
CMAKE_EXTRA=()
if compgen -G ".deps/boost/*.deb" >/dev/null; then
  rm -rf /tmp/boost-train && mkdir -p /tmp/boost-train
  for f in .deps/boost/*.deb; do dpkg -x "$f" /tmp/boost-train; done
  CMAKE_EXTRA+=(-DBoost_ROOT=/tmp/boost-train/usr -DBoost_NO_SYSTEM_PATHS=ON)
  export LD_LIBRARY_PATH=/tmp/boost-train/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
# One libnccl.so.2 in the process: torch's pip copy (torch_cuda needs its version), found before
# the system's, which lightring-train is linked against by SONAME.
PIP_NCCL=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)
[ -n "$PIP_NCCL" ] && [ -d "$PIP_NCCL" ] && export LD_LIBRARY_PATH=$PIP_NCCL:${LD_LIBRARY_PATH:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
unset LIGHTRING_COMM_TIMEOUT_S

if has build; then
  t0=$(date +%s)
  TORCH_PREFIX=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  # The system g++ (the libstdc++ that torch's libraries load), sm_90a, MPI on (lightring-train
  # runs under mpirun), no tests.
  t=$(($(left) < 300 ? $(left) : 300))
  timeout -k 10 "$t" cmake -S . -B "$BT" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$(command -v python3)" -DCMAKE_C_COMPILER=/usr/bin/gcc \
    -DCMAKE_CXX_COMPILER=/usr/bin/g++ -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++ \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DCMAKE_CUDA_ARCHITECTURES=90a -DLIGHTRING_TESTS=OFF \
    "${CMAKE_EXTRA[@]}" >"$WORK/build.log" 2>&1 &&
    timeout -k 10 "$(($(left) < 300 ? $(left) : 300))" ninja -C "$BT" -j "$(nproc)" lightring-train \
      >>"$WORK/build.log" 2>&1
  rc=$?
  grep -E "^-- lightring:" "$WORK/build.log" | tee -a "$SUMMARY"
  grep -q "lightring-train need" "$WORK/build.log" &&
    say "build: launch/ is off (see the line above): carry .deps (the Boost debs in .deps/boost and nlohmann-json under .deps/usr, docs/gpu-build.md)"
  say "build: rc=$rc in $(($(date +%s) - t0)) s"
  if [ "$rc" != 0 ]; then
    { grep -E "error|Error" "$WORK/build.log" | head -40; tail -40 "$WORK/build.log"; } | tee -a "$LOGS"
    exit 1
  fi
fi
TRAIN="$BT/launch/lightring-train"
ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
MPIRUN=(mpirun "${ROOT_FLAGS[@]}" --oversubscribe --bind-to none -x LD_LIBRARY_PATH
        -x OMP_NUM_THREADS -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST
        -x NVSHMEM_DISABLE_NVLS -np)
NP=1

# train NAME CAP_S ARGS...: one GPU run, its log in $WORK/NAME.jsonl, its output in NAME.log
# (appended to train-logs.txt); prints the last step line. Returns the run's exit status (124:
# timeout).
train() {
  local name=$1 cap=$2
  shift 2
  local t=$(($(left) < cap ? $(left) : cap))
  if [ "$t" -lt 10 ]; then
    say "$name: skipped (budget of ${BUDGET} s spent)"
    return 125
  fi
  local t0=$(date +%s)
  timeout -k 5 "$t" "${MPIRUN[@]}" "$NP" "$TRAIN" --device "$DEVICE" --peak-tflops "$PEAK" \
    --data synthetic-recall --eval-sequences 0 --log-every 1 --warmup 2 \
    --log "$WORK/$name.jsonl" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  say "$name: rc=$rc in $(($(date +%s) - t0)) s (timeout $t s)"
  grep -E "^step" "$WORK/$name.log" | tail -1 | tee -a "$SUMMARY"
  [ "$rc" = 0 ] || grep -iE "error|out of memory" "$WORK/$name.log" | head -3 | tee -a "$SUMMARY"
  { echo "=== $name (rc=$rc): lightring-train $*"; cat "$WORK/$name.log"; } >>"$LOGS"
  return "$rc"
}

rm -f "$WORK"/*.jsonl

# same_losses A B TOL: every step's loss of log B within TOL (relative) of log A's.
same_losses() {
  python3 - "$WORK/$1.jsonl" "$WORK/$2.jsonl" "$3" <<'PY' 2>&1 | tee -a "$SUMMARY"
import json, sys
def losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if r["kind"] == "train"]
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
worst = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=float("inf"))
ok = len(a) == len(b) > 0 and worst <= tol
print(f"{sys.argv[2].rsplit('/', 1)[-1]} vs {sys.argv[1].rsplit('/', 1)[-1]}: {len(b)} steps, "
      f"worst relative loss difference {worst:.2e} (tolerance {tol:g}): {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
PY
}
GPUS=${TRAIN_GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c "^GPU")}  # TRAIN_GPUS: dry runs
if has multi && [ "${GPUS:-0}" -ge 2 ]; then
  MULTI=(--preset tiny --precision fp32 --seq-len 4096 --steps 6)
  NP=1 train multi-dp1 40 "${MULTI[@]}" --batch 2
  NP=2 train multi-dp2 40 "${MULTI[@]}" --dp 2 --batch 1
  NP=1 train multi-sp1 40 "${MULTI[@]}" --batch 1
  NP=2 train multi-sp2 40 "${MULTI[@]}" --sp 2 --batch 1
  # DP: the same sums in another order (fp32 rounding, amplified by AdamW over 6 steps); SP: the
  # shard boundary moves the kernels' block boundaries (TF32 products on the tensor cores).
  same_losses multi-dp1 multi-dp2 1e-4
  same_losses multi-sp1 multi-sp2 2e-3
elif has multi; then
  say "multi: skipped (${GPUS:-0} GPU visible; the check needs 2)"
fi
keep() { [ -f "$WORK/$1.jsonl" ] && cp "$WORK/$1.jsonl" "$OUT/${2:-$1}.jsonl"; }
RUN=(--precision bf16 --batch 1)  # the measured runs: bf16 autocast, one sequence per step
has 125m-32k && train 125m-32k 60 "${RUN[@]}" --preset "$SMALL" --seq-len $((32 * K)) --steps 10
keep 125m-32k
has 125m-128k && train 125m-128k 70 "${RUN[@]}" --preset "$SMALL" --seq-len $((128 * K)) --steps 6
keep 125m-128k
has 350m-32k && train 350m-32k 80 "${RUN[@]}" --preset "$BIG" --seq-len $((32 * K)) --steps 6
keep 350m-32k

# The longest context of 125m: double from 256K while runs succeed; an out-of-memory failure
# ends the search, so does a timeout (recorded as such: not a memory limit).
if has findmax; then
  best=$((128 * K))
  grep -q '"kind":"train"' "$WORK/125m-128k.jsonl" 2>/dev/null || best=0
  n=$((256 * K))
  while :; do
    train "findmax-125m-$((n / 1024))k" 60 "${RUN[@]}" --preset "$SMALL" --seq-len "$n" --steps 2
    rc=$?
    if [ "$rc" = 0 ]; then
      best=$n
      keep "findmax-125m-$((n / 1024))k" findmax-125m
      n=$((n * 2))
      continue
    fi
    if grep -qi "out of memory" "$WORK/findmax-125m-$((n / 1024))k.log" 2>/dev/null; then
      say "findmax: $((n / 1024))K is out of memory"
    else
      say "findmax: $((n / 1024))K did not finish (rc=$rc): not a memory limit"
    fi
    break
  done
  say "findmax: the longest 125m context that ran: $((best / 1024))K tokens (batch 1, bf16)"
fi

if has plot && [ -f "$WORK/125m-32k.jsonl" ]; then
  python3 tools/plot_train.py "$WORK/125m-32k.jsonl" -o "$OUT/train-cpp-125m-32k.png" 2>&1 |
    tail -2 | tee -a "$SUMMARY"
fi
python3 bench/train_cpp_report.py "$WORK"/*.jsonl 2>&1 | tee -a "$SUMMARY"
say "total: $(($(date +%s) - T_START)) s"
