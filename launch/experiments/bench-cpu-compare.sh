#!/usr/bin/env bash
# Throughput of the bench-cpu model: flotilla bench and the PyTorch eager reference
# (tests/reference/torch_bench_cpu.py), measured one after the other in one run on the same
# machine, with the ratio. Run on an otherwise idle machine. The PyTorch part needs Debian's
# python3-torch (apt-get install python3-torch) and is skipped without it.
# Usage: launch/experiments/bench-cpu-compare.sh [timed steps, default 5]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
steps="${1:-5}"
flotilla=$("$root/build/flotilla" bench --config "$root/configs/bench-cpu.yaml" --steps "$steps" --warmup 1)
echo "flotilla: $flotilla"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  torch=$(OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 "$root/tests/reference/torch_bench_cpu.py" \
          --threads 2 --warmup 1 --steps "$steps")
  echo "pytorch:  $torch"
  f=$(echo "$flotilla" | grep -o '"tokens_per_s":[0-9.eE+-]*' | cut -d: -f2)
  t=$(echo "$torch" | grep -o '"tokens_per_s": *[0-9.eE+-]*' | cut -d: -f2)
  awk -v f="$f" -v t="$t" 'BEGIN {printf "ratio flotilla / pytorch tokens/s: %.2f\n", f / t}'
else
  echo "pytorch:  skipped (/usr/bin/python3 has no torch; apt-get install python3-torch)"
fi
