#!/usr/bin/env bash
# One call on the one-GPU machine for the no-hang work: builds everything there (CUDA 90a,
# NCCL, MPI, Boost from .deps/boost, the torch extension), runs ctest (CPU suites, the CUDA
# kernel tests, the MPI suites), lightring-bench --backend cuda --check on one rank, and the
# Python suite (CUDA tests and the gloo fault-injection suite). Logs go to $OUT.
#   bash tools/gpu_faults_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/lightring-gpu}
mkdir -p "$OUT" /tmp/boost
for f in .deps/boost/*.deb; do dpkg -x "$f" /tmp/boost; done
export LD_LIBRARY_PATH=/tmp/boost/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
PY=$(command -v python3)
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DBoost_ROOT=/tmp/boost/usr -DBoost_NO_SYSTEM_PATHS=ON \
  -DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
  -DPython_EXECUTABLE="$PY" \
  -DCMAKE_C_COMPILER=/usr/bin/gcc -DCMAKE_CXX_COMPILER=/usr/bin/g++ \
  -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++ >"$OUT/build.log" 2>&1 &&
  ninja -C build-gpu >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
t0=$(date +%s)
ctest --test-dir build-gpu -j 8 --timeout 300 >"$OUT/ctest.log" 2>&1
echo "ctest rc $? in $(($(date +%s) - t0)) s"; grep -E "tests passed|FAILED|Failed|\(Failed\)" "$OUT/ctest.log" | head -20
mpirun --allow-run-as-root -np 1 build-gpu/launch/lightring-bench --backend cuda --check \
  -b 4096 -e 65536 -n 2 --no-ceilings 2>&1 | tee "$OUT/bench.log" | grep -vE "^# (FLOPs|min bytes|cost)"
t0=$(date +%s)
LIGHTRING_BUILD_DIR=build-gpu "$PY" -m pytest -q -rs tests/python >"$OUT/pytest.log" 2>&1
echo "pytest rc $? in $(($(date +%s) - t0)) s"; tail -12 "$OUT/pytest.log"
