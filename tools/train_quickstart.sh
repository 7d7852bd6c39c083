#!/usr/bin/env bash
# The README's first command: sets up (tools/setup.sh: Debian packages, build), then pretrains
# the tiny TransNormerLLM on Debian's fortunes (byte-level, the embedded real-text default) with
# mpirun on 4 CPU ranks, --dp 2 --sp 2: a falling loss on stdout, the JSONL log and its PNG
# (tools/plot_train.py), a checkpoint, and a short sample from the trained model.
# lightring-train's GPU path (--device cuda, docs/training.md) has not run on a GPU yet, so the
# quickstart asks for CPU ranks (--device cpu) on a GPU machine too. Extra arguments go to lightring-train after the flags below (a flag set below
# cannot be given again: lightring-train rejects repeated flags).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
build_dir=${BUILD_DIR:-build}
out=${TRAIN_OUT:-$build_dir/train-quickstart}
mkdir -p "$out"
mpi_flags=(--oversubscribe -x OMP_NUM_THREADS=1)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
export OMP_NUM_THREADS=1
args=(--device cpu --dp 2 --sp 2 --preset tiny --data fortunes --seq-len 256 --batch 4 --steps 600
      --lr 3e-3 --warmup 30 --eval-every 100 --log-every 50 --log "$out/train.jsonl"
      --save-dir "$out/ckpt" --save-every 200 --sample 300 --prompt "The ")
echo "== mpirun -np 4 lightring-train ${args[*]} $*"
mpirun "${mpi_flags[@]}" -np 4 "$build_dir"/launch/lightring-train "${args[@]}" "$@"
/usr/bin/python3 tools/plot_train.py "$out/train.jsonl" -o "$out/train.png"
