#!/usr/bin/env bash
# Sets up (tools/setup.sh), then runs the main job on its embedded default:
# the CPU backend forward + backward at N=65536, H=4, D=E=64, checked against
# the float64 recurrent form.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
"${BUILD_DIR:-build}"/examples/lightring-cpu-demo "$@"
