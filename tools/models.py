"""Shared PyTorch model definitions for the mep fixtures, benches and checks.

- `resnet50_width(width, num_classes)`: torchvision ResNet-50 topology (Bottleneck v1.5,
  blocks [3,4,6,3], expansion 4) with base width `width` instead of 64. State-dict keys
  are exactly torchvision's; for width=64 it is torchvision.models.resnet50().
- `ResNet20` / `resnet20(num_classes)`: CIFAR ResNet-20 (He et al. 2016 sec. 4.2) as in
  akamaster/pytorch_resnet_cifar10 (option-A shortcut, classifier named `linear`).
- `randomize_bn(model, ...)`: random BN running stats and affine params.
- `forward_with_cuts(model, x)`: logits plus the activation at every cut point.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock as TVBasicBlock  # noqa: F401 (re-export)
from torchvision.models.resnet import Bottleneck, ResNet

RESNET50_CUTS = ["stem", "layer1", "layer2", "layer3", "layer4", "pool"]
RESNET20_CUTS = ["stem", "layer1", "layer2", "layer3", "pool"]


# --------------------------------------------------------------------------- ResNet-50


class ResNetWidth(ResNet):
    """torchvision ResNet with a configurable base width (64 in torchvision).

    Reuses torchvision's Bottleneck, `_make_layer` and `_forward_impl`, so the module tree
    (and hence the state_dict keys) is identical to torchvision's; only the channel counts
    are scaled: stem `width`, planes width*[1,2,4,8], stage outputs width*[4,8,16,32].
    """

    def __init__(self, block, layers, width=64, num_classes=1000):
        nn.Module.__init__(self)
        norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck inner width = planes * base_width/64 = planes
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        # Same init as torchvision.models.resnet.ResNet.__init__.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def resnet50_width(width=64, num_classes=1000):
    return ResNetWidth(Bottleneck, [3, 4, 6, 3], width=width, num_classes=num_classes)


def check_resnet50_keys():
    """Assert that width=64 reproduces torchvision.models.resnet50()'s keys and shapes."""
    import torchvision

    ours = resnet50_width(64, 1000).state_dict()
    ref = torchvision.models.resnet50().state_dict()
    assert list(ours.keys()) == list(ref.keys()), "state_dict keys differ from torchvision"
    for k in ref:
        assert ours[k].shape == ref[k].shape, f"{k}: {ours[k].shape} != {ref[k].shape}"
        assert ours[k].dtype == ref[k].dtype, f"{k}: {ours[k].dtype} != {ref[k].dtype}"


# --------------------------------------------------------------------------- ResNet-20


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class CifarBasicBlock(nn.Module):
    """BasicBlock of akamaster/pytorch_resnet_cifar10 with option-A shortcut."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # Option A: subsample by 2 spatially, zero-pad planes//4 channels each side.
            self.shortcut = LambdaLayer(
                lambda x: F.pad(
                    x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0
                )
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNet20(nn.Module):
    def __init__(self, num_blocks=(3, 3, 3), num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], 1)
        self.layer2 = self._make_layer(32, num_blocks[1], 2)
        self.layer3 = self._make_layer(64, num_blocks[2], 2)
        self.linear = nn.Linear(64, num_classes)
        # Convs: Kaiming-normal fan_out as torchvision; BN 1/0; Linear: PyTorch default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        return forward_with_cuts(self, x)[0]


def resnet20(num_classes=10):
    return ResNet20((3, 3, 3), num_classes=num_classes)


# --------------------------------------------------------------------------- helpers


@torch.no_grad()
def randomize_bn(model, last_gamma_scale=1.0):
    """Random BN stats/affine: running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 1.5),
    weight ~ U(0.5, 1.5), bias ~ N(0, 0.1^2). The weight of the last BN of every residual
    block (bn3 of Bottleneck, bn2 of BasicBlock) is additionally multiplied by
    `last_gamma_scale` to keep the residual stream O(1)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
    for m in model.modules():
        if isinstance(m, Bottleneck):
            m.bn3.weight.mul_(last_gamma_scale)
        elif isinstance(m, (CifarBasicBlock, TVBasicBlock)):
            m.bn2.weight.mul_(last_gamma_scale)
    return model


def forward_with_cuts(model, x):
    """Returns (logits, {cut: activation}) for ResNetWidth/torchvision ResNet or ResNet20.

    ResNet-50 cuts: stem (after max-pool), layer1..layer4 (stage outputs), pool ([N, C]).
    ResNet-20 cuts: stem (after conv1+bn1+relu), layer1..layer3, pool ([N, C]).
    """
    cuts = {}
    if isinstance(model, ResNet20):
        x = F.relu(model.bn1(model.conv1(x)))
        cuts["stem"] = x
        for name in ("layer1", "layer2", "layer3"):
            x = getattr(model, name)(x)
            cuts[name] = x
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        cuts["pool"] = x
        return model.linear(x), cuts
    if isinstance(model, ResNet):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        cuts["stem"] = x
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(model, name)(x)
            cuts[name] = x
        x = torch.flatten(model.avgpool(x), 1)
        cuts["pool"] = x
        return model.fc(x), cuts
    raise TypeError(f"unsupported model {type(model).__name__}")


TORCHVISION_ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_ARCHS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def is_cifar(arch):
    return arch in CIFAR_ARCHS


def cifar_resnet(arch, num_classes=10):
    """The CIFAR ResNet of depth 6n + 2 (He et al. 2016 §4.2), n blocks per stage."""
    n = (int(arch[len("resnet"):]) - 2) // 6
    return ResNet20((n, n, n), num_classes=num_classes)


def cuts_for(arch):
    return RESNET20_CUTS if is_cifar(arch) else RESNET50_CUTS
