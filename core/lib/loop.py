"""The active-learning loop of one (paper, experiment, method, seed) job, resumable cycle by cycle.

A cycle trains on the labeled set, tests, and (except in the last cycle) selects the next batch. The pool at
the start of cycle c is saved (core.lib.results.RunFolder.pool) before the row of cycle c-1 is appended, so a finished
cycle is never recomputed and an interrupted one is redone from its saved pool. Every random stream is derived
from (seed, cycle[, method]) rather than carried over, which makes a resumed run equal an uninterrupted one;
what a cycle does carry over (the warm-started model, the optimizer's state under train.keep_optimizer) is
read from the files the cycle before wrote, in an uninterrupted run too. Under torchrun every process runs the
job and only rank 0 writes (core.lib.parallel).

`prepare_job` checks a job without writing anything and `run_cycles` runs its missing cycles. Holding the run
folder's lock, checking what the folder already holds and mid-cycle checkpoints are tooling (core.tools.jobs).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.lib import datasets as ds, parallel
from core.lib.config import ExperimentConfig, coerce, cycle_training, run_hash
from core.lib.errors import UserError
from core.lib.evaluation import evaluate
from core.lib.fastpaths import configure
from core.lib.networks import build_network
from core.lib.oracle import make_oracle
from core.lib.pool import Pool, candidate_subset, initial_pool
from core.lib.results import RunFolder, append_jsonl, cycle_row, save_atomic
from core.lib.seeding import float_settings, numpy_rng, seed_everything, stream_key
from core.lib.sources import Augmentation
from core.lib.strategy import CycleContext, make_strategy
from core.lib.trainer import Trainer


@dataclass
class RunSettings:
    data_root: Path
    out: Path
    device: torch.device
    profile: str = "paper"
    progress: bool = True
    on_cycle: Callable[[dict], None] | None = None
    code_version: str = "unknown"                       # the code the rows are made by (core.tools.jobs)
    allow_code_change: bool = False                     # resume rows made by other code (--allow-code-change)


def run_folder(out: Path, config: ExperimentConfig, method: str, seed: int) -> RunFolder:
    return RunFolder.of(out, config.paper, config.experiment, method, seed)


@functools.lru_cache(maxsize=2)
def _loaded(name: str, root: Path, labels: str) -> ds.ImageDataset:
    options = {"labels": labels} if name == "cifar100" else {}
    return ds.load_dataset(name, root, **options)


def prepare_dataset(config: ExperimentConfig, root: Path, seed: int) -> ds.ImageDataset:
    """The dataset as one seed sees it: loaded once per process, then imbalance, split and profile subsets."""
    data = config.data
    dataset = _loaded(data.dataset, Path(root), data.labels)
    if data.imbalance > 1:
        dataset = ds.imbalanced(dataset, data.imbalance)
    if dataset.test is None:
        dataset = ds.seeded_test_split(dataset, seed, data.test_size)
    train = ds.subsample(dataset.train, data.train_subset, f"{dataset.name}/train")
    test = ds.subsample(dataset.test, data.test_subset, f"{dataset.name}/test")
    mean, std = dataset.mean, dataset.std
    if data.normalization == "half":
        mean, std = (0.5,) * len(mean), (0.5,) * len(std)
    elif data.normalization == "cifar10_code":
        mean, std = ds.CIFAR10_CODE_STATS
    elif data.normalization == "none":
        mean, std = (0.0,) * len(mean), (1.0,) * len(std)
    return dataclasses.replace(dataset, train=train, test=test, mean=mean, std=std)


def resolve_count(value: float, total: int) -> int:
    """Protocol sizes below 1 are fractions of the training images (VAAL: 10% initial, 5% budget)."""
    return int(round(value * total)) if value < 1 else int(value)


def check_protocol(config: ExperimentConfig, train_size: int) -> tuple[int, int]:
    protocol = config.protocol
    initial, budget = resolve_count(protocol.initial, train_size), resolve_count(protocol.budget, train_size)
    if initial < 1 or (protocol.cycles > 1 and budget < 1):
        raise UserError(f"protocol.initial={protocol.initial:g} and protocol.budget={protocol.budget:g} give {initial} "
                        f"initial and {budget} new labels per cycle of {train_size} training images; raise them")
    needed = initial + budget * (protocol.cycles - 1) + config.data.validation_size
    if needed > train_size:
        raise UserError(f"the protocol needs {needed} training images (validation {config.data.validation_size}"
                        f" + initial {initial} + {protocol.cycles - 1} x budget {budget}) but only {train_size} "
                        "exist; lower protocol.budget or protocol.cycles")
    if protocol.subset and protocol.subset < budget:
        raise UserError(f"protocol.subset={protocol.subset} is smaller than the budget {budget}; raise it or set 0")
    return initial, budget


def new_model(config: ExperimentConfig, dataset: ds.ImageDataset, seed: int, cycle: int, device,
              member: str = "") -> torch.nn.Module:
    """Model initialisation depends on (seed, cycle) only: every method starts each cycle from the same weights.
    With train.init_seed=seed it depends on the seed only, so each cycle restarts from the first cycle's weights.
    Extra models (ensemble members) add their own tag."""
    streams = (seed, cycle) if config.train.init_seed == "cycle" else (seed,)
    seed_everything("model", *streams, *([member] if member else []))
    return build_network(config.model.arch, dataset.num_classes, dataset.channels, config.model.width,
                         config.model.init, config.model.pretrained).to(device)


def with_method_options(config: ExperimentConfig, method: str) -> ExperimentConfig:
    """A copy whose options for `method` have the types of the method's defaults (`--set` gives strings), so
    that a wrong option name or value is refused before any job runs, and equal options hash equally."""
    strategy_cls = make_strategy(method).__class__
    options = config.method_options.get(method)
    if not options:
        return config
    if not isinstance(options, dict):
        raise UserError(f"method_options.{method} must map option names to values, got {options!r}")
    coerced = {}
    for name, value in options.items():
        if name not in strategy_cls.default_options:
            raise UserError(f"method {method} has no option {name}; its options: "
                            f"{', '.join(strategy_cls.default_options) or 'none'}")
        default = strategy_cls.default_options[name]
        key = f"method_options.{method}.{name}"
        coerced[name] = value if default is None else coerce(key, type(default), value)
        if isinstance(coerced[name], float) and not math.isfinite(coerced[name]):
            raise UserError(f"config value {key}={coerced[name]} must be a finite number")
    config = copy.deepcopy(config)
    config.method_options[method] = coerced
    return config


@dataclass
class JobPlan:
    """Everything one job needs, worked out without writing: the resolved config, the dataset and the
    finished cycles found in its folder."""

    config: ExperimentConfig
    strategy: object
    digest: str
    dataset: ds.ImageDataset
    train_size: int
    budget: int
    folder: RunFolder
    rows: list[dict] = field(default_factory=list)      # finished cycles found in the folder (core.tools.jobs)
    stored_config: dict | None = None

    @property
    def done(self) -> bool:
        return len(self.rows) >= last_cycle(self.config)


def last_cycle(config: ExperimentConfig) -> int:
    """The cycles a job runs now: the protocol's, or its first runtime.stop_after_cycles (whose last cycle still
    selects, so that a later run continues it)."""
    stop = config.runtime.stop_after_cycles
    return min(stop, config.protocol.cycles) if stop else config.protocol.cycles


def prepare_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings) -> JobPlan:
    """Check one job (method and options, network, protocol against the dataset) and raise a UserError before
    anything is written."""
    config = with_method_options(config, method)
    digest = run_hash(config, method)
    strategy = make_strategy(method, config.method_options.get(method))
    dataset = prepare_dataset(config, settings.data_root, seed)
    train_size = len(dataset.train)
    config = strategy.adjust_config(copy.deepcopy(config), train_size)
    _, budget = check_protocol(config, train_size)
    if strategy.task_archs and config.model.arch not in strategy.task_archs:
        raise UserError(f"method {method} works with model.arch {' or '.join(strategy.task_archs)} only, not "
                        f"{config.model.arch}; set --set model.arch={strategy.task_archs[0]}")
    with torch.device("meta"):               # shapes only: catches a bad arch, width or option without the cost
        build_network(config.model.arch, dataset.num_classes, dataset.channels, config.model.width,
                      config.model.init)
        strategy.networks(config, dataset.num_classes)
    folder = run_folder(settings.out, config, method, seed)
    return JobPlan(config, strategy, digest, dataset, train_size, budget, folder)


def first_pool(config: ExperimentConfig, dataset: ds.ImageDataset, seed: int, train_size: int) -> Pool:
    protocol = config.protocol
    return initial_pool(dataset.train.targets, seed, config.data.validation_size,
                        resolve_count(protocol.initial, train_size), protocol.initial_kind, protocol.missing_classes)


# ---------------------------------------------------------------- running a job

def run_cycles(plan: JobPlan, method: str, seed: int, settings: RunSettings,
               before_write: Callable[[], None] = lambda: None, checkpoints=None) -> list[dict]:
    """Run the missing cycles of a planned job, writing each cycle's pool, model and row into its folder.
    `before_write` runs before every write (the tooling checks that it still holds the folder's lock);
    `checkpoints(cycle, labeled, tag)` gives a training run's or a game's mid-cycle checkpoint or None, and
    `checkpoints.discard(cycle)` removes a finished cycle's (core.tools.checkpoint.JobCheckpoints)."""
    config, strategy, dataset, folder, digest = plan.config, plan.strategy, plan.dataset, plan.folder, plan.digest
    rows, train_size, budget = list(plan.rows), plan.train_size, plan.budget
    configure(config.runtime)
    device = settings.device
    oracle = make_oracle(dataset.train.targets, config.protocol.oracle_noise, dataset.superclass_of_class, seed)
    data = config.data
    augmentation = Augmentation(data.hflip, data.crop_padding, data.image_size, data.resize)
    source = dataset.make_source(dataset.train, augmentation, device, data.workers)
    test_source = dataset.make_source(dataset.test, augmentation, device, data.workers)
    writes = parallel.is_main()
    if rows:
        pool = Pool.load(folder.pool(len(rows)))
    else:
        pool = first_pool(config, dataset, seed, train_size)
        if writes:
            pool.save(folder.pool(0))

    def checkpoint(cycle: int, labeled: np.ndarray, tag: str = ""):
        return checkpoints(cycle, labeled, tag) if checkpoints else None

    def trainer(cycle: int) -> Trainer:
        return Trainer(cycle_training(config.train, cycle), device, dataset.num_classes, settings.progress,
                       config.runtime)

    def train_extra_model(cycle: int, tag: str, labeled: np.ndarray | None = None) -> torch.nn.Module:
        """A further task model of this cycle, initialised and shuffled from its own tag's streams."""
        model = new_model(config, dataset, seed, cycle, device, member=tag)
        generator = torch.Generator(device=device)
        generator.manual_seed(stream_key("train", seed, cycle, tag) % 2**63)
        labeled = pool.labeled if labeled is None else labeled
        trainer(cycle).fit(model, source, labeled, oracle.answers, pool.validation, oracle.answers,
                           generator=generator, desc=f"{method} seed {seed} cycle {cycle} {tag}",
                           checkpoint=checkpoint(cycle, labeled, tag))
        return model

    for cycle in range(len(rows), last_cycle(config)):
        ctx = CycleContext(config=config, seed=seed, cycle=cycle, device=device, dataset=dataset, source=source,
                           pool=pool, answers=oracle.answers, trainer=trainer(cycle),
                           rng=numpy_rng("select", seed, method, cycle),
                           options=strategy.options, progress=settings.progress,
                           train_model=functools.partial(train_extra_model, cycle), folder=folder.path,
                           checkpoint=functools.partial(checkpoint, cycle, pool.labeled))
        strategy.diagnostics = {}
        model = strategy.prepare_model(new_model(config, dataset, seed, cycle, device), ctx)
        if not config.train.reinit and cycle > 0:
            model.load_state_dict(torch.load(folder.model(cycle - 1), map_location=device))
        generator = torch.Generator(device=device)
        generator.manual_seed(stream_key("train", seed, cycle) % 2**63)
        carried = torch.load(folder.optimizer(cycle - 1), map_location="cpu") \
            if config.train.keep_optimizer and cycle > 0 else None
        report = ctx.trainer.fit(model, source, pool.labeled, oracle.answers, pool.validation, oracle.answers,
                                 hooks=strategy.train_hooks(model, ctx), generator=generator,
                                 desc=f"{method} seed {seed} cycle {cycle} train",
                                 checkpoint=checkpoint(cycle, pool.labeled),
                                 optimizer_state=carried)
        if not math.isfinite(report.final_loss):
            raise UserError(f"training diverged ({method} seed {seed} cycle {cycle}: loss {report.final_loss}); "
                            f"lower train.lr (now {config.train.lr:g}); finished cycles are kept")
        trained_on = pool.labeled.copy()
        if not config.train.reinit and writes:
            before_write()
            save_atomic(model.state_dict(), folder.model(cycle))
        if config.train.keep_optimizer and writes:
            before_write()
            save_atomic(report.optimizer_state, folder.optimizer(cycle))
        test = evaluate(model, test_source, np.arange(len(dataset.test)), dataset.test.targets,
                        dataset.num_classes, config.train.eval_batch_size, config.train.amp)
        selected, select_seconds, selector_seconds = [], 0.0, 0.0
        if cycle < config.protocol.cycles - 1:
            started = time.perf_counter()
            strategy.prepare_selection(model, ctx)
            selector_seconds = time.perf_counter() - started
            started = time.perf_counter()
            candidates = candidate_subset(pool.unlabeled, config.protocol.subset, seed, cycle)
            selected = np.asarray(strategy.select(model, ctx, candidates, budget), dtype=np.int64)
            selected = parallel.main_value(selected)      # rounding on another GPU must not change the pool
            select_seconds = time.perf_counter() - started
            pool.label(selected, budget)
            if writes:
                before_write()
                pool.save(folder.pool(cycle + 1))
        row = cycle_row(
            paper=config.paper, experiment=config.experiment, dataset=dataset.name, method=method,
            seed=seed, cycle=cycle, profile=settings.profile,
            beyond_paper=method in config.extra_methods or method not in config.methods,
            n_labeled=len(trained_on),
            fraction_labeled=round(len(trained_on) / (config.protocol.fraction_base or train_size), 6),
            train_size=train_size, metric=config.metric, value=round(test["value"], 4),
            per_class=test["per_class"], best_validation=report.best_validation,
            train_steps=report.steps, train_loss=round(report.final_loss, 5),
            train_seconds=round(report.seconds, 3), train_resumed_at_step=report.resumed_at_step,
            select_seconds=round(select_seconds, 3), selector_train_seconds=round(selector_seconds, 3),
            noisy_labels_in_labeled=int(oracle.flipped[trained_on].sum()),
            diagnostics=strategy.diagnostics, method_options=strategy.options,
            selected=np.asarray(selected).tolist(), config_hash=digest, code_version=settings.code_version,
            device=str(device), processes=parallel.world_size(), **float_settings(device))
        if writes:
            before_write()
            append_jsonl(folder.results, row)
        rows.append(row)
        if writes and cycle:
            folder.optimizer(cycle - 1).unlink(missing_ok=True)
        if checkpoints:
            checkpoints.discard(cycle)
        if settings.on_cycle:
            settings.on_cycle(row)
    return rows
