#!/usr/bin/env python3
"""The PyTorch side of the GPU speed table (`cargo xtask gpu-check`; mep's side is
`benches/src/bin/gpu_speed.rs`, which times the same cases under the same names).

    python3 tools/torch_speed.py [--device cuda|cpu] [--iters 20] [--warmup 3] [--quick]
                                 [--case NAME] [--no-cudnn-benchmark] [--no-graph]

Cases (fp32, batch 32 at 224x224, torchvision resnet50(num_classes=10) in eval mode,
random weights, every parameter frozen; without torchvision the same architecture built
here, and the JSON's "model" says which):
  - forward under torch.no_grad();
  - forward + backward to the input only (mean cross-entropy, torch.autograd.grad);
  - one NEB step in `input` and in `layer1`: a path of 34 pivots, endpoints included, so
    32 pivots move. As mep's `Neb::step` with its defaults (k = inf, Adam): the per-pivot
    cross-entropy of the network's head and its gradient at the 32 interior pivots in one
    batch, the improved tangent (Henkelman & Jonsson 2000, eqs. 8-11) and the perpendicular
    force, an Adam step on -force, and the redistribution to equal arc length. In `layer1`
    the points are layer1's output, [256, 56, 56], and the head is layer2 ... fc;
  - one training step: a second ResNet-50 of the same initialisation in training mode
    (batch statistics), mean cross-entropy, backward with weight gradients, an Adam step
    (lr 1e-3, zero_grad(set_to_none=True)): what `mep train` does per batch, without the
    data loading (images/s = 1000 * batch / median_ms);
  - with --device cuda, the forward again, captured once in a CUDA graph and replayed; and
    a NEB step's energy+gradient in `input` (copy the 32 pivots into the network's input,
    cross-entropy against class 0 summed over the pivots, its gradient to the input),
    captured and replayed, as gpu_speed's graph row of the same name.

--precision tf32 or bf16 (gpu_speed's --precision twin) runs only the forward,
forward+backward and training-step cases, named with " (tf32)" or " (bf16)" after them, the
way a PyTorch user runs them fast: tf32 = TF32 on for cuDNN and matmul, model and inputs
channels_last; bf16 = torch.autocast(dtype=torch.bfloat16) around the model and the loss,
channels_last (fp32 master weights, Adam in fp32).

By default (fp32) TF32 is off (torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 =
False); cuDNN's autotuner (cudnn.benchmark) is on unless --no-cudnn-benchmark, so the
baseline uses cuDNN's fastest algorithm. Each case: --warmup untimed runs, then --iters
timed ones, each ended by torch.cuda.synchronize(); one JSON object per case on stdout:
  {"impl":"torch","case":...,"median_ms":...,"min_ms":...,"max_ms":...,"iters":...,
   "device":...,"torch":...,"cudnn_benchmark":...}
--quick shrinks everything (batch 2 at 64x64, 2 moving pivots, 2 iterations) to check the
script itself, e.g. on a CPU: `python3 tools/torch_speed.py --device cpu --quick`.
"""

import argparse
import contextlib
import json
import statistics
import sys
import time

NUM_CLASSES = 10
# Adam as mep's `NebConfig::default()` (lr 1e-2, PyTorch's betas and eps).
LR, BETA1, BETA2, EPS = 1e-2, 0.9, 0.999, 1e-8
# A tangent counts as zero-length below this fraction of its parts (mep-tensor's ZERO_TANGENT
# plays the same role; the exact value does not change the timing).
ZERO_TANGENT = 1e-6


class Config:
    def __init__(self, quick):
        self.batch = 2 if quick else 32
        self.size = 64 if quick else 224
        self.moving = 2 if quick else 32  # interior pivots; the path has moving + 2

    def names(self, mode=""):
        s, n, m = self.size, self.batch, self.moving
        return {
            "forward": f"resnet50 {s}x{s} b{n} forward{mode}",
            "backward": f"resnet50 {s}x{s} b{n} forward+backward to input{mode}",
            "neb_input": f"neb step input {s}x{s}, {m} pivots",
            "neb_layer1": f"neb step layer1 {s // 4}x{s // 4}, {m} pivots",
            "graph": f"resnet50 {s}x{s} b{n} forward, CUDA graph",
            "train": f"resnet50 {s}x{s} b{n} training step (Adam){mode}",
            "graph_neb": f"neb step input {s}x{s}, {m} pivots, energy+gradient, CUDA graph",
        }


def resnet50_builtin(torch, num_classes):
    """torchvision's resnet50 architecture (v1.5: stride in the 3x3), for machines without
    torchvision; the same module names, so the cuts below work on either."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin, layers = 64, []
            for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
                seq = []
                for k in range(blocks):
                    seq.append(Bottleneck(cin, width, stride if k == 0 else 1))
                    cin = width * 4
                layers.append(nn.Sequential(*seq))
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x):
            x = encode_layer1(self, x)
            x = self.layer4(self.layer3(self.layer2(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet50()


def build_model(torch, device, train=False):
    """torchvision's resnet50 (10 classes), or the same architecture built here without it;
    frozen in eval mode, or with `train` trainable in training mode."""
    torch.manual_seed(0)
    try:
        import torchvision

        model, source = torchvision.models.resnet50(num_classes=NUM_CLASSES), "torchvision"
    except ImportError:
        model, source = resnet50_builtin(torch, NUM_CLASSES), "builtin (no torchvision)"
    if train:
        return model.train().to(device), source
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, source


def head_from(model, cut):
    """The partial network f_{cut:L} as a function of the cut's activation."""
    import torch

    def from_layer1(z):
        z = model.layer4(model.layer3(model.layer2(z)))
        return model.fc(torch.flatten(model.avgpool(z), 1))

    return model if cut == "input" else from_layer1


def encode_layer1(model, x):
    return model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))


class NebStep:
    """One step of mep's `Neb::step` (k = inf, Adam) on a straight path, in torch."""

    def __init__(self, torch, head, za, zb, moving):
        self.torch, self.head = torch, head
        self.shape = tuple(za.shape)
        p = moving + 2
        t = torch.linspace(0, 1, p, device=za.device).view(p, 1)
        a, b = za.reshape(1, -1), zb.reshape(1, -1)
        self.path = (1 - t) * a + t * b  # [P, D]
        self.m = torch.zeros_like(self.path)
        self.v = torch.zeros_like(self.path)
        self.step_no = 0
        self.target = torch.zeros(moving, dtype=torch.long, device=za.device)
        with torch.no_grad():
            ends = torch.stack([za, zb])
            e = torch.nn.functional.cross_entropy(head(ends), self.target[:1].expand(2), reduction="none")
        self.e0, self.e1 = e[0:1], e[1:2]

    def forces(self, energies, grads):
        """Improved tangent (eqs. 8-11), ties and zero-length tangents as in mep's CPU
        backend, then the perpendicular true force; no spring (k = inf). Rows: interior.
        Vectors in f32 as a PyTorch user would write it (mep accumulates its reductions in
        f64); the per-pivot scalars in f64."""
        torch = self.torch
        x = self.path
        prev, cur, nxt = x[:-2], x[1:-1], x[2:]
        tp, tm = nxt - cur, cur - prev
        np_, nm = tp.norm(dim=1).double(), tm.norm(dim=1).double()
        e = energies.double()
        ep, ec, en = e[:-2], e[1:-1], e[2:]
        dmax = torch.maximum((en - ec).abs(), (ep - ec).abs())
        dmin = torch.minimum((en - ec).abs(), (ep - ec).abs())
        up = (en > ec) & (ec > ep)
        down = (en < ec) & (ec < ep)
        a = torch.where(up, 1.0, torch.where(down, 0.0, torch.where(en > ep, dmax, dmin)))
        b = torch.where(up, 0.0, torch.where(down, 1.0, torch.where(en > ep, dmin, dmax)))
        tie = ~(up | down) & (en == ep)
        # The bisector where the energies tie: tau+/|tau+| + tau-/|tau-|.
        a = torch.where(tie, 1.0 / np_.clamp_min(1e-300), a)
        b = torch.where(tie, 1.0 / nm.clamp_min(1e-300), b)
        tau = a.float()[:, None] * tp + b.float()[:, None] * tm
        tn = tau.norm(dim=1).double()
        usable = tn > ZERO_TANGENT * (a.abs() * np_ + b.abs() * nm)
        inv = torch.where(usable, 1.0 / tn.clamp_min(1e-300), 0.0).float()
        that = tau * inv[:, None]
        perp = -grads + (grads * that).sum(dim=1, keepdim=True) * that
        return perp, perp.norm(dim=1)

    def adam(self, grad):
        self.step_no += 1
        k = self.step_no
        self.m.mul_(BETA1).add_(grad, alpha=1 - BETA1)
        self.v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        bc1, bc2 = 1 - BETA1**k, 1 - BETA2**k
        denom = (self.v / bc2).sqrt_().add_(EPS)
        self.path.addcdiv_(self.m, denom, value=-LR / bc1)

    def redistribute(self):
        """Equal arc length along the piecewise-linear path (mep's `redistribution_plan`)."""
        torch = self.torch
        p = self.path.shape[0]
        dist = (self.path[1:] - self.path[:-1]).norm(dim=1).double()
        cum = torch.cat([dist.new_zeros(1), dist.cumsum(0)])
        total = cum[-1]
        targets = total * torch.arange(1, p - 1, device=dist.device, dtype=torch.float64) / (p - 1)
        seg = (torch.searchsorted(cum, targets, right=True) - 1).clamp(0, p - 2)
        t = ((targets - cum[seg]) / dist[seg].clamp_min(1e-300)).clamp(0, 1).float()[:, None]
        new = (1 - t) * self.path[seg] + t * self.path[seg + 1]
        self.path[1:-1] = new

    def __call__(self):
        torch = self.torch
        n = self.path.shape[0] - 2
        z = self.path[1:-1].reshape(n, *self.shape).clone().requires_grad_(True)
        losses = torch.nn.functional.cross_entropy(self.head(z), self.target, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), z)
        energies = torch.cat([self.e0, losses.detach(), self.e1])
        force, norms = self.forces(energies, grad.reshape(n, -1).float())
        # mep reads the energies and the force norms on the host each step.
        _ = (energies.cpu(), norms.max().item())
        g = torch.zeros_like(self.path)
        g[1:-1] = -force
        self.adam(g)
        self.redistribute()


def timed(torch, fn, warmup, iters, cuda):
    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 iterations: a check of the script")
    ap.add_argument("--case", action="append", help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true", help="leave cuDNN's autotuner off")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph case")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (with --device cpu)")
    ap.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16"],
        default="fp32",
        help="tf32: TF32 + channels_last; bf16: autocast + channels_last (forward, backward, training only)",
    )
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        print(f"torch_speed: PyTorch is not installed ({e})", file=sys.stderr)
        return 2
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(
            f"torch_speed: --device {args.device}, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); no GPU here?",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    tf32 = args.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    torch.set_float32_matmul_precision("high" if tf32 else "highest")

    cfg = Config(args.quick)
    iters = 2 if args.quick else args.iters
    warmup = 1 if args.quick else args.warmup
    device = torch.device(args.device)
    model, source = build_model(torch, device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(cfg.batch, 3, cfg.size, cfg.size, generator=gen).to(device)
    targets = torch.randint(0, NUM_CLASSES, (cfg.batch,), generator=gen).to(device)
    ends = torch.randn(2, 3, cfg.size, cfg.size, generator=gen).to(device)
    reduced = args.precision != "fp32"
    names = cfg.names(f" ({args.precision})" if reduced else "")
    fmt = torch.channels_last if reduced else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    device_type = "cuda" if cuda else "cpu"

    def mode():
        """bf16 autocast around the model and the loss; nothing otherwise."""
        if args.precision == "bf16":
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
    meta = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "model": source,
        "precision": args.precision,
    }

    def forward():
        with torch.no_grad(), mode():
            model(x)

    def backward():
        xi = x.clone(memory_format=fmt).requires_grad_(True)
        with mode():
            loss = torch.nn.functional.cross_entropy(model(xi), targets)
        (gx,) = torch.autograd.grad(loss, xi)
        assert gx.shape == xi.shape

    def neb(cut):
        def make():
            with torch.no_grad():
                z = ends if cut == "input" else encode_layer1(model, ends)
            return NebStep(torch, head_from(model, cut), z[0], z[1], cfg.moving)

        return make

    def train_step():
        trained, _ = build_model(torch, device, train=True)
        trained = trained.to(memory_format=fmt)
        opt = torch.optim.Adam(trained.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            with mode():
                loss = torch.nn.functional.cross_entropy(trained(x), targets)
            loss.backward()
            opt.step()

        return step

    def graph():
        static_x = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g), torch.no_grad():
            model(static_x)
        return g.replay

    def graph_neb():
        points = torch.randn(cfg.moving, 3, cfg.size, cfg.size, generator=gen).to(device)
        static_z = torch.empty_like(points, requires_grad=True)
        target = torch.zeros(cfg.moving, dtype=torch.long, device=device)

        def energy_grad():
            with torch.no_grad():
                static_z.copy_(points)
            loss = torch.nn.functional.cross_entropy(model(static_z), target, reduction="sum")
            return torch.autograd.grad(loss, static_z)[0]

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                energy_grad()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            energy_grad()
        return g.replay

    cases = [
        (names["forward"], lambda: forward),
        (names["backward"], lambda: backward),
        (names["neb_input"], neb("input")),
        (names["neb_layer1"], neb("layer1")),
        (names["train"], train_step),
    ]
    if reduced:
        # The NEB and graph rows are fp32's (see the docstring).
        cases = [c for c in cases if c[0] in (names["forward"], names["backward"], names["train"])]
    elif cuda and not args.no_graph:
        cases.append((names["graph"], graph))
        cases.append((names["graph_neb"], graph_neb))
    failed = False
    for name, make in cases:
        if args.case and not any(c in name for c in args.case):
            continue
        try:
            fn = make()
            ts = timed(torch, fn, warmup, iters, cuda)
        except Exception as e:  # one failing case must not hide the others
            print(f"torch_speed: case {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed = True
            continue
        row = {
            "impl": "torch",
            "case": name,
            "median_ms": round(statistics.median(ts), 4),
            "min_ms": round(min(ts), 4),
            "max_ms": round(max(ts), 4),
            "iters": iters,
            **meta,
        }
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
