"""`./reproduce.sh plan`: every (method, seed) job of an experiment with its cycles, task-model training steps,
scored images, FLOPs and GPU-hours, worked out from the config alone, without the data or a GPU.

FLOPs. PyTorch's FlopCounterMode (convolutions and matrix products, 2 FLOPs per multiply-add) counts one
training step of the task network at the config's batch and image size, forward and backward, and one
evaluation forward, on the meta device (shapes only: VGG16 at 224 px costs nothing). In cycle c, with
n_c = initial + c x budget labeled images, a job computes
  - the task model's training: train.iterations x batch images, or epochs x n_c (with drop_last, whole batches
    only), forward and backward, times 1 + the further task models the method trains (committee members, a
    second learner);
  - for each training, the validations (train.select_on_validation: every validate_every units and at the end)
    of the validation images; then the test images; one forward each;
  - what the method declares in `Strategy.cycle_work` (core/lib/strategy.py; written next to each method's code):
    further task-model forwards (scores, features) and forward-and-backward passes (LADA's look-ahead and mixup
    steps), and samples through its own networks (VAAL's VAE and discriminator, DAAL's MLPs, LADA's policy
    generator), counted like the task network at their input shapes. Where a method's docstring says a pass is
    priced as a whole task-model pass, that is an upper bound.
Not counted: BatchNorm, activations, losses and optimizer updates (a few percent); selection arithmetic outside
networks (k-center distances, DPP determinants, top-k); LL4AL's loss-prediction module (two small linear layers
on pooled features); data loading, which can bound an ImageNet job instead.

Sizes. Training and test images from the dataset's DatasetSpec (core.lib.datasets; segmentation adds its own), then
data.imbalance (balanced classes assumed), Caltech's data.test_size split and data.train_subset, as
core.lib.loop.prepare_dataset applies them; the protocol as core.lib.loop.check_protocol resolves it. Image sizes:
CIFAR and SVHN 32 px and Fashion-MNIST 28 px as stored; Caltech and ImageNet crops of data.image_size for
training and testing; segmentation crops of data.image_size for training (whole images when 0) and whole images
(shorter side scaled to data.resize when set) for testing and scoring.

GPU-hours = training FLOPs / the training FLOP rate + evaluation FLOPs / the evaluation FLOP rate, / 3600.
The rates (`Speed`) come from one of:
  - `--measure`: a few real training steps (forward, backward, optimizer step) and evaluation forwards of the
    task network at the config's batch, image size, width and precision on this machine's device, in images/s,
    times the counted FLOPs per image; then REAL_CYCLE_SHARE, as below.
  - the table of measured rates (MEASURED: `bench train` epochs at full width, batch 128, fp32), for the task
    networks measured there, at any batch (a smaller batch likely runs fewer images/s; the table says so):
    images/s x REAL_CYCLE_SHARE x the counted training FLOPs per image. REAL_CYCLE_SHARE is what a real cycle
    reached of the benchmark on the H200: a 1,000-label cycle of ResNet-18 (200 epochs of 8 steps, the last of
    each short, and evaluations) ran at 8.8k images/s where the benchmark epoch ran at 13.1k.
    Evaluation is assumed to run at the same FLOP rate as training. Other GPU kinds scale the H200 rate by the
    ratio of their dense TF32 peaks (bfloat16 peaks with train.amp): a ratio of datasheets, not a measurement.
  - networks the table lacks: at 32 px or less, the share of the TF32 peak that the measured 32 px networks
    reached (small images keep a GPU as busy as the measured networks do, far below its peak; no bfloat16 gain
    assumed); at larger sizes
    UTILISATION (40%) of the dense peak, the share large, well-fed batches reach (not measured; likely
    optimistic).
Peaks are the vendors' datasheet figures without sparsity (GPUS). Several jobs sharing one GPU (`--jobs`) use it
better: on the H200, 3 or 10 ResNet-18 jobs at once reached about 20k images/s in aggregate (AGGREGATE_SPEEDUP).
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.lib import datasets as ds
from core.lib.config import ExperimentConfig, cycle_training
from core.lib.errors import UserError
from core.lib.strategy import CycleSizes, CycleWork
from core.tools.bench import timed

PROBE_BATCH = 8                      # samples per counted pass of a method's network; FLOPs scale linearly
UTILISATION = 0.4                    # share of the dense peak for unmeasured networks on large images


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16: float                      # dense peak TFLOP/s with bfloat16 autocast (train.amp)
    tf32: float                      # dense peak TFLOP/s for float32 training (TF32 convolutions)

    def peak(self, amp: bool) -> float:
        return self.bf16 if amp else self.tf32


GPUS = {   # vendor datasheets, dense (no sparsity)
    "h100": Gpu("NVIDIA H100 SXM5", 989.4, 494.7),
    "h200": Gpu("NVIDIA H200 SXM", 989.4, 494.7),
    "a100": Gpu("NVIDIA A100 SXM4", 312.0, 156.0),
    "l40s": Gpu("NVIDIA L40S", 362.05, 183.0),
    "rtx4090": Gpu("NVIDIA GeForce RTX 4090", 165.2, 82.6),
    "v100": Gpu("NVIDIA V100 SXM2 (no bfloat16 or TF32 units: its FP32 peak)", 15.7, 15.7),
    # 16 cores x 2 FMA units x 16 float32 lanes x 2 FLOPs x 2 GHz; autocast is CUDA-only, so float32 either way
    "cpu": Gpu("a 16-core AVX-512 CPU at 2 GHz (FP32)", 2.048, 2.048),
}


def gpu(name: str) -> Gpu:
    if name not in GPUS:
        raise UserError(f"unknown --gpu '{name}'; known: {', '.join(GPUS)}")
    return GPUS[name]


MEASURED_GPU = "h200"
MEASURED = {   # (arch, image px): training images/s of one job, fp32, batch 128, full width, `bench train` epoch
    ("resnet18_cifar", 32): 13100.0,     # issue 21: H200, PyTorch 2.11, CUDA 13
    ("vgg16_bn", 32): 13100.0,           # issue 21: H200, same run
}
REAL_CYCLE_SHARE = 8.8 / 13.1            # H200: a real 1,000-label ResNet-18 cycle vs the benchmark epoch (issue 21)
AGGREGATE_SPEEDUP = 20.0 / 8.8           # H200: 3 or 10 ResNet-18 jobs sharing the GPU vs one job (issue 21)
MEASURE_STEPS = 5                        # timed steps of --measure, after 2 warm-up steps


@dataclass(frozen=True)
class Speed:
    train: float                     # FLOP/s while training
    infer: float                     # FLOP/s while evaluating and scoring
    kind: str                        # one word or two for the summary's speed column
    basis: str                       # where the rates come from, printed under every table


def table_speed(config: ExperimentConfig, task: TaskFlops, data: DataShape, device_name: str) -> Speed:
    """The rate of the measured-rates table for this task network on `device_name` (see the module docstring)."""
    device, reference = gpu(device_name), GPUS[MEASURED_GPU]
    amp, size = config.train.amp, max(data.train_hw)
    scale = device.peak(amp) / reference.peak(amp)
    scaled = "" if device_name == MEASURED_GPU else f", x {scale:.3g} for {device_name} (ratio of dense peaks)"
    key = (config.model.arch, size)
    if key in MEASURED and config.model.width == 1:
        rate = MEASURED[key] * REAL_CYCLE_SHARE * scale * task.step
        kind = f"measured ({MEASURED_GPU}{', scaled' if scaled else ''})" + ("" if config.train.batch_size == 128 else
                                              f", batch 128 (here {config.train.batch_size})")
        basis = (f"{config.model.arch} at {size} px measured on the H200: {MEASURED[key]:,.0f} images/s in a `bench "
                 f"train` epoch at batch 128, x {REAL_CYCLE_SHARE:.2f} for a real cycle{scaled}"
                 + ("" if config.train.batch_size >= 128 else f"; this batch of {config.train.batch_size} likely "
                    "runs fewer images/s (--measure times it)"))
    elif size <= 32:
        share = measured_share()
        rate, kind = share * device.tf32 * 1e12, "32 px share"     # measured in fp32: no bf16 gain assumed
        basis = (f"{config.model.arch} (width {config.model.width:g}) at {size} px is not measured: priced at the "
                 f"{share:.1%} of the dense peak the measured 32 px networks reach in a real cycle")
    else:
        rate, kind = UTILISATION * device.peak(amp) * 1e12, f"{UTILISATION:.0%} of peak"
        basis = (f"{config.model.arch} at {size} px is not measured: {UTILISATION:.0%} of the dense peak "
                 "(large images; likely optimistic)")
    return Speed(rate, rate, kind, f"{device_name} = {device.name}; {basis}")


@functools.lru_cache(maxsize=1)
def measured_share() -> float:
    """The mean share of the H200's TF32 peak that the measured networks reach in a real cycle."""
    shares = [images * REAL_CYCLE_SHARE * _task_flops(arch, 1.0, 10, 3, (px, px), (px, px), 128, 128).step
              / (GPUS[MEASURED_GPU].tf32 * 1e12) for (arch, px), images in MEASURED.items()]
    return sum(shares) / len(shares)


def measure_speed(config: ExperimentConfig, data: DataShape, task: TaskFlops, device: torch.device,
                  steps: int = MEASURE_STEPS) -> Speed:
    """Times `steps` training steps and evaluation forwards of the task network on `device` (random images of
    the config's shapes: the step's cost does not depend on the pixels), x REAL_CYCLE_SHARE. The step is the
    jobs' own (core.lib.trainer.training_step: the config's determinism, memory format, autocast and
    runtime.compile), the forwards evaluation's (core.lib.fastpaths.inference)."""
    from core.lib.evaluation import autocast
    from core.lib.fastpaths import inference
    from core.lib.networks import build_network
    from core.lib.trainer import training_step

    torch.manual_seed(0)
    network = build_network(config.model.arch, data.classes, data.channels, config.model.width).to(device)
    step = training_step(network, config.train, config.runtime, device)
    forward = inference(network, config.train.eval_batch_size)
    train = torch.randn(config.train.batch_size, data.channels, *data.train_hw, device=device)
    evaluated = torch.randn(config.train.eval_batch_size, data.channels, *data.eval_hw, device=device)
    with torch.no_grad():
        shape = network.eval()(train[:2]).shape[2:]
    targets = torch.randint(data.classes, (len(train), *shape), device=device)

    def train_step():
        step(train, targets)

    def eval_step():
        network.eval()
        with torch.no_grad(), autocast(device, config.train.amp):
            forward(evaluated)

    train_rate = images_per_second(train_step, len(train), steps, device)
    eval_rate = images_per_second(eval_step, len(evaluated), steps, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "this machine's CPU"
    return Speed(train_rate * REAL_CYCLE_SHARE * task.step, eval_rate * REAL_CYCLE_SHARE * task.forward,
                 "measured now", f"measured now on {device} ({name}): {config.model.arch} "
                 f"(width {config.model.width:g}) "
                 f"{train_rate:,.0f} images/s training at batch {config.train.batch_size}, {eval_rate:,.0f} "
                 f"evaluating at batch {config.train.eval_batch_size}, x {REAL_CYCLE_SHARE:.2f} for a real cycle")


def images_per_second(step, images: int, steps: int, device: torch.device) -> float:
    def run_steps():
        for _ in range(steps):
            step()

    for _ in range(2):
        step()
    return steps * images / timed(device, run_steps)[0]


# ---------------------------------------------------------------- the dataset as a job sees it, without data

@dataclass(frozen=True)
class DataShape:
    train: int                       # training images: the pool, with the validation images
    test: int
    classes: int
    channels: int
    train_hw: tuple[int, int]        # network input while training
    eval_hw: tuple[int, int]         # while testing and scoring


def data_shape(config: ExperimentConfig) -> DataShape:
    data = config.data
    spec = ds.dataset_spec(data.dataset)
    train = spec.train_size
    if data.imbalance > 1:           # odd classes keep 1/imbalance of theirs (core.lib.datasets.imbalanced)
        per_class, odd = train / spec.classes, spec.classes // 2
        train = round(train - odd * per_class + odd * round(per_class / data.imbalance))
    train, test = spec.split_sizes(data.test_size, train)
    train = min(train, data.train_subset) if data.train_subset else train
    test = min(test, data.test_subset) if data.test_subset else test
    crop = (data.image_size, data.image_size)
    if spec.small_images:
        train_hw = eval_hw = spec.image_size
    elif spec.image_size:            # segmentation: crops (image_size 0: whole images) to train,
        height, width = spec.image_size                # whole images to test
        scale = data.resize / min(height, width) if data.resize else 1
        eval_hw = (round(height * scale), round(width * scale))
        train_hw = crop if data.image_size else eval_hw
    else:                                        # files of any size: resized, then cropped
        train_hw = eval_hw = crop
    return DataShape(train, test, spec.classes_for(data.labels), spec.channels, train_hw, eval_hw)


# ---------------------------------------------------------------- counted FLOPs

def counted_flops(network: torch.nn.Module, inputs: list[torch.Tensor], train: bool, forward=None) -> int:
    """FLOPs of one pass over `inputs` (a batch) through `forward` (default: the network's), with the backward
    of every output when `train`."""
    network.train(train)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(train):
        outputs = (forward or network)(*inputs)
        if train:
            outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            sum(o.float().sum() for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad).backward()
    return counter.get_total_flops()


def batch(size: int, shapes) -> list[torch.Tensor]:
    return [torch.empty(size, *shape, device="meta") for shape in shapes]


@dataclass(frozen=True)
class TaskFlops:
    """FLOPs per image of the task network."""

    step: float                      # a training step's forward and backward, at the training size
    forward: float                   # an evaluation forward, at the evaluation size
    head: float                      # its part after `forward_trunk`


def task_flops(config: ExperimentConfig, data: DataShape) -> TaskFlops:
    return _task_flops(config.model.arch, config.model.width, data.classes, data.channels, data.train_hw,
                       data.eval_hw, config.train.batch_size, config.train.eval_batch_size)


@functools.lru_cache(maxsize=64)
def _task_flops(arch: str, width: float, classes: int, channels: int, train_hw: tuple, eval_hw: tuple,
                batch_size: int, eval_batch_size: int) -> TaskFlops:
    from core.lib.networks import build_network

    with torch.device("meta"):
        network = build_network(arch, classes, channels, width)
        step = counted_flops(network, batch(batch_size, [(channels, *train_hw)]), train=True)
        images = batch(eval_batch_size, [(channels, *eval_hw)])
        forward = counted_flops(network, images, train=False)
        trunk = counted_flops(network, images, train=False, forward=network.forward_trunk)
    return TaskFlops(step / batch_size, forward / eval_batch_size, (forward - trunk) / eval_batch_size)


COUNTED: dict[tuple, tuple[float, float]] = {}     # networks alike in class, parameter shapes and inputs


def network_flops(network: torch.nn.Module, inputs: tuple) -> tuple[float, float]:
    """FLOPs per sample of a method's network: (forward and backward, forward)."""
    key = (type(network).__qualname__, tuple(tuple(p.shape) for p in network.parameters()), inputs)
    if key not in COUNTED:
        COUNTED[key] = tuple(counted_flops(network, batch(PROBE_BATCH, inputs), train) / PROBE_BATCH
                             for train in (True, False))
    return COUNTED[key]


def method_network_flops(work: CycleWork, networks: dict[str, torch.nn.Module]) -> tuple[float, float]:
    """FLOPs of a method's own networks in one cycle: (training, inference)."""
    trained = inferred = 0.0
    for name, use in work.networks.items():
        step, forward = network_flops(networks[name], use.inputs)
        trained, inferred = trained + use.trained * step, inferred + use.inferred * forward
    return trained, inferred


# ---------------------------------------------------------------- jobs

@dataclass
class Job:
    method: str
    seed: int
    cycles: int
    train_steps: int                 # task-model steps, every training of every cycle
    scored: int                      # candidates the selections scored
    flops: float
    inferred_flops: float = 0.0      # the part of `flops` in forward passes without a backward

    def seconds(self, speed: Speed) -> float:
        return (self.flops - self.inferred_flops) / speed.train + self.inferred_flops / speed.infer


def validations(config: ExperimentConfig, units: int) -> int:
    """Validation passes of one training, as Trainer._due schedules them: every validate_every units (epochs
    or iterations) and after the last."""
    train = config.train
    if not (train.select_on_validation and config.data.validation_size):
        return 0
    every = train.validate_every
    return (units // every if every else 0) + (1 if not every or units % every else 0)


def method_job(config: ExperimentConfig, method: str, data: DataShape) -> Job:
    """The job of one method (every seed's is the same), cycle by cycle as core.lib.loop runs it."""
    from core.lib.loop import check_protocol, with_method_options
    from core.lib.strategy import make_strategy
    from core.lib.trainer import Trainer

    config = with_method_options(config, method)
    strategy = make_strategy(method, config.method_options.get(method))
    config = strategy.adjust_config(copy.deepcopy(config), data.train)
    initial, budget = check_protocol(config, data.train)
    train, protocol = config.train, config.protocol
    task = task_flops(config, data)
    pool = data.train - config.data.validation_size
    with torch.device("meta"):       # networks and their dummy passes: shapes only
        networks = strategy.networks(config, data.classes)
        job = Job(method, 0, protocol.cycles, 0, 0, 0.0)
        for cycle in range(protocol.cycles):
            labeled = initial + cycle * budget
            cycle_train = cycle_training(train, cycle)
            per_epoch = Trainer(cycle_train, "cpu", data.classes, progress=False).steps_per_epoch(labeled)
            steps = train.iterations or train.epochs * per_epoch
            images = steps * train.batch_size if train.iterations or cycle_train.drop_last else train.epochs * labeled
            selects = cycle < protocol.cycles - 1 and not strategy.single_cycle
            unlabeled = pool - labeled
            candidates = (min(protocol.subset, unlabeled) if protocol.subset else unlabeled) if selects else 0
            work = strategy.cycle_work(config, data.classes,
                                       CycleSizes(cycle, labeled, unlabeled, candidates, budget, per_epoch))
            trainings = 1 + work.task_trainings
            trained = trainings * images + work.task_trained
            validated = trainings * validations(config, train.iterations or train.epochs) * config.data.validation_size
            inferred = validated + data.test + work.task_inferred
            job.train_steps += trainings * steps
            job.scored += work.scored
            own_trained, own_inferred = method_network_flops(work, networks)
            inferred_flops = inferred * task.forward + work.task_head_inferred * task.head + own_inferred
            job.flops += trained * task.step + own_trained + inferred_flops
            job.inferred_flops += inferred_flops
    return job


def plan_jobs(config: ExperimentConfig, methods: list[str], seeds: int) -> tuple[DataShape, list[Job]]:
    data = data_shape(config)
    jobs = []
    for method in methods:
        job = method_job(config, method, data)
        jobs += [Job(method, seed, job.cycles, job.train_steps, job.scored, job.flops, job.inferred_flops)
                 for seed in range(seeds)]
    return data, jobs


# ---------------------------------------------------------------- tables

def decimals(values: list[float], significant: int = 2) -> int:
    """Decimals that show the smallest non-zero value with `significant` digits, the same for a whole column so
    that its total is the sum of what is shown."""
    smallest = min((v for v in values if v > 0), default=0)
    return max(0, significant - 1 - math.floor(math.log10(smallest))) if smallest else 0


def shown(values: list[float]) -> tuple[list[str], str]:
    """The values as displayed and their total, the exact sum of the displayed (rounded) values."""
    places = decimals(values)
    rounded = [round(v, places) for v in values]
    return [f"{v:,.{places}f}" for v in rounded], f"{round(sum(rounded), places):,.{places}f}"


def gflop(flops: float) -> str:
    """Three significant digits, without an exponent."""
    return f"{float(f'{flops / 1e9:.3g}'):,g}"


MEASURED_NOW: dict[tuple, Speed] = {}      # --measure: each network, shape, batch and optimizer timed once


def speed_for(config: ExperimentConfig, data: DataShape, device_name: str,
              measure_on: torch.device | None = None) -> Speed:
    task = task_flops(config, data)
    if not measure_on:
        return table_speed(config, task, data, device_name)
    train, model = config.train, config.model
    key = (model.arch, model.width, data, train.batch_size, train.eval_batch_size, train.amp, train.optimizer,
           str(measure_on))
    if key not in MEASURED_NOW:
        MEASURED_NOW[key] = measure_speed(config, data, task, measure_on)
    return MEASURED_NOW[key]


def job_table(config: ExperimentConfig, methods: list[str], seeds: int, device_name: str = MEASURED_GPU,
              measure_on: torch.device | None = None) -> str:
    data, jobs = plan_jobs(config, methods, seeds)
    speed = speed_for(config, data, device_name, measure_on)
    column = str(measure_on) if measure_on else device_name
    flops, flops_total = shown([job.flops / 1e15 for job in jobs])
    hours, hours_total = shown([job.seconds(speed) / 3600 for job in jobs])
    task = task_flops(config, data)
    lines = [f"{config.paper}/{config.experiment} ({config.title}): {len(methods)} method(s) x {seeds} seed(s) = "
             f"{len(jobs)} jobs",
             f"{config.data.dataset}: {data.train:,} training images ({config.data.validation_size:,} of them for "
             f"validation), {data.test:,} test; {config.model.arch} (width {config.model.width:g}) at "
             f"{'x'.join(map(str, data.train_hw))} px: {gflop(task.step)} GFLOP per image trained (batch "
             f"{config.train.batch_size}), {gflop(task.forward)} per image evaluated at "
             f"{'x'.join(map(str, data.eval_hw))} px", "",
             f"| method | seed | cycles | train steps | scored images | PFLOP | GPU-hours ({column}) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for job, job_flops, job_hours in zip(jobs, flops, hours):
        lines.append(f"| {job.method} | {job.seed} | {job.cycles} | {job.train_steps:,} | {job.scored:,} | "
                     f"{job_flops} | {job_hours} |")
    lines += [f"| TOTAL | {len(jobs)} jobs | {sum(j.cycles for j in jobs)} | {sum(j.train_steps for j in jobs):,} | "
              f"{sum(j.scored for j in jobs):,} | {flops_total} | {hours_total} |", "",
              f"Speed ({'--measure' if measure_on else 'measured-rates table, no --measure'}): {speed.basis}: "
              f"{speed.train / 1e12:.3g} TFLOP/s training, {speed.infer / 1e12:.3g} evaluating.",
              f"One job at a time; several jobs sharing one GPU (--jobs) go faster: on the H200, 3 or 10 ResNet-18 "
              f"jobs reached {AGGREGATE_SPEEDUP:.1f}x one job's images/s in aggregate.",
              "FLOPs: counted with torch's FlopCounterMode on one step of each network (convolutions and matrix "
              "products): task training, validation, test, scoring, and each method's own networks and extra "
              "passes as its cycle_work declares them; data loading and selection arithmetic not counted. "
              "Assumptions: core/tools/plan.py."]
    return "\n".join(lines)


def summary(device_name: str = MEASURED_GPU, measure_on: torch.device | None = None) -> str:
    """One row per registered experiment at its paper profile, every implemented method and the paper's seeds
    (the table in docs/planning.md), with the kind of speed each row is priced at."""
    from core.lib import experiments

    experiments.papers()
    rows = []
    for (paper, name), experiment in sorted(experiments.EXPERIMENTS.items()):
        config = experiment.config("paper")
        implemented, pending = experiments.method_status(config)
        data, jobs = plan_jobs(config, implemented, config.seeds)
        speed = speed_for(config, data, device_name, measure_on)
        rows.append((paper, name, len(implemented), len(pending), config.seeds, len(jobs),
                     sum(job.flops for job in jobs) / 1e15, sum(job.seconds(speed) for job in jobs) / 3600,
                     speed.kind))
    flops, flops_total = shown([row[6] for row in rows])
    hours, hours_total = shown([row[7] for row in rows])
    column = str(measure_on) if measure_on else device_name
    lines = [f"| paper | experiment | methods | seeds | jobs | PFLOP | GPU-hours ({column}) | speed |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for (paper, name, methods, pending, seeds, jobs, _, _, kind), row_flops, row_hours in zip(rows, flops, hours):
        lines.append(f"| {paper} | {name} | {methods}{f' (+{pending} pending)' if pending else ''} | {seeds} | "
                     f"{jobs} | {row_flops} | {row_hours} | {kind} |")
    lines.append(f"| TOTAL | {len(rows)} experiments | | | {sum(row[5] for row in rows):,} | {flops_total} | "
                 f"{hours_total} | |")
    return "\n".join(lines)
