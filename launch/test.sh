#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through CTest (unit tests, gradient
# checks, CLI and smoke training). Exit code 0 only when every test passed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./launch/install-deps.sh
./launch/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Two tests at a time, one thread each: spinning OpenMP teams oversubscribed on a small machine
# are far slower than two single-threaded tests side by side.
export OMP_NUM_THREADS=1
cd build
ctest --output-on-failure --parallel "$(nproc)" --timeout 900 "$@"
