#!/usr/bin/env python3
"""Draws a Flotilla Chrome trace (flotilla train/bench --trace FILE) as a static SVG timeline, for
documentation pages where an interactive viewer is not available.

Per rank: a compute row (boxes coloured by kind: forward, backward, input-only backward, weight
pass, pieces of an overlapped pair), a row of the time the compute thread waited for
communication, and beneath them the communication operations in flight, each on the first free
sub-row so that overlapping operations stay visible.

Usage: launch/experiments/trace_svg.py TRACE.json OUT.svg [--width PIXELS] [--title TEXT]
Only the Python standard library is used.
"""
import argparse
import json
from xml.sax.saxutils import escape

COLOURS = {
    "forward": "#4e79a7", "backward": "#f28e2b", "backward_input": "#e15759", "weight": "#76b7b2",
    "pair": "#bab0ac", "wait": "#d62728", "expert_a2a": "#59a14f", "gradients": "#b07aa1",
    "pipeline": "#9c755f", "other": "#8c8c8c",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    events = json.load(open(args.trace))["traceEvents"]

    ranks = sorted({e["pid"] for e in events if "pid" in e})
    boxes = {r: {"compute": [], "wait": [], "comm": []} for r in ranks}
    open_async = {}
    for e in events:
        ph = e.get("ph")
        if ph == "X":
            lane = "wait" if e["tid"] == 1 else "compute"
            boxes[e["pid"]][lane].append((e["ts"], e["ts"] + e["dur"], e["name"], e.get("cat", "")))
        elif ph == "b":
            open_async[(e["pid"], e["id"])] = e
        elif ph == "e":
            b = open_async.pop((e["pid"], e["id"]), None)
            if b:
                boxes[e["pid"]]["comm"].append((b["ts"], e["ts"], b["name"], b.get("cat", "")))
    t_end = max(end for r in ranks for lane in boxes[r].values() for (_, end, _, _) in lane)
    t_end = max(t_end, 1.0)

    left, row, gap = 70, 16, 14
    scale = (args.width - left - 20) / t_end
    parts, y = [], 30 if args.title else 10
    if args.title:
        parts.append(f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(args.title)}</text>')
    for r in ranks:
        # stack the communication operations on sub-rows so that overlapping ones stay visible
        subrows = []
        placed = []
        for (s, t, name, cat) in sorted(boxes[r]["comm"]):
            for i, end in enumerate(subrows):
                if end <= s:
                    subrows[i] = t
                    placed.append((i, s, t, name, cat))
                    break
            else:
                subrows.append(t)
                placed.append((len(subrows) - 1, s, t, name, cat))
        parts.append(f'<text x="{left}" y="{y + 10}" font-size="11" font-weight="bold">rank {r}</text>')
        y += 14
        for label, lane, yy in (("compute", "compute", y), ("waits", "wait", y + row)):
            parts.append(f'<text x="{left - 4}" y="{yy + 11}" font-size="9" text-anchor="end">{label}</text>')
            # pieces of a pair sit on top of the pair's box: draw the pair first
            for (s, t, name, cat) in sorted(boxes[r][lane], key=lambda b: (b[3] != "pair", b[0])):
                colour = COLOURS.get("wait" if lane == "wait" else cat, COLOURS["other"])
                w = max((t - s) * scale, 0.5)
                parts.append(f'<rect x="{left + s * scale:.2f}" y="{yy}" width="{w:.2f}" height="{row - 3}" '
                             f'fill="{colour}"><title>{escape(name)} ({(t - s) / 1000:.2f} ms)</title></rect>')
        base = y + 2 * row
        parts.append(f'<text x="{left - 4}" y="{base + 9}" font-size="9" text-anchor="end">in flight</text>')
        for (i, s, t, name, cat) in placed:
            w = max((t - s) * scale, 0.5)
            parts.append(f'<rect x="{left + s * scale:.2f}" y="{base + i * 7}" width="{w:.2f}" height="5" '
                         f'fill="{COLOURS.get(cat, COLOURS["other"])}"><title>{escape(name)} '
                         f'({(t - s) / 1000:.2f} ms)</title></rect>')
        y = base + max(1, len(subrows)) * 7 + gap
    # time axis
    for k in range(11):
        t = t_end * k / 10
        x = left + t * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="black"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 14}" font-size="9" text-anchor="middle">{t / 1000:.0f} ms</text>')
    y += 24
    legend_x = left
    for name, colour in COLOURS.items():
        parts.append(f'<rect x="{legend_x}" y="{y}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 13}" y="{y + 9}" font-size="9">{name}</text>')
        legend_x += 13 + 7 * len(name) + 14
    y += 20
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{args.width}" height="{y}" '
           f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n")
    open(args.out, "w").write(svg)


if __name__ == "__main__":
    main()
