"""Adversarial games (VAAL, TA-VAAL, DAAL) that resume mid-way: a game killed or preempted continues from its last
checkpoint and ends with the networks, the diagnostics and so the selection of an uninterrupted game.

A game is a loop of iterations that read endless streams of batches (`Endless`). Its checkpoint is the cycle's
`ctx.checkpoint(RunFolder.GAME)` (core.tools.checkpoint's, as the task model's: written by rank 0, removed with the
cycle's row), written at the end of every `runtime.checkpoint_every` game epochs (`per_epoch` iterations, the
unit the game's length is set in) and when the game ends, so a job preempted while scoring does not play again.
It holds the modules, the optimizers, the values the loop sums, the iteration counter, each stream's position,
the game's other generators and the global torch/numpy RNG states with the job GPU's CUDA one (restored by the
checkpoint's `load`), which the VAE's reparameterisation draws from.
A stream's position is the state of its shuffling generator when its current pass began and the batches read
since. Resuming replays those batches, which redraws the pass's order and, on in-memory datasets, the batches'
augmentation from that generator, without training on them; the global RNG is put back after the replay. Exact
for in-memory datasets, features and unaugmented files; augmented file batches (VAAL on Caltech or ImageNet)
are exact with data.workers=0 only, as their DataLoader workers draw from seeds of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from core.lib.results import RunFolder


class Endless:
    """The batches of `one_pass()` (a new pass, whose order `generator` draws, or a fixed order without one),
    pass after pass, forever."""

    def __init__(self, one_pass: Callable[[], Iterable], generator: torch.Generator | None = None):
        self.one_pass, self.generator = one_pass, generator
        self.batches, self.start, self.read = None, None, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.batches, None) if self.batches is not None else None
        if batch is None:
            self.start = None if self.generator is None else self.generator.get_state()
            self.batches, self.read = iter(self.one_pass()), 0
            batch = next(self.batches)
        self.read += 1
        return batch

    def state_dict(self) -> dict:
        return {"started": self.batches is not None, "start": self.start, "read": self.read}

    def load_state_dict(self, state: dict) -> None:
        if not state["started"]:
            return
        if self.generator is not None:
            self.generator.set_state(state["start"])
        with torch.random.fork_rng(devices=[]):      # file batches read without workers draw from the global RNG
            self.batches, self.start, self.read = iter(self.one_pass()), state["start"], state["read"]
            for _ in range(self.read):
                next(self.batches)


def on_device(value, device: torch.device):
    if isinstance(value, dict):
        return {key: on_device(item, device) for key, item in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


@dataclass
class GameState:
    """What a game's checkpoint holds besides the RNG states. The loop keeps what it sums in `values` (tensors,
    numbers or dicts of them) and reads them from there at every iteration, as a resumed game replaces them."""

    name: str                                      # for the progress bar
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    streams: list[Endless]
    generators: list[torch.Generator] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def state_dict(self, iteration: int) -> dict:
        return {"iteration": iteration, "values": self.values,
                "modules": {name: module.state_dict() for name, module in self.modules.items()},
                "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
                "streams": [stream.state_dict() for stream in self.streams],
                "generators": [generator.get_state() for generator in self.generators]}

    def load_state_dict(self, saved: dict, device: torch.device) -> int:
        """Put the saved game back and return the iterations it had done."""
        for name, module in self.modules.items():
            module.load_state_dict(saved["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
        for stream, state in zip(self.streams, saved["streams"]):
            stream.load_state_dict(state)
        for generator, state in zip(self.generators, saved["generators"]):
            generator.set_state(state)
        self.values.update(on_device(saved["values"], device))
        return saved["iteration"]


def play(game: GameState, ctx, iterations: int, per_epoch: int, step: Callable[[int], None]) -> int:
    """Run `step(iteration)` for the iterations the cycle's game checkpoint has not done yet, saving it at the end
    of its epochs of `per_epoch` iterations; return the iteration the game resumed at (0: played from the start)."""
    checkpoint = ctx.checkpoint(RunFolder.GAME) if ctx.checkpoint else None
    saved = checkpoint.load() if checkpoint else None
    start = game.load_state_dict(saved, ctx.device) if saved else 0
    per_epoch = max(1, per_epoch)
    for iteration in tqdm(range(start, iterations), initial=start, total=iterations, desc=game.name, leave=False,
                          disable=not ctx.progress):
        step(iteration)
        done = iteration + 1
        finished = done == iterations
        if checkpoint and (finished or done % per_epoch == 0) and checkpoint.due(done // per_epoch, finished):
            checkpoint.save(game.state_dict(done))
    return start
