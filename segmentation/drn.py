"""Dilated Residual Networks (Yu, Koltun, Funkhouser, CVPR 2017) and the segmentation model of fyu/drn
(`segment.py: DRNSeg`), written from the paper and REFERENCES 1.5.

A DRN has eight levels. Levels 1-2 keep full resolution (C: one residual block each after a 7x7 stem; D: plain
3x3 convolutions), levels 3-4 halve it (output stride 8), and levels 5-6 replace further striding by dilation
2 and 4. Levels 7-8 remove the gridding artefacts of dilation (dilation 2 then 1; C: residual blocks without the
skip connection, D: plain convolutions). Module names follow fyu/drn so that its ImageNet checkpoints load.

DRNSeg keeps the backbone without pooling and classifier, maps its 8x-downsampled features to the classes with
a 1x1 convolution and up-samples the logits x8 with a fixed bilinear transposed convolution (kernel 16,
stride 8, padding 4, one group per class). The LogSoftmax + NLLLoss of fyu/drn is the cross-entropy on these
logits.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from urllib.error import URLError

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib import UserError, scaled

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
VARIANTS = {   # name: (arch, block, blocks per level) -- DRN paper Table 1 and Fig. 2
    "drn_c_26": ("C", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c_42": ("C", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_22": ("D", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_38": ("D", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_54": ("D", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_105": ("D", "bottleneck", (1, 1, 3, 4, 23, 3, 1, 1)),
}
OUTPUT_STRIDE = 8
# fyu/drn's ImageNet checkpoints. Both of fyu's hosts, this one and the later http://dl.yf.io/drn/, have been
# reported unreachable (fyu/drn#45). The hex in each name is the start of the file's sha256 (PyTorch's model-zoo
# convention, which fyu's `model_zoo.load_url` enforced), so a copy from anywhere can be verified.
PRETRAINED_ROOT = "https://tigress-web.princeton.edu/~fy/drn/models/"
PRETRAINED = {"drn_c_26": "drn_c_26-ddedf421.pth", "drn_c_42": "drn_c_42-9d336e8c.pth",
              "drn_d_22": "drn_d_22-4bd2f8ea.pth", "drn_d_38": "drn_d_38-eebb45f0.pth",
              "drn_d_54": "drn_d_54-0e0534ff.pth", "drn_d_105": "drn_d_105-12b40979.pth"}
WEIGHTS_HELP = ("get the file (e.g. drn_d_22-4bd2f8ea.pth from a copy of fyu/drn's models; see segmentation/README.md) "
                "and pass --pretrained FILE, or --pretrained '' to start from random weights")


def pretrained_url(variant: str) -> str:
    return PRETRAINED_ROOT + PRETRAINED[variant]


def known_sha256_prefix(path: str) -> str | None:
    """The sha256 prefix that one of fyu's file names carries, None for any other name."""
    name = Path(path.rsplit("/", 1)[-1]).name
    return name.rsplit("-", 1)[1].split(".")[0] if name in PRETRAINED.values() else None


def verify_checksum(path: Path) -> None:
    prefix = known_sha256_prefix(str(path))
    if prefix is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise UserError(f"{path} is not fyu's {path.name}: its sha256 does not start with {prefix}; "
                        f"{WEIGHTS_HELP}")


def read_checkpoint(pretrained: str) -> dict:
    """A state dict from a local file or a URL, checked against the sha256 prefix of fyu's file names; the
    "state_dict" entry and DataParallel's "module." prefix are unwrapped."""
    if "://" in pretrained:
        try:
            state = torch.hub.load_state_dict_from_url(pretrained, map_location="cpu", progress=True,
                                                       check_hash=known_sha256_prefix(pretrained) is not None)
        except (URLError, OSError, RuntimeError) as err:
            raise UserError(f"cannot download {pretrained} ({getattr(err, 'reason', err)}); {WEIGHTS_HELP}") from None
    elif Path(pretrained).is_file():
        verify_checksum(Path(pretrained))
        state = torch.load(pretrained, map_location="cpu", weights_only=True)
    else:
        raise UserError(f"model.pretrained={pretrained} is neither a file nor a URL; {WEIGHTS_HELP}")
    state = state.get("state_dict", state)
    return {k.removeprefix("module."): v for k, v in state.items()}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: tuple[int, int] = (1, 1), residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation[0], dilation[0], bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation[1], dilation[1], bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample, self.residual = downsample, residual

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: tuple[int, int] = (1, 1), residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation[1], dilation[1], bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample, self.residual = downsample, residual

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class DRN(nn.Module):
    """The backbone: levels 1-8 at output stride 8; `fc` is the ImageNet classifier (kept so that checkpoints
    load and parameter counts compare with the paper's), unused by DRNSeg."""

    def __init__(self, variant: str = "drn_d_22", in_channels: int = 3, width: float = 1.0,
                 num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise UserError(f"unknown DRN variant '{variant}'; known: {', '.join(VARIANTS)}")
        arch, block_name, layers = VARIANTS[variant]
        block = BLOCKS[block_name]
        channels = [scaled(c, width) for c in CHANNELS]
        self.inplanes = channels[0]
        stem = [nn.Conv2d(in_channels, channels[0], 7, 1, 3, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(True)]
        if arch == "C":
            self.conv1, self.bn1, self.relu = stem
            self.layer1 = self._residual_level(BasicBlock, channels[0], layers[0], 1, 1)
            self.layer2 = self._residual_level(BasicBlock, channels[1], layers[1], 2, 1)
        else:
            self.layer0 = nn.Sequential(*stem)
            self.layer1 = self._conv_level(channels[0], layers[0], 1, 1)
            self.layer2 = self._conv_level(channels[1], layers[1], 2, 1)
        self.layer3 = self._residual_level(block, channels[2], layers[2], 2, 1)
        self.layer4 = self._residual_level(block, channels[3], layers[3], 2, 1)
        self.layer5 = self._residual_level(block, channels[4], layers[4], 1, 2, new_level=False)
        self.layer6 = self._residual_level(block, channels[5], layers[5], 1, 4, new_level=False)
        if arch == "C":
            self.layer7 = self._residual_level(BasicBlock, channels[6], layers[6], 1, 2, False, residual=False)
            self.layer8 = self._residual_level(BasicBlock, channels[7], layers[7], 1, 1, False, residual=False)
        else:
            self.layer7 = self._conv_level(channels[6], layers[6], 1, 2)
            self.layer8 = self._conv_level(channels[7], layers[7], 1, 1)
        self.out_dim = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(self.out_dim, num_classes, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _residual_level(self, block, planes: int, count: int, stride: int, dilation: int, new_level: bool = True,
                        residual: bool = True) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        first = (1, 1) if dilation == 1 else (dilation // 2 if new_level else dilation, dilation)
        blocks = [block(self.inplanes, planes, stride, downsample, first, residual)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, dilation=(dilation, dilation), residual=residual)
                   for _ in range(1, count)]
        return nn.Sequential(*blocks)

    def _conv_level(self, channels: int, count: int, stride: int, dilation: int) -> nn.Sequential:
        modules = []
        for index in range(count):
            modules += [nn.Conv2d(self.inplanes, channels, 3, stride if index == 0 else 1, dilation, dilation,
                                  bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)]
            self.inplanes = channels
        return nn.Sequential(*modules)

    def level_names(self) -> list[str]:
        """The stem (DRN-C: its separate conv1, bn1, relu) and levels 1-8, in order: fyu's DRNSeg `base`."""
        stem = ["layer0"] if hasattr(self, "layer0") else ["conv1", "bn1", "relu"]
        return stem + [f"layer{k}" for k in range(1, 9)]

    def levels(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.level_names()]

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        for level in self.levels():
            x = level(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.fc(self.avgpool(self.forward_map(x))), 1)


def bilinear_upsampling_kernel(channels: int, size: int = 16) -> torch.Tensor:
    """fyu/drn's `fill_up_weights`: one bilinear kernel per channel for a grouped transposed convolution."""
    factor = math.ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    ramp = 1 - (torch.arange(size, dtype=torch.float32) / factor - centre).abs()
    return (ramp[:, None] * ramp[None, :]).expand(channels, 1, size, size).clone()


def backbone_state(backbone: DRN, state: dict) -> dict:
    """The backbone's weights in `state`: an ImageNet DRN's (its classifier `fc` dropped) or those of fyu's trained
    DRNSeg, whose `base.<i>` is level i of `level_names`."""
    names = backbone.level_names()
    renamed = {}
    for key, value in state.items():
        if key.startswith("base."):
            index, rest = key.removeprefix("base.").split(".", 1)
            renamed[f"{names[int(index)]}.{rest}"] = value
        elif not key.startswith(("fc.", "seg.", "up.")):
            renamed[key] = value
    return renamed


def load_backbone_weights(backbone: DRN, pretrained: str) -> dict:
    """Loads a checkpoint's backbone weights (every one must be present) and returns the whole checkpoint."""
    state = read_checkpoint(pretrained)
    missing, unexpected = backbone.load_state_dict(backbone_state(backbone, state), strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(f"{pretrained} does not fit this DRN: missing {missing[:3]}, unexpected {unexpected[:3]}; "
                        "check model.arch and that model.width is 1")
    return state


class SegmentationNetwork(nn.Module):
    """The task-network interface for dense outputs: `forward_trunk` up to the feature map, `forward_head`
    (trunk -> (logits at input resolution, globally pooled features)); MC-Dropout re-runs the head only."""

    def forward_features(self, x):
        trunk = self.forward_trunk(x)
        logits, features = self.forward_head(trunk)
        return logits, features, [trunk]

    def forward(self, x):
        return self.forward_features(x)[0]


class DRNSeg(SegmentationNetwork):
    """fyu/drn's DRNSeg. `forward_features` returns (logits at input resolution, globally pooled backbone
    features for Core-set and Suggestive Annotation, [backbone map]); the trunk/head split puts the 1x1
    classifier and the up-sampling in the head, where MC-Dropout adds its dropout."""

    family = tuple(VARIANTS)

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default",
                 pretrained: str = "", variant: str = "drn_d_22"):
        super().__init__()
        self.variant = variant
        backbone = DRN(variant, in_channels, width)
        state = load_backbone_weights(backbone, pretrained) if pretrained else {}
        self.base = nn.Sequential(*backbone.levels())
        self.classifier = nn.Conv2d(backbone.out_dim, num_classes, 1)
        nn.init.normal_(self.classifier.weight, 0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.classifier.bias)
        self.load_fyu_classifier(state)
        # fyu keeps this fixed kernel as the weight of a frozen `up` layer; here it is rebuilt, not stored
        self.register_buffer("up_kernel", bilinear_upsampling_kernel(num_classes), persistent=False)
        self.feature_dim = backbone.out_dim
        self.input_size = None

    def load_fyu_classifier(self, state: dict) -> None:
        """fyu's trained DRNSeg names the 1x1 classifier `seg`; it is taken when its classes are these."""
        head = {k.removeprefix("seg."): v for k, v in state.items() if k.startswith("seg.")}
        if head and head["weight"].shape == self.classifier.weight.shape:
            self.classifier.load_state_dict(head)

    def upsample(self, logits: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(logits, self.up_kernel.to(logits.dtype), stride=OUTPUT_STRIDE, padding=4,
                                  groups=logits.shape[1])

    def forward_trunk(self, x):
        self.input_size = x.shape[-2:]      # the head crops the x8 up-sampling to it (sides not multiples of 8)
        return self.base(x)

    def forward_head(self, trunk):
        logits = self.upsample(self.classifier(trunk))
        if self.input_size is not None:
            logits = logits[..., :self.input_size[0], :self.input_size[1]]
        return logits, trunk.mean((2, 3))


def drn_seg(variant: str):
    def build(num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default",
              pretrained: str = "") -> DRNSeg:
        return DRNSeg(num_classes, in_channels, width, init, pretrained, variant)

    return build
