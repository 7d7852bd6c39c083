#!/usr/bin/env bash
# Sets up (tools/setup.sh), then runs every test suite: ctest (GoogleTest: CPU
# kernels vs the float64 oracle, CUDA kernels when a GPU is visible, the MPI
# sequence-parallel suites) and pytest (the Python package) when the extension
# was built; then `pip install` of the package, offline and without build
# isolation, into a scratch directory (a CPU build in build-pip; LIGHTRING_PIP_CHECK=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build_dir=${BUILD_DIR:-build}
python=${LIGHTRING_PYTHON:-/usr/bin/python3}

echo "== ctest"
ctest --test-dir "$build_dir" --output-on-failure -j "${LIGHTRING_JOBS:-$(nproc)}"

if [ -d tests/python ] && ls "$build_dir"/csrc/_C*.so >/dev/null 2>&1; then
  echo "== pytest"
  LIGHTRING_BUILD_DIR="$PWD/$build_dir" "$python" -m pytest -q tests/python
fi

if [ "${LIGHTRING_PIP_CHECK:-1}" = 1 ] && ls "$build_dir"/csrc/_C*.so >/dev/null 2>&1; then
  echo "== pip install (offline, --no-build-isolation)"
  target=$(mktemp -d)
  LIGHTRING_PIP_BUILD="$PWD/build-pip" LIGHTRING_BUILD_JOBS="${LIGHTRING_JOBS:-$(nproc)}" \
    LIGHTRING_CMAKE_ARGS="-DLIGHTRING_CUDA=OFF -DLIGHTRING_NCCL=OFF -DLIGHTRING_MPI=OFF" \
    "$python" -m pip install -q --no-index --no-build-isolation --no-deps --target "$target" .
  (cd "$target" && PYTHONPATH="$target" "$python" -c '
import lightring, torch
q = torch.randn(1, 2, 9, 4)
o = lightring.lightning_attention(q, q, q, lightring.slopes(2))
print("pip install ok:", lightring.__file__, tuple(o.shape))')
  rm -rf "$target"
fi
