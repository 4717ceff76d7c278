"""How the task model's training forward runs, as the `runtime` config section asks: channels-last memory,
torch.compile, and data parallelism under torchrun (core.lib.parallel). None of them changes what a run computes
beyond rounding, which is why they sit outside the run hash. Defaults and why: docs/multi_gpu.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.lib import parallel
from core.lib.config import RuntimeConfig


def use_channels_last(setting: str, device, model: nn.Module) -> bool:
    """"auto": on for convolutional networks on CUDA, where cuDNN's NHWC kernels feed the tensor cores without
    transposes; off on CPU, whose NHWC weight gradients were 1e-2 off float64 (NCHW: 3e-6; docs/multi_gpu.md)
    and whose convolution backward crashed on channels-last strides (segmentation/data.py)."""
    if setting == "auto":
        return torch.device(device).type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return setting == "on"


class _Forward(nn.Module):
    """The training forward as a module's `forward`, which DDP and torch.compile wrap: `forward_features`
    when a hook wants features and blocks, else the plain forward."""

    def __init__(self, model: nn.Module, features: bool):
        super().__init__()
        self.model, self.features = model, features

    def forward(self, images):
        if self.features:
            return self.model.forward_features(images)
        return self.model(images), None, None


class TrainingForward:
    """(logits, features, blocks) of a training batch. `model` is changed in place (memory format, SyncBatchNorm
    while training); `finish` undoes what only training needed and leaves every rank with rank 0's weights."""

    def __init__(self, model: nn.Module, hook_modules: list[nn.Module], features: bool, device,
                 runtime: RuntimeConfig):
        device = torch.device(device)
        self.model, self.hook_modules = model, list(hook_modules)
        self.channels_last = use_channels_last(runtime.channels_last, device, model)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        several_ranks = parallel.world_size() > 1
        self.restore = parallel.sync_batchnorm(model) if several_ranks and runtime.sync_batchnorm \
            and device.type == "cuda" else None
        module = parallel.wrap(_Forward(model, features), device)
        self.module = torch.compile(module) if runtime.compile else module

    def __call__(self, images: torch.Tensor):
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.module(images)

    def after_backward(self) -> None:
        parallel.average_gradients(p for m in self.hook_modules for p in m.parameters())

    def finish(self) -> None:
        if self.restore is not None:
            self.restore()
        parallel.broadcast_state(self.model, *self.hook_modules)
