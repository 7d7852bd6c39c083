#!/usr/bin/env bash
# Installs lightring's build dependencies (Debian 12 packages; skipped when all
# are present), then configures and builds everything into ${BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build libopenmpi-dev openmpi-bin
          libboost-program-options-dev libgtest-dev libtorch-dev python3-dev
          python3-torch python3-pytest python3-numpy python3-mpi4py
          python3-pip python3-setuptools python3-wheel python3-matplotlib fortunes fortunes-min
          iproute2 nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# Debian's torch lives in /usr/bin/python3 (the python3 first on PATH may be another one).
python=${LIGHTRING_PYTHON:-/usr/bin/python3}
echo "== configuring ${build_dir}"
cmake -S . -B "$build_dir" "${generator[@]}" -DPython_EXECUTABLE="$python" ${CMAKE_ARGS:-}
echo "== building (${LIGHTRING_JOBS:-$(nproc)} jobs)"
cmake --build "$build_dir" -j "${LIGHTRING_JOBS:-$(nproc)}"
