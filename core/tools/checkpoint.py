"""Mid-cycle checkpoints: a long training run that is killed or preempted resumes from its last checkpoint and
ends exactly as an uninterrupted run would.

A checkpoint is written at the end of an epoch over the labeled set, every `runtime.checkpoint_every` epochs
and once more when training ends (so a job preempted during selection does not train again). At an epoch's end
the position in the data order is fully described by the shuffling generator's state, so the checkpoint holds
what `Trainer.fit` (core.lib.trainer) saves: the model, the optimizer, the hooks' modules and state, the step,
the running loss, the best-on-validation state and the shuffling generator; and the global torch/numpy RNG states
with the CUDA generator of each rank's GPU, which `load` restores (nothing between it and the next step draws from
them) onto the GPU the resuming job uses, whatever GPUs its process sees.
Its key names the config, the cycle, the labeled set and the code version (core.tools.jobs.code_version); a
checkpoint with another key is ignored, as it belongs to a run that no longer exists: training restarts, so that
no cycle is trained half by one code and half by another, even where --allow-code-change continues the rows.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.lib import parallel
from core.lib.errors import UserError
from core.lib.results import RunFolder, save_atomic


def checkpoint_key(digest: str, code_version: str, cycle: int, tag: str, labeled: np.ndarray) -> str:
    labeled_hash = hashlib.sha1(np.ascontiguousarray(labeled, dtype=np.int64).tobytes()).hexdigest()
    return f"{digest}/{cycle}/{tag}/{labeled_hash}/{code_version}"


def cuda_index(device: torch.device) -> int:
    return torch.cuda.current_device() if device.index is None else device.index


def job_rng_state(device: torch.device) -> dict:
    """The global torch CPU and numpy generators, which a step resumed mid-cycle continues, and on a CUDA job the
    generator of the GPU each rank trains on, by rank: not by GPU index, which another process may number
    otherwise (a `--jobs` worker or a Slurm task that sees one GPU). Rank 0 alone writes the checkpoint, so
    every rank calls this and sends it its generator."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "device": device.type}
    if device.type == "cuda":
        state["cuda_by_rank"] = dict(enumerate(parallel.all_values(torch.cuda.get_rng_state(cuda_index(device)))))
    return state


def restore_job_rng(state: dict, device: torch.device, path: Path) -> None:
    """Put back what `job_rng_state` saved, this rank's CUDA generator onto the GPU this job trains on."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if device.type != "cuda":
        return
    saved, me = state.get("cuda_by_rank", {}), parallel.rank()
    if me not in saved:
        raise UserError(f"{path} holds no CUDA generator state for rank {me} (it holds {len(saved)}, written on "
                        f"{state.get('device', 'cuda')}); resume with the device and process count that wrote it, "
                        "or delete it to start that training or game over")
    torch.cuda.set_rng_state(saved[me], cuda_index(device))


@dataclass
class TrainCheckpoint:
    """Where and how often one `Trainer.fit` call saves its state. `before_write` runs before each write
    (the job checks that it still holds the run folder's lock). Under torchrun every process resumes from the
    checkpoint and rank 0 alone `saves` it."""

    path: Path
    every: int
    key: str
    before_write: Callable[[], None] = lambda: None
    saves: bool = True
    device: torch.device = torch.device("cpu")       # the device the job trains on, whose generators are saved

    def due(self, epochs_done: int, finished: bool) -> bool:
        return finished or (self.every > 0 and epochs_done % self.every == 0)

    def load(self) -> dict | None:
        """The saved state on the CPU (RNG states must be CPU tensors; load_state_dict moves the rest), with the
        global RNG states restored."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            return None
        restore_job_rng(state["rng"], self.device, self.path)
        return state

    def save(self, state: dict) -> None:
        rng = job_rng_state(self.device)
        if not self.saves:
            return
        self.before_write()
        save_atomic({**state, "rng": rng, "key": self.key}, self.path)


@dataclass
class JobCheckpoints:
    """The checkpoints of one job's folder, as core.lib.loop.run_cycles asks for them: one per training run of a
    cycle (`__call__`), all of a cycle removed once its row is written (`discard`)."""

    folder: RunFolder
    digest: str
    code_version: str
    every: int
    before_write: Callable[[], None]
    saves: bool
    device: torch.device

    def __call__(self, cycle: int, labeled: np.ndarray, tag: str = "") -> TrainCheckpoint | None:
        if not self.every:
            return None
        return TrainCheckpoint(self.folder.checkpoint(cycle, tag), self.every,
                               checkpoint_key(self.digest, self.code_version, cycle, tag, labeled),
                               self.before_write, self.saves, self.device)

    def discard(self, cycle: int) -> None:
        if self.saves:
            for path in self.folder.checkpoints(cycle):
                path.unlink(missing_ok=True)
