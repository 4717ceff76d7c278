"""segmentation-models-pytorch integration: the DRNs registered as smp encoders (on importing this module), and
any smp model usable as the task model through `model.arch = "smp:<Decoder>:<encoder>"` (e.g. `smp:DeepLabV3:drn_d_22`,
`smp:DeepLabV3Plus:resnet50`).

A DRN encoder returns the input and five stages: stem + level 1 (stride 1), level 2 (2), level 3 (4), level 4
(8) and levels 5-8 (8, dilated). Its output stride is 8 by construction, so it suits decoders that read the
deepest feature at stride 8 (DeepLabV3), not those expecting stride 16 or a stride-32 pyramid (DeepLabV3+,
Unet, FPN); smp's own encoders work with every decoder."""
from __future__ import annotations

import segmentation_models_pytorch as smp
import torch.nn as nn
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin

from core.lib import UserError
from segmentation.drn import CHANNELS, DRN, VARIANTS, SegmentationNetwork, load_backbone_weights


class DRNEncoder(DRN, EncoderMixin):
    def __init__(self, variant: str, out_channels: list[int], depth: int = 5, output_stride: int = 8, **_):
        super().__init__(variant)
        del self.fc, self.avgpool
        self._depth, self._in_channels, self._output_stride = depth, 3, 8
        self._out_channels = out_channels

    def make_dilated(self, output_stride: int) -> None:
        if output_stride != 8:
            raise ValueError(f"DRN encoders have output stride 8 by construction, got {output_stride}")

    def stages(self) -> list[list[nn.Module]]:
        levels = self.levels()
        return [levels[:-7], [self.layer2], [self.layer3], [self.layer4], levels[-4:]]

    def forward(self, x):
        features = [x]
        for stage in self.stages()[:self._depth]:
            for module in stage:
                x = module(x)
            features.append(x)
        return features


def drn_out_channels(variant: str) -> list[int]:
    expansion = 4 if VARIANTS[variant][1] == "bottleneck" else 1
    return [3, CHANNELS[0], CHANNELS[1], CHANNELS[2] * expansion, CHANNELS[3] * expansion, CHANNELS[7]]


def register_drn_encoders() -> None:
    for variant in VARIANTS:
        smp_encoders[variant] = {"encoder": DRNEncoder, "pretrained_settings": {},
                                 "params": {"variant": variant, "out_channels": drn_out_channels(variant)}}


class SmpSegmenter(SegmentationNetwork):
    """An smp model with the task-network interface: `forward_features` -> (logits, pooled decoder features,
    [decoder map]); the segmentation head (`classifier`) is the part MC-Dropout re-runs."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default",
                 pretrained: str = "", variant: str = "DeepLabV3:drn_d_22"):
        super().__init__()
        decoder, _, encoder = variant.partition(":")
        if not hasattr(smp, decoder) or not encoder:
            raise UserError(f"model.arch 'smp:{variant}' must be smp:<Decoder>:<encoder>, e.g. smp:DeepLabV3:drn_d_22")
        if width != 1:
            raise UserError("smp models are built at full width; set model.width=1 or use a drn_* architecture")
        from_file = bool(pretrained) and encoder in VARIANTS
        try:
            model = getattr(smp, decoder)(encoder_name=encoder, encoder_weights=None if from_file else (pretrained or None),
                                          in_channels=in_channels, classes=num_classes)
        except (KeyError, ValueError) as err:
            raise UserError(f"smp cannot build {decoder} with encoder {encoder}: {err}") from None
        if from_file:
            load_backbone_weights(model.encoder, pretrained)
        self.encoder, self.decoder, self.classifier = model.encoder, model.decoder, model.segmentation_head
        self.feature_dim = model.segmentation_head[0].in_channels

    def forward_trunk(self, x):
        return self.decoder(self.encoder(x))

    def forward_head(self, trunk):
        return self.classifier(trunk), trunk.mean((2, 3))



register_drn_encoders()
