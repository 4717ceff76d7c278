"""How the task model's training step and inference run, as the `runtime` config section asks: channels-last
memory, torch.compile, and data parallelism under torchrun (core.lib.parallel). None of them changes what a run
computes beyond rounding, which is why they sit outside the run hash. Defaults and why: docs/multi_gpu.md.

`runtime.compile`: `on` compiles with Inductor, `graphs` with mode "reduce-overhead", which on a GPU also
captures the compiled step in CUDA graphs (one launch instead of hundreds of small kernels) and on the CPU
compiles as `on`. It covers the training forward and backward (`TrainingForward`) and the forward passes of
evaluation and scoring (`inference`). Shapes are static (`dynamic=False`): a function is compiled for its full
batch only, and a batch of any other size (an epoch's last, smaller one; a pool smaller than a batch) runs
eagerly, so nothing recompiles per epoch or per cycle: one compilation per function and full batch shape, for
the whole process (the models of later cycles reuse it). Compiled and eager kernels round differently; the
Compile section of docs/running.md says by how much rows differ.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

from core.lib import parallel
from core.lib.config import RuntimeConfig
from core.lib.seeding import set_deterministic

COMPILE_MODES = {"on": "default", "graphs": "reduce-overhead"}      # runtime.compile -> torch.compile mode
_inference_compile = "off"       # runtime.compile of this process's evaluation and scoring (set by `configure`)


def configure(runtime: RuntimeConfig) -> None:
    """Apply the process-wide part of a job's settings before it trains: deterministic kernels (cuDNN's
    benchmark search when off) and the compile setting of its evaluation and scoring."""
    global _inference_compile
    set_deterministic(runtime.deterministic)
    _inference_compile = runtime.compile


def use_channels_last(setting: str, device, model: nn.Module) -> bool:
    """"auto": on for convolutional networks on CUDA, where cuDNN's NHWC kernels feed the tensor cores without
    transposes; off on CPU, whose NHWC weight gradients were 1e-2 off float64 (NCHW: 3e-6; docs/multi_gpu.md)
    and whose convolution backward crashed on channels-last strides (segmentation/data.py)."""
    if setting == "auto":
        return torch.device(device).type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return setting == "on"


def compiled(function: Callable, setting: str) -> Callable:
    """`function` under torch.compile as runtime.compile `setting` asks, for static shapes."""
    return torch.compile(function, mode=COMPILE_MODES[setting], dynamic=False)


class FullBatches:
    """`function(images)`, compiled under `compile` for batches of `full` images and eager for any other size.
    In mode graphs, each call starts a new CUDA-graph step (the last call's outputs are no longer read), and
    with `keep_outputs` the outputs are copied out of the graph's memory, which the next call overwrites
    (inference keeps every batch's scores)."""

    def __init__(self, function: Callable, full: int, compile: str, keep_outputs: bool = False):
        self.eager, self.full, self.keep_outputs = function, full, keep_outputs and compile == "graphs"
        self.compiled = None if compile == "off" else compiled(function, compile)

    def __call__(self, images: torch.Tensor):
        if self.compiled is None or len(images) != self.full:
            return self.eager(images)
        torch.compiler.cudagraph_mark_step_begin()
        outputs = self.compiled(images)
        return tree_map(torch.clone, outputs) if self.keep_outputs else outputs


def inference(function: Callable, batch_size: int) -> Callable:
    """A model's forward (`model`, `model.forward_features`, ...) for batches of `batch_size`, compiled as
    this process's jobs ask (`configure`)."""
    return FullBatches(function, batch_size, _inference_compile, keep_outputs=True)


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
    while training); `finish` undoes what only training needed and leaves every rank with rank 0's weights.
    Compiled (runtime.compile) for this rank's rows of a full batch of `batch_size`."""

    def __init__(self, model: nn.Module, hook_modules: list[nn.Module], features: bool, device,
                 runtime: RuntimeConfig, batch_size: int):
        device = torch.device(device)
        self.model, self.hook_modules = model, list(hook_modules)
        self.channels_last = use_channels_last(runtime.channels_last, device, model)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        several_ranks = parallel.world_size() > 1
        self.restore = parallel.sync_batchnorm(model) if several_ranks and runtime.sync_batchnorm \
            and device.type == "cuda" else None
        rows = parallel.rank_rows(batch_size)
        self.module = FullBatches(parallel.wrap(_Forward(model, features), device), rows.stop - rows.start,
                                  runtime.compile)

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
