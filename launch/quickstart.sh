#!/usr/bin/env bash
# From a fresh Debian 12 machine to a trained tiny MoE model: installs what is missing, builds
# Release, and runs the default training on 4 processes — a 2-stage DualPipeV pipeline, 2-way
# data parallel, the experts split over 2 ranks — which ends by printing its final loss against
# the entropy floor of its synthetic data. Extra arguments go to `flotilla train`
# (e.g. --set train.steps=50). FLOTILLA_RANKS=1 trains in one process instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./launch/install-deps.sh
./launch/build.sh
ranks="${FLOTILLA_RANKS:-4}"
if [ "$ranks" = 1 ]; then
  exec ./build/flotilla train --config configs/tiny.yaml "$@"
fi
# Running as root (containers, CI) needs OpenMPI's explicit consent; more ranks than cores need
# --oversubscribe, and unbound ranks share the cores (train.threads 0 divides them).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np "$ranks" --oversubscribe --bind-to none ./build/flotilla train \
  --config configs/tiny.yaml --set parallel.pp=2 --set parallel.ep=2 --set parallel.schedule=dualpipev "$@"
