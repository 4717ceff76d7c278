"""TA-VAAL's networks (REFERENCES 1.2; code `models/query_models.py`, `models/resnet.py` at 1161071).

- `TaskAwareVAE`: VAAL's VAE (vaal/networks.py) whose decoder reads z concatenated with the normalised ranking
  r (d + 1 inputs). 32x32 and 64x64 layouts as VAAL's; the 28x28 layout is the code's `VAE(28, 1, 3)` for
  Fashion-MNIST: the last encoder conv and the first decoder ConvT have 3x3 kernels, so 28 -> 14 -> 7 -> 3 -> 2
  and 4 -> 7 -> 14 -> 28.
- The discriminator is VAAL's MLP (vaal/networks.py) on d + 1 inputs: the latent mean and the raw ranking.
- `ResNet18`: torchvision's ImageNet ResNet-18 layout (7x7 stride-2 stem and max-pool before the CIFAR
  ResNet-18's stages) for the 224-pixel Caltech-101 crops, where the CIFAR stem would run the first stage at
  224 x 224 (supplement Sec. 4: "ResNet18 was used for all task learners"; the code has only the CIFAR one).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib import CifarResNet18, initialise, register_architecture, scaled
from vaal.networks import VAE


class TaskAwareVAE(VAE):
    """forward(x, r) -> (reconstruction, z, mu, logvar); the decoder reads [z, r] with r already normalised
    (sigmoid of the ranker's output, or the code's U(0, 1) draw at the game's first iteration).
    `ranked=False` is VAAL's VAE (forward(x)) with the 28x28 layout available, for VAAL in TA-VAAL's protocol."""

    def __init__(self, latent_dim: int = 64, in_channels: int = 3, size: int = 32, width: float = 1.0,
                 ranked: bool = True):
        super().__init__(latent_dim, in_channels, 32 if size == 28 else size, width)
        self.size, self.ranked = size, ranked
        first = self.decoder[0]
        self.decoder[0] = nn.Linear(latent_dim + int(ranked), first.out_features)
        replaced = [self.decoder[0]]
        if size == 28:
            channels = [scaled(c, width) for c in (128, 256, 512, 1024)]
            self.encoder[9] = nn.Conv2d(channels[2], channels[3], 3, 2, 1, bias=False)
            self.decoder[2] = nn.ConvTranspose2d(channels[3], channels[2], 3, 2, 1, bias=False)
            replaced.append(self.encoder[9])
        for module in replaced:            # the official weight_init of VAAL's VAE, as for the layers replaced
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x, r=None):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        decoded = torch.cat([z, r.to(z.dtype)[:, None]], 1) if self.ranked else z
        return self.decoder(decoded), z, mu, logvar


class ResNet18(CifarResNet18):
    """torchvision's resnet18 layout: conv 7x7 stride 2, BN, ReLU, max-pool 3x3 stride 2, then the same four
    stages, global average pool and linear classifier as the CIFAR ResNet-18 (whose blocks it reuses)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default"):
        super().__init__(num_classes, in_channels, width, init)
        self.conv1 = nn.Conv2d(in_channels, scaled(64, width), 7, 2, 3, bias=False)
        initialise(self, init)

    def stem(self, x):
        return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)


register_architecture("resnet18", ResNet18)
