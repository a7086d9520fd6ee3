#!/usr/bin/env python3
"""Check `mep forward` against PyTorch on a full-size ResNet with random weights.

    python3 tools/check_forward.py --mep target/release/mep [--arch resnet18|34|50|101|152|resnet20|32|44|56|110]
        [--size 224] [--batch 2] [--num-classes 1000] [--target 3] [--seed 0]
        [--workdir DIR] [--threads 2]

Writes DIR/weights.safetensors (the state_dict, torchvision key names) and
DIR/input.safetensors (tensor `input`, N x 3 x H x W f32), runs
    MEP forward --arch ARCH --weights DIR/weights.safetensors --input DIR/input.safetensors
        --target T --out DIR/out.safetensors
and compares OUT (keys `logits`, one per cut: stem, layer1..layer4 (layer3 for resnet20),
pool, `loss` [1], `input_grad`) with PyTorch in eval mode (loss = mean cross-entropy with
every sample's target = T; input_grad = d loss / d input). Prints the relative L2 error
||mep - torch|| / ||torch|| per key; exits 1 if logits/activations exceed 1e-4 or
loss/input_grad exceed 5e-2 (or a key is missing / has the wrong shape), 2 if mep fails.

Weights: torchvision resnet50(num_classes) or the CIFAR ResNet-20 of tools/models.py, convs
Kaiming-normal fan_out, random BN stats/affine (running_mean ~ N(0, 0.1^2), running_var ~
U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1^2), last BN gamma of each block x0.5).
--reference-only skips mep and writes the PyTorch results to DIR/reference.safetensors
(same key names as OUT).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models as M  # noqa: E402

ACT_TOL = 1e-4  # logits and cut activations
GRAD_TOL = 5e-2  # loss and input_grad


def build_model(arch, num_classes):
    if arch in M.TORCHVISION_ARCHS:
        import torchvision

        model = getattr(torchvision.models, arch)(num_classes=num_classes)
    elif M.is_cifar(arch):
        model = M.cifar_resnet(arch, num_classes)
    else:
        raise SystemExit(f"unknown --arch {arch}")
    return M.randomize_bn(model, 0.5).eval()


def reference(model, x, target_class):
    """PyTorch eval-mode results, keyed as `mep forward` writes them."""
    for p in model.parameters():
        p.requires_grad_(False)
    xi = x.clone().requires_grad_(True)
    logits, acts = M.forward_with_cuts(model, xi)
    target = torch.full((x.shape[0],), target_class, dtype=torch.int64)
    loss = F.cross_entropy(logits, target)
    loss.backward()
    ref = {"logits": logits.detach()}
    ref.update({k: v.detach() for k, v in acts.items()})
    ref["loss"] = loss.detach().reshape(1)
    ref["input_grad"] = xi.grad.detach()
    return {k: v.contiguous() for k, v in ref.items()}


def rel_l2(a, b):
    a = a.double()
    b = b.double()
    den = b.norm().item()
    num = (a - b).norm().item()
    return num / den if den > 0 else num


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mep", help="path to the mep binary (required unless --reference-only)")
    ap.add_argument("--arch", default="resnet50", choices=M.TORCHVISION_ARCHS + M.CIFAR_ARCHS)
    ap.add_argument("--size", type=int, default=None, help="image size (224 / 32 by arch)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--num-classes", type=int, default=None, help="1000 / 10 by arch")
    ap.add_argument("--target", type=int, default=3, help="target class of every sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="default: a fresh temporary directory")
    ap.add_argument("--reference-only", action="store_true")
    args = ap.parse_args()
    if not args.reference_only and not args.mep:
        ap.error("--mep is required (or pass --reference-only)")
    size = args.size or (32 if M.is_cifar(args.arch) else 224)
    num_classes = args.num_classes or (10 if M.is_cifar(args.arch) else 1000)
    if not 0 <= args.target < num_classes:
        ap.error(f"--target must be in [0, {num_classes})")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mep_check_")
    os.makedirs(workdir, exist_ok=True)
    w_path = os.path.join(workdir, "weights.safetensors")
    x_path = os.path.join(workdir, "input.safetensors")
    out_path = os.path.join(workdir, "out.safetensors")

    model = build_model(args.arch, num_classes)
    x = torch.randn(args.batch, 3, size, size)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, w_path)
    save_file({"input": x.contiguous()}, x_path)
    print(f"arch {args.arch}, {num_classes} classes, input {list(x.shape)}, workdir {workdir}")

    ref = reference(model, x, args.target)
    print("pytorch: loss %.6f; std " % ref["loss"].item()
          + ", ".join(f"{c} {ref[c].std().item():.3f}" for c in M.cuts_for(args.arch)))
    if args.reference_only:
        ref_path = os.path.join(workdir, "reference.safetensors")
        save_file(ref, ref_path)
        print(f"wrote {w_path}, {x_path}, {ref_path}")
        return 0

    if os.path.exists(out_path):
        os.remove(out_path)
    cmd = [args.mep, "forward", "--arch", args.arch, "--weights", w_path, "--input", x_path,
           "--target", str(args.target), "--out", out_path]
    print("running:", " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd)
    except OSError as e:
        print(f"FAIL: cannot run {args.mep}: {e}")
        return 2
    if r.returncode != 0 or not os.path.exists(out_path):
        print(f"FAIL: mep exited with {r.returncode}" + ("" if os.path.exists(out_path)
                                                         else f"; no {out_path}"))
        return 2
    out = load_file(out_path)

    ok = True
    keys = ["logits"] + M.cuts_for(args.arch) + ["loss", "input_grad"]
    print(f"{'key':12s} {'shape':20s} {'rel_l2':>12s} {'max_abs':>12s} {'tol':>8s}")
    for k in keys:
        tol = GRAD_TOL if k in ("loss", "input_grad") else ACT_TOL
        b = ref[k]
        if k not in out:
            print(f"{k:12s} MISSING from {out_path}")
            ok = False
            continue
        a = out[k].to(torch.float32)
        if a.shape != b.shape:
            if a.numel() == b.numel() and k in ("loss", "pool"):
                a = a.reshape(b.shape)  # tolerate [] vs [1], [N,C,1,1] vs [N,C]
            else:
                print(f"{k:12s} shape {list(a.shape)} != expected {list(b.shape)}")
                ok = False
                continue
        if not torch.isfinite(a).all():
            print(f"{k:12s} {str(list(b.shape)):20s} non-finite values")
            ok = False
            continue
        e = rel_l2(a, b)
        mx = (a.double() - b.double()).abs().max().item()
        flag = "ok" if e <= tol else "FAIL"
        ok &= e <= tol
        print(f"{k:12s} {str(list(b.shape)):20s} {e:12.3e} {mx:12.3e} {tol:8.0e} {flag}")
    extra = sorted(set(out) - set(keys))
    if extra:
        print("extra keys in OUT (ignored):", ", ".join(extra))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
