"""Benchmarks behind `./reproduce.sh bench NAME`, and the registry through which packages add their own.

`bench train`: one epoch of our trainer (uint8 data on the device, batched augmentation) against a bare loop of
the jobs' own training step over the same images already normalised on the device (the floor of a training
step: no data work at all), eager and compiled, in two rows: as the paper profile runs and with the fastest
settings the config allows; and a plain torchvision loop (ImageFolder JPEGs, per-image PIL transforms,
DataLoader workers), on the same network, images and batch size. Every timing follows a warm-up at its shapes.
`bench sampling`: one selection of every method (or of `--methods`), as VAAL's Table 1, feature extraction and
selection timed apart, on a pool whose sizes scale from Table 1's."""
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

from core.lib.config import ExperimentConfig, ModelConfig, RuntimeConfig, TrainConfig
from core.lib.datasets import CIFAR10_STATS, load_dataset, resolve_data_root, subsample
from core.lib.errors import UserError
from core.lib.networks import build_network
from core.lib.plugins import load_plugins, register
from core.lib.sources import Augmentation, TensorSource
from core.lib.trainer import Trainer, make_optimizer, training_step


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


def timed(device: torch.device, compute: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of `compute()`, the device's queue drained before and after (every benchmark's clock)."""
    synchronize(device)
    started = time.perf_counter()
    result = compute()
    synchronize(device)
    return time.perf_counter() - started, result


@dataclass(frozen=True)
class StepSettings:
    """One row of `bench train`: the settings a training step is built from (core.lib.trainer.training_step)."""

    name: str
    deterministic: bool                  # deterministic kernels (as every job); off: cuDNN's benchmark search
    amp: bool                            # bfloat16 autocast (CUDA only; the CPU runs float32 either way)

    def configs(self, batch_size: int, compile: str) -> tuple[TrainConfig, RuntimeConfig]:
        train = TrainConfig(optimizer="sgd", lr=0.01, batch_size=batch_size, epochs=1, amp=self.amp)
        return train, RuntimeConfig(compile=compile, deterministic=self.deterministic)   # channels_last auto, as jobs


PAPER = StepSettings("as the paper profile runs: deterministic, float32", deterministic=True, amp=False)
FASTEST = StepSettings("fastest the config allows: cuDNN benchmark, bfloat16 autocast", deterministic=False,
                       amp=True)


def warm_up_count(count: int, batch_size: int) -> int:
    """Images of a warm-up epoch whose batches have every shape of an epoch of `count`: two full ones and the
    same last, smaller one (cuDNN's algorithm search, the allocator and compilation happen per shape)."""
    return min(count, 2 * batch_size + count % batch_size)


def images_per_second(epoch: Callable[[int], object], count: int, batch_size: int, device) -> float:
    """images/s of `epoch(count)` after a warm-up epoch at the same batch shapes."""
    epoch(warm_up_count(count, batch_size))
    return count / timed(device, lambda: epoch(count))[0]


def time_our_trainer(split, device, arch: str, width: float, batch_size: int, settings: StepSettings = PAPER,
                     compile: str = "off") -> float:
    """images/s of one epoch of the trainer (uint8 images on the device, batched crop and flip)."""
    source = TensorSource(split, *CIFAR10_STATS, Augmentation(hflip=True, crop_padding=4), device)
    cfg, runtime = settings.configs(batch_size, compile)
    torch.manual_seed(0)
    model = build_network(arch, 10, width=width).to(device)
    trainer = Trainer(cfg, device, 10, progress=False, runtime=runtime)
    return images_per_second(lambda count: trainer.fit(model, source, np.arange(count), split.targets), len(split),
                             batch_size, device)


def time_bare_loop(split, device, arch: str, width: float, batch_size: int, settings: StepSettings = PAPER,
                   compile: str = "off") -> float:
    """images/s of a plain `for` loop of the jobs' training step (core.lib.trainer.training_step) over batches of
    float images already normalised on the device, in a fixed order, without augmentation."""
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in CIFAR10_STATS)
    # NCHW strides, as a plain loop has them; the step converts them as the trainer does (channels_last auto)
    images = torch.from_numpy(split.images).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
    images = (images.to(device).float() / 255 - mean) / std
    targets = torch.as_tensor(split.targets, dtype=torch.long, device=device)
    torch.manual_seed(0)
    model = build_network(arch, 10, width=width).to(device)
    step = training_step(model, *settings.configs(batch_size, compile), device)

    def epoch(count: int) -> None:
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            step(images[start:stop], targets[start:stop])

    return images_per_second(epoch, len(split), batch_size, device)


def time_plain_loop(folder: Path, count: int, device, arch: str, width: float, batch_size: int) -> float:
    """images/s of the torchvision reference loop: ImageFolder PNGs, per-image PIL crop and flip, 2 DataLoader
    workers (started in every epoch, the warm-up's too), float32, NCHW."""
    import torchvision
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(*CIFAR10_STATS)])
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    chosen = np.random.default_rng(0).permutation(len(dataset))[:count].tolist()
    model = build_network(arch, 10, width=width).to(device)
    optimizer = make_optimizer(model.parameters(), TrainConfig(optimizer="sgd", lr=0.01))
    model.train()

    def epoch(images: int) -> None:
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, chosen[:images]), batch_size=batch_size,
                                             shuffle=True, num_workers=2, pin_memory=device.type == "cuda")
        for images, targets in loader:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return images_per_second(epoch, count, batch_size, device)


def step_rows(split, device, arch: str, width: float, batch_size: int, compile: str) -> list[dict]:
    """The trainer and the bare step, eager and compiled under `compile` (left out when off), as the paper
    profile runs and with the fastest settings: a row each."""
    rows = []
    for settings in (PAPER, FASTEST):
        row = {"arch": arch, "settings": settings.name, "images": len(split)}
        for setting in ("off", compile) if compile != "off" else ("off",):
            row[f"ours_{setting}"] = time_our_trainer(split, device, arch, width, batch_size, settings, setting)
            row[f"bare_{setting}"] = time_bare_loop(split, device, arch, width, batch_size, settings, setting)
        rows.append(row)
    return rows


def step_table(rows: list[dict], compile: str) -> str:
    """The rows of `step_rows` as a markdown table, eager against compiled as ratios."""
    compiled = compile != "off"
    head = "| network | settings | trainer (images/s) | bare step (images/s) | trainer / bare |"
    rule = "|---|---|---:|---:|---:|"
    if compiled:
        head += f" trainer, compile={compile} | bare, compile={compile} | compiled / eager (trainer, bare) |"
        rule += "---:|---:|---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['arch']} | {r['settings']} | {r['ours_off']:,.0f} | {r['bare_off']:,.0f} | "
                f"{r['ours_off'] / r['bare_off']:.2f} |")
        if compiled:
            line += (f" {r[f'ours_{compile}']:,.0f} | {r[f'bare_{compile}']:,.0f} | "
                     f"{r[f'ours_{compile}'] / r['ours_off']:.2f}x, {r[f'bare_{compile}'] / r['bare_off']:.2f}x |")
        lines.append(line)
    return "\n".join(lines)


STEP_TIMED = ("Each figure is one epoch after a warm-up epoch at the same batch shapes (two full batches and the "
              "last, smaller one). Trainer: core.lib.trainer (uint8 images on the device, batched crop and flip, "
              "its bookkeeping); bare step: the same training step (core.lib.trainer.training_step: memory format "
              "channels_last=auto, determinism, autocast and compile as a job builds them) over normalised floats "
              "already on the device, no data work. Compiled: runtime.compile; batches of other than the full "
              "size run eagerly; compilation happens in the warm-up.")


def bench_train(data_root: Path, device: torch.device, images: int, width: float, arch: str,
                batch_size: int = 128, compile: str = "on") -> dict:
    folder = data_root / "cifar10" / "train"
    if not folder.is_dir():
        raise UserError(f"bench train reads the CIFAR-10 ImageFolder tree {folder}; point --data-root at it")
    split = subsample(load_dataset("cifar10", data_root).train, images, "bench")
    rows = step_rows(split, device, arch, width, batch_size, compile)
    plain = time_plain_loop(folder, len(split), device, arch, width, batch_size)
    print(f"one epoch of {len(split)} CIFAR-10 images, {arch} width {width:g}, batch {batch_size}, {device}. "
          f"{STEP_TIMED}" + ("" if device.type == "cuda" else " On the CPU autocast is off in both rows."))
    print(step_table(rows, compile))
    print(f"plain DataLoader loop (torchvision reference: PIL per image, 2 workers, float32, NCHW): {plain:,.0f} "
          f"images/s; our trainer as the paper profile runs / plain: {rows[0]['ours_off'] / plain:.2f}x")
    return {"rows": rows, "plain": plain, "ratio": rows[0]["ours_off"] / plain}


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


# VAAL Table 1's setting: CIFAR-10's 50,000 training images as 5,000 labeled and 45,000 unlabeled, one
# selection of 2,500 (5% of 50,000). A smaller pool scales the labeled set, the budget and every method's
# pool-sized option by pool / 45,000, so each method picks the same share of its candidates as at full size.
TABLE1_POOL, TABLE1_LABELED, TABLE1_BUDGET = 45000, 5000, 2500
CPU_POOL = 360               # a 125th of Table 1 (budget 20): all 45 methods in 54 s on an idle 2-core CPU (at
                             # 900, 12 minutes on a loaded one, LADA's selections the slowest)
MIN_BUDGET = 10              # one pick per CIFAR-10 class; the smallest size every method is tested at
POOL_SIZED_OPTIONS = ("subset",)     # counts of candidates (LL4AL's random subset of 10,000 of 45,000)


@dataclass(frozen=True)
class SamplingSizes:
    """The sizes of one `bench sampling` selection, from the pool size."""
    pool: int
    labeled: int
    budget: int

    @classmethod
    def for_pool(cls, pool: int) -> "SamplingSizes":
        budget = pool * TABLE1_BUDGET // TABLE1_POOL // 2 * 2      # even: LADA's methods query pairs
        if budget < MIN_BUDGET:
            smallest = -(-MIN_BUDGET * TABLE1_POOL // TABLE1_BUDGET)
            raise UserError(f"--pool {pool} is too small: its budget (pool x 2,500 / 45,000, even) is {budget}, "
                            f"under {MIN_BUDGET} picks; use --pool {smallest} or more")
        return cls(pool, pool * TABLE1_LABELED // TABLE1_POOL, budget)

    def options(self, defaults: dict) -> dict:
        """A method's pool-sized options at this pool: the same share of the candidates as Table 1's."""
        return {key: defaults[key] * self.pool // TABLE1_POOL for key in POOL_SIZED_OPTIONS if defaults.get(key)}


def default_pool(device: torch.device) -> int:
    return TABLE1_POOL if torch.device(device).type == "cuda" else CPU_POOL


def selecting_methods() -> list[str]:
    """Every registered method that selects (a single-cycle method such as full_data has no selection)."""
    from core.lib.strategy import STRATEGIES

    load_plugins()
    return sorted(name for name, cls in STRATEGIES.items() if not cls.single_cycle)


def bench_sampling(data_root: Path, device: torch.device, arch: str, width: float, sizes: SamplingSizes,
                   out: Path, methods: list[str] | None = None, game_iterations: int = 10) -> dict:
    """One selection of each method (default: every one that selects) from the same task model on a CIFAR-10
    pool, as VAAL's Table 1 (`sizes`: 45,000 unlabeled, 5,000 labeled, budget 2,500 at full size). Training of
    ensemble/committee members is excluded, as in that table: their members are fresh networks of the same
    architecture. A method that needs another task network (`task_archs`) selects with that one, trained the
    same way, and the table says so. Methods that train a game before selecting play `game_iterations`
    (untimed: the selection alone is). A line is printed as each method starts and as it ends."""
    from core.lib.pool import initial_pool
    from core.lib.results import write_atomic, write_json
    from core.lib.strategy import STRATEGIES

    methods = methods or selecting_methods()
    dataset = load_dataset("cifar10", data_root)
    if sizes.pool + sizes.labeled > len(dataset.train):
        largest = len(dataset.train) * TABLE1_POOL // (TABLE1_POOL + TABLE1_LABELED)
        raise UserError(f"--pool {sizes.pool} is too large: with its {sizes.labeled:,} labeled images it needs "
                        f"{sizes.pool + sizes.labeled:,} CIFAR-10 training images and {data_root} holds "
                        f"{len(dataset.train):,}; use --pool {largest} or less")
    train = subsample(dataset.train, sizes.pool + sizes.labeled, "bench-sampling")
    source = TensorSource(train, *CIFAR10_STATS, Augmentation(hflip=True, crop_padding=4), device)
    pool = initial_pool(train.targets, 0, 0, sizes.labeled)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, batch_size=128, epochs=1, eval_batch_size=1000)
    trainer = Trainer(cfg, device, 10, progress=False)
    models: dict[str, torch.nn.Module] = {}
    times = {}
    print(f"bench sampling: {len(methods)} method(s), {sizes.pool:,} unlabeled, {sizes.labeled:,} labeled, budget "
          f"{sizes.budget:,}, {arch} width {width:g}, {device}", flush=True)
    for number, name in enumerate(methods, 1):
        archs = STRATEGIES[name].task_archs
        used = arch if not archs or arch in archs else archs[0]
        if used not in models:
            print(f"  training the {used} task model on the {sizes.labeled:,} labeled images (1 epoch)", flush=True)
            torch.manual_seed(0)
            models[used] = build_network(used, 10, width=width).to(device)
            trainer.fit(models[used], source, pool.labeled, train.targets)
        print(f"  [{number}/{len(methods)}] {name}: selecting {sizes.budget:,} ...", flush=True)
        times[name] = time_selection(name, models[used], used, width, dataset, source, pool, train.targets, trainer,
                                     sizes, device, game_iterations)
        if used != arch:
            times[name]["arch"] = used
        print(f"  [{number}/{len(methods)}] {name}: {times[name]['total']:.2f} s", flush=True)
    table = sampling_table(times, len(pool.unlabeled), sizes.budget, arch, width, device)
    write_atomic(out / "sampling.md", table)
    write_json(out / "sampling.json", {"seconds": times, "arch": arch, "width": width, "device": str(device),
                                       "unlabeled": len(pool.unlabeled), "labeled": sizes.labeled,
                                       "budget": sizes.budget})
    print(table)
    return times


def time_selection(name: str, model, arch: str, width: float, dataset, source, pool, answers, trainer,
                   sizes: SamplingSizes, device: torch.device, game_iterations: int) -> dict:
    """Seconds of one selection by method `name` from a copy of `model`, its pool-sized options scaled to
    `sizes`: feature extraction, the rest, total."""
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
    defaults = STRATEGIES[name].default_options
    options = {**sizes.options(defaults), **({"iterations": game_iterations} if "iterations" in defaults else {})}
    strategy = make_strategy(name, options or None)
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
    chosen = strategy.select(task, ctx, pool.unlabeled, sizes.budget)
    synchronize(device)
    total = time.perf_counter() - started
    assert len(np.unique(chosen)) == sizes.budget
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
                       args.arch or "vgg16_bn", compile=args.compile)


def run_sampling(args: argparse.Namespace, device: torch.device) -> dict:
    from core.tools.arguments import method_list

    sizes = SamplingSizes.for_pool(default_pool(device) if args.pool is None else args.pool)
    known = selecting_methods()
    methods = method_list(args.methods, known, "bench sampling: unknown or non-selecting", "methods that select") \
        if args.methods else known
    return bench_sampling(resolve_data_root(args.data_root), device, args.arch or "vgg16_bn", args.width or 0.125,
                          sizes, Path(args.out), methods)


register_benchmark(Benchmark("train", run_train, "one epoch of our trainer vs a plain DataLoader loop"))
register_benchmark(Benchmark("sampling", run_sampling,
                             "one selection of every method, feature extraction and selection apart (VAAL Table 1)"))
