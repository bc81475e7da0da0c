#!/usr/bin/env bash
# The distributed-training figures of docs/performance.md, measured in one run on one machine
# (run it on an otherwise idle machine; every figure is the median of the timed steps):
#   scaling  weak scaling of bench-cpu: 2 ranks x 1 thread against 1 rank x 1 thread, the same
#            batch per rank (dp 2 ep 1, and dp 2 ep 2)
#   link50   dp 2 ep 2 over an emulated 50 Gbit/s, 5 us link (DeepSeek-V3's InfiniBand class):
#            all-to-all bytes, communication in flight and exposed, overlap off and on
#   overlap  the link set so that one step's all-to-all takes about as long as its computation
#            (DeepSeek-V3's 1:1, bench --a2a-ratio 1): exposed communication and step time against
#            a free link (every timed step also run with the link suspended), overlap on
#            and off, for pp 1 x ep 2 (2 ranks) and pp 2 x ep 2 (4 ranks). Only the
#            all-to-all takes the emulated link (LINK_TRAFFIC=expert_a2a; LINK_TRAFFIC=all slows
#            the data-parallel reduction and the pipeline's messages too)
#   bubbles  measured bubble fraction of 1f1b, dualpipe and dualpipev (pp 2, 2 ranks) beside the
#            simulator's prediction for the measured costs
# Usage: [CONFIG=name] [MICRO=n] [LINK_TRAFFIC=t] launch/experiments/distributed.sh
#          [scaling|link50|overlap|bubbles|all] [timed steps]
# MICRO sets train.micro_batch_size for link50 and overlap (default 4): link50 runs 4 micro-batches
# per data-parallel rank, overlap 8 per rank at pp 1 and 16 at pp 2 (each rank then computes the
# same tokens: half the layers, twice the micro-batches), so that the pairs of the steady state
# outweigh the step's ends; MICRO=1 measures the same shapes four times faster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
what="${1:-all}"
steps="${2:-4}"
bin="$root/build/flotilla"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
run() {  # ranks, then flotilla bench arguments; prints the JSON line
  local ranks="$1"
  shift
  if [ "$ranks" = 1 ]; then
    "$bin" bench --steps "$steps" --warmup "${warmup:-1}" "$@"
  else
    mpirun -np "$ranks" --oversubscribe --bind-to none "$bin" bench --steps "$steps" --warmup "${warmup:-1}" "$@"
  fi | grep '^{'
}
field() { echo "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr -d '"'; }
# CONFIG=tiny (or another configs/ name) measures a smaller model: every figure comes much faster;
# CONFIG=bench-overlap is the overlap benchmark's shape, its heads' share of the compute nearer V3's.
bench_cpu=(--config "$root/configs/${CONFIG:-bench-cpu}.yaml" --set train.threads=1)

if [ "$what" = scaling ] || [ "$what" = all ]; then
  one=$(run 1 "${bench_cpu[@]}" --set train.global_batch_size=4)
  two=$(run 2 "${bench_cpu[@]}" --set train.global_batch_size=8)
  two_ep=$(run 2 "${bench_cpu[@]}" --set train.global_batch_size=8 --set parallel.ep=2)
  t1=$(field "$one" tokens_per_s)
  for j in "$two" "$two_ep"; do
    awk -v a="$(field "$j" tokens_per_s)" -v b="$t1" -v l="$(field "$j" layout)" \
      'BEGIN {printf "scaling: %s: %.1f tokens/s against 1 rank %.1f: efficiency %.1f%%\n", l, a, b, 100 * a / (2 * b)}'
  done
  echo "scaling: 1 rank: $one"
  echo "scaling: dp 2: $two"
  echo "scaling: dp 2 ep 2: $two_ep"
fi

# Four micro-batches per rank, so that the sequential schedule overlaps forward / backward pairs.
micro="${MICRO:-4}"
pairs=("${bench_cpu[@]}" --set train.micro_batch_size="$micro" --set train.global_batch_size=$((8 * micro))
       --set parallel.ep=2)

if [ "$what" = link50 ] || [ "$what" = all ]; then
  for overlap in false true; do
    j=$(run 2 "${pairs[@]}" --set parallel.link.bandwidth_gbps=50 --set parallel.link.latency_us=5 \
        --set parallel.overlap=$overlap)
    echo "link50: overlap $overlap: step $(field "$j" step_time_s) s, a2a $(field "$j" a2a_bytes) B/rank," \
         "a2a in flight $(field "$j" a2a_s) s, a2a exposed $(field "$j" a2a_exposed_s) s," \
         "all comm in flight $(field "$j" comm_s) s, exposed $(field "$j" exposed_comm_s) s"
    echo "link50: $j"
  done
fi

if [ "$what" = overlap ] || [ "$what" = all ]; then
  for layout in "2 --set parallel.pp=1" "4 --set parallel.pp=2 --set parallel.schedule=dualpipev"; do
    ranks=${layout%% *}
    extra=(${layout#* })
    for overlap in false true; do
      # bench --a2a-ratio 1 sets the link before every link step from the latest step without
      # it: an exchange lasts until its larger side has arrived, so the bandwidth at which that
      # step's exchanges, each paced by its larger side (a2a_paced_bytes), take as long as a
      # rank's computation (its compute CPU time: with four ranks on two cores a free step's wall
      # time is two ranks' computation). The link follows the machine's speed, which drifts by a
      # quarter between and within runs here. Each timed step runs twice, over the link and with
      # it suspended, alternating: the slowdown is the median ratio of the two steps of a pair,
      # which a noisy machine moves far less than the ratio of two runs' medians.
      j=$(warmup=2 run "$ranks" "${pairs[@]}" "${extra[@]}" --set train.global_batch_size=$((8 * micro * ranks)) \
          --set parallel.link.latency_us=5 --set parallel.link.traffic="${LINK_TRAFFIC:-expert_a2a}" \
          --set parallel.overlap=$overlap --a2a-ratio 1)
      awk -v s="$(field "$j" step_time_s)" -v f="$(field "$j" free_link_step_time_s)" \
          -v x="$(field "$j" link_slowdown)" -v c="$(field "$j" a2a_s)" -v e="$(field "$j" a2a_exposed_s)" \
          -v l="$(field "$j" a2a_link_s)" -v q="$(field "$j" a2a_compute_ratio)" -v g="$(field "$j" link_gbps)" \
          -v fe="$(field "$j" free_link_a2a_exposed_s)" -v o="$overlap" -v r="$ranks" \
          'BEGIN {printf "overlap: %s ranks, overlap %s, link %.3f Gbit/s: step %.3f s against %.3f s with the link suspended: %.2fx (median per pair); all-to-all on the link %.3f s (%.2f of the compute), in flight %.3f s, exposed %.3f s (%.0f%% of the link time; %.3f s with the link suspended)\n", r, o, g, s, f, x, l, q, c, e, 100 * e / l, fe}'
      echo "overlap: $j"
    done
  done
fi

if [ "$what" = bubbles ] || [ "$what" = all ]; then
  for kind in 1f1b dualpipe dualpipev; do
    j=$(run 2 "${bench_cpu[@]}" --set parallel.pp=2 --set parallel.schedule=$kind --set train.global_batch_size=32 \
        --set model.num_layers=8)
    echo "bubbles: $kind: measured bubble fraction $(field "$j" bubble_fraction), peak activations $(field "$j" peak_activations)"
    echo "bubbles: $j"
    "$bin" schedule --kind "$kind" --pp 2 --chunks 8 --simulate | grep -iE "rank|idle" | head -4
  done
fi
