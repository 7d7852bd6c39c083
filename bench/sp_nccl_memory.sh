#!/bin/bash
# Where the P=2 peak exceeds the P=1 peak (issue 5: peak P=2 / P=1 <= 1.05 per GPU), on the
# two-GPU machine: lightring-bench weak rows (B=1 H=32 D=E=128 bf16, ring) at n_local = LENS,
# once at P=1 and once at P=2 under each setting of CONFIGS (environment variables of the ranks
# and mpirun: NCCL, Open MPI), with nvidia-smi's per-process device memory sampled every second
# while each P=2 run lasts (a second CUDA context on a GPU shows there as a second process).
#
#   BUILD=dir OUT=dir [LENS=16384,65536] [CONFIGS="tag:VAR=VAL;VAR=VAL ..."] bash bench/sp_nccl_memory.sh
#
# BUILD holds launch/lightring-bench (MPI and NCCL on). Files under OUT: mem-<tag>-p<P>.json,
# runs.log (every run's output and nvidia-smi samples) and summary.txt (bench/sp_nccl_memory.py).
set -uo pipefail
BUILD=${BUILD:-build-sp-gpu}
OUT=${OUT:-/tmp/sp-nccl-memory}
LENS=${LENS:-16384,65536}
CONFIGS=${CONFIGS:-"default: simple:NCCL_PROTO=Simple buff1m:NCCL_BUFFSIZE=1048576 \
lean:NCCL_PROTO=Simple;NCCL_BUFFSIZE=1048576 cumem0:NCCL_CUMEM_ENABLE=0"}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
unset LIGHTRING_COMM_TIMEOUT_S

# Boost.Program_options from the carried Debian packages (as bench/sp_gpu_run.sh).
if compgen -G ".deps/boost/*.deb" >/dev/null; then
  rm -rf /tmp/boost && mkdir -p /tmp/boost
  for f in .deps/boost/*.deb; do dpkg -x "$f" /tmp/boost; done
  export LD_LIBRARY_PATH=/tmp/boost/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH
fi

ROOT_FLAGS=()
[ "$(id -u)" = 0 ] && ROOT_FLAGS=(--allow-run-as-root)
BENCH="$BUILD/launch/lightring-bench"
ARGS=(--backend cuda --batch 1 --heads 32 --dim 128 --vdim 128 --dtype bf16 --decay on
      --local-len "$LENS" -w 2 -n 7 --timeout 60)

run() {  # run TAG NP [VAR=VAL ...]; SCHEDULE=s among them is the --schedule (default ring)
  local tag=$1 np=$2 schedule=ring
  shift 2
  local pass=(-x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS
              -x LD_LIBRARY_PATH) vars=()
  for kv in "$@"; do
    if [[ $kv == SCHEDULE=* ]]; then
      schedule=${kv#SCHEDULE=}
    else
      vars+=("$kv")
      pass+=(-x "${kv%%=*}")
    fi
  done
  env "${vars[@]}" mpirun "${ROOT_FLAGS[@]}" --oversubscribe --bind-to none "${pass[@]}" -np "$np" \
    "$BENCH" "${ARGS[@]}" --schedule "$schedule" --json "$OUT/mem-$tag-p$np.json" >"$OUT/run.tmp" 2>&1 &
  local pid=$!
  : >"$OUT/smi.tmp"
  if [ "$np" -gt 1 ]; then
    while kill -0 "$pid" 2>/dev/null; do
      nvidia-smi --query-compute-apps=pid,gpu_bus_id,used_memory --format=csv,noheader \
        >>"$OUT/smi.tmp" 2>&1
      sleep 1
    done
  fi
  wait "$pid"
  local rc=$?
  echo "$tag P=$np: rc=$rc"
  { echo "==== $tag P=$np $* (rc=$rc)"; cat "$OUT/run.tmp"; sed 's/^/smi: /' "$OUT/smi.tmp"; } >>"$OUT/runs.log"
  rm -f "$OUT/run.tmp" "$OUT/smi.tmp"
}

run base 1
for cfg in $CONFIGS; do
  tag=${cfg%%:*}
  kvs=()
  [ -n "${cfg#*:}" ] && IFS=';' read -r -a kvs <<<"${cfg#*:}"
  run "$tag" 2 "${kvs[@]}"
done
python3 bench/sp_nccl_memory.py "$OUT" | tee "$OUT/summary.txt"
