# Sourced by the one-GPU run scripts (bench/docs_gpu_run.sh, bench/train_gpu_run.sh): builds
# lightring._C against the GPU machine's torch into $BP (the system g++, whose libstdc++ torch's
# process loads; sm_90a), logging to $OUT/build-py.log; exits the script on failure.
t0=$(date +%s)
TORCH_PREFIX=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$BP" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python3)" \
  -DCMAKE_C_COMPILER=/usr/bin/gcc -DCMAKE_CXX_COMPILER=/usr/bin/g++ -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++ \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DCMAKE_CUDA_ARCHITECTURES=90a -DLIGHTRING_TESTS=OFF \
  -DLIGHTRING_MPI=OFF >"$OUT/build-py.log" 2>&1 &&
  cmake --build "$BP" --target lightring_python -j "$(nproc)" >>"$OUT/build-py.log" 2>&1 ||
  { tail -40 "$OUT/build-py.log"; exit 1; }
echo "build extension: $(($(date +%s) - t0)) s"
