#!/usr/bin/env bash
# Builds lightring._C against the GPU machine's torch and runs the Python suite there:
# CUDA vs the float64 oracle, bf16, torch.compile(fullgraph=True) and, with 2 GPUs,
# the NCCL sequence-parallel checks under mpirun (test_distributed.py::test_nccl_two_gpus,
# one test per check; [lightring] is exchange="lightring", lightring's own NCCL
# communicator); then checks `pip install` into a scratch directory.
#
#   tests/python/gpu_check.sh [build-dir [pytest args...]]   (default build-dir: <repo>/build-gpu)
#   SKIP_PIP=1 skips the pip check; CUDA_ARCHS (default 90a); PYTHON (default python3).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$REPO/build-gpu}
shift || true
PY=${PYTHON:-python3}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
      "gpus", torch.cuda.device_count())'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

TORCH_PREFIX=$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
# The system g++ (its libstdc++ is the one torch's process loads): the image's
# /opt/gcc wrapper links libstdc++ statically, and C++ exceptions then crashed.
COMPILERS=()
if [ -x /usr/bin/g++ ] && [ -z "${KEEP_CXX:-}" ]; then
  COMPILERS=(-DCMAKE_C_COMPILER=/usr/bin/gcc -DCMAKE_CXX_COMPILER=/usr/bin/g++
             -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++)
fi
cmake -S "$REPO" -B "$BUILD" -G Ninja -DPython_EXECUTABLE="$(command -v "$PY")" "${COMPILERS[@]}" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90a}" -DLIGHTRING_TESTS=OFF
cmake --build "$BUILD" --target lightring_python -j "$(nproc)"

cd "$REPO"
LIGHTRING_BUILD_DIR="$BUILD" "$PY" -m pytest -q -rs tests/python "$@"

if [ "${SKIP_PIP:-0}" != 1 ]; then
  TARGET=$(mktemp -d)
  LIGHTRING_PIP_BUILD="$BUILD-pip" LIGHTRING_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-90a}" \
    "$PY" -m pip install --no-build-isolation --no-deps --target "$TARGET" "$REPO"
  (cd "$TARGET" && PYTHONPATH="$TARGET" "$PY" -c \
    'import lightring, torch; print("pip install ok:", lightring.__file__, "cuda", lightring.cuda_available())')
  rm -rf "$TARGET"
fi
