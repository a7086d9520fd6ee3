#!/usr/bin/env python3
"""The work a certificate of a study's paths needs, by the model of BENCHMARKS.md.

A zonotope symbol (or an ExactLine piece) is paid for each neuron that changes sign on a
segment: its row is carried through the rest of the head over the window of pixels it can
reach. This script counts, for every ReLU of the head, the neurons whose sign is not the
same at `--samples` evenly spaced points of each segment (a lower bound on those that
change sign), and multiplies each count by the multiply-adds that carry one such row from
that ReLU to the logits (its window grown by each convolution, all channels). The sum is
a lower bound on the multiply-adds of `mep certify --method bounds` without its skipping of
shared zeros. On the demo's pair 0 `input` path it gives 1.2e12, what a counter in
`zonotope::conv_many` measured (BENCHMARKS.md, "The bounds on the kernel backend").

    python3 benches/certify_work.py --arch resnet20 \
        --weights weights/demo/resnet20-synthetic.safetensors --study DIR
    python3 benches/certify_work.py --arch resnet50 --weights model.safetensors --study DIR

Needs PyTorch and safetensors. ResNet-20 is mep's CIFAR variant (3×3 stem, shortcuts that
subsample and pad with zero channels), ResNet-50 torchvision's; the weights are mep's
checkpoints, which use torchvision's names.
"""
import argparse
import glob
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


# ---- windows: the pixels a row can be non-zero on --------------------------------------

def slide(win, k, s, p, o):
    """The output window a k×k convolution (stride s, padding p, o×o output) reaches."""
    def rng(a0, a1):
        return max(0, math.ceil((a0 - (k - 1) + p) / s)), min(o - 1, (a1 - 1 + p) // s) + 1
    (y0, y1), (x0, x1) = rng(win[0], win[1]), rng(win[2], win[3])
    return (y0, y1, x0, x1)


def area(w):
    return max(0, w[1] - w[0]) * max(0, w[3] - w[2])


def union(a, b):
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def pixel(h):
    c = h // 2
    return (c, c + 1, c, c + 1)


class Count:
    """Multiply-adds of one row's convolutions, each over the window its output reaches."""

    def __init__(self):
        self.macs = 0

    def conv(self, win, cin, cout, k, s, p, h):
        o = (h + 2 * p - k) // s + 1
        out = slide(win, k, s, p, o)
        self.macs += area(out) * cout * cin * k * k
        return out, o


# ---- ResNet-20 (mep's CIFAR variant) ---------------------------------------------------

R20_PLAN = [(16, 16, 1)] * 3 + [(16, 32, 2)] + [(32, 32, 1)] * 2 + [(32, 64, 2)] + [(64, 64, 1)] * 2
R20_SIZE = [32] * 4 + [16] * 3 + [8] * 2  # each block's input size
# The head after each cut starts at this ReLU (0: the stem's; then two per block).
R20_CUTS = {"input": 0, "stem": 1, "layer1": 7, "layer2": 13, "layer3": 19}


def r20_rest(m, win, h, blocks):
    for cin, cout, s in blocks:
        a, h1 = m.conv(win, cin, cout, 3, s, 1, h)
        b, h2 = m.conv(a, cout, cout, 3, 1, 1, h1)
        win, h = union(b, slide(win, 1, s, 0, h2) if s != 1 else win), h2
    return m.macs + 64 * 10


def r20_cost(relu):
    m = Count()
    if relu == 0:
        return r20_rest(m, pixel(32), 32, R20_PLAN)
    blk, pos = divmod(relu - 1, 2)
    cin, cout, s = R20_PLAN[blk]
    h = R20_SIZE[blk] // s
    win = pixel(h)
    if pos == 0:  # after the block's first convolution: its second comes next
        win, h = m.conv(win, cout, cout, 3, 1, 1, h)
    return r20_rest(m, win, h, R20_PLAN[blk + 1:])


def r20_forward(w, x, cut, pre):
    def bn(x, p):
        return F.batch_norm(x, w[p + ".running_mean"], w[p + ".running_var"], w[p + ".weight"],
                            w[p + ".bias"], False, 0.0, 1e-5)

    def relu(x):
        pre.append(x)
        return F.relu(x)

    if cut == "input":
        x = relu(bn(F.conv2d(x, w["conv1.weight"], padding=1), "bn1"))
    start = {"input": 0, "stem": 0, "layer1": 1, "layer2": 2, "layer3": 3}[cut]
    for s, planes in enumerate((16, 32, 64)):
        if s < start:
            continue
        for b in range(3):
            p, st = f"layer{s + 1}.{b}", (2 if s > 0 and b == 0 else 1)
            o = relu(bn(F.conv2d(x, w[p + ".conv1.weight"], stride=st, padding=1), p + ".bn1"))
            o = bn(F.conv2d(o, w[p + ".conv2.weight"], padding=1), p + ".bn2")
            sc = x if st == 1 else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            x = relu(o + sc)


# ---- ResNet-50 (torchvision) -----------------------------------------------------------

R50_PLAN = ([(64, 64, 1)] + [(256, 64, 1)] * 2 + [(256, 128, 2)] + [(512, 128, 1)] * 3
            + [(512, 256, 2)] + [(1024, 256, 1)] * 5 + [(1024, 512, 2)] + [(2048, 512, 1)] * 2)
R50_SIZE = [56] * 4 + [28] * 4 + [14] * 6 + [7] * 2  # each block's input size at 224×224
R50_FIRST_BLOCK = {"stem": 0, "layer1": 3, "layer2": 7, "layer3": 13}


def r50_rest(m, win, h, blocks):
    for cin, wd, s in blocks:
        a, h1 = m.conv(win, cin, wd, 1, 1, 0, h)
        b, h2 = m.conv(a, wd, wd, 3, s, 1, h1)
        c, h3 = m.conv(b, wd, 4 * wd, 1, 1, 0, h2)
        if s != 1 or cin != 4 * wd:
            sc, _ = m.conv(win, cin, 4 * wd, 1, s, 0, h)
        else:
            sc = win
        win, h = union(c, sc), h3
    return m.macs + 2048 * 10


def r50_cost(relu):
    """Three ReLUs per block: after its first 1×1, after its 3×3, after the sum."""
    blk, pos = divmod(relu, 3)
    cin, wd, s = R50_PLAN[blk]
    h = R50_SIZE[blk]
    m = Count()
    if pos == 0:
        win = pixel(h)
        b, h = m.conv(win, wd, wd, 3, s, 1, h)
        win, h = m.conv(b, wd, 4 * wd, 1, 1, 0, h)
    elif pos == 1:
        h = (h - 1) // s + 1
        win, h = m.conv(pixel(h), wd, 4 * wd, 1, 1, 0, h)
    else:
        h = (h - 1) // s + 1
        win = pixel(h)
    return r50_rest(m, win, h, R50_PLAN[blk + 1:])


def r50_forward(net, x, cut, pre):
    stages = (net.layer1, net.layer2, net.layer3, net.layer4)
    first = {"stem": 0, "layer1": 1, "layer2": 2, "layer3": 3}[cut]
    hooks = [b.relu.register_forward_hook(lambda m, i, o: pre.append(i[0]))
             for st in stages[first:] for b in st]
    try:
        for st in stages[first:]:
            x = st(x)
    finally:
        for h in hooks:
            h.remove()


# ---- counting ------------------------------------------------------------------------

def changing(forward, za, zb, samples, chunk=128):
    """Per ReLU, the neurons whose sign differs between sample points of the segment."""
    ts = torch.linspace(0, 1, samples, dtype=torch.float64)
    seen = None
    with torch.no_grad():
        for k in range(0, samples, chunk):
            pre = []
            forward(za + ts[k:k + chunk, None, None, None] * (zb - za), pre)
            pos = [(a > 0) for a in pre]
            now = [(p.any(0), p.all(0)) for p in pos]
            seen = now if seen is None else [(a | c, b & d) for (a, b), (c, d) in zip(seen, now)]
    return [int((a & ~b).sum()) for a, b in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("resnet20", "resnet50"), required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--study", required=True, help="a `mep connect --out` folder")
    ap.add_argument("--spaces", help="comma-separated; default: every space the study saved that the model covers")
    ap.add_argument("--samples", type=int, default=1025, help="points per segment")
    ap.add_argument("--rate", type=float, default=27e9, help="f64 multiply-adds per second per core")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for path in (a.weights, os.path.join(a.study, "paths")):
        if not os.path.exists(path):
            sys.exit(f"{path}: not found")
    w = {k: v.double() for k, v in load_file(a.weights).items()}
    if a.arch == "resnet20":
        need = [k for k in ("conv1.weight", "linear.weight", "layer3.2.conv2.weight") if k not in w]
        if need:
            sys.exit(f"{a.weights}: no {need[0]}: not mep's ResNet-20")
        cuts, cost = R20_CUTS, r20_cost
        fwd = lambda cut: (lambda x, pre: r20_forward(w, x, cut, pre))
    else:
        import torchvision
        if "fc.weight" not in w:
            sys.exit(f"{a.weights}: no fc.weight: not a torchvision-named ResNet-50")
        net = torchvision.models.resnet50(num_classes=w["fc.weight"].shape[0])
        missing = net.load_state_dict(w, strict=False).missing_keys
        if missing:
            sys.exit(f"{a.weights}: no {missing[0]} (and {len(missing) - 1} more keys)")
        net = net.double().eval()
        cuts = {c: 3 * b for c, b in R50_FIRST_BLOCK.items()}
        cost = r50_cost
        fwd = lambda cut: (lambda x, pre: r50_forward(net, x, cut, pre))
    spaces = a.spaces.split(",") if a.spaces else None
    totals = {}
    for f in sorted(glob.glob(os.path.join(a.study, "paths", "*.safetensors"))):
        space = os.path.basename(f).rsplit("_", 1)[1].removesuffix(".safetensors")
        if space not in cuts or (spaces and space not in spaces):
            continue
        path = load_file(f)
        if "pivots" not in path:
            sys.exit(f"{f}: no `pivots` tensor")
        piv = path["pivots"].double()
        first, n_seg, flips, macs = cuts[space], piv.shape[0] - 1, 0, 0
        for i in range(n_seg):
            c = changing(fwd(space), piv[i:i + 1], piv[i + 1:i + 2], a.samples)
            flips += sum(c)
            macs += sum(n * cost(first + r) for r, n in enumerate(c))
        totals.setdefault(space, []).append(macs)
        print(json.dumps({"path": os.path.basename(f), "segments": n_seg,
                          "neurons_changing_sign": flips, "multiply_adds": macs}), flush=True)
    if not totals:
        sys.exit(f"{a.study}/paths: no saved path of a space the model covers ({', '.join(cuts)})")
    per_s = a.rate * a.cores
    for space, v in totals.items():
        print(f"{space}: {len(v)} paths, {sum(v):.3g} multiply-adds (median path {sorted(v)[len(v) // 2]:.3g}),"
              f" {sum(v) / per_s:.0f} s at {a.cores} x {a.rate:.3g}/s")


if __name__ == "__main__":
    main()
