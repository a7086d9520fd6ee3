#!/usr/bin/env python3
"""PyTorch's side of the training-speed comparison (ours: benches/src/bin/train_time.rs).

    python3 benches/pytorch_train.py --row "resnet20 32x32 b128" [--iters 10] [--threads 2]

One training step = training-mode forward (batch statistics), mean cross-entropy,
backward with weight gradients, torch.optim.Adam step; random weights and inputs, 10
classes. 2 warm-up steps, then --iters timed ones. Prints one JSON line:
  {"impl":"pytorch","row":...,"step_ms":{"min","median","max"},"images_per_s":...,
   "peak_rss_mb":...,"threads":2,"torch":...}
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

ROWS = {"resnet20 32x32 b128": ("resnet20", 32, 128), "resnet50 224x224 b8": ("resnet50", 224, 8)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--row", required=True, choices=list(ROWS))
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    import torchvision

    import models as M

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    arch, size, batch = ROWS[a.row]
    model = M.resnet20(10) if arch == "resnet20" else torchvision.models.resnet50(num_classes=10)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    ms = []
    for _ in range(a.iters):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(ms)
    print(json.dumps({
        "impl": "pytorch", "row": a.row,
        "step_ms": {"min": min(ms), "median": med, "max": max(ms)},
        "images_per_s": batch / med * 1e3,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": a.threads, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
