"""LADA's policy generator pi_phi (supplement Sec. A.3, Tables 2-3; `lambdanet` in utils_method.py of the
official code at de05441, without its unused 3-way head `fc3_Uni`).

    concat(h1, h2) (2C x S x S) -> conv 5x5 -> 6, pad 2, ReLU, max-pool 2 -> conv 5x5 -> 16, ReLU, max-pool 2
    -> flatten (16 x 6 x 6 = 576 at S = 32, 16 x 5 x 5 = 400 at S = 28) -> FC 120 tanh -> FC 60 tanh
    -> FC 1 sigmoid;  tau = out x sharp

C = 64 at the paper's width (the ResNet-18 stem and layer1 both give 64 x S x S), so the input has 128 channels.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F


@contextlib.contextmanager
def nondeterministic_kernel_allowed():
    """For a kernel whose only nondeterministic part is not used by the call, which PyTorch cannot tell: the
    determinism check is off inside, then restored."""
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class _GridSample(torch.autograd.Function):
    """F.grid_sample (bilinear, zero padding, align_corners=False) of images that need no gradient, computed by
    the same kernels. CUDA's backward adds into the input's gradient with atomics and so refuses to run under
    deterministic algorithms even when that gradient is not asked for; the grid's gradient, the only one
    computed here, comes from one thread per grid point and is deterministic, so the check is lifted for it."""

    @staticmethod
    def forward(ctx, x, grid):
        ctx.save_for_backward(x, grid)
        return torch.grid_sampler_2d(x, grid, 0, 0, False)

    @staticmethod
    def backward(ctx, grad):
        x, grid = ctx.saved_tensors
        with nondeterministic_kernel_allowed():
            _, grad_grid = torch.ops.aten.grid_sampler_2d_backward(grad, x, grid, 0, 0, False, [False, True])
        return None, grad_grid


def grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(x, grid, align_corners=False), deterministic on CUDA when x needs no gradient (images)."""
    if x.requires_grad:
        return F.grid_sample(x, grid, align_corners=False)
    device = x.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):   # autocast: in float32
        x, grid = x.float(), grid.float()
    return _GridSample.apply(x, grid)


def flattened_size(side: int) -> int:
    """16 maps of the side left after pool(2), conv 5x5 without padding, pool(2)."""
    return 16 * ((side // 2 - 4) // 2) ** 2


class SpatialTransformer(nn.Module):
    """The STN augmentation f_aug^STN(x; tau) of supplement Sec. E (Eq. 8-11): a localisation network f_tau
    gives the affine nu, the grid generator f_T and the bilinear sampler f_S warp x. The supplement does not
    give the localisation network; this is the PyTorch STN tutorial's (conv 7x7 -> 8, pool, ReLU, conv 5x5 -> 10,
    pool, ReLU, FC 32, ReLU, FC 6), started at the identity transform."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.localization = nn.Sequential(nn.Conv2d(channels, 8, 7), nn.MaxPool2d(2), nn.ReLU(True),
                                          nn.Conv2d(8, 10, 5), nn.MaxPool2d(2), nn.ReLU(True))
        left = ((side - 6) // 2 - 4) // 2
        self.affine = nn.Sequential(nn.Linear(10 * left * left, 32), nn.ReLU(True), nn.Linear(32, 6))
        nn.init.zeros_(self.affine[2].weight)
        with torch.no_grad():
            self.affine[2].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu = self.affine(torch.flatten(self.localization(x), 1)).view(-1, 2, 3)
        grid = F.affine_grid(nu, list(x.shape), align_corners=False)
        return grid_sample(x, grid)


class STNClassifier(nn.Module):
    """The STN inserted in front of the classifier f_theta (supplement Fig. 5), trained end to end with it."""

    def __init__(self, stn: SpatialTransformer, task: nn.Module):
        super().__init__()
        self.stn, self.task = stn, task

    def forward(self, x):
        return self.task(self.stn(x))

    def forward_features(self, x):
        return self.task.forward_features(self.stn(x))


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


class AdaMixupPolicy(nn.Module):
    """AdaMixup's policy region generator (Guo et al. 2019) as the LADA code's `PolicyGenerator`
    (model_SharedResNet.py): four 3x3 convolutions (32 maps, no padding, pools after the 1st and 3rd),
    FC 512 ReLU, dropout 0.5, FC 100, FC 3, softmax -> (alpha, delta, alpha')."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3), nn.ReLU(True), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3), nn.ReLU(True),
            nn.Conv2d(32, 32, 3), nn.ReLU(True), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3), nn.ReLU(True))
        left = (((side - 2) // 2 - 4) // 2) - 2
        self.head = nn.Sequential(nn.Linear(32 * left * left, 512), nn.ReLU(True), nn.Dropout(0.5),
                                  nn.Linear(512, 100), nn.Linear(100, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(torch.flatten(self.features(x), 1)), dim=1)


class IntrusionDiscriminator(nn.Module):
    """AdaMixup's intrusion discriminator on the classifier's pooled features: FC to the class count, FC to 2."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, num_classes)
        self.fc2 = nn.Linear(num_classes, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(features))
