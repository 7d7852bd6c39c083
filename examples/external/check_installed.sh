#!/usr/bin/env bash
# Installs a built lightring into a fresh prefix, builds examples/external against
# it (find_package(lightring)) and runs it on 2 MPI ranks; fails on any step.
# Usage: examples/external/check_installed.sh BUILD_DIR WORK_DIR [CMAKE_GENERATOR]
set -euo pipefail
BUILD=$1
WORK=$2
GENERATOR=${3:-Ninja}
SRC=$(cd "$(dirname "$0")" && pwd)
rm -rf "$WORK"
cmake --install "$BUILD" --prefix "$WORK/prefix" > "$WORK.install.log" || {
  cat "$WORK.install.log"
  exit 1
}
cmake -S "$SRC" -B "$WORK/build" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$WORK/prefix" > "$WORK.configure.log" || {
  cat "$WORK.configure.log"
  exit 1
}
cmake --build "$WORK/build"
mpirun --allow-run-as-root --oversubscribe -np 2 "$WORK/build/lightring-external"
