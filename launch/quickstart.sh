#!/usr/bin/env bash
# From a fresh Debian 12 machine to a trained tiny MoE model: installs what is missing, builds
# Release, and runs the default training, which ends by printing its final loss against the
# entropy floor of its synthetic data.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./launch/install-deps.sh
./launch/build.sh
exec ./build/flotilla train --config configs/tiny.yaml "$@"
