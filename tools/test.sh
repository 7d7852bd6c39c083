#!/usr/bin/env bash
# Sets up (tools/setup.sh), then runs every test suite: ctest (GoogleTest: CPU
# kernels vs the float64 oracle, CUDA kernels when a GPU is visible, the MPI
# sequence-parallel suites) and pytest (the Python package) when the extension
# was built.
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
