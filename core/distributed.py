"""Data-parallel training across the processes torchrun starts; without torchrun's environment nothing here
starts a process group and every helper leaves a run as it always was.

Under `torchrun --nproc_per_node N -m core run ...` every process (rank) runs the same jobs with the same seed,
so the same pool, and takes rank 0's selection (broadcast: rounding on different GPUs must never make the pools
differ). Only the task model's training is split: the batches come in the same shuffled order on every rank,
each rank takes its rows of every global batch of train.batch_size (`rows`) and DistributedDataParallel
averages the gradients, so a step is the single-process step up to rounding and BatchNorm's batch statistics
(per rank unless SyncBatchNorm, see `wrap`). Test and validation images are shared out and their confusion
matrices summed. Rank 0 alone holds a job's folder lock and writes files; the others follow its lock.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from core.errors import UserError
from core.locks import FolderLock, LockBusy

WAIT_ROUND_SECONDS = 60.0      # rank 0 waits for a busy lock in rounds, far below the collectives' timeout
TIMEOUT = timedelta(minutes=30)


def launched() -> bool:
    """Started by torchrun (or torch.distributed.run) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and return this rank's device: cuda:LOCAL_RANK
    for a CUDA run; `device` itself when not launched."""
    if not launched():
        return device
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise UserError(f"torchrun started process {local} on this host but PyTorch sees "
                            f"{torch.cuda.device_count()} GPUs; set --nproc_per_node to at most that")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(stop)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """The rank that writes files (results, pools, models, config, report) and holds the folder lock."""
    return rank() == 0


# ---------------------------------------------------------------- splitting the work

def rows(count: int) -> slice:
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
    part = rows(count)
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


# ---------------------------------------------------------------- the folder lock

class RankLock:
    """A job's folder lock when several ranks run it: rank 0 holds the file lock (core.locks) and every rank
    takes its outcome, so that all run, or all skip (LockBusy), the same job; the others never touch the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock = FolderLock(path) if is_main() else None

    def acquire(self, wait: bool = True, on_wait=None) -> None:
        while True:
            owner = None                    # None: acquired; a dict: the busy lock's owner
            if self.lock is not None:
                try:
                    self.lock.acquire(wait=wait, on_wait=on_wait, timeout=WAIT_ROUND_SECONDS if wait else None)
                except LockBusy as busy:
                    owner = busy.owner
            owner = main_value(owner)
            if owner is None:
                return
            if not wait:
                raise LockBusy(self.path, owner)
            on_wait = None                  # said once, in the first round

    def verify(self) -> None:
        if self.lock is not None:
            self.lock.verify()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def folder_lock(path: Path):
    return FolderLock(path) if world_size() == 1 else RankLock(path)
