#!/usr/bin/env bash
# The balancing experiment of docs/moe.md: the tiny config, same seed and steps, with balancer
# none / aux_loss / aux_free. Prints one row per balancer: final train loss, final eval loss,
# mean per-step MaxVio over the last 100 steps, and the run's global MaxVio (loads summed over
# every logged step, averaged over MoE layers).
# Usage: launch/experiments/balancers.sh [extra --set arguments...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/build/flotilla"
out="${OUT_DIR:-$root/runs/balancers}"
mkdir -p "$out"
[ -x "$bin" ] || { echo "build first: ./launch/build.sh" >&2; exit 1; }

field() {  # field NAME < metrics.jsonl line
  grep -o "\"$1\":[-0-9.eE+]*" | head -1 | cut -d: -f2
}

printf "%-9s %12s %12s %22s %18s\n" balancer train_loss eval_loss "maxvio(last100,mean)" "maxvio(global)"
for b in none aux_loss aux_free; do
  dir="$out/$b"
  "$bin" train --config "$root/configs/tiny.yaml" --set model.moe.balancer=$b --set train.log_every=1 \
    --set run.name=balancers-$b --run-dir "$dir" "$@" > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
  last=$(tail -1 "$dir/metrics.jsonl")
  train=$(echo "$last" | field lm_loss)
  eval=$(echo "$last" | field eval_loss)
  steps=$(wc -l < "$dir/metrics.jsonl")
  vio=$(tail -100 "$dir/metrics.jsonl" | while read -r l; do echo "$l" | field max_vio; done |
        awk '{s+=$1; n++} END {printf "%.4f", s/n}')
  # global MaxVio: per layer, loads summed over all steps; then (max - mean) / mean, averaged
  gvio=$(awk -F, 'NR>1 {for (i=3;i<=NF;i++) sum[$2","i]+=$i; layers[$2]=1; n=NF}
         END {t=0; c=0; for (l in layers) {mx=0; s=0; for (i=3;i<=n;i++) {v=sum[l","i]; s+=v; if (v>mx) mx=v}
              m=s/(n-2); t+=(mx-m)/m; c++} printf "%.4f", t/c}' "$dir/expert_load.csv")
  printf "%-9s %12.4f %12.4f %22s %18s\n" "$b" "$train" "$eval" "$vio" "$gvio"
done
