#!/usr/bin/env bash
# The precision experiment of docs/precision.md: the tiny and bench-cpu configs trained with
# train.precision fp32 / bf16 / fp8, same seed and data, one process. Prints per config and
# precision: the mean train loss over the last 20% of steps and its relative gap to bf16 and to
# fp32, the mean per-step relative gap (same batches), the final eval loss, the activation memory,
# the CPU time per step; then the all-to-all bytes per step of a short run under mpirun with
# 2 ranks and parallel.ep=2. Loss curves stay in $OUT_DIR/<config>-<precision>/metrics.jsonl.
# Usage: launch/experiments/precision.sh [tiny steps, default 300] [bench-cpu steps, default 40]
#        [extra --set arguments for every run...]
# CONFIGS="tiny" (or "bench-cpu") runs one config only; SUMMARY_ONLY=1 prints the table from the
# runs already in $OUT_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/build/flotilla"
out="${OUT_DIR:-$root/runs/precision}"
tiny_steps="${1:-300}"
bench_steps="${2:-40}"
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
[ -x "$bin" ] || { echo "build first: ./launch/build.sh" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

run() {  # run CONFIG PRECISION STEPS: one process, one thread; CPU seconds in $dir.cpu
  local cfg="$1" prec="$2" steps="$3"
  shift 3
  local dir="$out/$cfg-$prec"
  local eval_every=$((steps / 10 > 0 ? steps / 10 : 1))
  /usr/bin/time -f "%U %S" -o "$dir.cpu" "$bin" train --config "$root/configs/$cfg.yaml" \
    --set train.precision="$prec" --set train.steps="$steps" --set train.threads=1 \
    --set train.eval_every="$eval_every" --set checkpoint.every=0 --set train.log_every=1 \
    --run-dir "$dir" "$@" > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
}

a2a() {  # a2a CONFIG PRECISION: median expert all-to-all bytes per step (rank max), ep 2
  local dir="$out/$1-$2-ep2"
  local gbs=8  # bench-cpu: one micro-batch of 4 per rank
  [ "$1" = tiny ] && gbs=32
  mpirun -np 2 --oversubscribe --bind-to none "$bin" train --config "$root/configs/$1.yaml" \
    --set train.precision="$2" --set train.steps=3 --set train.threads=1 --set parallel.ep=2 \
    --set train.global_batch_size="$gbs" --set train.eval_every=0 --set checkpoint.every=0 \
    --run-dir "$dir" > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
}

configs="${CONFIGS:-tiny bench-cpu}"
for cfg in $configs; do
  [ -n "${SUMMARY_ONLY:-}" ] && break
  steps=$([ "$cfg" = tiny ] && echo "$tiny_steps" || echo "$bench_steps")
  for p in fp32 bf16 fp8; do
    run "$cfg" "$p" "$steps" "$@"
    a2a "$cfg" "$p"
  done
done

python3 - "$out" $configs <<'EOF'
import json, re, sys
out = sys.argv[1]

def load(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")]
    return rows

print(f"{'config':10} {'prec':5} {'steps':>5} {'loss(last20%)':>13} {'gap vs bf16':>11} "
      f"{'gap vs fp32':>11} {'|step gap| bf16':>15} {'eval':>8} {'act MiB':>8} "
      f"{'cpu s/step':>10} {'a2a MB/step':>11}")
for cfg in sys.argv[2:]:
    curves = {p: load(f"{cfg}-{p}") for p in ["fp32", "bf16", "fp8"]}
    n = len(curves["fp32"])
    tail = max(1, n // 5)
    mean = {p: sum(r["lm_loss"] for r in c[-tail:]) / tail for p, c in curves.items()}
    for p, c in curves.items():
        step_gap = sum(abs(a["lm_loss"] - b["lm_loss"]) / b["lm_loss"]
                       for a, b in zip(c[-tail:], curves["bf16"][-tail:])) / tail
        evals = [r["eval_loss"] for r in c if "eval_loss" in r]
        log = open(f"{out}/{cfg}-{p}.log").read()
        act = re.search(r"memory measured: .*activations ([0-9.]+) MiB", log).group(1)
        cpu = sum(float(v) for v in open(f"{out}/{cfg}-{p}.cpu").read().split()[:2]) / n
        ep2 = load(f"{cfg}-{p}-ep2")
        a2a = sorted(r.get("a2a_bytes", 0) for r in ep2)[len(ep2) // 2] / 1e6
        print(f"{cfg:10} {p:5} {n:5d} {mean[p]:13.5f} {100 * (mean[p] / mean['bf16'] - 1):+10.3f}% "
              f"{100 * (mean[p] / mean['fp32'] - 1):+10.3f}% {100 * step_gap:14.3f}% "
              f"{evals[-1] if evals else float('nan'):8.4f} {float(act):8.1f} {cpu:10.3f} {a2a:11.3f}")
EOF
