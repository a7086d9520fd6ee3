#!/usr/bin/env python3
"""mep vs PyTorch on the CPU, side by side in one run: the table of BENCHMARKS.md.

    python3 benches/compare.py [--threads 2] [--iters 10] [--rounds 2] [--out bench-out/compare.md]

Needs `cargo build --release -p mep-benches` first (`cargo xtask bench` does both).
For each row and round, our timing binary and the PyTorch script each run in a fresh
process (so peak memory is the row's own), alternating so that load on a shared machine
hits both alike. Reports the median over all timed iterations of all rounds, the ratio
mep/PyTorch, achieved GFLOP/s (forward FLOP counted by PyTorch hooks; forward+backward
to the input counted as 2x the forward, the input gradient of each conv costing what
its forward does) and peak RSS.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ["resnet50 224x224 b8", "resnet50 32x32 b64", "resnet20 32x32 b128"]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "compare.md"))
    a = ap.parse_args()
    mep_bin = os.path.join(ROOT, "target", "release", "resnet_time")
    if not os.path.exists(mep_bin):
        sys.exit(f"{mep_bin} is missing: run `cargo build --release -p mep-benches` first")
    py = [sys.executable, os.path.join(ROOT, "benches", "pytorch_resnet.py")]
    flops = {r["row"]: r["gflop_fwd"] for r in run_json(py + ["--flops"])}
    env_threads = ["--threads", str(a.threads), "--iters", str(a.iters)]
    results = {}
    for row in ROWS:
        acc = {"mep": {"fwd": [], "fwdbwd": [], "rss": []}, "pytorch": {"fwd": [], "fwdbwd": [], "rss": []}}
        for _ in range(a.rounds):
            for impl, cmd in (("mep", [mep_bin, "--row", row]), ("pytorch", py + ["--row", row])):
                (r,) = run_json(cmd + env_threads)
                # Each process reports min/median/max; keep the medians of each round.
                acc[impl]["fwd"].append(r["fwd_ms"]["median"])
                acc[impl]["fwdbwd"].append(r["fwdbwd_ms"]["median"])
                acc[impl]["rss"].append(r["peak_rss_mb"])
                print(json.dumps(r), file=sys.stderr)
        results[row] = acc

    lines = [
        f"threads {a.threads}, {a.iters} timed iterations x {a.rounds} rounds per row and implementation; "
        "milliseconds are medians of the per-round medians.",
        "",
        "| row | pass | mep ms | PyTorch ms | ratio mep/PyTorch | mep GFLOP/s | PyTorch GFLOP/s | mep peak MiB | PyTorch peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        m, p = results[row]["mep"], results[row]["pytorch"]
        for key, label, mult in (("fwd", "forward", 1.0), ("fwdbwd", "forward+backward to input", 2.0)):
            mm, pm = statistics.median(m[key]), statistics.median(p[key])
            gf = flops[row] * mult
            lines.append(
                f"| {row} | {label} | {mm:.1f} | {pm:.1f} | {mm / pm:.2f} | {gf / mm * 1e3:.0f} | {gf / pm * 1e3:.0f} "
                f"| {max(m['rss']):.0f} | {max(p['rss']):.0f} |"
            )
    table = "\n".join(lines)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
