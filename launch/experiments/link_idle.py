#!/usr/bin/env python3
"""Where the emulated link sat idle in one traced step, and what each rank was doing meanwhile.

At a 1:1 all-to-all to compute ratio a step can only be as short as the link is busy: every
moment the outgoing link of a rank has nothing queued adds to the step. This replays each rank's
link from the Chrome trace of `flotilla bench --trace FILE` (run with an emulated link; with
--against-free-link the trace is of a link step): every expert all-to-all of the trace queues its
outgoing bytes on the rank's link when the communication thread posted it (the op's start in the
trace), at the link's bandwidth, one message after the other, as parallel.link does. Then it
sums the idle gaps between the step's first and last compute, split by what the rank's compute
lane showed during them: waiting for an exchange, a forward or backward piece (the first and
last pieces of a pass apart), or weight-pass work.

The bytes each op sent are in its label ("2.1 MiB out, 2.6 MiB in"; for traces from before that
label, half of the op's total); messages of at most 4 KiB (the dispatch's counts) are left out.
It also sums, over the exchanges both ranks of a two-rank trace made, the link time of the larger
of the two directions against their mean: an exchange completes only when the larger side has
arrived, so uneven routing lengthens the link-bound part of a step beyond bytes / bandwidth.

Usage: launch/experiments/link_idle.py TRACE.json --gbps G
Only the Python standard library is used.
"""
import argparse
import json
import re
from collections import defaultdict

UNITS = {"MiB": 2 ** 20, "KiB": 2 ** 10, "B": 1}


def size(text):
    m = re.fullmatch(r"([\d.]+) (MiB|KiB|B)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else 0.0


def sent_bytes(name):
    """The bytes an op sent to other ranks: its label's "X out" (traces of this version), else
    half of its total (older traces, where sends and receives were counted together)."""
    m = re.search(r", ([\d.]+ (?:MiB|KiB|B)) out, ", name)
    if m:
        return size(m.group(1))
    m = re.search(r", ([\d.]+ (?:MiB|KiB|B))$", name)
    return size(m.group(1)) / 2 if m else 0.0


def activity(e):
    """What a compute-lane or wait-lane box was, for the idle attribution."""
    if e["tid"] == 1:
        return "waiting for an exchange"
    name = e["name"]
    if name.startswith("W"):
        return "weight pass"
    m = re.fullmatch(r"([FIB])\d+\.\d+ piece (\d+)", name)
    if not m:
        return name
    kind = "forward" if m.group(1) == "F" else "backward"
    return f"{kind} piece" + (" (first of a pass)" if m.group(2) == "0" else "")


def analyse(trace, gbps, pid):
    events = trace["traceEvents"]
    boxes = [e for e in events if e.get("ph") == "X" and e.get("pid") == pid
             and e.get("tid") in (0, 1) and e.get("cat") != "pair"]
    compute = [e for e in boxes if e["tid"] == 0]
    if not compute:
        return None
    lo = min(e["ts"] for e in compute)
    hi = max(e["ts"] + e["dur"] for e in compute)
    posts = sorted((e for e in events if e.get("pid") == pid and e.get("ph") == "b"
                    and e.get("cat") == "expert_a2a"), key=lambda e: e["ts"])
    us_per_byte = 8 / (gbps * 1e9) * 1e6
    free, busy, gaps = lo, 0.0, []
    for e in posts:
        sent = sent_bytes(e["name"])
        if sent <= 4096:
            continue
        start = max(e["ts"], free)
        if start > free:
            gaps.append((free, start))
        free = start + sent * us_per_byte
        busy += sent * us_per_byte
    if hi > free:
        gaps.append((free, hi))
    # A compute box may contain waits (tid 1); those count as waiting, not as the box.
    waits = [e for e in boxes if e["tid"] == 1]
    by = defaultdict(float)
    for a, b in gaps:
        for e in boxes:
            s, f = max(a, e["ts"]), min(b, e["ts"] + e["dur"])
            if f <= s:
                continue
            inside = 0.0
            if e["tid"] == 0:
                for w in waits:
                    ws, wf = max(s, w["ts"]), min(f, w["ts"] + w["dur"])
                    inside += max(0.0, wf - ws)
            by[activity(e)] += (f - s - inside) / 1e6
    idle = sum(b - a for a, b in gaps) / 1e6
    return (hi - lo) / 1e6, busy / 1e6, idle, by


def directions(trace, gbps, pid):
    """Link seconds of the exchanges' larger directions and of their means, for one rank's ops
    (with two ranks, one rank's "in" is the other's "out"); None for traces without the split."""
    larger = mean = 0.0
    for e in trace["traceEvents"]:
        if e.get("pid") != pid or e.get("ph") != "b" or e.get("cat") != "expert_a2a":
            continue
        m = re.search(r", ([\d.]+ (?:MiB|KiB|B)) out, ([\d.]+ (?:MiB|KiB|B)) in$", e["name"])
        if not m:  # a chained exchange (its parts are listed too), or an older trace
            continue
        out, inn = size(m.group(1)), size(m.group(2))
        if max(out, inn) <= 4096:
            continue
        larger += max(out, inn)
        mean += (out + inn) / 2
    if mean == 0:
        return None
    return larger * 8 / (gbps * 1e9), mean * 8 / (gbps * 1e9)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--gbps", type=float, required=True, help="parallel.link.bandwidth_gbps of the run")
    args = ap.parse_args()
    with open(args.trace) as fh:
        trace = json.load(fh)
    pids = sorted({e["pid"] for e in trace["traceEvents"] if e.get("ph") == "X"})
    for pid in pids:
        r = analyse(trace, args.gbps, pid)
        if r is None:
            continue
        span, busy, idle, by = r
        print(f"rank {pid}: step {span:.2f} s, link busy {busy:.2f} s, idle {idle:.2f} s "
              f"({100 * idle / span:.0f}% of the step); while idle:")
        for what, s in sorted(by.items(), key=lambda x: -x[1]):
            print(f"  {s:6.2f} s  {what}")
        d = directions(trace, args.gbps, pid)
        if d and len(pids) == 2:
            print(f"  exchanges at the pace of their larger direction: {d[0]:.2f} s of link time "
                  f"against {d[1]:.2f} s at their mean ({d[0] / d[1]:.2f}x)")


if __name__ == "__main__":
    main()
