"""How a data-parallel run splits its work across ranks. Without a process group every helper leaves a run as it
always was; core.tools.distributed starts the group under torchrun.

Every rank runs the same jobs with the same seed, so the same pool, and takes rank 0's selection (`main_value`:
rounding on different GPUs must never make the pools differ). Only the task model's training is split: the
batches come in the same shuffled order on every rank, each rank takes its rows of every global batch of
train.batch_size (`rank_rows`) and DistributedDataParallel averages the gradients, so a step is the
single-process step up to rounding and BatchNorm's batch statistics (per rank unless SyncBatchNorm, see `wrap`).
Test and validation images are shared out and their confusion matrices summed. Rank 0 alone writes files
(`is_main`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """The rank that writes files (results, pools, models, config, report) and holds the folder lock."""
    return rank() == 0


# ---------------------------------------------------------------- splitting the work

def rank_rows(count: int) -> slice:
    """This rank's rows of a global batch of `count`: contiguous near-equal parts, as `tensor_split` cuts them.
    A batch too small for two rows per rank is taken whole by every rank: BatchNorm needs two per channel."""
    world, me = world_size(), rank()
    if count < 2 * world:
        return slice(0, count)
    base, extra = divmod(count, world)
    first = me * base + min(me, extra)
    return slice(first, first + base + (me < extra))


def loss_weight(count: int) -> float:
    """Factor of this rank's mean loss over its rows so that DDP's average of the ranks' gradients is the
    gradient of the mean over the global batch of `count` (also when its rows are split unevenly)."""
    part = rank_rows(count)
    local = part.stop - part.start
    return 1.0 if local == count else local * world_size() / count


def share(indices: np.ndarray) -> np.ndarray:
    """This rank's part of `indices`, for work whose results add up (confusion matrices)."""
    world = world_size()
    return indices if world == 1 else np.array_split(np.asarray(indices), world)[rank()]


# ---------------------------------------------------------------- agreeing

def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def mean_over_ranks(value: torch.Tensor) -> float:
    return float(sum_over_ranks(value.detach().clone())) / world_size()


def all_values(value) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if world_size() == 1:
        return [value]
    found = [None] * world_size()
    dist.all_gather_object(found, value)
    return found


def main_value(value):
    """Rank 0's `value` (any picklable object) on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(parameters) -> None:
    """Average gradients that DDP does not see: those of modules outside the task model (the hooks')."""
    world = world_size()
    if world == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world)


def broadcast_state(*modules: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (BatchNorm statistics differ between ranks otherwise)."""
    if world_size() == 1:
        return
    for module in modules:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


# ---------------------------------------------------------------- the task model

def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` under DistributedDataParallel when launched, else itself. Parameters used outside its forward
    (the hooks' modules) are not DDP's: see `average_gradients`."""
    if world_size() == 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def sync_batchnorm(model: nn.Module):
    """Swap the BatchNorm layers of `model` for SyncBatchNorm ones (sharing their parameters and statistics, so
    nothing is copied back) and return the function that swaps the originals back in. SyncBatchNorm runs on
    GPUs only: on CPU every rank normalises by its own rows' statistics."""
    originals = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                 if isinstance(child, nn.modules.batchnorm._BatchNorm)]
    for parent, name, child in originals:
        setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))

    def restore() -> None:
        for parent, name, child in originals:
            setattr(parent, name, child)

    return restore
