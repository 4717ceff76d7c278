"""The interface every acquisition method implements, and the registry that names them.

A strategy may change the task model (`prepare_model`), add loss terms while it trains (`train_hooks`), and
must choose `budget` indices among the candidates (`select`). Scoring strategies only implement `score`:
higher means more informative, and the top `budget` scores are taken on the device. `cycle_work` says what a
cycle computes besides the task model's own training and test, for `./reproduce.sh plan` (core/tools/plan.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.lib.errors import UserError
from core.lib.plugins import load_plugins, register


@dataclass
class CycleContext:
    """What a strategy may use during one cycle of one (method, seed) run."""

    config: object
    seed: int
    cycle: int
    device: torch.device
    dataset: object
    source: object
    pool: object
    answers: np.ndarray
    trainer: object
    rng: np.random.Generator
    options: dict = field(default_factory=dict)
    progress: bool = True
    train_model: Callable[[str, np.ndarray | None], torch.nn.Module] | None = None   # (tag, labeled) -> model
    folder: Path | None = None                                                    # the run folder, for artefacts
    checkpoint: Callable[[str], object] | None = None        # tag -> the cycle's checkpoint (a game's) or None

    @property
    def eval_batch_size(self) -> int:
        return self.config.train.eval_batch_size


@dataclass
class CycleSizes:
    """One cycle of a job as the plan sees it: pool sizes before its selection; `candidates` is 0 in a cycle
    that selects nothing (the last)."""

    cycle: int
    labeled: int
    unlabeled: int
    candidates: int
    budget: int
    steps_per_epoch: int                # the task model's, over the labeled set


@dataclass
class NetworkUse:
    """Samples through one of a method's `networks()` in one cycle."""

    inputs: tuple                       # forward()'s per-sample input shapes, e.g. ((3, 32, 32),)
    trained: int = 0                    # samples through forward and backward
    inferred: int = 0                   # samples through forward only


@dataclass
class CycleWork:
    """What a method computes in one cycle besides training and testing the task model, in units the plan
    prices with counted FLOPs (core/tools/plan.py) and the memory it holds while selecting
    (core/tools/packing.py)."""

    scored: int = 0                     # candidates the selection scores
    task_trainings: int = 0             # further task models trained like the cycle's own (committee members)
    task_trained: int = 0               # further images through the task model's forward and backward
    task_inferred: int = 0              # images through the task model's forward (scores, features)
    task_head_inferred: int = 0         # images through its `forward_head` alone (MC-Dropout's repeated passes)
    held_outputs: int = 0               # float32 task-model outputs of a scored batch alive at once beyond its
                                        # forward's (stacked passes or members), for --jobs memory packing
    networks: dict[str, NetworkUse] = field(default_factory=dict)   # keys of `networks()`


class Strategy:
    name = ""
    default_options: dict = {}
    single_cycle = False          # True: the method trains once and never selects (full_data)
    task_archs: tuple[str, ...] = ()    # the task networks it works with (LADA mixes ResNet feature maps); (): any

    def __init__(self, options: dict | None = None):
        unknown = set(options or {}) - set(self.default_options)
        if unknown:
            raise UserError(f"method {self.name} has no option {', '.join(sorted(unknown))}; "
                            f"its options: {', '.join(self.default_options) or 'none'}")
        self.options = {**self.default_options, **(options or {})}
        self.diagnostics: dict = {}

    def networks(self, config, num_classes: int) -> dict[str, torch.nn.Module]:
        """The method's own networks (beside the task model), for `describe` and parameter-count tests."""
        return {}

    def prepare_model(self, model: torch.nn.Module, ctx: CycleContext) -> torch.nn.Module:
        return model

    def train_hooks(self, model: torch.nn.Module, ctx: CycleContext) -> list:
        return []

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        """Train whatever the selection needs besides the task model (a VAE, committee members); its time is
        logged apart from the selection's, as VAAL's Table 1 times the sampling alone."""

    def adjust_config(self, config, train_size: int):
        """A method may change the protocol (full_data trains once on every non-validation image)."""
        return config

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        raise NotImplementedError

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Nothing beyond the task model (random sampling, full data)."""
        return CycleWork()


class ScoringStrategy(Strategy):
    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        scores = self.score(model, ctx, candidates)
        top = torch.topk(scores, budget).indices.cpu().numpy()
        return candidates[top]

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """One task-model forward pass per candidate."""
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.candidates)


STRATEGIES: dict[str, type[Strategy]] = {}


def register_method(cls: type[Strategy]) -> type[Strategy]:
    register(STRATEGIES, "method", cls.name, cls, cls.__module__)
    return cls


def make_strategy(name: str, options: dict | None = None) -> Strategy:
    load_plugins()
    if name not in STRATEGIES:
        raise UserError(f"unknown method '{name}'; implemented: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](options)
