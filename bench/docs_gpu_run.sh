#!/usr/bin/env bash
# One call on the one-GPU machine for packed documents (kernels/documents.h), within BUDGET_S
# (default 540 s) from its start:
#   1. the torch extension builds while the document suites of the CUDA test binary run on
#      the GPU (every family vs the float64 oracle; TEST = a binary carried from the build
#      machine, or BUILD_TESTS=1 builds it here first);
#   2. bench/docs_bench.py alone on the GPU: --check of lightring (in-scan and piece paths)
#      against the float64 per-document reference on small rows, then the timed rows for
#      lightring (packed, pieces, unpacked) and FLA's chunk_simple_gla(cu_seqlens) (FLA_RUNS
#      processes, the faster kept by the report);
#   3. in what is left: compute-sanitizer memcheck on a few document cases, then the Python
#      document tests on the GPU's torch.
# Every step has a timeout cut to what is left of the budget. Logs and rows go to $OUT; FLA
# needs .anchors/ (git-ignored, carried).
set -uo pipefail
start=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-/tmp/lightring-docs}
BT=${BT:-/tmp/build-docs-tests}
BP=${BP:-/tmp/build-docs-py}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
# cap S: S, or what is left of the budget (less 10 s for the summary) when that is smaller.
cap() {
  local left=$((BUDGET_S - 10 - ($(date +%s) - start)))
  echo $(($1 < left ? $1 : left))
}
if [ "${BUILD_TESTS:-0}" = 1 ]; then
  t0=$(date +%s)
  cmake -S . -B "$BT" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIGHTRING_MPI=OFF -DLIGHTRING_NCCL=OFF \
    -DLIGHTRING_TORCH=OFF >"$OUT/build-tests.log" 2>&1 &&
    ninja -C "$BT" test_kernels_cuda >>"$OUT/build-tests.log" 2>&1 || { tail -40 "$OUT/build-tests.log"; exit 1; }
  echo "build tests: $(($(date +%s) - t0)) s"
fi
TEST=${TEST:-$BT/tests/cpp/cuda/test_kernels_cuda}
tests_pid=
if [ "${TESTS:-1}" = 1 ]; then
  (
    t0=$(date +%s)
    timeout -k 5 "$(cap "${TEST_TIMEOUT:-200}")" "$TEST" --gtest_filter='*Documents*' --gtest_brief=1 \
      >"$OUT/test-docs.log" 2>&1
    echo "GPU document tests: rc=$? in $(($(date +%s) - t0)) s; $(grep -E '^\[  PASSED|^\[  FAILED|tests ran' "$OUT/test-docs.log" | tr '\n' ' ')"
    grep -E "FAILED|Failure" -A4 "$OUT/test-docs.log" | head -40
  ) &
  tests_pid=$!
fi
# shellcheck source=bench/build_extension.sh
. bench/build_extension.sh
# The timings must not share the GPU with the tests.
[ -n "$tests_pid" ] && wait "$tests_pid"
export LIGHTRING_BUILD_DIR="$BP"
if [ "${BENCH:-1}" = 1 ]; then
  t0=$(date +%s)
  timeout -k 5 "$(cap 60)" python3 bench/docs_bench.py --impls lightring,lightring-pieces --check \
    --rows 8192:uniform:1..2048,8192:fixed:64,8192:uniform:1..256 -w 1 -n 2 --out "$OUT/docs-check.jsonl" \
    >"$OUT/docs-check.log" 2>&1
  echo "docs --check: rc=$? in $(($(date +%s) - t0)) s"
  t0=$(date +%s)
  timeout -k 5 "$(cap "${LR_TIMEOUT:-150}")" python3 bench/docs_bench.py --impls lightring,lightring-pieces \
    --out "$OUT/docs-lightring.jsonl" ${ROWS:+--rows "$ROWS"} >"$OUT/docs-lightring.log" 2>&1
  echo "docs lightring: rc=$? in $(($(date +%s) - t0)) s"
  for run in $(seq 1 "${FLA_RUNS:-2}"); do
    t0=$(date +%s)
    timeout -k 5 "$(cap "${FLA_TIMEOUT:-120}")" python3 bench/docs_bench.py --anchors .anchors \
      --impls fla --out "$OUT/docs-fla-$run.jsonl" ${ROWS:+--rows "$ROWS"} >"$OUT/docs-fla-$run.log" 2>&1
    echo "docs FLA run $run: rc=$? in $(($(date +%s) - t0)) s"
  done
fi
if [ "${SANITIZE:-1}" = 1 ] && [ "$(cap 100)" -ge 30 ]; then
  t0=$(date +%s)
  F=${SAN_FILTER:-'Cases/DocumentsCuda.*/block_edges_*:Cases/DocumentsCuda.*/spans_three*bf16*:Cases/DocumentsCuda.*/one_token_shards_fp32*:Cases/DocumentsCuda.NoStates*/many_short_mixed_bf16*:Cases/DocumentsCuda.OneShot*/many_short_mixed_bf16_auto'}
  timeout -k 5 "$(cap "${SAN_TIMEOUT:-150}")" compute-sanitizer --tool memcheck --error-exitcode 17 "$TEST" \
    --gtest_filter="$F" --gtest_brief=1 >"$OUT/sanitize-memcheck.log" 2>&1
  echo "compute-sanitizer memcheck: rc=$? in $(($(date +%s) - t0)) s $(grep -E 'ERROR SUMMARY|tests ran|PASSED' "$OUT/sanitize-memcheck.log" | tr '\n' ' ')"
else
  echo "compute-sanitizer memcheck: skipped ($(cap 100) s of the budget left)"
fi
if [ "${PYTEST:-1}" = 1 ] && [ "$(cap 100)" -ge 30 ]; then
  t0=$(date +%s)
  timeout -k 5 "$(cap 100)" python3 -m pytest -q -rs tests/python/test_documents.py ${PYTEST_ARGS:-} \
    >"$OUT/pytest.log" 2>&1
  echo "pytest (GPU torch): rc=$? in $(($(date +%s) - t0)) s: $(tail -1 "$OUT/pytest.log")"
  grep -E "^FAILED|Error" "$OUT/pytest.log" | head -20
else
  echo "pytest (GPU torch): skipped ($(cap 100) s of the budget left)"
fi
python3 - "$OUT" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/docs-*.jsonl")):
    for line in open(f):
        r = json.loads(line)
        print(f"{f.split('/')[-1]:22s} {r['impl']:16s} T={r['T']:8d} {r['docs_spec']:16s} docs={r['num_docs']:6d} "
              f"ms={r.get('ms', float('nan')):9.3f} Mtok/s={r.get('tokens_per_s', 0)/1e6:8.2f} "
              f"peak={r.get('peak_GB', float('nan')):6.2f} {r.get('rel_err', '')} {r.get('error', '')}")
PY
echo "docs_gpu_run: $(($(date +%s) - start)) s"
