#!/usr/bin/env bash
# One call on the one-GPU machine for packed documents (kernels/documents.h): builds the CUDA
# tests and the torch extension, runs the document suites on the GPU (every family vs the
# float64 oracle) and compute-sanitizer memcheck on a few of them, the Python document tests
# on the GPU's torch, then bench/docs_bench.py (lightring packed / unpacked and FLA's
# chunk_simple_gla(cu_seqlens) in the same process; FLA_RUNS processes for FLA, the faster
# kept). Logs and rows go to $OUT; FLA needs .anchors/ (git-ignored, carried).
set -uo pipefail
OUT=${OUT:-/tmp/lightring-docs}
BT=${BT:-/tmp/build-docs-tests}
BP=${BP:-/tmp/build-docs-py}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
if [ "${BUILD_TESTS:-1}" = 1 ]; then
  cmake -S . -B "$BT" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIGHTRING_MPI=OFF -DLIGHTRING_NCCL=OFF \
    -DLIGHTRING_TORCH=OFF >"$OUT/build-tests.log" 2>&1 &&
    ninja -C "$BT" test_kernels_cuda >>"$OUT/build-tests.log" 2>&1 || { tail -40 "$OUT/build-tests.log"; exit 1; }
  echo "build tests: $(($(date +%s) - t0)) s"
fi
# shellcheck source=bench/build_extension.sh
. bench/build_extension.sh
TEST=${TEST:-$BT/tests/cpp/cuda/test_kernels_cuda}  # or a test binary carried from the build machine
if [ "${TESTS:-1}" = 1 ]; then
  t0=$(date +%s)
  "$TEST" --gtest_filter='*Documents*' --gtest_brief=1 >"$OUT/test-docs.log" 2>&1
  echo "GPU document tests: rc=$? in $(($(date +%s) - t0)) s; $(grep -E '^\[  PASSED|^\[  FAILED|tests ran' "$OUT/test-docs.log" | tr '\n' ' ')"
  grep -E "FAILED|Failure" -A4 "$OUT/test-docs.log" | head -40
  t0=$(date +%s)
  F=${SAN_FILTER:-'Cases/DocumentsCuda.*/block_edges_*:Cases/DocumentsCuda.*/spans_three*bf16*:Cases/DocumentsCuda.*/one_token_shards_fp32*:Cases/DocumentsCuda.NoStates*/many_short_mixed_bf16*:Cases/DocumentsCuda.OneShot*/many_short_mixed_bf16_auto'}
  timeout "${SAN_TIMEOUT:-150}" compute-sanitizer --tool memcheck --error-exitcode 17 "$TEST" \
    --gtest_filter="$F" --gtest_brief=1 >"$OUT/sanitize-memcheck.log" 2>&1
  echo "compute-sanitizer memcheck: rc=$? in $(($(date +%s) - t0)) s $(grep -E 'ERROR SUMMARY|tests ran|PASSED' "$OUT/sanitize-memcheck.log" | tr '\n' ' ')"
  t0=$(date +%s)
  LIGHTRING_BUILD_DIR="$BP" python3 -m pytest -q -rs tests/python/test_documents.py ${PYTEST_ARGS:-} \
    >"$OUT/pytest.log" 2>&1
  echo "pytest (GPU torch): rc=$? in $(($(date +%s) - t0)) s: $(tail -1 "$OUT/pytest.log")"
  grep -E "^FAILED|Error" "$OUT/pytest.log" | head -20
fi
if [ "${BENCH:-1}" = 1 ]; then
  # WAIT_FOR: a process (e.g. a GPU test run started beside the build) the timings must not share
  # the GPU with.
  while [ -n "${WAIT_FOR:-}" ] && kill -0 "$WAIT_FOR" 2>/dev/null; do sleep 1; done
  t0=$(date +%s)
  LIGHTRING_BUILD_DIR="$BP" python3 bench/docs_bench.py --anchors .anchors --impls lightring,lightring-pieces --check \
    --rows 8192:uniform:1..2048,8192:fixed:64,8192:uniform:1..256 -w 1 -n 2 --out "$OUT/docs-check.jsonl" \
    >"$OUT/docs-check.log" 2>&1
  echo "docs --check: rc=$? in $(($(date +%s) - t0)) s"
  t0=$(date +%s)
  LIGHTRING_BUILD_DIR="$BP" timeout "${LR_TIMEOUT:-200}" python3 bench/docs_bench.py --impls lightring,lightring-pieces \
    --out "$OUT/docs-lightring.jsonl" ${ROWS:+--rows "$ROWS"} >"$OUT/docs-lightring.log" 2>&1
  echo "docs lightring: rc=$? in $(($(date +%s) - t0)) s"
  for run in $(seq 1 "${FLA_RUNS:-1}"); do
    t0=$(date +%s)
    LIGHTRING_BUILD_DIR="$BP" timeout "${FLA_TIMEOUT:-300}" python3 bench/docs_bench.py --anchors .anchors \
      --impls fla --out "$OUT/docs-fla-$run.jsonl" ${ROWS:+--rows "$ROWS"} >"$OUT/docs-fla-$run.log" 2>&1
    echo "docs FLA run $run: rc=$? in $(($(date +%s) - t0)) s"
  done
  python3 - "$OUT" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/docs-*.jsonl")):
    for line in open(f):
        r = json.loads(line)
        print(f"{f.split('/')[-1]:22s} {r['impl']:9s} T={r['T']:8d} {r['docs_spec']:18s} docs={r['num_docs']:6d} "
              f"ms={r.get('ms', float('nan')):9.3f} Mtok/s={r.get('tokens_per_s', 0)/1e6:8.2f} "
              f"peak={r.get('peak_GB', float('nan')):6.2f} {r.get('rel_err', '')} {r.get('error', '')}")
PY
fi
