#!/usr/bin/env python3
"""mep vs PyTorch on the CPU, side by side in one run: the table of BENCHMARKS.md.

    python3 benches/compare.py [--threads 2] [--iters 10] [--rounds 2] [--out bench-out/compare.md]
                               [--isa native|avx2] [--mep-bin-dir DIR] [--rows R,...] [--train]

Needs `cargo build --release -p mep-benches` first (`cargo xtask bench` does both).
`--isa avx2` runs both sides on their AVX2 code on any x86-64 CPU: PyTorch with
ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2, mep with MEP_CPU_ISA=avx2 and the
timing binaries of a build without AVX-512 gemm kernels, e.g.
`CARGO_TARGET_DIR=target/avx2 cargo build --release -p mep-benches --no-default-features --features cuda`
and `--mep-bin-dir target/avx2/release`. `--train` adds the training-step rows (train_time vs pytorch_train.py).
For each row and round, our timing binary and the PyTorch script each run in a fresh
process (so peak memory is the row's own), one after the other, in turns (mep first in even
rounds, PyTorch first in odd ones) so that load on a shared machine, and its drift, hits both
alike. Reports the median of the per-round medians, the ratio mep/PyTorch of those medians
and, as a measure of the machine's noise, each round's own ratio (median and range over the
rounds), achieved GFLOP/s (forward FLOP counted by PyTorch hooks; forward+backward
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
TRAIN_ROWS = ["resnet20 32x32 b128", "resnet50 224x224 b8"]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def in_turn(k, first, second):
    """Round k's order: `first` leads in even rounds, `second` in odd ones."""
    return (first, second) if k % 2 == 0 else (second, first)


def round_ratios(mep, pytorch):
    """Each round's mep/PyTorch ratio, as `median [min–max]`: how far the machine's noise
    moves the ratio from one round to the next."""
    r = sorted(a / b for a, b in zip(mep, pytorch))
    return f"{statistics.median(r):.2f} [{r[0]:.2f}–{r[-1]:.2f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "compare.md"))
    ap.add_argument("--isa", choices=["native", "avx2"], default="native")
    ap.add_argument("--mep-bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--rows", help="comma-separated subset of the rows")
    ap.add_argument("--train", action="store_true", help="add the training-step rows")
    a = ap.parse_args()
    rows = a.rows.split(",") if a.rows else ROWS
    env = dict(os.environ)
    if a.isa == "avx2":
        env["MEP_CPU_ISA"] = "avx2"
        env["ATEN_CPU_CAPABILITY"] = "avx2"
        # PyTorch's convolutions are oneDNN's, which picks its ISA itself.
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    mep_bin = os.path.join(a.mep_bin_dir, "resnet_time")
    if not os.path.exists(mep_bin):
        sys.exit(f"{mep_bin} is missing: run `cargo build --release -p mep-benches` first")
    py = [sys.executable, os.path.join(ROOT, "benches", "pytorch_resnet.py")]
    flops = {r["row"]: r["gflop_fwd"] for r in run_json(py + ["--flops"])}
    env_threads = ["--threads", str(a.threads), "--iters", str(a.iters)]
    results = {}
    for row in rows:
        acc = {"mep": {"fwd": [], "fwdbwd": [], "rss": []}, "pytorch": {"fwd": [], "fwdbwd": [], "rss": []}}
        for k in range(a.rounds):
            for impl, cmd in in_turn(k, ("mep", [mep_bin, "--row", row]), ("pytorch", py + ["--row", row])):
                (r,) = run_json(cmd + env_threads, env)
                # Each process reports min/median/max; keep the medians of each round.
                acc[impl]["fwd"].append(r["fwd_ms"]["median"])
                acc[impl]["fwdbwd"].append(r["fwdbwd_ms"]["median"])
                acc[impl]["rss"].append(r["peak_rss_mb"])
                print(json.dumps(r), file=sys.stderr)
        results[row] = acc

    train = {}
    if a.train:
        train_bin = os.path.join(a.mep_bin_dir, "train_time")
        pyt = [sys.executable, os.path.join(ROOT, "benches", "pytorch_train.py")]
        for row in TRAIN_ROWS if not a.rows else [r for r in TRAIN_ROWS if r in rows]:
            acc = {"mep": {"ms": [], "rss": []}, "pytorch": {"ms": [], "rss": []}}
            for k in range(a.rounds):
                for impl, cmd in in_turn(k, ("mep", [train_bin, "--row", row]), ("pytorch", pyt + ["--row", row])):
                    (r,) = run_json(cmd + env_threads, env)
                    acc[impl]["ms"].append(r["step_ms"]["median"])
                    acc[impl]["rss"].append(r["peak_rss_mb"])
                    print(json.dumps(r), file=sys.stderr)
            train[row] = acc

    lines = [
        f"threads {a.threads}, isa {a.isa}, {a.iters} timed iterations x {a.rounds} rounds per row and implementation; "
        "milliseconds are medians of the per-round medians; the rounds' own ratios are each round's mep median "
        "over its PyTorch median.",
        "",
        "| row | pass | mep ms | PyTorch ms | ratio mep/PyTorch | rounds' ratios: median [range] "
        "| mep GFLOP/s | PyTorch GFLOP/s | mep peak MiB | PyTorch peak MiB |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        m, p = results[row]["mep"], results[row]["pytorch"]
        for key, label, mult in (("fwd", "forward", 1.0), ("fwdbwd", "forward+backward to input", 2.0)):
            mm, pm = statistics.median(m[key]), statistics.median(p[key])
            gf = flops[row] * mult
            lines.append(
                f"| {row} | {label} | {mm:.1f} | {pm:.1f} | {mm / pm:.2f} | {round_ratios(m[key], p[key])} "
                f"| {gf / mm * 1e3:.0f} | {gf / pm * 1e3:.0f} "
                f"| {max(m['rss']):.0f} | {max(p['rss']):.0f} |"
            )
    for row, acc in train.items():
        m, p = acc["mep"], acc["pytorch"]
        mm, pm = statistics.median(m["ms"]), statistics.median(p["ms"])
        lines.append(
            f"| {row} | training step (Adam) | {mm:.1f} | {pm:.1f} | {mm / pm:.2f} | {round_ratios(m['ms'], p['ms'])} | | "
            f"| {max(m['rss']):.0f} | {max(p['rss']):.0f} |"
        )
    table = "\n".join(lines)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
