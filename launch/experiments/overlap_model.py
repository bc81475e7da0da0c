#!/usr/bin/env python3
"""A piece-level model of overlapped pairs under expert parallelism: what step time a way of
interleaving micro-batches can reach on a given link, from the piece costs of a real run.

It reads the Chrome trace of `flotilla bench --trace FILE` run with pp 1, ep > 1 and
parallel.overlap on (the sequential schedule with paired ends), takes rank 0's compute time of
every forward / input-gradient piece (the piece's box minus the waits inside it) and of every
weight-pass piece, and replays one step on a model machine: one compute thread, and one outgoing
link per rank that sends one message at a time (the emulated link of parallel.link), every
exchange taking `bytes per exchange / bandwidth`; the partner rank is assumed to behave the same.
Policies:
  pairs      what the executor does: two micro-batches in flight, pieces alternating, deferred
             weight pieces run while the next piece would wait
  early      pairs, and a backward's weight pieces run as soon as its input pass has passed them
  three      three micro-batches in flight, round robin, weight pieces as in pairs
  feed       two in flight, but the next piece is one whose exchange has arrived and which
             starts the next exchange soonest (the link is fed first), not a strict alternation
  feed3      the same with three in flight; with --split S also with pieces cut to <= S seconds
With --jitter E,O it also replays pairs and three-in-flight on two ranks at once whose pieces
cost their median times a random factor (relative standard deviation E for the experts' pieces,
O for the others), an exchange completing only once both ranks' messages of it have left: what
the ranks meeting at every exchange costs.
It prints the step time of each against the step's compute alone (the free link).

Usage: launch/experiments/overlap_model.py TRACE.json --gbps G --a2a-bytes B [--micro M] [--split S]
  [--jitter E,O]
(G and B: link_gbps and a2a_bytes of the same run's bench JSON line; M: micro-batches per rank),
or launch/experiments/overlap_model.py --synthetic N,F,B,W [--ratio R] [--micro M] for passes of N
equal pieces (F seconds forward, B backward, W the weight pass) and a link R times the compute.
It is a model: against the measured step it leaves out the optimizer and gradient reduction and
the variation of the exchanges' sizes with the routing (and, without --jitter, the ranks' skew).
Only the Python standard library is used.
"""
import argparse
import json
import math
import random
import re
import statistics
from collections import defaultdict


def piece_costs(trace):
    """Median compute seconds per forward piece, per backward piece, and the weight pieces of one
    micro-batch, from rank 0's rows of a bench trace."""
    ev = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("pid") == 0]
    waits = [e for e in ev if e.get("tid") == 1]

    def busy(e):
        inside = sum(w["dur"] for w in waits if e["ts"] <= w["ts"] < e["ts"] + e["dur"])
        return (e["dur"] - inside) / 1e6

    fwd, bwd, wts = defaultdict(list), defaultdict(list), defaultdict(float)
    for e in ev:
        m = re.fullmatch(r"([FIB])0\.(\d+) piece (\d+)", e["name"])
        if m:
            (fwd if m.group(1) == "F" else bwd)[int(m.group(3))].append(busy(e))
        m = re.fullmatch(r"W0\.(\d+)(?: piece \d+)?", e["name"])
        if m:
            wts[int(m.group(1))] += busy(e)
    if not fwd or not bwd:
        raise SystemExit("no pieces of overlapped pairs on rank 0: run bench with pp 1, ep > 1, "
                         "parallel.overlap=true and --trace")
    f = [statistics.median(fwd[i]) for i in sorted(fwd)]
    b = [statistics.median(bwd[i]) for i in sorted(bwd)]
    w = statistics.median(wts.values()) if wts else 0.0
    return f, b, w


def cut(pieces, split):
    """A pass as (seconds, starts an exchange after it) steps: every piece but the last starts
    one; with `split`, a piece longer than that is cut into equal steps and only its last starts
    the exchange (what a stage with finer pieces, e.g. the head by rows, would offer)."""
    steps = []
    for i, c in enumerate(pieces):
        k = max(1, math.ceil(c / split - 1e-9)) if split else 1
        steps += [(c / k, j == k - 1 and i < len(pieces) - 1) for j in range(k)]
    return steps


def replay(order, window, f, b, w, link_s, early, feed=False, split=None, slices=12):
    """One step: `order` lists 'F'/'I' passes in schedule order; `window` of them are in flight.
    Without `feed` they take turns, one piece each (what the executor does); with `feed` the next
    step is that of a pass whose exchange has arrived with the least compute left before it starts
    its next exchange (so the link is fed as early as possible). A step waits for the exchange
    its pass started last. Weight work (w per backward, in `slices` equal pieces) fills waits,
    oldest first."""
    F, B = cut(f, split), cut(b, split)
    t = link_free = 0.0
    pending = []  # weight work available: [seconds left]
    queue = list(order)
    active = []

    def join(at):  # the next pass of the schedule takes a place in the rotation
        kind = queue.pop(0)
        active.insert(at, {"kind": kind, "steps": F if kind == "F" else B, "next": 0, "ready": 0.0})

    def to_exchange(a):
        c = 0.0
        for sec, starts in a["steps"][a["next"]:]:
            c += sec
            if starts:
                return c
        return math.inf

    while queue and len(active) < window:
        join(len(active))
    turn = 0
    while active:
        if feed:
            ready = [x for x in active if x["ready"] <= t]
            a = (min(ready, key=lambda x: (to_exchange(x), active.index(x))) if ready
                 else min(active, key=lambda x: x["ready"]))
        else:
            a = active[turn % len(active)]
        while a["ready"] > t and pending:  # weight pieces while this pass's exchange travels
            step = min(pending[0], w / slices)
            pending[0] -= step
            t += step
            if pending[0] <= 1e-12:
                pending.pop(0)
        t = max(t, a["ready"])
        sec, starts = a["steps"][a["next"]]
        t += sec
        a["next"] += 1
        if a["kind"] == "I" and early and starts:
            pending.append(w / max(1, len(b) - 1))
        if starts:
            link_free = max(t, link_free) + link_s
            a["ready"] = link_free
        if a["next"] < len(a["steps"]):
            if starts:
                turn += 1
            continue
        if a["kind"] == "I" and not early:
            pending.append(w)
        i = active.index(a)
        active.pop(i)
        if queue:
            join(i)
            turn = i + 1
        else:
            turn = i
    return t + sum(pending)


def replay_ranks(order, window, f, b, w, link_s, jitter, seed, ranks=2, slices=12):
    """`replay` without feed for `ranks` ranks at once, each piece's cost drawn per rank around
    its median (relative standard deviation jitter[0] for the experts' pieces, the odd ones, and
    jitter[1] for the others), and an exchange complete on a rank only once every rank's message
    of it has left its link: the ranks meet at every exchange, and the later one makes the others
    wait. Returns the slowest rank's step."""
    rng = random.Random(seed)
    costs = [[[c * max(0.2, rng.gauss(1.0, jitter[0] if i % 2 else jitter[1]))
               for i, c in enumerate(f if kind == "F" else b)] for kind in order] for _ in range(ranks)]
    sent = defaultdict(dict)  # (pass, exchange) -> {rank: when its message has left}

    class Rank:
        def __init__(self):
            self.t, self.link, self.queue, self.active, self.pending = 0.0, 0.0, list(range(len(order))), [], []
            self.turn, self.done = 0, False
            while self.queue and len(self.active) < window:
                self.active.append({"p": self.queue.pop(0), "next": 0, "ex": None})

        def weight_step(self):
            step = min(self.pending[0], w / slices)
            self.pending[0] -= step
            self.t += step
            if self.pending[0] <= 1e-12:
                self.pending.pop(0)

    rs = [Rank() for _ in range(ranks)]

    def ready(a):  # when a pass's last exchange is complete; None while a rank has not sent
        if a["ex"] is None:
            return 0.0
        got = sent[a["ex"]]
        return max(got.values()) if len(got) == ranks else None

    while not all(x.done for x in rs):
        for r in sorted(range(ranks), key=lambda i: rs[i].t):  # the earliest rank that can move
            x = rs[r]
            if x.done:
                continue
            a = x.active[x.turn % len(x.active)]
            at = ready(a)
            if at is None:  # a later rank has not reached this exchange: weight work, or wait
                if not x.pending:
                    continue
                x.weight_step()
                break
            while at > x.t and x.pending:
                x.weight_step()
            x.t = max(x.t, at) + costs[r][a["p"]][a["next"]]
            a["next"] += 1
            if a["next"] < len(f):
                x.link = max(x.t, x.link) + link_s
                a["ex"] = (a["p"], a["next"])
                sent[a["ex"]][r] = x.link
                x.turn += 1
                break
            if order[a["p"]] == "I":
                x.pending.append(w)
            i = x.active.index(a)
            x.active.pop(i)
            if x.queue:
                x.active.insert(i, {"p": x.queue.pop(0), "next": 0, "ex": None})
                x.turn = i + 1
            else:
                x.turn = i
            if not x.active:
                x.t += sum(x.pending)
                x.pending, x.done = [], True
            break
        else:
            raise RuntimeError("no rank can move: the ranks' orders disagree")
    return max(x.t for x in rs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?")
    ap.add_argument("--gbps", type=float)
    ap.add_argument("--a2a-bytes", type=float)
    ap.add_argument("--synthetic", help="N,F,B,W: N pieces of F (forward) and B (backward) s, W s")
    ap.add_argument("--ratio", type=float, default=1.0, help="with --synthetic: link / compute")
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--split", type=float, help="also: feed3 with pieces cut to at most this many s")
    ap.add_argument("--jitter", help="E,O: also two ranks meeting at every exchange, each piece's cost "
                    "drawn per rank with relative standard deviation E (experts' pieces), O (others)")
    args = ap.parse_args()
    if args.synthetic:
        n, fs, bs, w = (float(x) for x in args.synthetic.split(","))
        f, b = [fs] * int(n), [bs] * int(n)
    elif args.trace and args.gbps and args.a2a_bytes:
        with open(args.trace) as fh:
            f, b, w = piece_costs(json.load(fh))
    else:
        raise SystemExit("give TRACE.json --gbps G --a2a-bytes B, or --synthetic N,F,B,W")
    if len(f) < 2:
        raise SystemExit("a pass of one piece starts no exchange: nothing to overlap (N >= 2)")
    exchanges = 2 * args.micro * (len(f) - 1)
    compute = args.micro * (sum(f) + sum(b) + w)
    if args.synthetic:
        link_s = args.ratio * compute / exchanges
    else:
        link_s = args.a2a_bytes / exchanges * 8 / (args.gbps * 1e9)
    print(f"pieces per pass {len(f)}; forward {sum(f):.3f} s, input-gradient backward {sum(b):.3f} s, "
          f"weight pass {w:.3f} s per micro-batch; {exchanges} exchanges of {link_s * 1e3:.1f} ms")
    print(f"compute per step {compute:.2f} s, link busy {exchanges * link_s:.2f} s "
          f"(ratio {exchanges * link_s / compute:.2f})")
    m = args.micro
    pairs_order = ["F", "F"] + [x for k in range(m - 2) for x in ("F", "I")] + ["I", "I"]
    for name, window, early, feed, split in (
            ("pairs", 2, False, False, None), ("early", 2, True, False, None),
            ("three", 3, False, False, None), ("feed", 2, False, True, None),
            ("feed3", 3, False, True, None), ("feed3 split", 3, False, True, args.split)):
        if split is None and name.endswith("split"):
            continue
        s = replay(pairs_order, window, f, b, w, link_s, early, feed, split)
        print(f"{name:11s} step {s:.2f} s = {s / compute:.2f}x the compute")
    if args.jitter:
        jitter = [float(x) for x in args.jitter.split(",")]
        for name, window in (("pairs", 2), ("three", 3)):
            for jit in ([0.0, 0.0], jitter):
                s = statistics.mean(replay_ranks(pairs_order, window, f, b, w, link_s, jit, seed)
                                    for seed in range(5))
                print(f"{name:5s} 2 ranks, jitter {jit[0]:.2f}/{jit[1]:.2f}: step {s:.2f} s = "
                      f"{s / compute:.2f}x the compute (mean of 5 draws)")


if __name__ == "__main__":
    main()
