"""The active-learning loop for one (paper, experiment, method, seed) job, resumable cycle by cycle.

A job holds its run folder's lock (core.locks) from its first read to its last write, so that two processes
given the same folder never both run a cycle. Before anything is written, `plan_job` checks the whole job and
the folder: the rows must be cycles 0..k-1, each once, complete and made by the same config, and the pool file
of cycle k must continue them; anything else is refused with one line, the folder untouched.

A cycle trains on the labeled set, tests, and (except in the last cycle) selects the next batch. The pool at
the start of cycle c is saved as pool_cycle{c}.npz before the row of cycle c-1 is appended, so a finished
cycle is never recomputed and an interrupted one is redone from its saved pool. Every random stream is derived
from (seed, cycle[, method]) rather than carried over, which makes a resumed run equal an uninterrupted one;
what a cycle does carry over (the warm-started model, the optimizer's state under train.keep_optimizer) is
read from the files the cycle before wrote, in an uninterrupted run too.
Under torchrun every process runs the job, and only rank 0 locks and writes (core.distributed).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core import datasets as ds
from core import distributed
from core.checkpoint import TrainCheckpoint, checkpoint_key, save_atomic
from core.config import ExperimentConfig, coerce, cycle_training, run_hash, to_dict
from core.errors import UserError
from core.evaluate import evaluate
from core.locks import FolderLock
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
    wait: bool = True                                   # False: a job locked by another process raises LockBusy
    on_wait: Callable[[Path, dict], None] | None = None  # called with the folder and its lock's owner, then waits


LOCK_FILE = ".lock"


def checkpoint_name(cycle: int, tag: str = "") -> str:
    """The mid-cycle checkpoint of a cycle's task model, or of a further model trained in it (`tag`)."""
    return f"train_cycle{cycle}_{tag}.ckpt" if tag else f"train_cycle{cycle}.ckpt"


def optimizer_name(cycle: int) -> str:
    """The optimizer's state at the end of a cycle's training, which the next cycle continues
    (train.keep_optimizer); only the last finished cycle's is kept."""
    return f"optimizer_cycle{cycle}.pt"


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



# ---------------------------------------------------------------- checking a job before any write

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
    folder: Path
    rows: list[dict]
    stored_config: dict | None

    @property
    def done(self) -> bool:
        return len(self.rows) >= last_cycle(self.config)


def last_cycle(config: ExperimentConfig) -> int:
    """The cycles a job runs now: the protocol's, or its first runtime.stop_after_cycles (whose last cycle still
    selects, so that a later run continues it)."""
    stop = config.runtime.stop_after_cycles
    return min(stop, config.protocol.cycles) if stop else config.protocol.cycles


def plan_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings) -> JobPlan:
    """Check one job completely (method and options, network, protocol against the dataset, the state of its
    folder) and raise a UserError before anything is written."""
    config = with_method_options(config, method)
    digest = run_hash(config, method)
    strategy = make_strategy(method, config.method_options.get(method))
    dataset = prepare_dataset(config, settings.data_root, seed, settings.download)
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
    # a folder without a finished cycle holds nothing to lose: a corrected command starts it over
    stored = _stored_config(folder / "config.json", digest) if read_jsonl(folder / RESULTS_FILE) else None
    rows = finished_cycles(folder, config, method, seed, digest, train_size)
    if not rows:
        initial_pool(dataset.train.targets, seed, config.data.validation_size,
                     resolve_count(config.protocol.initial, train_size), config.protocol.initial_kind,
                     config.protocol.missing_classes)
    return JobPlan(config, strategy, digest, dataset, train_size, budget, folder, rows, stored)


def _stored_config(path: Path, digest: str) -> dict | None:
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({err.__class__.__name__}: {err}); move that run folder aside to "
                        "start the run over") from None
    if not isinstance(stored, dict) or "config_hash" not in stored:
        raise UserError(f"{path} holds no config_hash; move that run folder aside to start the run over")
    if stored["config_hash"] != digest:
        raise UserError(f"{path.parent} holds results of a different config (hash {stored['config_hash']}, now "
                        f"{digest}); pass another --out, or move that folder aside to start over")
    return stored


ROW_FIELDS = {"paper": str, "experiment": str, "method": str, "seed": int, "cycle": int, "n_labeled": int,
              "fraction_labeled": (int, float), "metric": str, "value": (int, float), "selected": list,
              "config_hash": str}


def finished_cycles(folder: Path, config: ExperimentConfig, method: str, seed: int, digest: str,
                    train_size: int) -> list[dict]:
    """The rows of cycles 0..k-1, each once, complete and made by this config, with the pool file to resume
    cycle k from; anything else is refused, naming the file, before the folder is touched."""
    results = folder / RESULTS_FILE
    rows = read_jsonl(results)
    redo = "move the run folder aside to start that run over"
    if results.exists() and not rows:
        raise UserError(f"{results} holds no row, yet it is written only with a finished cycle's row (rows "
                        f"were lost); {redo}")
    for line, row in enumerate(rows, 1):
        where = f"{results} line {line}"
        missing = [name for name, kind in ROW_FIELDS.items()
                   if not isinstance(row, dict) or not isinstance(row.get(name), kind) or isinstance(row.get(name), bool)]
        if missing:
            raise UserError(f"{where} is not a complete results row (missing or wrong: {', '.join(missing)}); {redo}")
        if row["cycle"] != line - 1:
            raise UserError(f"{where} is cycle {row['cycle']} where cycle {line - 1} belongs (cycles must be "
                            f"0, 1, 2, ... each once); {redo}")
        if row["config_hash"] != digest or row["method"] != method or row["seed"] != seed:
            raise UserError(f"{where} was made by another config, method or seed (hash {row['config_hash']}, "
                            f"{row['method']} seed {row['seed']}; now {digest}, {method} seed {seed}); {redo}")
        if line > 1 and row["n_labeled"] != rows[line - 2]["n_labeled"] + len(rows[line - 2]["selected"]):
            raise UserError(f"{where} has {row['n_labeled']} labels but the cycle before ended with "
                            f"{rows[line - 2]['n_labeled'] + len(rows[line - 2]['selected'])}; {redo}")
    if len(rows) > config.protocol.cycles:
        raise UserError(f"{results} holds {len(rows)} cycles but the protocol has {config.protocol.cycles}; {redo}")
    if rows and len(rows) < config.protocol.cycles:
        _check_resume_pool(folder, config, rows, train_size, redo)
    return rows


def _check_resume_pool(folder: Path, config: ExperimentConfig, rows: list[dict], train_size: int, redo: str):
    pool_file = folder / f"pool_cycle{len(rows)}.npz"
    if not pool_file.exists():
        raise UserError(f"{folder} has {len(rows)} finished cycles but no {pool_file.name} to resume from; {redo}")
    pool = Pool.load(pool_file)
    last = rows[-1]
    selected = np.concatenate([np.asarray(r["selected"], dtype=np.int64) for r in rows])
    if pool.size != train_size or len(pool.labeled) != last["n_labeled"] + len(last["selected"]) \
            or not np.isin(selected, pool.labeled).all():
        raise UserError(f"{pool_file} does not continue {folder / RESULTS_FILE} (pool of {pool.size} images with "
                        f"{len(pool.labeled)} labeled; the rows select {len(selected)} images of {train_size}); "
                        f"{redo}")
    model_file = folder / f"model_cycle{len(rows) - 1}.pt"
    if not config.train.reinit and not model_file.exists():
        raise UserError(f"{folder} warm-starts cycle {len(rows)} from {model_file.name}, which is missing; {redo}")
    optimizer_file = folder / optimizer_name(len(rows) - 1)
    if config.train.keep_optimizer and not optimizer_file.exists():
        raise UserError(f"{folder} continues the optimizer of cycle {len(rows) - 1} from {optimizer_file.name}, "
                        f"which is missing; {redo}")


# ---------------------------------------------------------------- running a job

def run_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings) -> list[dict]:
    """Run the missing cycles of one job while holding its folder's lock (see core.locks)."""
    folder = run_folder(settings.out, config, method, seed)
    lock = distributed.folder_lock(folder / LOCK_FILE)
    lock.acquire(wait=settings.wait, on_wait=settings.on_wait and functools.partial(settings.on_wait, folder))
    try:
        plan = plan_job(config, method, seed, settings)
        if plan.done:
            return plan.rows
        if plan.stored_config is None and distributed.is_main():
            write_json(folder / "config.json", {"config_hash": plan.digest, "method": method, "seed": seed,
                                                "config": to_dict(with_method_options(config, method))})
        return _run_cycles(plan, method, seed, settings, lock)
    finally:
        lock.release()


def _run_cycles(plan: JobPlan, method: str, seed: int, settings: RunSettings,
                lock: FolderLock | distributed.RankLock) -> list[dict]:
    config, strategy, dataset, folder, digest = plan.config, plan.strategy, plan.dataset, plan.folder, plan.digest
    rows, train_size, budget = list(plan.rows), plan.train_size, plan.budget
    results_file = folder / RESULTS_FILE
    set_deterministic(config.train.deterministic)
    device = settings.device
    oracle = make_oracle(dataset.train.targets, config.protocol.oracle_noise, dataset.superclass_of_class, seed)
    data = config.data
    augmentation = Augmentation(data.hflip, data.crop_padding, data.image_size, data.resize)
    source = dataset.make_source(dataset.train, augmentation, device, data.workers)
    test_source = dataset.make_source(dataset.test, augmentation, device, data.workers)
    writes = distributed.is_main()
    if rows:
        pool = Pool.load(folder / f"pool_cycle{len(rows)}.npz")
    else:
        pool = initial_pool(dataset.train.targets, seed, data.validation_size,
                            resolve_count(config.protocol.initial, train_size), config.protocol.initial_kind,
                            config.protocol.missing_classes)
        if writes:
            pool.save(folder / "pool_cycle0.npz")

    def checkpoint(cycle: int, labeled: np.ndarray, tag: str = "") -> TrainCheckpoint | None:
        if not config.runtime.checkpoint_every:
            return None
        return TrainCheckpoint(folder / checkpoint_name(cycle, tag), config.runtime.checkpoint_every,
                               checkpoint_key(digest, cycle, tag, labeled), lock.verify, saves=writes)

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
                           train_model=functools.partial(train_extra_model, cycle), folder=folder)
        strategy.diagnostics = {}
        model = strategy.prepare_model(new_model(config, dataset, seed, cycle, device), ctx)
        if not config.train.reinit and cycle > 0:
            model.load_state_dict(torch.load(folder / f"model_cycle{cycle - 1}.pt", map_location=device))
        generator = torch.Generator(device=device)
        generator.manual_seed(stream_key("train", seed, cycle) % 2**63)
        carried = torch.load(folder / optimizer_name(cycle - 1), map_location="cpu") \
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
            lock.verify()
            save_atomic(model.state_dict(), folder / f"model_cycle{cycle}.pt")
        if config.train.keep_optimizer and writes:
            lock.verify()
            save_atomic(report.optimizer_state, folder / optimizer_name(cycle))
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
            selected = distributed.main_value(selected)      # rounding on another GPU must not change the pool
            select_seconds = time.perf_counter() - started
            pool.label(selected, budget)
            if writes:
                lock.verify()
                pool.save(folder / f"pool_cycle{cycle + 1}.npz")
        row = {
            "paper": config.paper, "experiment": config.experiment, "dataset": dataset.name, "method": method,
            "seed": seed, "cycle": cycle, "profile": settings.profile,
            "n_labeled": len(trained_on), "fraction_labeled": round(len(trained_on) / (config.protocol.fraction_base or train_size), 6),
            "train_size": train_size, "metric": config.metric, "value": round(test["value"], 4),
            "per_class": test["per_class"], "best_validation": report.best_validation,
            "train_steps": report.steps, "train_loss": round(report.final_loss, 5),
            "train_seconds": round(report.seconds, 3), "train_resumed_at_step": report.resumed_at_step,
            "select_seconds": round(select_seconds, 3),
            "selector_train_seconds": round(selector_seconds, 3),
            "noisy_labels_in_labeled": int(oracle.flipped[trained_on].sum()),
            "diagnostics": strategy.diagnostics, "method_options": strategy.options, "selected": np.asarray(selected).tolist(),
            "config_hash": digest, "code_version": code_version(), "device": str(device),
            "processes": distributed.world_size(),
        }
        if writes:
            lock.verify()
            append_jsonl(results_file, row)
        rows.append(row)
        superseded = [folder / optimizer_name(cycle - 1)] if cycle else []
        for finished in [folder / checkpoint_name(cycle), *folder.glob(checkpoint_name(cycle, "*")), *superseded]:
            if writes:
                finished.unlink(missing_ok=True)
        if settings.on_cycle:
            settings.on_cycle(row)
    return rows
