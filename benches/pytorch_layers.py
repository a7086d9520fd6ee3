#!/usr/bin/env python3
"""PyTorch's side of the per-layer convolution timings (ours: the mep-tensor example
`conv_paths --r50` and `--r50-1x1`): ResNet-50's convolutions at 224x224, batch 8.

    python3 benches/pytorch_layers.py [--reps 5] [--threads 2] [--layer TEXT]

For each layer: the forward (torch.nn.Conv2d without bias, then ReLU, as mep's forward
fuses its activation) and the input gradient (torch.nn.grad.conv2d_input), each the
median over --reps runs (after 2 warm-ups) of the process's CPU time in ms, summed over
its threads like conv_paths' on-CPU time, which a shared machine skews less than wall
time. For AVX2 set ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2.
"""

import argparse
import statistics
import time

import torch

# (name, c_in, input size, c_out, kernel, stride, padding), batch 8; the names are conv_paths'.
LAYERS = [
    ("r50 64->64 56x56", 64, 56, 64, 3, 1, 1),
    ("r50 128->128 56>28 s2", 128, 56, 128, 3, 2, 1),
    ("r50 128->128 28x28", 128, 28, 128, 3, 1, 1),
    ("r50 256->256 28>14 s2", 256, 28, 256, 3, 2, 1),
    ("r50 256->256 14x14", 256, 14, 256, 3, 1, 1),
    ("r50 512->512 14>7 s2", 512, 14, 512, 3, 2, 1),
    ("r50 512->512 7x7", 512, 7, 512, 3, 1, 1),
    ("1x1 256->64 56x56", 256, 56, 64, 1, 1, 0),
    ("1x1 64->256 56x56", 64, 56, 256, 1, 1, 0),
    ("1x1 512->128 28x28", 512, 28, 128, 1, 1, 0),
    ("1x1 128->512 28x28", 128, 28, 512, 1, 1, 0),
    ("1x1 1024->256 14x14", 1024, 14, 256, 1, 1, 0),
    ("1x1 256->1024 14x14", 256, 14, 1024, 1, 1, 0),
    ("1x1 2048->512 7x7", 2048, 7, 512, 1, 1, 0),
    ("1x1 512->2048 7x7", 512, 7, 2048, 1, 1, 0),
    ("1x1 1024->2048 14>7 s2", 1024, 14, 2048, 1, 2, 0),
    ("stem 7x7 3->64 224>112 s2", 3, 224, 64, 7, 2, 3),
]


def cpu_ms(reps, f):
    f()
    f()
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        f()
        times.append((time.process_time() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layer", default="", help="only the layers whose name contains this")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {a.threads}, on-CPU ms")
    print(f"{'layer':<28} {'fwd':>8} {'dx':>8}")
    with torch.no_grad():
        for name, c_in, hw, c_out, k, s, p in LAYERS:
            if a.layer not in name:
                continue
            conv = torch.nn.Conv2d(c_in, c_out, k, s, p, bias=False)
            x = torch.randn(8, c_in, hw, hw)
            fwd = cpu_ms(a.reps, lambda: torch.relu(conv(x)))
            dy = torch.randn_like(conv(x))
            dx = cpu_ms(a.reps, lambda: torch.nn.grad.conv2d_input(x.shape, conv.weight, dy, s, p))
            print(f"{name:<28} {fwd:8.2f} {dx:8.2f}", flush=True)


if __name__ == "__main__":
    main()
