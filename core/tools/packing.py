"""Several jobs on one GPU (`--jobs ... --jobs-per-gpu K`): how many, and whether the next one fits.

A 32x32 classification job leaves most of a GPU idle: on one H200 (issue 23), the first cycle of `baselines
ll4al_cifar10` trained 8.8k images/s alone, and three jobs sharing the GPU 20k images/s together, no less than
ten did. Such jobs default to 3 per GPU; segmentation and 224-pixel jobs, whose batches fill a GPU, to one.

Memory: each device has the free memory it reported before the run's first job (torch.cuda.mem_get_info in a
worker on that GPU), and a job starts there only while its estimate fits in what the jobs running there leave
of it; otherwise it waits for one to end. An idle device takes any job, as a run of one job at a time would.
Processes that are not the run's and start later on the GPU are not seen.
"""
from __future__ import annotations

import functools

import torch

from core.lib.datasets import SMALL_IMAGE_DATASETS

SMALL_IMAGE_JOBS_PER_GPU = 3         # issue 23, H200: 3 jobs reached the aggregate 10 jobs did
CONTEXT_BYTES = 512 * 2**20          # a process's CUDA context with cuBLAS/cuDNN workspaces, an allowance
OPTIMIZER_COPIES = 4                 # weights, gradients and up to two optimizer states (Adam) per parameter
ALLOCATOR_SLACK = 1.25               # the caching allocator's rounding and fragmentation, an allowance


def default_jobs_per_gpu(config) -> int:
    return SMALL_IMAGE_JOBS_PER_GPU if config.data.dataset in SMALL_IMAGE_DATASETS else 1


def job_memory(config, method: str) -> int:
    """Estimated peak GPU bytes of one job: context, the images kept on the device (in-memory datasets), the
    task model's and the method's networks with gradients and optimizer states, and the tensors one training
    step of the task model keeps for its backward pass, counted on the meta device."""
    from core.lib.strategy import make_strategy
    from core.tools.plan import data_shape

    data = data_shape(config)
    images = 0
    if config.data.dataset in SMALL_IMAGE_DATASETS:
        images = (data.train + data.test) * data.channels * data.train_hw[0] * data.train_hw[1]
    with torch.device("meta"):           # shapes only
        networks = make_strategy(method, config.method_options.get(method)).networks(config, data.classes)
    parameters = sum(p.numel() * p.element_size() for n in networks.values() for p in n.parameters())
    task_parameters, saved = _task_step_bytes(config.model.arch, config.model.width, data.classes, data.channels,
                                              data.train_hw, config.train.batch_size)
    state = OPTIMIZER_COPIES * (parameters + task_parameters)
    return int(CONTEXT_BYTES + images + ALLOCATOR_SLACK * (state + saved))


@functools.lru_cache(maxsize=32)
def _task_step_bytes(arch: str, width: float, classes: int, channels: int, hw: tuple, batch: int
                     ) -> tuple[int, int]:
    """(parameter bytes, bytes saved for the backward pass of one training forward at `batch`)."""
    from core.lib.networks import build_network

    saved = []

    def count(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.device("meta"):
        network = build_network(arch, classes, channels, width).train()
        with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
            network(torch.empty(batch, channels, *hw))
    return sum(p.numel() * p.element_size() for p in network.parameters()), sum(saved)


def device_free_memory(device: str) -> int | None:
    """Free bytes of this process's GPU; None on the CPU, where jobs share the cores and are not held back."""
    if device != "cuda":
        return None
    return torch.cuda.mem_get_info()[0]


class Packing:
    """Which device takes the next job: at most `per_device` jobs at once on each device and `limit` in all,
    devices tried round robin from the one after the last placement, and a job placed on a busy device only
    when its estimate fits in the device's free memory (None: unbounded) less the estimates running there."""

    def __init__(self, free: list[int | None], per_device: int, limit: int):
        self.free, self.per_device, self.limit = free, per_device, limit
        self.running: list[list[int]] = [[] for _ in free]
        self.next = 0

    def fits(self, device: int, need: int) -> bool:
        jobs = self.running[device]
        if len(jobs) >= self.per_device:
            return False
        return not jobs or self.free[device] is None or sum(jobs) + need <= self.free[device]

    def place(self, need: int) -> int | None:
        """The device the job starts on, or None: it waits for a job to end."""
        if sum(map(len, self.running)) >= self.limit:
            return None
        for step in range(len(self.free)):
            device = (self.next + step) % len(self.free)
            if self.fits(device, need):
                self.running[device].append(need)
                self.next = (device + 1) % len(self.free)
                return device
        return None

    def release(self, device: int, need: int) -> None:
        self.running[device].remove(need)
