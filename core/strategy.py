"""The interface every acquisition method implements, and the registry that names them.

A strategy may change the task model (`prepare_model`), add loss terms while it trains (`train_hooks`), and
must choose `budget` indices among the candidates (`select`). Scoring strategies only implement `score`:
higher means more informative, and the top `budget` scores are taken on the device.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.errors import UserError

PLUGIN_PACKAGES = ("baselines", "vaal", "ta_vaal", "daal", "lada", "segmentation")


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


    @property
    def eval_batch_size(self) -> int:
        return self.config.train.eval_batch_size


class Strategy:
    name = ""
    default_options: dict = {}
    single_cycle = False          # True: the method trains once and never selects (full_data)

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


class ScoringStrategy(Strategy):
    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        scores = self.score(model, ctx, candidates)
        top = torch.topk(scores, budget).indices.cpu().numpy()
        return candidates[top]


STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def load_plugins() -> None:
    """Import every paper package so that its strategies and experiments register themselves."""
    for package in PLUGIN_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as err:
            if err.name != package:
                raise


def make_strategy(name: str, options: dict | None = None) -> Strategy:
    load_plugins()
    if name not in STRATEGIES:
        raise UserError(f"unknown method '{name}'; implemented: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name](options)
