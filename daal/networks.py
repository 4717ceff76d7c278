"""DAAL's networks (Sec. 3.1 and 4.1; REFERENCES 1.4 and the DAAL rows of section 2).

WideResNet: the task model of the classification experiments, WRN-28-2 (Sec. 4.1), registered as model.arch
    wrn28_2; its 128-d pooled feature feeds the MLPs below.

ScoreNet (image selector): 5 linear layers, `hidden` wide (512: DAAL rows of REFERENCES section 2), ReLU then
    Dropout(0.4) after each hidden layer, a sigmoid output s in [0, 1]; Xavier init (Sec. 3.1).
uDis, rDis: "the same architecture to ScoreNet without dropout layers"; `logit_and_hidden` also returns the last
    hidden layer (phi, varphi of Eq. 3).
VAE (shared by both branches): a 7-layer MLP encoder (6 hidden layers, then the (mu, logvar) layer) and a 7-layer
    MLP decoder (latent -> 6 hidden layers -> feature), Dropout(0.4) after every hidden layer (Sec. 3.1); the
    latent size 32 is VAAL's CIFAR default. Its interface is VAAL's: `encode` -> (mu, logvar),
    `forward` -> (reconstruction, z, mu, logvar), so VAAL's game runs on it unchanged (VAAL + TF).
The paper names no activation and no init for the VAE and discriminators: ReLU and Xavier for all five.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib import TaskNetwork, UserError, initialise, register_architecture, scaled

SCORENET_LAYERS, VAE_LAYERS, DROPOUT = 5, 7, 0.4     # Sec. 3.1


def hidden_stack(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear -> ReLU (-> Dropout) for each consecutive pair of `sizes`."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)


def xavier(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class ScoreNet(nn.Module):
    def __init__(self, in_features: int, hidden: int = 512, dropout: float = DROPOUT,
                 layers: int = SCORENET_LAYERS):
        super().__init__()
        self.body = hidden_stack([in_features] + [hidden] * (layers - 1), dropout)
        self.out = nn.Linear(hidden, 1)
        xavier(self)

    def logit_and_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.out(hidden).squeeze(1), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit_and_hidden(x)[0])


class Discriminator(ScoreNet):
    """uDis or rDis: ScoreNet without dropout. The GAN losses use its logit (log-sigmoid is stable)."""

    def __init__(self, in_features: int, hidden: int = 512):
        super().__init__(in_features, hidden, dropout=0.0)


class FeatureVAE(nn.Module):
    def __init__(self, in_features: int, latent_dim: int = 32, hidden: int = 512, dropout: float = DROPOUT,
                 layers: int = VAE_LAYERS):
        super().__init__()
        self.encoder = hidden_stack([in_features] + [hidden] * (layers - 1), dropout)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(hidden_stack([latent_dim] + [hidden] * (layers - 1), dropout),
                                     nn.Linear(hidden, in_features))
        xavier(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), z, mu, logvar


def encoder_parameters(vae: FeatureVAE) -> list[nn.Parameter]:
    """w_e of Alg. 1: the encoder stack and the (mu, logvar) layer; the decoder is w_d."""
    return [*vae.encoder.parameters(), *vae.fc_mu.parameters(), *vae.fc_logvar.parameters()]


class WideBlock(nn.Module):
    """Pre-activation wide-ResNet block (Zagoruyko & Komodakis 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip


class WideResNet(TaskNetwork):
    """WRN-depth-k; DAAL uses WRN-28-2 (DAAL Sec. 4.1), whose 128-d pooled feature feeds its adversaries."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, depth: int = 28, k: int = 2,
                 init: str = "default"):
        super().__init__()
        if (depth - 4) % 6:
            raise UserError(f"model.depth={depth} is not 6n+4, as wide ResNets need")
        per_stage = (depth - 4) // 6
        planes = [scaled(c, width) for c in (16, 16 * k, 32 * k, 64 * k)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        stages, in_planes = [], planes[0]
        for out, stride in zip(planes[1:], (1, 2, 2)):
            blocks = [WideBlock(in_planes if i == 0 else out, out, stride if i == 0 else 1) for i in range(per_stage)]
            stages.append(nn.Sequential(*blocks))
            in_planes = out
        self.stages = nn.ModuleList(stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.classifier = nn.Linear(in_planes, num_classes)
        self.feature_dim = in_planes
        initialise(self, init)

    def forward_features(self, x):
        out, blocks = self.conv1(x), []
        for stage in self.stages:
            out = stage(out)
            blocks.append(out)
        features = torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1), 1)
        return self.classifier(features), features, blocks


register_architecture("wrn28_2", WideResNet)
