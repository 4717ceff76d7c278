"""torchrun support: joining the process group torchrun starts, and the folder lock that every rank of a job
follows. Without torchrun's environment nothing here starts a process group. How a run splits its work across
the ranks is core.lib.parallel's (see there); under `torchrun --nproc_per_node N -m core run ...` rank 0 alone
holds a job's folder lock and writes files, and the others follow its lock.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from core.lib.errors import UserError
from core.lib.parallel import is_main, main_value, world_size
from core.tools.locks import FolderLock, LockBusy

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


# ---------------------------------------------------------------- the folder lock

class RankLock:
    """A job's folder lock when several ranks run it: rank 0 holds the file lock (core.tools.locks) and every rank
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
