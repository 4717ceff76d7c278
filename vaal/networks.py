"""VAAL's beta-VAE (the WAE encoder/decoder of the official code) and its discriminator (REFERENCES 1.1).

32x32 layout (official code): 4 x [Conv k4 s2 p1, BN, ReLU] 3 -> 128 -> 256 -> 512 -> 1024, 32 -> 2 pixels,
flatten 4,096; decoder Linear(d -> 1024*4*4), 3 x [ConvT k4 s2 p1, BN, ReLU] to 128 x 32 x 32, ConvT(128 -> 3, k1).
64x64 layout (V13, for large images resized for the VAE only): the same layers with the WAE's own 64x64 shapes:
flatten 1024*4*4, decoder from 1024*8*8.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.lib import UserError, scaled, without_autocast

LAYOUTS = {32: (2, 4), 64: (4, 8)}     # input size -> (encoder output side, decoder start side)


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 32, in_channels: int = 3, size: int = 32, width: float = 1.0):
        super().__init__()
        if size not in LAYOUTS:
            raise UserError(f"the VAAL VAE has 32x32 and 64x64 layouts, not {size}")
        self.size, self.latent_dim = size, latent_dim
        channels = [scaled(c, width) for c in (128, 256, 512, 1024)]
        encoder, previous = [], in_channels
        for out in channels:
            encoder += [nn.Conv2d(previous, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            previous = out
        encoded_side, self.start_side = LAYOUTS[size]
        flat = channels[-1] * encoded_side * encoded_side
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        decoder = [nn.Linear(latent_dim, channels[-1] * self.start_side ** 2),
                   nn.Unflatten(1, (channels[-1], self.start_side, self.start_side))]
        for index in (2, 1, 0):
            decoder += [nn.ConvTranspose2d(channels[index + 1], channels[index], 4, 2, 1, bias=False),
                        nn.BatchNorm2d(channels[index]), nn.ReLU(True)]
        decoder.append(nn.ConvTranspose2d(channels[0], in_channels, 1))
        self.decoder = nn.Sequential(*decoder)
        # the official weight_init: kaiming_normal for the Conv2d and Linear layers of the two Sequentials;
        # ConvTranspose2d, fc_mu and fc_logvar keep PyTorch's default (its kaiming_init call on a string is a no-op)
        for module in list(self.encoder) + list(self.decoder):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def encode(self, x):
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), z, mu, logvar


class Discriminator(nn.Module):
    """An MLP ending in a sigmoid: `layers` linear layers, 512 wide (5 in the paper, V1; 3 in the code at
    67263f3). Input: the latent mean (or flattened pixels for the D-on-pixels ablation)."""

    def __init__(self, in_features: int, layers: int = 5, hidden: int = 512):
        super().__init__()
        if layers < 2:
            raise UserError(f"method_options.vaal.disc_layers={layers}: the discriminator needs at least 2 layers")
        sizes = [in_features] + [hidden] * (layers - 1)
        blocks = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU(True)]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 1), nn.Sigmoid())
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        """D(x), in float32 inside an autocast region too: its output is BCE's input and the selection's score,
        and a bfloat16 sigmoid rounds to 1 from a logit of about 6 on (core/lib/evaluation.py)."""
        with without_autocast(x.device):
            return self.net(torch.flatten(x, 1).float()).squeeze(1)
