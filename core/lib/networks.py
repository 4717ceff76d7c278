"""Task networks shared by the papers. Each returns logits from `forward` and, from `forward_features`,
(logits, penultimate features, per-block feature maps) for the strategies that need them.

Each also splits into `forward_trunk` (everything before the first dropout-capable layer, deterministic in eval
mode) and `forward_head` (trunk output -> (logits, features)), so MC-Dropout reruns only the head.

`width` scales every channel count (and VGG's 4096-wide head) for the smoke/mini profiles; width 1 is the
paper's network.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib.errors import UserError

VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class TaskNetwork(nn.Module):
    """Default split for networks whose only layer after the pooled features is the linear classifier."""

    def forward(self, x):
        return self.forward_features(x)[0]

    def forward_trunk(self, x):
        return self.forward_features(x)[1]

    def forward_head(self, trunk):
        return self.classifier(trunk), trunk


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class _Replicate(torch.autograd.Function):
    """Each input cell copied to a block; the backward adds a block's cells in row-major order (as PyTorch's CPU
    adaptive-pool backward), not with CUDA's atomics."""

    @staticmethod
    def forward(ctx, x, fh: int, fw: int):
        ctx.factors, (n, c, h, w) = (fh, fw), x.shape
        return x[:, :, :, None, :, None].expand(n, c, h, fh, w, fw).reshape(n, c, h * fh, w * fw)

    @staticmethod
    def backward(ctx, grad):
        fh, fw = ctx.factors
        return sum((grad[:, :, r::fh, c::fw] for r in range(fh) for c in range(fw)),
                   torch.zeros_like(grad[:, :, ::fh, ::fw])), None, None


class ExactAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """AdaptiveAvgPool2d, equal to the bit, deterministic on CUDA where each output cell averages one input cell
    (output sides multiples of the input's: VGG's 7x7 pool of the 1x1 map at 32x32, or the 7x7 map at 224)."""

    def forward(self, x):
        out_h, out_w = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        if x.ndim == 4 and out_h and out_w and out_h % x.shape[-2] == 0 and out_w % x.shape[-1] == 0:
            return _Replicate.apply(x, out_h // x.shape[-2], out_w // x.shape[-1])
        return super().forward(x)


class VGG16BN(TaskNetwork):
    """torchvision's vgg16_bn (config D with BatchNorm): AdaptiveAvgPool(7, 7) and the 4096-wide head are kept
    on 32x32 inputs as in the VAAL code (REFERENCES 1.1), so the 1x1 map is replicated to 7x7."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "xavier",
                 dropout: float = 0.5):
        super().__init__()
        layers, channels = [], in_channels
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = scaled(item, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        hidden = scaled(4096, width)
        self.features = nn.Sequential(*layers)
        self.avgpool = ExactAdaptiveAvgPool2d((7, 7))
        self.head = nn.Sequential(
            nn.Linear(channels * 49, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, num_classes)
        self.feature_dim = hidden
        initialise(self, init)

    def forward_trunk(self, x):
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward_head(self, trunk):
        features = self.head(trunk)
        return self.classifier(features), features

    def forward_features(self, x):
        blocks = [self.features(x)]
        logits, features = self.forward_head(torch.flatten(self.avgpool(blocks[0]), 1))
        return logits, features, blocks


def initialise(model: nn.Module, scheme: str) -> None:
    """'xavier': the VAAL paper (Sec. 4.1); 'torchvision': the official VAAL code's vgg16_bn init."""
    if scheme not in ("xavier", "torchvision", "default"):
        raise UserError(f"model.init='{scheme}' is not one of xavier, torchvision, default")
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(module.weight, 0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(TaskNetwork):
    """The kuangliu CIFAR ResNet-18 used by LL4AL, TA-VAAL and LADA (REFERENCES 1.2): 3x3 stem, no max-pool,
    blocks [2, 2, 2, 2], global average pool, one linear layer. PyTorch's default init, as in those codes."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default"):
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        stages, in_planes = [], planes[0]
        for index, (out, stride) in enumerate(zip(planes, (1, 2, 2, 2))):
            stages.append(nn.Sequential(BasicBlock(in_planes, out, stride), BasicBlock(out, out, 1)))
            in_planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(planes[3], num_classes)
        self.feature_dim = planes[3]
        initialise(self, init)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def kth_featuremap(self, x, k: int):
        """LADA's mixing points (REFERENCES 1.3): k=0 the input, k=1 the stem's output, k=2 layer1's output."""
        if k not in (0, 1, 2):
            raise UserError(f"mixing layer k={k} is not one of 0 (input), 1 (stem), 2 (layer1)")
        if k == 0:
            return x
        out = self.stem(x)
        return self.layer1(out) if k == 2 else out

    def forward_rest(self, hidden, k: int):
        """Logits from `kth_featuremap(x, k)`: the forward pass continued after layer k."""
        if k == 0:
            return self(hidden)
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)[k - 1:]
        for stage in stages:
            hidden = stage(hidden)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(hidden, 1), 1))

    def forward_features(self, x):
        out, blocks = self.stem(x), []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = stage(out)
            blocks.append(out)
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(features), features, blocks


ARCHITECTURES = {"vgg16_bn": VGG16BN, "resnet18_cifar": CifarResNet18}


def register_architecture(name: str, build: Callable[..., nn.Module]) -> None:
    """A network that packages add for model.arch: `build(num_classes, in_channels=, width=, init=)`, plus
    `pretrained=` when it loads weights and `variant=` for a family named `family:variant`."""
    ARCHITECTURES[name] = build


def build_network(arch: str, num_classes: int, in_channels: int = 3, width: float = 1.0,
                  init: str = "default", pretrained: str = "") -> nn.Module:
    """`arch` is a key of ARCHITECTURES (the segmentation package adds DRNs and smp models to it)."""
    if arch not in ARCHITECTURES and ":" in arch and arch.split(":")[0] in ARCHITECTURES:
        family, variant = arch.split(":", 1)
        return ARCHITECTURES[family](num_classes, in_channels=in_channels, width=width, init=init,
                                     pretrained=pretrained, variant=variant)
    if arch not in ARCHITECTURES:
        known = [f"{name}:<Decoder>:<encoder>" if name == "smp" else name for name in ARCHITECTURES]
        raise UserError(f"unknown model.arch '{arch}'; known: {', '.join(known)}")
    if pretrained:
        if "pretrained" not in inspect.signature(ARCHITECTURES[arch]).parameters:
            raise UserError(f"model.pretrained is not supported by {arch}; clear it with --set model.pretrained=")
        return ARCHITECTURES[arch](num_classes, in_channels=in_channels, width=width, init=init, pretrained=pretrained)
    return ARCHITECTURES[arch](num_classes, in_channels=in_channels, width=width, init=init)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
