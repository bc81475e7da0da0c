#!/usr/bin/env bash
# Installs the Debian packages Flotilla builds with. Idempotent; silent when all are present.
# CUDA (toolkit, cuBLASLt, NCCL) is optional and never installed here: CMake detects it.
set -euo pipefail

packages=(cmake ninja-build g++ make pkg-config
          libeigen3-dev libyaml-cpp-dev catch2 libopenmpi-dev openmpi-bin
          nlohmann-json3-dev libcli11-dev libfmt-dev libxxhash-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
