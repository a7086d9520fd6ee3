#!/usr/bin/env python3
"""PyTorch CPU baseline for the mep ResNet engine (our half is timed by another script).

    python3 benches/pytorch_resnet.py [--threads 2] [--iters 10] [--row NAME] [--flops]

Rows: "resnet50 224x224 b8", "resnet50 32x32 b64", "resnet20 32x32 b128". Eval mode,
random weights (torchvision resnet50(num_classes=10); CIFAR ResNet-20 from tools/models.py,
10 classes), random BN statistics. Per row: forward under torch.no_grad(), and
forward+backward to the input only (input.requires_grad_(True), every parameter
requires_grad_(False), mean cross-entropy vs random targets, loss.backward()). 2 warm-up
iterations, then --iters timed ones: min/median/max ms.

Without --row each row runs in a fresh subprocess of this script (so the peak RSS is per
row); prints one JSON object per line on stdout:
  {"impl":"pytorch","row":...,"fwd_ms":{"min","median","max"},"fwdbwd_ms":{...},
   "peak_rss_mb":...,"threads":2,"torch":...}
--flops prints instead {"impl":"pytorch","row":...,"gflop_fwd":...,"gmac_fwd":...} per row
(MACs of Conv2d/Linear counted with forward hooks; FLOP = 2*MAC).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

# row name -> (arch, image size, batch)
ROWS = {
    "resnet50 224x224 b8": ("resnet50", 224, 8),
    "resnet50 32x32 b64": ("resnet50", 32, 64),
    "resnet20 32x32 b128": ("resnet20", 32, 128),
}
NUM_CLASSES = 10
WARMUP = 2


def build(arch):
    import torch
    import torchvision

    import models as M

    torch.manual_seed(0)
    if arch == "resnet50":
        model = torchvision.models.resnet50(num_classes=NUM_CLASSES)
    else:
        model = M.resnet20(NUM_CLASSES)
    M.randomize_bn(model, 0.5)
    return model.eval()


def count_macs(model, x):
    import torch
    import torch.nn as nn

    total = [0]

    def conv_hook(m, inp, out):
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]  # (Cin/groups)*kh*kw
        total[0] += out.numel() * k

    def lin_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def stats(ts):
    return {
        "min": round(min(ts), 3),
        "median": round(statistics.median(ts), 3),
        "max": round(max(ts), 3),
    }


def run_row(name, threads, iters, flops):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    arch, size, batch = ROWS[name]
    model = build(arch)
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=g)
    target = torch.randint(0, NUM_CLASSES, (batch,), generator=g)

    if flops:
        macs = count_macs(model, x)
        return {
            "impl": "pytorch",
            "row": name,
            "gflop_fwd": round(2 * macs / 1e9, 4),
            "gmac_fwd": round(macs / 1e9, 4),
        }

    def fwd():
        with torch.no_grad():
            model(x)

    def fwdbwd():
        xi = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xi), target)
        loss.backward()
        assert xi.grad is not None

    def bench(fn):
        for _ in range(WARMUP):
            fn()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return stats(ts)

    fwd_ms = bench(fwd)
    fwdbwd_ms = bench(fwdbwd)
    # ru_maxrss is in KiB on Linux.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "impl": "pytorch",
        "row": name,
        "fwd_ms": fwd_ms,
        "fwdbwd_ms": fwdbwd_ms,
        "peak_rss_mb": round(rss_mb, 1),
        "threads": threads,
        "torch": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--row", choices=list(ROWS), help="run one row in this process")
    ap.add_argument("--flops", action="store_true", help="print GFLOP of one forward per row")
    args = ap.parse_args()

    if args.row is not None:
        print(json.dumps(run_row(args.row, args.threads, args.iters, args.flops)), flush=True)
        return

    failed = False
    for name in ROWS:
        cmd = [sys.executable, os.path.abspath(__file__), "--row", name,
               "--threads", str(args.threads), "--iters", str(args.iters)]
        if args.flops:
            cmd.append("--flops")
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            print(f"row {name!r} failed with exit code {r.returncode}", file=sys.stderr)
            failed = True
            continue
        print(r.stdout.strip().splitlines()[-1], flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
