#!/usr/bin/env bash
# lightring-train under mpirun on the CPU: one case per ctest entry (tests/cpp/model/CMakeLists.txt).
#   train_cases.sh CASE TRAIN COMPARE WORKDIR MPIRUN...
# Every case fails (exit != 0) on a wrong number or a missing message; the numbers are
# compared by train_compare (the exit status of a real comparison, not a printed pass line).
#   sp      fortunes, --sp 2 (several gradient buckets) vs --sp 1 (one), 20 steps: every step's loss
#           and the final weights and AdamW moments within 1e-5 relative (the norm of each
#           tensor's difference)
#           (then --precision bf16: SP 2 = SP 1 within 1e-3, within 2e-2 of fp32 but not equal)
#   dp      fortunes, --dp 2 --batch 2 vs --dp 1 --batch 4 (the same global batch): the same
# (On synthetic-recall only 8 of 96 targets count: the sparse gradients let AdamW amplify the
# fp32 rounding of the sums to ~1e-4 in the moments within 20 steps, so the equivalence runs
# on real text, where every token is a target.)
#   resume  --sp 2: save at step 6 of 12, resume from it: steps 7-12 and the final checkpoint
#           bit-identical to the uninterrupted run; torch.load reads the checkpoint;
#           tools/plot_train.py plots the log; --generate samples and changes nothing
#   signal  SIGTERM during a run: every rank saves, exit status 0, the checkpoint resumes
#   recall  synthetic-recall, --sp 2, 120 steps: recall accuracy on queries whose key is on the
#           other shard above 0.40 (chance 0.25)
#   formats text (blocks), raw and llm.c token files, Megatron .bin/.idx, fortunes: files written
#           here, 3 steps on --sp 2 each, finite losses and a validation row
#   errors  bad inputs on 2 ranks: each exits != 0 within 60 s, every rank prints the reason,
#           a failed resume changes nothing on disk; a rank failing at step 3 (injected) ends
#           both ranks within 30 s (--timeout 100)
#   device  --device cpu and auto give the default run's losses bit for bit (on a machine
#           without a GPU) and log peak_mem_mb; a bad --device value, and --device cuda of a
#           build without a CUDA libtorch (or of a machine without a GPU), stop both ranks
set -uo pipefail
case_name=$1 train=$2 compare=$3 work=$4
shift 4
mpirun=("$@")
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
export OMP_NUM_THREADS=1
# Flags every run of a case shares (a case that sets one of these itself clears the list).
common=(--seq-len 96 --log-every 1000 --warmup 5 --eval-sequences 0 --recall-pairs 8
        --recall-queries 8)

run() {  # run NP ARGS...: lightring-train on NP ranks, bounded; fails the case on error
  local np=$1
  shift
  if ! timeout 120 "${mpirun[@]}" "$np" "$train" "${common[@]}" "$@" > "out.$$" 2>&1; then
    echo "FAILED: mpirun -np $np lightring-train $*"
    cat "out.$$"
    exit 1
  fi
}

expect_error() {  # expect_error NP NEEDLE ARGS...: fails unless every rank reports NEEDLE
  local np=$1 needle=$2
  shift 2
  timeout 60 "${mpirun[@]}" "$np" "$train" "${common[@]}" "$@" > err.out 2>&1
  local rc=$?
  local seen
  seen=$(grep -F -c -- "$needle" err.out)
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$seen" -lt "$np" ]; then
    echo "FAILED: '$*' on $np ranks: exit status $rc, '$needle' on $seen of $np ranks"
    cat err.out
    exit 1
  fi
  echo "ok: $* -> exit $rc, every rank: $needle"
}

case $case_name in
  sp)
    run 1 --data fortunes --steps 20 --log sp1.jsonl --save-dir sp1
    run 2 --data fortunes --sp 2 --steps 20 --log sp2.jsonl --save-dir sp2 --bucket-mb 0.05
    grep -Eq "gradients in ([2-9]|[1-9][0-9]+) all-reduce buckets" "out.$$" || { cat "out.$$"; exit 1; }
    "$compare" --log sp1.jsonl sp2.jsonl --rtol 1e-5 &&
      "$compare" --ckpt sp1/ckpt-00000020.pt sp2/ckpt-00000020.pt --rtol 1e-5 || exit 1
    # --precision bf16 (autocast): SP 2 = SP 1 within bf16 rounding, near the fp32 run but not
    # equal to it (the bf16 kernels and matmuls ran).
    run 1 --data fortunes --steps 20 --precision bf16 --log bf1.jsonl
    run 2 --data fortunes --sp 2 --steps 20 --precision bf16 --log bf2.jsonl
    "$compare" --log bf1.jsonl bf2.jsonl --rtol 1e-3 && "$compare" --log sp1.jsonl bf1.jsonl --rtol 2e-2 || exit 1
    if "$compare" --log sp1.jsonl bf1.jsonl --rtol 1e-6 > /dev/null 2>&1; then
      echo "FAILED: --precision bf16 gave the fp32 losses"
      exit 1
    fi
    ;;
  dp)
    run 1 --data fortunes --batch 4 --steps 20 --log dp1.jsonl --save-dir dp1
    run 2 --data fortunes --dp 2 --batch 2 --steps 20 --log dp2.jsonl --save-dir dp2
    "$compare" --log dp1.jsonl dp2.jsonl --rtol 1e-5 &&
      "$compare" --ckpt dp1/ckpt-00000020.pt dp2/ckpt-00000020.pt --rtol 1e-5
    ;;
  resume)
    run 2 --sp 2 --steps 12 --save-every 6 --log full.jsonl --save-dir full --bucket-mb 0.05
    run 2 --sp 2 --steps 12 --resume full/ckpt-00000006.pt --log resumed.jsonl --save-dir resumed \
      --bucket-mb 0.05
    grep -q "resumed from full/ckpt-00000006.pt at step 6" "out.$$" || { cat "out.$$"; exit 1; }
    "$compare" --log full.jsonl resumed.jsonl --rtol 0 --from-step 6 &&
      "$compare" --ckpt full/ckpt-00000012.pt resumed/ckpt-00000012.pt --rtol 0 || exit 1
    # Python reads the checkpoint with torch.load (where Debian's python3-torch is installed).
    if /usr/bin/python3 -c "import torch" 2> /dev/null; then
      /usr/bin/python3 - full/ckpt-00000012.pt <<'PY' || exit 1
import sys, torch
c = torch.load(sys.argv[1])
assert c["format"] == "lightring-train/1" and c["step"] == 12, (c["format"], c["step"])
assert c["config"]["d_model"] == 64 and len(c["model"]) == 12, c["config"]
w = c["model"]["lm_head.weight"]
assert w.shape == (c["config"]["vocab_size"], 64) and w.dtype == torch.float32
assert c["optimizer"]["lm_head.weight"]["step"] == 12
print("torch.load: step", c["step"], "data position", c["data"]["epoch"], c["data"]["sequence"])
PY
    else
      echo "python3-torch not installed: torch.load of the checkpoint not checked"
    fi
    # tools/plot_train.py turns the appended log of the resumed run into a PNG (with matplotlib).
    if /usr/bin/python3 -c "import matplotlib" 2> /dev/null; then
      /usr/bin/python3 "$(dirname "$0")/../../../tools/plot_train.py" resumed.jsonl -o resumed.png &&
        [ "$(head -c 8 resumed.png | od -An -tx1 | tr -d ' ')" == "89504e470d0a1a0a" ] ||
        { echo "FAILED: tools/plot_train.py wrote no PNG"; exit 1; }
    else
      echo "python3-matplotlib not installed: tools/plot_train.py not checked"
    fi
    # --generate: a sample from the checkpoint, nothing trained or written.
    before=$(ls -la --time-style=full-iso full)
    run 1 --generate --resume full --sample 16
    grep -q "sample (16 tokens" "out.$$" && [ "$before" == "$(ls -la --time-style=full-iso full)" ] ||
      { cat "out.$$"; exit 1; }
    ;;
  signal)
    # SIGTERM to every rank, as a batch scheduler sends it at the end of a job's time (mpirun
    # itself, when signalled, ends the job after a grace period with a non-zero status).
    "${mpirun[@]}" 2 "$train" "${common[@]}" --sp 2 --steps 100000 --save-dir sig --log sig.jsonl \
      > sig.out 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do  # until a few steps ran
      [ -f sig.jsonl ] && [ "$(grep -c '"train"' sig.jsonl)" -ge 3 ] && break
      sleep 0.3
    done
    ranks=$(pgrep -P $pid)
    [ "$(echo "$ranks" | wc -w)" -eq 2 ] || { echo "FAILED: ranks of mpirun: '$ranks'"; exit 1; }
    kill -TERM $ranks
    wait $pid
    rc=$?
    cat sig.out
    [ "$rc" -eq 0 ] || { echo "FAILED: exit status $rc after SIGTERM"; exit 1; }
    grep -q "stop requested" sig.out && [ -f sig/latest ] || { echo "FAILED: no checkpoint"; exit 1; }
    steps=$(grep -c '"train"' sig.jsonl)
    run 2 --sp 2 --steps $((steps + 2)) --resume sig --log sig.jsonl
    grep -q "at step $steps" "out.$$" || { cat "out.$$"; exit 1; }
    ;;
  recall)
    # 4 keys, 4 values: each key's value is drawn independently and uniformly, so nothing but
    # the key's own pair predicts it (chance 0.25). The pairs sit before the queries, mostly on
    # shard 0; a query whose key is there is answered only through the state that crossed to
    # shard 1. Measured: 0.44 at step 50, 0.49 at step 100, 0.52 at step 150.
    common=()
    run 2 --sp 2 --seq-len 32 --steps 120 --batch 32 --lr 1e-2 --warmup 20 --weight-decay 0 \
      --recall-keys 4 --recall-pairs 4 --recall-queries 4 --eval-sequences 128 --log-every 50 \
      --log recall.jsonl
    cat "out.$$"
    python3 - recall.jsonl <<'PY' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
final = [r for r in rows if r["kind"] == "eval"][-1]
acc = final["recall_acc_other_shard"]
print(f"recall accuracy on queries whose key is on the other shard: {acc:.3f} (threshold 0.40, chance 0.25)")
sys.exit(0 if acc > 0.40 else 1)
PY
    ;;
  formats)
    # Every file format end to end, --sp 2 with documents: files written here, 3 steps each,
    # the data the header names, finite losses in the log.
    common=(--seq-len 96 --log-every 1000)
    python3 - <<'PY' || exit 1
import os, random, struct
random.seed(3)
docs = [[random.randrange(1, 300) for _ in range(random.randrange(5, 60))] for _ in range(80)]
with open("raw.bin", "wb") as f:  # nanoGPT: raw uint16, EOS 0 after every document
    for d in docs:
        f.write(struct.pack(f"<{len(d) + 1}H", *d, 0))
with open("llmc.bin", "wb") as f:  # llm.c: 256 int32 header (GPT-2 magic, v1, count), uint16
    toks = [t for d in docs for t in [0] + d]
    f.write(struct.pack("<256i", 20240520, 1, len(toks), *([0] * 253)))
    f.write(struct.pack(f"<{len(toks)}H", *toks))
with open("mega.bin", "wb") as f:  # Megatron MMIDIDX v1, int32 tokens, one sequence per doc
    for d in docs:
        f.write(struct.pack(f"<{len(d)}i", *d))
with open("mega.idx", "wb") as f:
    n = len(docs)
    f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 4, n, n + 1))
    f.write(struct.pack(f"<{n}i", *[len(d) for d in docs]))
    ptr, ptrs = 0, []
    for d in docs:
        ptrs.append(ptr)
        ptr += 4 * len(d)
    f.write(struct.pack(f"<{n}q", *ptrs))
    f.write(struct.pack(f"<{n + 1}q", *range(n + 1)))
os.makedirs("texts", exist_ok=True)
for i in range(30):
    with open(f"texts/{i:02d}.txt", "w") as f:
        f.write("\n\n".join(f"document {i}.{j}: " + "lorem ipsum " * (j + 1) for j in range(4)))
PY
    formats=("--data text --data-path texts --text-split block|text texts"
             "--data tokens --data-path raw.bin --eos 0|raw.bin"
             "--data tokens --data-path llmc.bin --eos 0|llmc.bin"
             "--data megatron --data-path mega --eos 0|mega"
             "--data fortunes|fortunes")
    for f in "${formats[@]}"; do
      IFS='|' read -r flags name <<< "$f"
      # shellcheck disable=SC2086
      run 2 --sp 2 --steps 3 --val-fraction 0.1 --eval-sequences 4 $flags --log fmt.jsonl
      grep -q "^  data .*$name: " "out.$$" || { echo "FAILED: $flags: no data $name"; cat "out.$$"; exit 1; }
      python3 -c "import json, math, sys; r = [json.loads(l) for l in open('fmt.jsonl')]
t = [x['loss'] for x in r if x['kind'] == 'train']; e = [x for x in r if x['kind'] == 'eval']
sys.exit(0 if len(t) == 3 and all(math.isfinite(v) for v in t) and e else 1)" ||
        { echo "FAILED: $flags: log"; cat fmt.jsonl; exit 1; }
      echo "ok: $flags: $(grep -o 'V=[0-9]*' "out.$$")"
    done
    # Token ids beyond --vocab are an error of the data, on every rank.
    expect_error 2 "is >= the vocabulary size 100" --data tokens --data-path raw.bin --eos 0 --vocab 100
    ;;
  errors)
    common=(--log-every 1000 --eval-sequences 0 --seq-len 128)
    expect_error 2 "--preset: unknown preset '7b'" --preset 7b
    expect_error 2 "--dp 3 x --sp 1 = 3 ranks, but the job has 2" --dp 3
    expect_error 2 "--lr must be > 0" --lr -1
    expect_error 2 "--timeout must be a positive number of seconds" --timeout 0
    expect_error 2 "--log: cannot write 'none/x.jsonl'" --log none/x.jsonl
    touch plain_file
    expect_error 2 "--save-dir: cannot create 'plain_file/ckpt'" --save-dir plain_file/ckpt
    expect_error 2 "--data-path is required for --data text" --data text
    expect_error 2 "text path not found: $work/none" --data text --data-path "$work/none"
    mkdir -p empty && printf '\n\n  \n' > empty/blank.txt
    expect_error 2 "empty corpus" --data text --data-path empty
    expect_error 2 "--vocab 100 is smaller than the vocabulary of the data (257" \
      --data text --data-path "$0" --text-split block --vocab 100
    run 1 --steps 2 --save-dir good
    head -c 2000 good/ckpt-00000002.pt > truncated.pt
    before=$(ls -la --time-style=full-iso good; sha256sum good/* truncated.pt)
    expect_error 2 "truncated.pt (2000 bytes) is not readable: truncated or corrupt" \
      --steps 4 --resume truncated.pt --save-dir good
    expect_error 2 "d_model: 64 in the checkpoint, 32 in this run" \
      --steps 4 --d-model 32 --resume good --save-dir good --log good.jsonl
    expect_error 2 "vocab_size: 131 in the checkpoint, 300 in this run" \
      --steps 4 --vocab 300 --resume good --save-dir good
    expect_error 2 "--resume: no checkpoint file 'missing.pt'" --resume missing.pt
    # A rank that fails in the middle of training (injected): the other, waiting in the
    # exchange or the all-reduce, stops at once with the reason instead of waiting for --timeout.
    start=$SECONDS
    LIGHTRING_TRAIN_FAIL_AT=3@1 expect_error 2 "injected failure at step 3" --sp 2 --steps 10 \
      --timeout 100
    [ $((SECONDS - start)) -lt 30 ] || { echo "FAILED: the failure took $((SECONDS - start)) s"; exit 1; }
    after=$(ls -la --time-style=full-iso good; sha256sum good/* truncated.pt)
    [ "$before" == "$after" ] && [ ! -e good.jsonl ] ||
      { echo "FAILED: a failed resume changed files"; exit 1; }
    ;;
  device)
    losses() { grep -o '"loss":[^,]*' "$1"; }
    run 2 --sp 2 --steps 4 --log default.jsonl
    run 2 --sp 2 --steps 4 --log cpu.jsonl --device cpu
    run 2 --sp 2 --steps 4 --log auto.jsonl --device auto
    [ "$(losses default.jsonl | wc -l)" = 4 ] && [ "$(losses default.jsonl)" = "$(losses cpu.jsonl)" ] &&
      [ "$(losses default.jsonl)" = "$(losses auto.jsonl)" ] ||
      { echo "FAILED: --device cpu / auto changed the losses"; paste default.jsonl cpu.jsonl; exit 1; }
    grep -q '"peak_mem_mb":[0-9]' cpu.jsonl && grep -q '"peak_mem_kind":"max-rss"' cpu.jsonl ||
      { echo "FAILED: no peak_mem_mb / peak_mem_kind in the log"; head -3 cpu.jsonl; exit 1; }
    expect_error 2 "--device must be cpu, cuda or auto (got 'gpu')" --device gpu
    expect_error 2 "--device cuda: " --device cuda --steps 2
    grep -E -q "built without CUDA|no GPU is visible to rank" err.out ||
      { echo "FAILED: --device cuda without CUDA names no reason"; cat err.out; exit 1; }
    ;;
  *)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
