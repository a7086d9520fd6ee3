#!/usr/bin/env python3
"""Generate the PyTorch golden fixtures for crates/mep-decoder/tests/golden.rs.

Usage (from the repository root):
    python3 tools/make_decoder_fixtures.py [--out crates/mep-decoder/tests/fixtures]

Writes, for each small decoder NAME in {pool_small, spatial_small}:
    NAME.safetensors         the state_dict (f32; num_batches_tracked int64) with the decoder
                             metadata `mep.decoder.*` that crates/mep-decoder reads
    NAME.golden.safetensors  points z, target images, eval-mode output/loss/input gradient,
                             train-mode output/loss/input gradient/parameter gradients and the
                             state after one Adam step
plus README.md describing them. Deterministic: fixed seeds, CPU, f32, one thread, and the
safetensors files are written here with sorted header keys, so reruns are byte-identical.
"""

import argparse
import copy
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import randomize_bn  # noqa: E402  (the ResNet fixtures' BN statistics)

SEED = 20240917
SIZE_LIMIT = 1_500_000  # bytes, whole fixtures directory
LEAKY_SLOPE = 0.3  # Table 3 (Keras' LeakyReLU default)
OUT_WEIGHT_SCALE = 10.0  # the final conv's weights are multiplied by this after init

# name: decoder metadata (as crates/mep-decoder writes it) and the batch size.
DECODERS = {
    # Table 3's structure (reshape F -> (F/16, 4, 4), four groups of three blocks, LeakyReLU
    # 0.3, three upsamplings, 32x32 output) at a few filters; F = 64 is ResNet-20's pool.
    "pool_small": dict(
        arch="resnet20", cut="pool", input_size=32, in_shape=[64], out_size=32,
        filters=[8, 6, 6, 4], blocks_per_group=3, activation=f"leaky_relu:{LEAKY_SLOPE}", batch=4,
    ),
    # The spatial decoder (ReLU, groups of three blocks, one 2x upsampling between groups)
    # from ResNet-20's layer3 (64x8x8) to 32x32: two upsamplings, three groups.
    "spatial_small": dict(
        arch="resnet20", cut="layer3", input_size=32, in_shape=[64, 8, 8], out_size=32,
        filters=[8, 6, 4], blocks_per_group=3, activation="relu", batch=2,
    ),
}


class Block(nn.Module):
    """ConvTranspose 3x3 (padding 1) -> activation -> BatchNorm, Table 3's order."""

    def __init__(self, c_in, c_out, slope):
        super().__init__()
        self.convt = nn.ConvTranspose2d(c_in, c_out, 3, padding=1)
        self.act = nn.LeakyReLU(slope) if slope is not None else nn.ReLU()
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.act(self.convt(x)))


class Decoder(nn.Module):
    """The module crates/mep-decoder implements, with the same state_dict keys."""

    def __init__(self, in_shape, filters, blocks_per_group, slope):
        super().__init__()
        self.pool = len(in_shape) == 1
        c = in_shape[0] // 16 if self.pool else in_shape[0]
        self.groups = nn.ModuleList()
        for f in filters:
            group = nn.ModuleList()
            for _ in range(blocks_per_group):
                group.append(Block(c, f, slope))
                c = f
            self.groups.append(group)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z):
        x = z.reshape(z.shape[0], -1, 4, 4) if self.pool else z
        for g, group in enumerate(self.groups):
            if g > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            for block in group:
                x = block(x)
        return torch.sigmoid(self.out(x))


def write_safetensors(path, tensors, metadata):
    """A byte-stable safetensors writer: header keys sorted, data in sorted key order."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        data = t.numpy().tobytes()
        header[k] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.chmod(path, 0o644)


def decoder_metadata(spec):
    return {
        "mep.decoder": "1",
        "mep.decoder.arch": spec["arch"],
        "mep.decoder.cut": spec["cut"],
        "mep.decoder.input_size": str(spec["input_size"]),
        "mep.decoder.in_shape": ",".join(map(str, spec["in_shape"])),
        "mep.decoder.out_size": str(spec["out_size"]),
        "mep.decoder.filters": ",".join(map(str, spec["filters"])),
        "mep.decoder.blocks_per_group": str(spec["blocks_per_group"]),
        "mep.decoder.activation": spec["activation"],
    }


def make_one(name, spec, out_dir, seed):
    torch.manual_seed(seed)
    slope = LEAKY_SLOPE if spec["activation"].startswith("leaky_relu") else None
    model = Decoder(spec["in_shape"], spec["filters"], spec["blocks_per_group"], slope)
    with torch.no_grad():
        randomize_bn(model)
    with torch.no_grad():
        # Default init leaves the sigmoid's input near 0 (outputs within 0.5 ± 0.05): widen
        # it so the outputs span most of (0, 1) and the sigmoid's curvature is tested.
        model.out.weight.mul_(OUT_WEIGHT_SCALE)
    n = spec["batch"]
    # Points at a cut come after a ReLU (or an average of ReLUs): non-negative.
    z = torch.randn(n, *spec["in_shape"]).abs()
    target = torch.rand(n, 3, spec["out_size"], spec["out_size"])
    train_model = copy.deepcopy(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = {"z": z.clone(), "target": target.clone()}

    # ---- eval mode: output, MSE loss, d loss / d z
    model.eval()
    zi = z.clone().requires_grad_(True)
    y = model(zi)
    loss = F.mse_loss(y, target)
    loss.backward()
    g["eval.output"] = y
    g["eval.loss"] = loss.reshape(1)
    g["eval.input_grad"] = zi.grad
    print(f"[{name}] eval loss {loss.item():.6f}, output range [{y.min().item():.3f}, {y.max().item():.3f}]")

    # ---- training mode: output, loss, d loss / d z, parameter gradients, one Adam step
    train_model.train()
    zt = z.clone().requires_grad_(True)
    ty = train_model(zt)
    tloss = F.mse_loss(ty, target)
    train_model.zero_grad(set_to_none=True)
    tloss.backward()
    g["train.output"] = ty
    g["train.loss"] = tloss.reshape(1)
    g["train.input_grad"] = zt.grad
    print(f"[{name}] train loss {tloss.item():.6f}")
    for k, p in train_model.named_parameters():
        assert p.grad is not None, k
        g[f"grad.{k}"] = p.grad
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    opt.step()
    for k, v in train_model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            g[f"after.{k}"] = v

    g = {k: v.detach().contiguous().clone() for k, v in g.items()}
    for k, v in g.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    made_by = f"tools/make_decoder_fixtures.py decoder={name} seed={seed} torch={torch.__version__}"
    write_safetensors(
        os.path.join(out_dir, f"{name}.safetensors"), state, {**decoder_metadata(spec), "made_by": made_by}
    )
    write_safetensors(os.path.join(out_dir, f"{name}.golden.safetensors"), g, {"made_by": made_by})
    return state, g


def write_readme(out_dir, results):
    lines = [
        "# mep-decoder test fixtures (generated — do not edit)",
        "",
        "Made by `python3 tools/make_decoder_fixtures.py` (from the repository root) with "
        f"torch {torch.__version__}, CPU, float32, `torch.manual_seed({SEED}+i)` per decoder, "
        "`torch.use_deterministic_algorithms(True)`, one thread; the safetensors files are "
        "written with sorted header keys, so reruns are byte-identical.",
        "",
        "Weights: PyTorch's default initialisation, the final conv's weight then multiplied by "
        f"{OUT_WEIGHT_SCALE} so the outputs span most of (0, 1); every BatchNorm gets running_mean ~ N(0, 0.1²), "
        "running_var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1²), so inference mode "
        "differs from training mode.",
        "",
        "## Decoders",
        "",
    ]
    for name, spec in DECODERS.items():
        lines.append(f"- `{name}`: " + ", ".join(f"{k} {v}" for k, v in spec.items()) + ".")
    lines += [
        "",
        "The module (`Decoder` in the script): at `pool` the points [N, F] are reshaped to "
        "[N, F/16, 4, 4]; then groups of `blocks_per_group` blocks [ConvTranspose2d 3×3 "
        "padding 1 (bias) → LeakyReLU(0.3) or ReLU → BatchNorm2d], `filters[g]` channels in "
        "group g, `F.interpolate(scale_factor=2, mode='nearest')` before every group but the "
        "first; `out` = Conv2d 3×3 padding 1 to 3 channels; sigmoid.",
        "",
        "## Files",
        "",
        "- `<name>.safetensors`: `state_dict()` (f32; `*.num_batches_tracked` int64 = 0), with the "
        "`mep.decoder.*` metadata crates/mep-decoder writes and reads, plus `made_by`.",
        "- `<name>.golden.safetensors` (all f32):",
        "  - `z` [N, *in_shape] = |N(0, 1)|; `target` [N, 3, S, S] ~ U(0, 1).",
        "  - inference mode (`model.eval()`): `eval.output`, `eval.loss` [1] = "
        "`F.mse_loss(output, target)` (mean over all elements), `eval.input_grad` = d loss / d z.",
        "  - training mode (a deep copy of the initial model, `.train()`, BN momentum 0.1): "
        "`train.output`, `train.loss` [1], `train.input_grad`; `grad.<param>` for every "
        "parameter; then one `torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)` step and "
        "`after.<key>` for every state_dict key but num_batches_tracked (parameters after the "
        "step, running statistics after the training-mode forward).",
        "",
        "## Sizes",
        "",
    ]
    total = 0
    for fn in sorted(os.listdir(out_dir)):
        if fn.endswith(".safetensors"):
            sz = os.path.getsize(os.path.join(out_dir, fn))
            total += sz
            lines.append(f"- `{fn}`: {sz} bytes")
    lines += ["", f"Total (safetensors): {total} bytes.", ""]
    for name, (state, g) in results.items():
        lines += [
            f"## Keys: {name}",
            "",
            f"State dict: {len(state)} keys. Golden: {len(g)} keys "
            f"({sum(1 for k in g if k.startswith('grad.'))} `grad.*`, "
            f"{sum(1 for k in g if k.startswith('after.'))} `after.*`, and:",
            "",
            "| key | shape |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | {list(v.shape)} |" for k, v in g.items() if not k.startswith(("grad.", "after."))]
        lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "crates/mep-decoder/tests/fixtures"))
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for i, (name, spec) in enumerate(DECODERS.items()):
        results[name] = make_one(name, spec, args.out, SEED + i)
    write_readme(args.out, results)

    total = 0
    for fn in sorted(os.listdir(args.out)):
        sz = os.path.getsize(os.path.join(args.out, fn))
        total += sz
        print(f"{fn:36s} {sz:>10d} bytes")
    print(f"{'total':36s} {total:>10d} bytes ({total / 1e6:.3f} MB)")
    assert total < SIZE_LIMIT, f"fixtures total {total} bytes >= {SIZE_LIMIT}"


if __name__ == "__main__":
    main()
