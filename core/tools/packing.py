"""Several jobs on one GPU (`--jobs ... --jobs-per-gpu K`): how many, and whether the next one fits.

A 32x32 classification job leaves most of a GPU idle: on one H200 (issue 23), the first cycle of `baselines
ll4al_cifar10` trained 8.8k images/s alone, and three jobs sharing the GPU 20k images/s together, no less than
ten did. Such jobs default to 3 per GPU; segmentation and 224-pixel jobs, whose batches fill a GPU, to one.

Memory: the free memory of every GPU is read once, before the run's first job, by one probe process
(torch.cuda.mem_get_info of each device: a CUDA context on every GPU for a moment, none in the run's own process),
and a job starts on a device only while its estimate (`job_memory`) fits in what the jobs running there leave of
it; otherwise it waits for one to end. An idle device takes any job, as a run of one job at a time would. A worker
hands the memory its job's tensors left in PyTorch's caching allocator back to the GPU before its next job
(core.tools.executors). Processes that are not the run's and start later on the GPU are not seen.
"""
from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.lib.datasets import dataset_spec

SMALL_IMAGE_JOBS_PER_GPU = 3         # issue 23, H200: 3 jobs reached the aggregate 10 jobs did
CONTEXT_BYTES = 512 * 2**20          # a process's CUDA context with cuBLAS/cuDNN workspaces, an allowance
OPTIMIZER_COPIES = 4                 # weights, gradients and up to two optimizer states (Adam) per parameter
ALLOCATOR_SLACK = 1.25               # the caching allocator's rounding and fragmentation, an allowance


def default_jobs_per_gpu(config) -> int:
    return SMALL_IMAGE_JOBS_PER_GPU if dataset_spec(config.data.dataset).small_images else 1


def job_memory(config, method: str) -> int:
    """Estimated peak GPU bytes of one job: CONTEXT_BYTES + the images kept on the device (in-memory datasets)
    + ALLOCATOR_SLACK x (weights + the largest of the phases below, which follow one another in a cycle).

    - weights: the task model's and the method's networks' parameters, OPTIMIZER_COPIES times, all job long; the
      further task models a method trains (`CycleWork.task_trainings`: committee members) once more each, as
      they stay on the device until the selection has scored with them.
    - training: the tensors one training step of the task model keeps for its backward pass at train.batch_size,
      counted with saved_tensors_hooks on the meta device (shapes only); likewise for each network the method
      trains in a cycle (`CycleWork.networks`: VAAL's VAE and discriminator), at the same batch.
    - evaluation: the most bytes alive at once during one no-grad forward of the task model at
      train.eval_batch_size, its input and output included, followed op by op on the meta device
      (`live_peak_bytes`).
    - selection: evaluation's peak, plus `CycleWork.held_outputs` float32 outputs of that forward (classes x
      output pixels x eval batch): the outputs a method holds at once while it scores a batch, as each method
      derives them (MC-Dropout's T softmax passes and their stack: 2T + 2; a committee's votes: 4T).
    Not counted: selection arithmetic outside networks on the whole pool (k-center distances), which runs in
    chunks; the CUDA context's growth with cuDNN's workspaces beyond CONTEXT_BYTES.
    """
    from core.lib.strategy import CycleSizes, make_strategy
    from core.tools.plan import batch, data_shape

    data = data_shape(config)
    images = 0
    if dataset_spec(config.data.dataset).small_images:
        images = (data.train + data.test) * data.channels * data.train_hw[0] * data.train_hw[1]
    strategy = make_strategy(method, config.method_options.get(method))
    work = strategy.cycle_work(config, data.classes, CycleSizes(0, 1, 1, 1, 1, 1))    # a cycle that selects
    task = _task_memory(config.model.arch, config.model.width, data.classes, data.channels, data.train_hw,
                        data.eval_hw, config.train.batch_size, config.train.eval_batch_size)
    with torch.device("meta"):           # shapes only
        networks = strategy.networks(config, data.classes)
        own_training = max([saved_bytes(networks[name], batch(config.train.batch_size, use.inputs))
                            for name, use in work.networks.items() if use.trained], default=0)
    parameters = sum(p.numel() * p.element_size() for n in networks.values() for p in n.parameters())
    weights = OPTIMIZER_COPIES * (parameters + task.parameters) + work.task_trainings * task.parameters
    selection = task.evaluation + work.held_outputs * task.output
    return int(CONTEXT_BYTES + images + ALLOCATOR_SLACK * (weights + max(task.training, own_training,
                                                                         task.evaluation, selection)))


@dataclass(frozen=True)
class TaskMemory:
    """Bytes of the task network (job_memory says how each is counted)."""

    parameters: int
    training: int                        # saved for the backward pass of one training step
    evaluation: int                      # peak alive during one evaluation forward
    output: int                          # one evaluation forward's output (float32)


@functools.lru_cache(maxsize=32)
def _task_memory(arch: str, width: float, classes: int, channels: int, train_hw: tuple, eval_hw: tuple, batch: int,
                 eval_batch: int) -> TaskMemory:
    from core.lib.networks import build_network

    with torch.device("meta"):
        network = build_network(arch, classes, channels, width)
        training = saved_bytes(network, [torch.empty(batch, channels, *train_hw)])
        network.eval()
        with torch.no_grad(), LivePeak() as live:
            output = network(torch.empty(eval_batch, channels, *eval_hw))
        output = output[0] if isinstance(output, (tuple, list)) else output
    return TaskMemory(sum(p.numel() * p.element_size() for p in network.parameters()), training, live.peak,
                      output.numel() * 4)


def saved_bytes(network: torch.nn.Module, inputs: list) -> int:
    """Bytes the autograd graph of one training forward of `network` over `inputs` keeps for the backward."""
    saved = []

    def count(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    network.train()
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        network(*inputs)
    return sum(saved)


class LivePeak(TorchDispatchMode):
    """The most bytes of tensors alive at once among those the ops inside create (views and in-place results
    share their input's memory and are not counted), each counted until its Python object is freed."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        returns = func._schema.returns
        fresh = [r.alias_info is None for r in returns] if len(returns) == len(outputs) else \
            [returns[0].alias_info is None] * len(outputs)          # one list-typed return (split, unbind)
        for tensor, new in zip(outputs, fresh):
            if new and isinstance(tensor, torch.Tensor):
                size = tensor.numel() * tensor.element_size()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, size)
        return out

    def _free(self, size: int) -> None:
        self.live -= size


def free_memory_of_every_gpu(context) -> list[int]:
    """Free bytes of each visible GPU, in CUDA_VISIBLE_DEVICES order, read by one probe process of `context` (a
    multiprocessing context) that ends with it."""
    from concurrent.futures import ProcessPoolExecutor

    from core.tools.processes import exit_with_parent

    with ProcessPoolExecutor(1, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)) as probe:
        return probe.submit(gpu_free_memory).result()


def gpu_free_memory() -> list[int]:
    """Free bytes of each GPU this process sees."""
    return [torch.cuda.mem_get_info(gpu)[0] for gpu in range(torch.cuda.device_count())]


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
