"""Benchmarks behind `./reproduce.sh bench NAME`, and the registry through which packages add their own.

`bench train`: one epoch of our trainer (uint8 data on the device, batched augmentation) against a bare eager
PyTorch loop over the same images already normalised on the device (the floor of a training step: no data
work at all) and a plain torchvision loop (ImageFolder JPEGs, per-image PIL transforms, DataLoader workers), on
the same network, images and batch size. `bench sampling`: one selection of every method, as VAAL's Table 1,
feature extraction and selection timed apart."""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.lib.config import ExperimentConfig, ModelConfig, TrainConfig
from core.lib.datasets import CIFAR10_STATS, load_dataset, resolve_data_root, subsample
from core.lib.errors import UserError
from core.lib.networks import build_network
from core.lib.plugins import load_plugins, register
from core.lib.sources import Augmentation, TensorSource
from core.lib.trainer import Trainer, make_optimizer


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[argparse.Namespace, torch.device], object]     # (the `bench` arguments, device)
    help: str


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    register(BENCHMARKS, "benchmark", benchmark.name, benchmark, benchmark.run.__module__)
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    load_plugins()
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark '{name}'; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a clock read after it times them (every benchmark's)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_our_trainer(split, device, arch: str, width: float, batch_size: int) -> float:
    source = TensorSource(split, *CIFAR10_STATS, Augmentation(hflip=True, crop_padding=4), device)
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=batch_size, epochs=1)
    model = build_network(arch, 10, width=width).to(device)
    trainer = Trainer(cfg, device, 10, progress=False)
    trainer.fit(model, source, np.arange(min(len(split), 4 * batch_size)), split.targets)   # warm-up
    synchronize(device)
    started = time.perf_counter()
    trainer.fit(model, source, np.arange(len(split)), split.targets)
    synchronize(device)
    return len(split) / (time.perf_counter() - started)


def time_bare_loop(split, device, arch: str, width: float, batch_size: int) -> float:
    """images/s of a plain `for` loop (zero_grad, forward, backward, step) over batches of float images already
    normalised on the device, in a fixed order, without augmentation."""
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in CIFAR10_STATS)
    # NCHW strides, as a plain loop has them (a permuted NHWC array would run channels-last)
    images = torch.from_numpy(split.images).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
    images = (images.to(device).float() / 255 - mean) / std
    targets = torch.as_tensor(split.targets, dtype=torch.long, device=device)
    model = build_network(arch, 10, width=width).to(device)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=0.01))
    model.train()

    def epoch(count: int) -> None:
        for start in range(0, count, batch_size):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images[start:start + batch_size]), targets[start:start + batch_size])
            loss.backward()
            optimizer.step()

    epoch(min(len(split), 4 * batch_size))        # warm-up, as for our trainer
    synchronize(device)
    started = time.perf_counter()
    epoch(len(split))
    synchronize(device)
    return len(split) / (time.perf_counter() - started)


def time_plain_loop(folder: Path, count: int, device, arch: str, width: float, batch_size: int) -> float:
    import torchvision
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(*CIFAR10_STATS)])
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    chosen = np.random.default_rng(0).permutation(len(dataset))[:count].tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, chosen), batch_size=batch_size,
                                         shuffle=True, num_workers=2, pin_memory=device.type == "cuda")
    model = build_network(arch, 10, width=width).to(device)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=0.01))
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return count / (time.perf_counter() - started)


def bench_train(data_root: Path, device: torch.device, images: int, width: float, arch: str,
                batch_size: int = 128) -> dict:
    folder = data_root / "cifar10" / "train"
    if not folder.is_dir():
        raise UserError(f"bench train reads the CIFAR-10 ImageFolder tree {folder}; point --data-root at it")
    split = subsample(load_dataset("cifar10", data_root).train, images, "bench")
    ours = time_our_trainer(split, device, arch, width, batch_size)
    bare = time_bare_loop(split, device, arch, width, batch_size)
    plain = time_plain_loop(folder, len(split), device, arch, width, batch_size)
    print(f"one epoch of {len(split)} CIFAR-10 images, {arch} width {width:g}, batch {batch_size}, {device}:")
    print(f"  our trainer (uint8 on device, batched crop+flip): {ours:8.0f} images/s")
    print(f"  bare eager loop (normalised floats on device):    {bare:8.0f} images/s")
    print(f"  plain DataLoader loop (PIL per image, 2 workers):  {plain:8.0f} images/s")
    print(f"  ours / bare: {ours / bare:.2f}x; ours / plain: {ours / plain:.2f}x")
    return {"ours": ours, "bare": bare, "plain": plain, "ratio": ours / plain}


class TimedSource:
    """A source that adds up the wall time of every pass over its batches (the network forward passes and
    per-batch scoring a method runs inside the loop), so a selection splits into that feature extraction and
    the rest: top-k, k-center, max-cover."""

    def __init__(self, source, device: torch.device):
        self.source, self.device, self.seconds = source, device, 0.0
        self._open, self._since = 0, 0.0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def _timed(self, batches):
        if not self._open:                 # passes that overlap (two streams read in turn) count once
            self._since = time.perf_counter()
        self._open += 1
        try:
            yield from batches
        finally:
            self._open -= 1
            if not self._open:
                synchronize(self.device)
                self.seconds += time.perf_counter() - self._since

    def batches(self, *args, **kwargs):
        return self._timed(self.source.batches(*args, **kwargs))

    def labeled_batches(self, *args, **kwargs):
        return self._timed(self.source.labeled_batches(*args, **kwargs))


def bench_sampling(data_root: Path, device: torch.device, arch: str, width: float, pool_size: int,
                   out: Path, budget: int = 2500, labeled_size: int = 5000, game_iterations: int = 10) -> dict:
    """One selection of every method from the same task model on a CIFAR-10-sized pool (45,000 unlabeled,
    budget 2,500), as VAAL's Table 1. Training of ensemble/committee members is excluded, as in that table:
    their members are fresh networks of the same architecture. A method that needs another task network
    (`task_archs`) selects with that one, trained the same way, and the table says so. Methods that train a
    game before selecting play `game_iterations` (untimed: the selection alone is)."""
    from core.lib.pool import initial_pool
    from core.lib.results import write_atomic, write_json
    from core.lib.strategy import STRATEGIES

    load_plugins()
    dataset = load_dataset("cifar10", data_root)
    train = subsample(dataset.train, pool_size + labeled_size, "bench-sampling")
    source = TensorSource(train, *CIFAR10_STATS, Augmentation(hflip=True, crop_padding=4), device)
    pool = initial_pool(train.targets, 0, 0, labeled_size)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=128, epochs=1, eval_batch_size=1000)
    trainer = Trainer(cfg, device, 10, progress=False)
    models: dict[str, torch.nn.Module] = {}
    times = {}
    for name in sorted(STRATEGIES):
        if STRATEGIES[name].single_cycle:
            continue
        archs = STRATEGIES[name].task_archs
        used = arch if not archs or arch in archs else archs[0]
        if used not in models:
            torch.manual_seed(0)
            models[used] = build_network(used, 10, width=width).to(device)
            trainer.fit(models[used], source, pool.labeled, train.targets)
        times[name] = time_selection(name, models[used], used, width, dataset, source, pool, train.targets, trainer,
                                     budget, device, game_iterations)
        if used != arch:
            times[name]["arch"] = used
        print(f"  {name:<22} {times[name]['total']:8.2f} s", flush=True)
    table = sampling_table(times, len(pool.unlabeled), budget, arch, width, device)
    write_atomic(out / "sampling.md", table)
    write_json(out / "sampling.json", {"seconds": times, "arch": arch, "width": width, "device": str(device),
                                       "unlabeled": len(pool.unlabeled), "budget": budget})
    print(table)
    return times


def time_selection(name: str, model, arch: str, width: float, dataset, source, pool, answers, trainer, budget: int,
                   device: torch.device, game_iterations: int) -> dict:
    """Seconds of one selection by method `name` from a copy of `model`: feature extraction, the rest, total."""
    from core.lib.evaluation import predict
    from core.lib.seeding import numpy_rng
    from core.lib.strategy import STRATEGIES, CycleContext, make_strategy

    members = {}

    def member(tag, labeled=None):
        if tag not in members:
            members[tag] = build_network(arch, 10, width=width).to(device)
        return members[tag]

    cfg = trainer.cfg
    config = ExperimentConfig(train=cfg, model=ModelConfig(arch=arch, width=width))
    plays = "iterations" in STRATEGIES[name].default_options
    strategy = make_strategy(name, {"iterations": game_iterations} if plays else None)
    ctx = CycleContext(config=config, seed=0, cycle=0, device=device, dataset=dataset, source=source, pool=pool,
                       answers=answers, trainer=trainer, rng=numpy_rng("bench", name), options=strategy.options,
                       progress=False, train_model=member)
    task = strategy.prepare_model(copy.deepcopy(model), ctx)
    strategy.train_hooks(task, ctx)
    strategy.prepare_selection(task, ctx)           # VAE/D or committee members: not timed, as Table 1
    predict(task, source, pool.unlabeled[:cfg.eval_batch_size], cfg.eval_batch_size)   # warm-up
    ctx.source = TimedSource(source, device)
    synchronize(device)
    started = time.perf_counter()
    chosen = strategy.select(task, ctx, pool.unlabeled, budget)
    synchronize(device)
    total = time.perf_counter() - started
    assert len(np.unique(chosen)) == budget
    return {"features": ctx.source.seconds, "selection": total - ctx.source.seconds, "total": total}


def sampling_table(times: dict, unlabeled: int, budget: int, arch: str, width: float, device) -> str:
    lines = [f"Sampling time of one selection: {unlabeled:,} unlabeled CIFAR-10 images, budget {budget:,}, "
             f"{arch} width {width:g}, {device} (member training excluded, as VAAL Table 1). Feature extraction: "
             "the passes over the pool (forward passes and per-batch scores); selection: the rest.", "",
             "| Method | Feature extraction (s) | Selection (s) | Sampling time (s) |", "|---|---|---|---|"]
    lines += [f"| {name}{' *' if 'arch' in t else ''} | {t['features']:.2f} | {t['selection']:.2f} | {t['total']:.2f} |"
              for name, t in sorted(times.items(), key=lambda kv: -kv[1]["total"])]
    other = sorted({t["arch"] for t in times.values() if "arch" in t})
    for used in other:
        names = ", ".join(name for name, t in sorted(times.items()) if t.get("arch") == used)
        lines += ["", f"\\* selected from a {used} task model (width {width:g}, trained the same way) instead of "
                      f"{arch}: {names} work with that network only (their `task_archs`)."]
    return "\n".join(lines) + "\n"


def run_train(args: argparse.Namespace, device: torch.device) -> dict:
    return bench_train(resolve_data_root(args.data_root), device, args.images, args.width or 0.125,
                       args.arch or "vgg16_bn")


def run_sampling(args: argparse.Namespace, device: torch.device) -> dict:
    return bench_sampling(resolve_data_root(args.data_root), device, args.arch or "vgg16_bn", args.width or 0.125,
                          args.pool, Path(args.out))


register_benchmark(Benchmark("train", run_train, "one epoch of our trainer vs a plain DataLoader loop"))
register_benchmark(Benchmark("sampling", run_sampling,
                             "one selection of every method, feature extraction and selection apart (VAAL Table 1)"))
