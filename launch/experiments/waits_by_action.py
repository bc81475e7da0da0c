#!/usr/bin/env python3
"""Where in the schedule each rank's compute waited, from the Chrome trace of one step.

Reads the trace of `flotilla train --trace FILE` or `flotilla bench --trace FILE` and sums, per
rank, the waits of its "waiting for communication" lane by the schedule action they fell in: an
overlapped pair (`(F0.3&I1.1)`), a lone forward, backward or input pass (the warm-up and drain of
a pipeline schedule, whose exchanges no other micro-batch's compute covers), or between actions
(a commit: the pipeline bubble). Each wait is split into pipeline messages (`pp`), expert
all-to-all (`a2a`) and the rest. Beside the waits it prints how many actions of each kind the rank
ran and their time, weight passes run as their own actions included (those whose pieces ran
inside pairs show as pieces of the pairs, not here).

Usage: launch/experiments/waits_by_action.py TRACE.json
Only the Python standard library is used.
"""
import argparse
import json
from collections import Counter, defaultdict


def kind_of(name):
    """'pair' for an overlapped pair, else 'lone' and the pass letter (F, B, I, W)."""
    return "pair" if name.startswith("(") else "lone " + name[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    args = ap.parse_args()
    with open(args.trace) as f:
        t = json.load(f)
    events = [e for e in t["traceEvents"] if e.get("ph") == "X"]
    for pid in sorted({e["pid"] for e in events}):
        # The compute lane's actions; the boxes of pieces inside pairs are left out.
        actions = sorted((e for e in events if e["pid"] == pid and e.get("tid") == 0
                          and " piece " not in e["name"]), key=lambda e: e["ts"])
        waits = [e for e in events if e["pid"] == pid and e.get("tid") == 1]
        count, seconds, waited = Counter(), defaultdict(float), defaultdict(float)
        for a in actions:
            count[kind_of(a["name"])] += 1
            seconds[kind_of(a["name"])] += a["dur"] / 1e6
        for w in waits:
            inside = "between actions"
            for a in actions:
                if a["ts"] <= w["ts"] < a["ts"] + a["dur"]:
                    inside = kind_of(a["name"])
                    break
            what = "pp" if " on pp" in w["name"] else "a2a" if " on ep" in w["name"] else "other"
            waited[(inside, what)] += w["dur"] / 1e6
        print(f"rank {pid}")
        for k in sorted(count):
            print(f"  {k:8s} {count[k]:4d} actions {seconds[k]:8.2f} s")
        for (inside, what), s in sorted(waited.items()):
            print(f"  waited {s:6.2f} s for {what:5s} in {inside}")


if __name__ == "__main__":
    main()
