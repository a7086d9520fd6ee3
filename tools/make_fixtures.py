#!/usr/bin/env python3
"""Generate the PyTorch golden fixtures for crates/mep-resnet/tests.

Usage (from the repository root):
    python3 tools/make_fixtures.py [--out crates/mep-resnet/tests/fixtures]

Writes, for each model NAME in {resnet50_w4, resnet20}:
    NAME.safetensors         full state_dict (torchvision key names; f32, num_batches_tracked i64)
    NAME.golden.safetensors  input/target, eval-mode logits/cut activations/loss/gradients,
                             train-mode logits/loss/parameter gradients and one Adam step.
plus README.md describing them. Everything is deterministic (fixed seeds, CPU, f32).
"""

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models as M  # noqa: E402

SEED = 20240601
LAST_GAMMA_SCALE = 0.5  # scales bn3 (Bottleneck) / bn2 (BasicBlock) gamma: keeps activations O(1)
SIZE_LIMIT = 5 * 1000 * 1000  # bytes, whole fixtures directory

# name: (builder, cuts, input shape, num classes, write all `after.*` keys?)
MODELS = {
    "resnet50_w4": (lambda: M.resnet50_width(4, 10), M.RESNET50_CUTS, (3, 3, 64, 64), 10, True),
    # Batch 2, not 4: with batch 4 the directory is 5.5 MB (act/zgrad at 32x32 dominate).
    "resnet20": (lambda: M.resnet20(7), M.RESNET20_CUTS, (2, 3, 32, 32), 7, False),
    # torchvision's BasicBlock with projection shortcuts (ResNet-18/34), at width 2 to fit
    # the size budget; appended last so the seeds of the models above stay as they were.
    "resnet18_w2": (
        lambda: M.ResNetWidth(M.TVBasicBlock, [2, 2, 2, 2], width=2, num_classes=5),
        M.RESNET50_CUTS,
        (2, 3, 32, 32),
        5,
        True,
    ),
}


def contiguous(d):
    return {k: v.detach().contiguous().clone() for k, v in d.items()}


def make_one(name, out_dir, seed):
    build, cuts, in_shape, num_classes, all_after = MODELS[name]
    torch.manual_seed(seed)
    model = M.randomize_bn(build(), LAST_GAMMA_SCALE)
    for k, v in model.state_dict().items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
    x = torch.randn(*in_shape)
    target = torch.randint(0, num_classes, (in_shape[0],), dtype=torch.int64)
    train_model = copy.deepcopy(model)  # pristine copy for the training-mode half
    state = contiguous(model.state_dict())

    g = {"input": x.clone(), "target": target.clone()}

    # ---- eval mode: logits, cut activations, loss, d loss/d input, d loss/d cut
    model.eval()
    xi = x.clone().requires_grad_(True)
    logits, acts = M.forward_with_cuts(model, xi)
    for a in acts.values():
        a.retain_grad()
    loss = F.cross_entropy(logits, target)
    loss.backward()
    g["logits"] = logits
    g["loss"] = loss.reshape(1)
    g["input_grad"] = xi.grad
    print(f"[{name}] eval loss {loss.item():.6f}; activation std per cut:")
    for c in cuts:
        a = acts[c]
        s = a.std().item()
        print(f"    {c:7s} {tuple(a.shape)!s:20s} std {s:.4f}")
        assert 0.05 <= s <= 20.0, f"{name}: act.{c} std {s} outside [0.05, 20]"
        g[f"act.{c}"] = a
        assert a.grad is not None, c
        g[f"zgrad.{c}"] = a.grad

    # ---- training mode: logits, loss, parameter grads, one Adam step
    train_model.train()
    tlogits = train_model(x.clone())
    tloss = F.cross_entropy(tlogits, target)
    train_model.zero_grad(set_to_none=True)
    tloss.backward()
    g["train.logits"] = tlogits
    g["train.loss"] = tloss.reshape(1)
    print(f"[{name}] train loss {tloss.item():.6f}")
    for k, p in train_model.named_parameters():
        assert p.grad is not None, k
        g[f"grad.{k}"] = p.grad
    opt = torch.optim.Adam(
        train_model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0
    )
    opt.step()
    for k, v in train_model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if all_after or k.endswith("running_mean") or k.endswith("running_var"):
            g[f"after.{k}"] = v

    g = contiguous(g)
    for k, v in g.items():
        assert v.dtype == (torch.int64 if k == "target" else torch.float32), (k, v.dtype)
    # One metadata key only: safetensors writes a multi-key map in hash order (not byte-stable).
    meta = {"made_by": f"tools/make_fixtures.py model={name} seed={seed} torch={torch.__version__}"}
    save_file(state, os.path.join(out_dir, f"{name}.safetensors"), metadata=meta)
    save_file(g, os.path.join(out_dir, f"{name}.golden.safetensors"), metadata=meta)
    for fn in (f"{name}.safetensors", f"{name}.golden.safetensors"):
        os.chmod(os.path.join(out_dir, fn), 0o644)  # safetensors creates files 0600
    return state, g


def fmt_keys(keys):
    return "\n".join(f"- `{k}`" for k in keys)


def write_readme(out_dir, results):
    lines = [
        "# mep-resnet test fixtures (generated — do not edit)",
        "",
        "Made by `python3 tools/make_fixtures.py` (from the repository root) with "
        f"torch {torch.__version__}, CPU, float32, `torch.manual_seed` (seed {SEED}+i per "
        "model), `torch.use_deterministic_algorithms(True)`, `torch.set_num_threads(1)`; "
        "reruns are byte-identical. Weights are random (no "
        "pretrained download): convs Kaiming-normal fan_out (as torchvision), Linear PyTorch "
        "default, BN running_mean ~ N(0, 0.1²), running_var ~ U(0.5, 1.5), weight ~ "
        "U(0.5, 1.5), bias ~ N(0, 0.1²); the weight of the last BN of every residual block "
        f"(bn3 / bn2) is then multiplied by {LAST_GAMMA_SCALE} to keep activations O(1).",
        "",
        "## Models",
        "",
        "- `resnet50_w4`: torchvision ResNet-50 topology (Bottleneck v1.5, stride on conv2, "
        "blocks [3,4,6,3], expansion 4, 7×7/2 stem + BN + ReLU + maxpool 3×3/2 p1, "
        "downsample = conv1x1(stride)+BN, adaptive avg pool, fc) at base width 4: stem 4 ch, "
        "planes 4/8/16/32, stage outputs 16/32/64/128; 10 classes. State-dict keys are "
        "exactly torchvision's (checked: width 64 reproduces `torchvision.models.resnet50()`). "
        "Input [3,3,64,64].",
        "- `resnet20`: CIFAR ResNet-20 (He et al. 2016 §4.2, akamaster/pytorch_resnet_cifar10): "
        "conv1 3×3/1 16 ch + bn1 + relu; layer1/2/3 = 3 BasicBlocks of 16/32/64 ch (first "
        "block of layer2/3 stride 2); option-A shortcut `F.pad(x[:, :, ::2, ::2], (0,0,0,0, "
        "planes//4, planes//4))` (no params); global avg pool; `linear` (7 classes). "
        "Input [2,3,32,32] (batch 2, not 4, to stay under the 5 MB budget).",
        "",
        "## Cut points (`act.<cut>`, `zgrad.<cut>`)",
        "",
        "- resnet50_w4: `stem` = after max-pool [N,4,16,16]; `layer1`..`layer4` = stage outputs "
        "(after the last block's final ReLU); `pool` = avg-pooled, flattened [N,128] (fc input).",
        "- resnet20: `stem` = after conv1+bn1+relu [N,16,32,32]; `layer1`..`layer3` = stage "
        "outputs; `pool` = avg-pooled, flattened [N,64] (linear input).",
        "",
        "## Files",
        "",
        "- `<name>.safetensors`: the full `state_dict()` (all f32 except "
        "`*.num_batches_tracked`, int64 scalars = 0), torchvision key names.",
        "- `<name>.golden.safetensors` (all f32 except `target`):",
        "  - `input` [N,3,H,W]; `target` [N] int64 random classes.",
        "  - eval mode (`model.eval()`): `logits` [N,K]; `act.<cut>`; `loss` [1] = mean "
        "cross-entropy vs `target`; `input_grad` = d loss/d input; `zgrad.<cut>` = d loss/d "
        "act.<cut>.",
        "  - training mode (a deep copy of the initial model, `.train()`, BN momentum 0.1, "
        "batch statistics): `train.logits`, `train.loss` [1]; `grad.<param>` for every "
        "parameter; then one `torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, "
        "weight_decay=0)` step and `after.<key>`: resnet50_w4 every state_dict key except "
        "num_batches_tracked (params after the step, running stats after the train forward "
        "with momentum 0.1, unbiased batch variance); resnet20 only the BN "
        "`running_mean`/`running_var` keys (size budget).",
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
        golden_keys = [k for k in g if not k.startswith(("grad.", "after."))]
        lines += [
            f"## Keys: {name}",
            "",
            f"State dict: {len(state)} keys ({sum(1 for k in state if k.endswith('num_batches_tracked'))} "
            "num_batches_tracked).",
            "",
            f"Golden: {len(g)} keys = the {len(golden_keys)} below + "
            f"{sum(1 for k in g if k.startswith('grad.'))} `grad.<param>` (one per "
            f"`named_parameters()` entry, same shape) + "
            f"{sum(1 for k in g if k.startswith('after.'))} `after.<key>`.",
            "",
            "| key | shape |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | {list(g[k].shape)} |" for k in golden_keys]
        lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "crates/mep-resnet/tests/fixtures"))
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # reduction order independent of the machine's core count
    M.check_resnet50_keys()
    os.makedirs(args.out, exist_ok=True)

    results = {}
    for i, name in enumerate(MODELS):
        results[name] = make_one(name, args.out, SEED + i)
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
