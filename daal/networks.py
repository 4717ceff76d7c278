"""DAAL's networks (Sec. 3.1; REFERENCES 1.4 and the DAAL rows of section 2), all MLPs over task-model features.

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

