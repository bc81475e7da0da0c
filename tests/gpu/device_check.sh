#!/usr/bin/env bash
# The device check of the CUDA backend, in one call on a GPU machine (one H200, 16 cores: under 6
# minutes, build included):
#   1. configure and build with CUDA (flotilla, test_gpu, test_nccl), or use a prebuilt bundle
#      (FLOTILLA_BUNDLE=dir with bin/ and lib/, made here by tests/gpu/make_device_bundle.sh) when
#      the machine lacks the Debian libraries Flotilla builds with;
#   2. every GPU test (FLOTILLA_REQUIRE_GPU=1: a missing GPU fails instead of skipping), the
#      one-rank NCCL test included; the multi-rank NCCL tests when there are 2+ GPUs and mpirun;
#   3. the GEMM micro-benchmark (BF16 and FP8 TFLOP/s at 4096 x 7168 x 16384, grouped FP8);
#   4. `flotilla bench` on configs/bench-gpu.yaml;
# then prints a short table. Full logs go to the folder given as the first argument.
# Usage: tests/gpu/device_check.sh LOG_DIR
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 LOG_DIR" >&2; exit 2; }
logs="$(mkdir -p "$1" && cd "$1" && pwd)"
t_start=$(date +%s)
failed=0
rows=()

row() { rows+=("$(printf '%-30s %-8s %5ss  %s' "$1" "$2" "$3" "$4")"); }

# run NAME TIMEOUT_S CMD...: runs CMD with a time limit, output to LOG_DIR/NAME.log; sets rc, secs.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  [ $rc -eq 124 ] && echo "(timed out after ${limit}s)" >>"$logs/$name.log"
  return $rc
}

# ---- 0. the machine --------------------------------------------------------------------------
{
  date -u
  nvidia-smi || true
  nvcc --version || true
  cmake --version || true
  nproc
  uname -a
} >"$logs/environment.log" 2>&1
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
gpu_name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "machine" "info" 0 "${gpus} GPU(s): ${gpu_name:-none}, $(nproc) cores"

# Libraries the image may keep outside the toolkit (PyTorch's pip wheels carry NCCL and cuBLAS).
pylib() { python3 -c "import importlib, os; m = importlib.import_module('$1'); print(os.path.dirname(m.__file__))" 2>/dev/null; }
nccl_dir=$(pylib nvidia.nccl)
extra_libs=/usr/local/cuda/lib64:/usr/local/cuda/lib
for m in nvidia.nccl nvidia.cublas nvidia.cuda_runtime; do
  d=$(pylib $m) && [ -d "$d/lib" ] && extra_libs="$extra_libs:$d/lib"
done
export LD_LIBRARY_PATH="${extra_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- 1. build ----------------------------------------------------------------------------------
build="$root/build-gpu"
if [ -n "${FLOTILLA_BUNDLE:-}" ] && [ -x "$FLOTILLA_BUNDLE/bin/test_gpu" ]; then
  bin="$(cd "$FLOTILLA_BUNDLE/bin" && pwd)"
  export LD_LIBRARY_PATH="$(cd "$FLOTILLA_BUNDLE/lib" && pwd):$LD_LIBRARY_PATH"
  row "build" "bundle" 0 "prebuilt binaries from $FLOTILLA_BUNDLE (built off this machine)"
else
  nccl_args=()
  if [ ! -f /usr/local/cuda/include/nccl.h ] && [ -n "$nccl_dir" ]; then
    nccl_args=(-DFLOTILLA_NCCL_INCLUDE="$nccl_dir/include"
               -DFLOTILLA_NCCL_LIBRARY="$(ls "$nccl_dir"/lib/libnccl.so* | head -1)")
  fi
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  if run configure 120 cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
       -DFLOTILLA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${nccl_args[@]}" &&
     run build 300 cmake --build "$build" --parallel "$(nproc)" --target flotilla test_gpu test_nccl; then
    row "build" "ok" "$secs" "$(grep -c 'Building' "$logs/build.log") compile steps, sm_90"
  else
    row "build" "FAILED" "$secs" "see $logs/configure.log and build.log (missing libraries? use FLOTILLA_BUNDLE)"
    failed=1
  fi
  bin="$build/tests"
  flotilla="$build/flotilla"
fi
flotilla="${flotilla:-$bin/flotilla}"

# ---- 2. GPU tests --------------------------------------------------------------------------------
if [ -x "$bin/test_gpu" ]; then
  FLOTILLA_REQUIRE_GPU=1 run gpu_tests 200 "$bin/test_gpu" --durations yes
  summary=$(grep -E "All tests passed|test cases:" "$logs/gpu_tests.log" | tail -1)
  if [ $rc -eq 0 ]; then row "GPU tests vs CPU oracle" "ok" "$secs" "$summary"
  else row "GPU tests vs CPU oracle" "FAILED" "$secs" "rc $rc: ${summary:-see gpu_tests.log}"; failed=1; fi

  if [ "$gpus" -ge 2 ] && command -v mpirun >/dev/null && [ -x "$bin/test_nccl" ]; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      run nccl_tests 120 mpirun -np "$gpus" --bind-to none "$bin/test_nccl" "[nccl]"
    if [ $rc -eq 0 ]; then row "NCCL, $gpus ranks" "ok" "$secs" "$(grep -E 'All tests passed' "$logs/nccl_tests.log" | tail -1)"
    else row "NCCL, $gpus ranks" "FAILED" "$secs" "rc $rc, see nccl_tests.log"; failed=1; fi
  else
    row "NCCL, several ranks" "skipped" 0 "needs 2+ GPUs and mpirun (one-rank NCCL ran with the GPU tests)"
  fi

  # ---- 3. GEMM micro-benchmark ----------------------------------------------------------------
  run gemm_bench 120 "$bin/test_gpu" "[.bench]"
  if [ $rc -eq 0 ]; then
    while read -r line; do
      row "$(echo "$line" | awk '{print $2}')" "bench" "$secs" "$(echo "$line" | cut -d' ' -f3-)"
    done < <(grep '^BENCH' "$logs/gemm_bench.log")
  else
    row "GEMM micro-benchmark" "FAILED" "$secs" "rc $rc, see gemm_bench.log"; failed=1
  fi
fi

# ---- 4. flotilla bench on the GPU config ------------------------------------------------------
if [ -x "$flotilla" ]; then
  run flotilla_bench 120 "$flotilla" bench --config "$root/configs/bench-gpu.yaml" --steps 3 --warmup 1
  if [ $rc -eq 0 ]; then
    row "flotilla bench bench-gpu" "ok" "$secs" "$(tail -1 "$logs/flotilla_bench.log" | cut -c1-200)"
  else
    # Expected until the model runs on a GPU end to end: the trainer names what is missing.
    row "flotilla bench bench-gpu" "refused" "$secs" "rc $rc: $(grep -o 'runtime.device[^;]*' "$logs/flotilla_bench.log" | head -1 | cut -c1-120)"
  fi
fi

total=$(( $(date +%s) - t_start ))
{
  echo
  echo "device check: $(date -u +%Y-%m-%dT%H:%MZ), ${gpu_name:-no GPU}, total ${total}s, logs in $logs"
  printf '%-30s %-8s %6s  %s\n' "stage" "status" "time" "result"
  for r in "${rows[@]}"; do echo "$r"; done
} | tee "$logs/summary.txt"
exit $failed
