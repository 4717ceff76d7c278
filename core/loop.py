"""The active-learning loop for one (paper, experiment, method, seed) job, resumable cycle by cycle.

A cycle trains on the labeled set, tests, and (except in the last cycle) selects the next batch. The pool at
the start of cycle c is saved as pool_cycle{c}.npz before the row of cycle c-1 is appended, so a finished
cycle is never recomputed and an interrupted one is redone from its saved pool. Every random stream is derived
from (seed, cycle[, method]) rather than carried over, which makes a resumed run equal an uninterrupted one.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core import datasets as ds
from core.config import ExperimentConfig, run_hash, to_dict
from core.errors import UserError
from core.evaluate import evaluate
from core.networks import build_network
from core.oracle import make_oracle
from core.pool import Pool, candidate_subset, initial_pool
from core.results import RESULTS_FILE, append_jsonl, read_jsonl, write_json
from core.seeding import numpy_rng, seed_everything, set_deterministic, stream_key
from core.sources import Augmentation
from core.strategy import CycleContext, make_strategy
from core.trainer import Trainer


@dataclass
class RunSettings:
    data_root: Path
    out: Path
    device: torch.device
    profile: str = "paper"
    download: bool = False
    progress: bool = True
    on_cycle: Callable[[dict], None] | None = None


def run_folder(out: Path, config: ExperimentConfig, method: str, seed: int) -> Path:
    return Path(out) / config.paper / config.experiment / method / f"seed{seed}"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@functools.lru_cache(maxsize=2)
def _loaded(name: str, root: Path, labels: str, download: bool) -> ds.ImageDataset:
    options = {"labels": labels} if name == "cifar100" else {}
    return ds.load_dataset(name, root, download=download, **options)


def prepare_dataset(config: ExperimentConfig, root: Path, seed: int, download: bool = False) -> ds.ImageDataset:
    """The dataset as one seed sees it: loaded once per process, then imbalance, split and profile subsets."""
    data = config.data
    dataset = _loaded(data.dataset, Path(root), data.labels, download)
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
    needed = initial + budget * (protocol.cycles - 1) + config.data.validation_size
    if needed > train_size:
        raise UserError(f"the protocol needs {needed} training images (validation {config.data.validation_size}"
                        f" + initial {initial} + {protocol.cycles - 1} x budget {budget}) but only {train_size} "
                        "exist; lower protocol.budget or protocol.cycles")
    if protocol.subset and protocol.subset < budget:
        raise UserError(f"protocol.subset={protocol.subset} is smaller than the budget {budget}; raise it or set 0")
    return initial, budget


def _check_config(folder: Path, config: ExperimentConfig, method: str, seed: int) -> str:
    digest = run_hash(config, method)
    stored_file = folder / "config.json"
    if stored_file.exists():
        stored = json.loads(stored_file.read_text())
        if stored.get("config_hash") != digest:
            raise UserError(f"{folder} holds results of a different config (hash {stored.get('config_hash')}, now "
                            f"{digest}); pass another --out, or move that folder aside to start over")
    else:
        write_json(stored_file, {"config_hash": digest, "method": method, "seed": seed, "config": to_dict(config)})
    return digest


def new_model(config: ExperimentConfig, dataset: ds.ImageDataset, seed: int, cycle: int, device,
              member: str = "") -> torch.nn.Module:
    """Model initialisation depends on (seed, cycle) only: every method starts each cycle from the same weights.
    Extra models (ensemble members) add their own tag."""
    seed_everything("model", seed, cycle, *([member] if member else []))
    return build_network(config.model.arch, dataset.num_classes, dataset.channels, config.model.width,
                         config.model.init, config.model.pretrained).to(device)


def run_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings) -> list[dict]:
    folder = run_folder(settings.out, config, method, seed)
    folder.mkdir(parents=True, exist_ok=True)
    digest = _check_config(folder, config, method, seed)
    results_file = folder / RESULTS_FILE
    rows = read_jsonl(results_file)
    if len(rows) >= config.protocol.cycles:
        return rows
    strategy = make_strategy(method, config.method_options.get(method))
    set_deterministic(config.train.deterministic)
    device = settings.device
    dataset = prepare_dataset(config, settings.data_root, seed, settings.download)
    train_size = len(dataset.train)
    config = strategy.adjust_config(copy.deepcopy(config), train_size)
    _, budget = check_protocol(config, train_size)
    oracle = make_oracle(dataset.train.targets, config.protocol.oracle_noise, dataset.superclass_of_class, seed)
    data = config.data
    augmentation = Augmentation(data.hflip, data.crop_padding, data.image_size, data.resize)
    source = dataset.make_source(dataset.train, augmentation, device, data.workers)
    test_source = dataset.make_source(dataset.test, augmentation, device, data.workers)
    trainer = Trainer(config.train, device, dataset.num_classes, settings.progress)
    if rows:
        pool_file = folder / f"pool_cycle{len(rows)}.npz"
        if not pool_file.exists():
            raise UserError(f"{folder} has {len(rows)} finished cycles but no {pool_file.name} to resume from; "
                            "move the folder aside to start that run over")
        pool = Pool.load(pool_file)
    else:
        pool = initial_pool(dataset.train.targets, seed, data.validation_size,
                            resolve_count(config.protocol.initial, train_size), config.protocol.initial_kind,
                            config.protocol.missing_classes)
        pool.save(folder / "pool_cycle0.npz")

    def train_extra_model(cycle: int, tag: str, labeled: np.ndarray | None = None) -> torch.nn.Module:
        """A further task model of this cycle, initialised and shuffled from its own tag's streams."""
        model = new_model(config, dataset, seed, cycle, device, member=tag)
        generator = torch.Generator(device=device)
        generator.manual_seed(stream_key("train", seed, cycle, tag) % 2**63)
        trainer.fit(model, source, pool.labeled if labeled is None else labeled, oracle.answers, pool.validation,
                    oracle.answers, generator=generator, desc=f"{method} seed {seed} cycle {cycle} {tag}")
        return model

    for cycle in range(len(rows), config.protocol.cycles):
        ctx = CycleContext(config=config, seed=seed, cycle=cycle, device=device, dataset=dataset, source=source,
                           pool=pool, answers=oracle.answers, trainer=trainer,
                           rng=numpy_rng("select", seed, method, cycle),
                           options=strategy.options, progress=settings.progress,
                           train_model=functools.partial(train_extra_model, cycle), folder=folder)
        strategy.diagnostics = {}
        model = strategy.prepare_model(new_model(config, dataset, seed, cycle, device), ctx)
        if not config.train.reinit and cycle > 0:
            model.load_state_dict(torch.load(folder / f"model_cycle{cycle - 1}.pt", map_location=device))
        generator = torch.Generator(device=device)
        generator.manual_seed(stream_key("train", seed, cycle) % 2**63)
        report = trainer.fit(model, source, pool.labeled, oracle.answers, pool.validation, oracle.answers,
                             hooks=strategy.train_hooks(model, ctx), generator=generator,
                             desc=f"{method} seed {seed} cycle {cycle} train")
        trained_on = pool.labeled.copy()
        if not config.train.reinit:
            partial = folder / f"model_cycle{cycle}.partial.pt"
            torch.save(model.state_dict(), partial)
            partial.replace(folder / f"model_cycle{cycle}.pt")
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
            select_seconds = time.perf_counter() - started
            pool.label(selected, budget)
            pool.save(folder / f"pool_cycle{cycle + 1}.npz")
        row = {
            "paper": config.paper, "experiment": config.experiment, "dataset": dataset.name, "method": method,
            "seed": seed, "cycle": cycle, "profile": settings.profile,
            "n_labeled": len(trained_on), "fraction_labeled": round(len(trained_on) / (config.protocol.fraction_base or train_size), 6),
            "train_size": train_size, "metric": config.metric, "value": round(test["value"], 4),
            "per_class": test["per_class"], "best_validation": report.best_validation,
            "train_steps": report.steps, "train_loss": round(report.final_loss, 5),
            "train_seconds": round(report.seconds, 3), "select_seconds": round(select_seconds, 3),
            "selector_train_seconds": round(selector_seconds, 3),
            "noisy_labels_in_labeled": int(oracle.flipped[trained_on].sum()),
            "diagnostics": strategy.diagnostics, "method_options": strategy.options, "selected": np.asarray(selected).tolist(),
            "config_hash": digest, "code_version": code_version(), "device": str(device),
        }
        append_jsonl(results_file, row)
        rows.append(row)
        if settings.on_cycle:
            settings.on_cycle(row)
    return rows
