#!/usr/bin/env bash
# Builds the CUDA binaries here and collects them with the shared libraries they need that a GPU
# machine's image may lack (yaml-cpp, fmt, OpenMPI, OpenMP, xxhash, the CUDA runtime) into one
# folder, for tests/gpu/device_check.sh with FLOTILLA_BUNDLE=<folder> on a machine where
# Flotilla's Debian dependencies cannot be installed. cuBLASLt (540 MB) and NCCL (220 MB) are
# too large to carry and come from the GPU machine (its CUDA toolkit or PyTorch's wheels); the
# C and C++ runtimes and the driver too.
# Usage: tests/gpu/make_device_bundle.sh [OUT_DIR (default .device-bundle)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/.device-bundle}"
build="$root/build-bundle"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFLOTILLA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DFLOTILLA_NATIVE=OFF >/dev/null
cmake --build "$build" --parallel "$(nproc)" --target flotilla test_gpu test_nccl
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
cp "$build/flotilla" "$build/tests/test_gpu" "$build/tests/test_nccl" "$out/bin/"
skip='linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libstdc\+\+|libgcc_s|libcuda\.so|libcublas|libnccl'
for b in "$out"/bin/*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | grep -Ev "$skip" | while read -r lib; do cp -L "$lib" "$out/lib/"; done
du -sh "$out"
echo "bundle in $out: carry it to the GPU machine and run FLOTILLA_BUNDLE=$out tests/gpu/device_check.sh LOGS"
