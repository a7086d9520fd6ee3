#!/usr/bin/env python3
"""`mep attack` against the same PGD in PyTorch, side by side, on the CPU.

    python3 benches/pytorch_attack.py [--mep target/release/mep] [--threads 2] [--rounds 3]
        [--images 256] [--batch 64] [--steps 10] [--norm linf|l2]
        [--weights weights/demo/resnet20-synthetic.safetensors] [--data synthetic]

A first `mep attack` run gives the images (and is not timed); then each round runs
`mep --threads T attack` (untargeted, default eps and step of the norm, no
random start) into a fresh folder and reads from its attack.json the seconds of the PGD
alone (`attack_seconds`) and, from the wall clock, of the whole command (loading the
model, drawing the dataset, choosing the images, writing the PNGs). PyTorch then runs the
same PGD (torchattacks' PGD / PGDL2 update, projection and clamp; the normalisation inside
the model; eval mode; weights without gradients) on the very images mep attacked (its
nat_*.png, read back), in the same batches, with T intra-op threads, timed around the
attack loop alone (one untimed warm-up run). Rounds alternate mep and PyTorch, so both
see the same load on a shared machine. Medians (and minima: on a loaded machine the least disturbed round) of the rounds; the
ratio mep / PyTorch (below 1: mep faster).
Both success rates (before rounding to 8 bits) are printed as a check that the two attacks
are the same.

Prints one JSON object on stdout.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def load_safetensors(path):
    """The tensors and metadata of a safetensors file (no `safetensors` package needed)."""
    import torch

    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    body = raw[8 + n :]
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=dtypes[v["dtype"]]) if b > a else torch.empty(0, dtype=dtypes[v["dtype"]])
        out[k] = t.reshape(v["shape"]).clone()
    return out, meta


def model_from(weights):
    import torch

    import models as M

    state, meta = load_safetensors(weights)
    classes = meta["mep.classes"].split("\n")
    net = M.resnet20(len(classes))
    net.load_state_dict(state)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    mean = torch.tensor([float(x) for x in meta["mep.mean"].split(",")]).view(1, 3, 1, 1)
    std = torch.tensor([float(x) for x in meta["mep.std"].split(",")]).view(1, 3, 1, 1)
    return net, mean, std


def pgd(net, mean, std, p0, labels, norm, eps, step, steps):
    """Untargeted PGD from p0 in [0, 1], torchattacks' PGD (linf) or PGDL2 (l2) update."""
    import torch
    import torch.nn.functional as F

    p = p0.clone()
    n = p0.shape[0]
    for _ in range(steps):
        p.requires_grad_(True)
        loss = F.cross_entropy(net((p - mean) / std), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, p)
        with torch.no_grad():
            if norm == "linf":
                p = p + step * g.sign()
                p = p0 + (p - p0).clamp(-eps, eps)
            else:
                gn = g.reshape(n, -1).norm(dim=1).view(n, 1, 1, 1) + 1e-10
                p = p + step * g / gn
                d = p - p0
                dn = d.reshape(n, -1).norm(dim=1).view(n, 1, 1, 1)
                d = d * torch.clamp(eps / dn, max=1.0)
                p = p0 + d
            p = p.clamp(0.0, 1.0).detach()
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mep", default=os.path.join(ROOT, "target", "release", "mep"))
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "demo", "resnet20-synthetic.safetensors"))
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--norm", choices=["linf", "l2"], default="linf")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    net, mean, std = model_from(args.weights)

    def run_mep(out):
        cmd = [
            args.mep, "--threads", str(args.threads), "attack", "--arch", "resnet20",
            "--weights", args.weights, "--data", args.data, "--norm", args.norm,
            "--images", str(args.images), "--batch", str(args.batch), "--steps", str(args.steps),
            "--quiet", "--out", out,
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        with open(os.path.join(out, "attack.json")) as f:
            return json.load(f), wall

    def run_torch():
        advs = []
        t = time.perf_counter()
        for a in range(0, len(records), args.batch):
            advs.append(pgd(net, mean, std, p0_all[a : a + args.batch], labels_all[a : a + args.batch], args.norm, eps, step, args.steps))
        seconds = time.perf_counter() - t
        with torch.no_grad():
            pred = net((torch.cat(advs) - mean) / std).argmax(1)
        return seconds, (pred != labels_all).float().mean().item()

    # A first mep run (untimed) gives the images; then the rounds alternate mep and PyTorch,
    # so that both see the same machine (shared machines' load changes by the minute).
    mep_pgd, mep_wall, torch_pgd = [], [], []
    with tempfile.TemporaryDirectory(prefix="mep-attack-bench-") as tmp:
        summary, _ = run_mep(os.path.join(tmp, "images"))
        with open(os.path.join(tmp, "images", "attack.jsonl")) as f:
            records = [json.loads(line) for line in f]
        imgs = [np.asarray(Image.open(os.path.join(tmp, "images", rec["natural_file"])).convert("RGB")) for rec in records]
        p0_all = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous().float() / 255.0
        labels_all = torch.tensor([rec["true_class"] for rec in records])
        eps, step = summary["eps"], summary["step"]
        run_torch()  # warm-up
        for r in range(args.rounds):
            s, wall = run_mep(os.path.join(tmp, f"round{r}"))
            mep_pgd.append(s["attack_seconds"])
            mep_wall.append(wall)
            seconds, torch_success = run_torch()
            torch_pgd.append(seconds)
    mep_success = summary["success_float"] / summary["images"]

    med = statistics.median
    result = {
        "images": len(records),
        "batch": args.batch,
        "steps": args.steps,
        "norm": args.norm,
        "eps": eps,
        "step": step,
        "threads": args.threads,
        "rounds": args.rounds,
        "mep_pgd_s": {"median": med(mep_pgd), "min": min(mep_pgd), "all": mep_pgd},
        "mep_command_s": {"median": med(mep_wall), "min": min(mep_wall), "all": mep_wall},
        "pytorch_pgd_s": {"median": med(torch_pgd), "min": min(torch_pgd), "all": torch_pgd},
        "ratio_mep_over_pytorch": med(mep_pgd) / med(torch_pgd),
        "ratio_of_minima": min(mep_pgd) / min(torch_pgd),
        "mep_images_per_s": len(records) / med(mep_pgd),
        "pytorch_images_per_s": len(records) / med(torch_pgd),
        "success_rate_before_rounding": {"mep": mep_success, "pytorch": torch_success},
        "success_rate_after_rounding_mep": summary["success"] / summary["images"],
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
