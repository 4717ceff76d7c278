"""The registry of experiments: each paper package registers one entry per reported figure or table."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterable

from core.lib.config import ExperimentConfig, apply_overrides
from core.lib.errors import UserError
from core.lib.plugins import load_plugins, register
from core.lib.strategy import STRATEGIES

SIZE_PROFILES = ("smoke", "mini", "demo", "demo_gpu")   # change only sizes; others (code_2020) are named variants


@dataclass
class Experiment:
    paper: str
    name: str
    build: Callable[[], ExperimentConfig]
    profiles: dict[str, dict] = field(default_factory=dict)   # name -> dotted overrides

    def config(self, profile: str = "paper", overrides: dict | None = None) -> ExperimentConfig:
        known = ["paper", *self.profiles]
        if profile not in known:
            raise UserError(f"{self.paper}/{self.name} has no profile '{profile}'; choose one of {', '.join(known)}")
        config = self.build()
        config.paper, config.experiment = self.paper, self.name
        extras = [method for method, joins in EXTRAS.items() if method not in config.methods and joins(config)]
        config.methods, config.extra_methods = [*config.methods, *extras], [*config.extra_methods, *extras]
        apply_overrides(config, copy.deepcopy(self.profiles.get(profile, {})))
        return apply_overrides(config, overrides or {})


EXPERIMENTS: dict[tuple[str, str], Experiment] = {}
EXTRAS: dict[str, Callable[[ExperimentConfig], bool]] = {}    # method -> which experiments it joins


def register_extra(method: str, joins: Callable[[ExperimentConfig], bool]) -> None:
    """`method` joins the method list of every experiment whose paper config `joins` accepts, as an extra beyond
    the paper: run by default, shown as such in `list` and marked in the report."""
    register(EXTRAS, "extra method", method, joins, joins.__module__)


def register_experiment(experiment: Experiment) -> Experiment:
    build = getattr(experiment.build, "func", experiment.build)     # a functools.partial names its function's module
    register(EXPERIMENTS, "experiment", (experiment.paper, experiment.name), experiment, build.__module__)
    return experiment


def register_experiments(paper: str, table: Iterable[tuple[str, Callable[[], ExperimentConfig], dict]]) -> None:
    """A paper's table of experiments, one (name, build, profiles) row each. `register` refuses a name that another
    module registered, and this a name that two rows of the table give, which `register` takes for a reload."""
    rows = list(table)
    names = [name for name, _, _ in rows]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise UserError(f"experiment '{paper}/{twice[0]}' is in the table of {paper} twice; rename one of them")
    for name, build, profiles in rows:
        register_experiment(Experiment(paper, name, build, profiles))


def papers() -> list[str]:
    load_plugins()
    return sorted({paper for paper, _ in EXPERIMENTS})


def get_experiment(paper: str, name: str) -> Experiment:
    load_plugins()
    if paper not in papers():
        raise UserError(f"unknown paper '{paper}'; known: {', '.join(papers())} (see ./reproduce.sh list)")
    if (paper, name) not in EXPERIMENTS:
        names = sorted(n for p, n in EXPERIMENTS if p == paper)
        raise UserError(f"unknown experiment '{name}' for {paper}; known: {', '.join(names)}")
    return EXPERIMENTS[(paper, name)]


def method_status(config: ExperimentConfig) -> tuple[list[str], list[str]]:
    """(implemented, pending) methods of an experiment."""
    load_plugins()
    return ([m for m in config.methods if m in STRATEGIES], [m for m in config.methods if m not in STRATEGIES])


def smoke_profile(**overrides) -> dict:
    """Seconds-long runs for tests: a few hundred images, a 1/16-width network, three cycles, two seeds."""
    return {"data.train_subset": 600, "data.test_subset": 200, "model.width": 0.0625, "protocol.cycles": 3,
            "train.eval_batch_size": 200, "seeds": 2, **overrides}


def mini_profile(**overrides) -> dict:
    """Minutes-long runs that show real learning on the shared CIFAR-10: 10,000 training images, 2,000 test
    images and a 1/8-width network."""
    return {"data.train_subset": 10000, "data.test_subset": 2000, "model.width": 0.125, "seeds": 2, **overrides}
