"""LADA's policy generator pi_phi (supplement Sec. A.3, Tables 2-3; `lambdanet` in utils_method.py of the
official code at de05441, without its unused 3-way head `fc3_Uni`).

    concat(h1, h2) (2C x S x S) -> conv 5x5 -> 6, pad 2, ReLU, max-pool 2 -> conv 5x5 -> 16, ReLU, max-pool 2
    -> flatten (16 x 6 x 6 = 576 at S = 32, 16 x 5 x 5 = 400 at S = 28) -> FC 120 tanh -> FC 60 tanh
    -> FC 1 sigmoid;  tau = out x sharp

C = 64 at the paper's width (the ResNet-18 stem and layer1 both give 64 x S x S), so the input has 128 channels.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def flattened_size(side: int) -> int:
    """16 maps of the side left after pool(2), conv 5x5 without padding, pool(2)."""
    return 16 * ((side // 2 - 4) // 2) ** 2


class PolicyGenerator(nn.Module):
    def __init__(self, in_channels: int, side: int, sharp: float = 1.0):
        super().__init__()
        self.sharp = sharp
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(flattened_size(side), 120)
        self.fc2 = nn.Linear(120, 60)
        self.fc3 = nn.Linear(60, 1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """tau (B,) of each pair (first[i], second[i]), in (0, sharp)."""
        x = F.max_pool2d(F.relu(self.conv1(torch.cat([first, second], dim=1))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.tanh(self.fc2(torch.tanh(self.fc1(torch.flatten(x, 1)))))
        return torch.sigmoid(self.fc3(x)).squeeze(1) * self.sharp
