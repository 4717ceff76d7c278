"""Labeled, unlabeled and validation index sets over one training split, with their invariants enforced."""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.lib.errors import UserError
from core.lib.seeding import numpy_rng


class PoolInvariantError(AssertionError):
    """A strategy or the loop broke the pool's invariants: a bug, never a user error."""


@dataclass
class Pool:
    size: int
    labeled: np.ndarray
    unlabeled: np.ndarray
    validation: np.ndarray

    def __post_init__(self):
        self.labeled = np.asarray(self.labeled, dtype=np.int64)
        self.unlabeled = np.asarray(self.unlabeled, dtype=np.int64)
        self.validation = np.asarray(self.validation, dtype=np.int64)
        self.check()

    def check(self) -> None:
        everything = np.concatenate([self.labeled, self.unlabeled, self.validation])
        if len(np.unique(everything)) != len(everything):
            raise PoolInvariantError("labeled, unlabeled and validation sets overlap or hold duplicates")
        if len(everything) != self.size or (len(everything) and (everything.min() < 0 or everything.max() >= self.size)):
            raise PoolInvariantError(f"pool covers {len(everything)} indices, expected all {self.size}")

    def label(self, chosen: np.ndarray, budget: int) -> None:
        """Move exactly `budget` chosen unlabeled indices to the labeled set."""
        chosen = np.asarray(chosen, dtype=np.int64)
        if len(chosen) != budget or len(np.unique(chosen)) != budget:
            raise PoolInvariantError(f"a selection must hold {budget} distinct indices, got {len(chosen)} "
                                     f"({len(np.unique(chosen))} distinct)")
        if not np.isin(chosen, self.unlabeled).all():
            raise PoolInvariantError("a selection holds indices that are not in the unlabeled pool")
        self.labeled = np.concatenate([self.labeled, chosen])
        self.unlabeled = np.setdiff1d(self.unlabeled, chosen, assume_unique=True)
        self.check()

    def save(self, path: Path) -> None:
        partial = Path(f"{path}.partial.npz")
        np.savez(partial, size=self.size, labeled=self.labeled, unlabeled=self.unlabeled, validation=self.validation)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> "Pool":
        """A saved pool; an unreadable or inconsistent file is a user error that names it."""
        try:
            with np.load(path) as stored:
                return cls(int(stored["size"]), stored["labeled"], stored["unlabeled"], stored["validation"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, PoolInvariantError) as err:
            raise UserError(f"pool file {path} cannot be read (damaged or not a pool: {err.__class__.__name__}); "
                            "move its run folder aside to start that run over") from None


def initial_pool(targets: np.ndarray, seed: int, validation_size: int, initial_size: int, kind: str = "random",
                 missing_classes: int = 0) -> Pool:
    """The validation split and the initial labeled set depend on the seed only, so every method shares them.

    kind: 'random'; 'balanced' (the same count per class, LADA); 'biased' (drawn only from the classes that
    remain after removing `missing_classes` random ones, VAAL Fig. 5)."""
    size = len(targets)
    if validation_size + initial_size > size:
        raise UserError(f"validation ({validation_size}) plus initial labeled set ({initial_size}) exceed the "
                        f"{size} training images; lower protocol.initial or data.validation_size")
    rng = numpy_rng("pool", seed)
    order = rng.permutation(size)
    validation, rest = order[:validation_size], order[validation_size:]
    classes = np.unique(targets)
    if kind == "random":
        labeled = rest[:initial_size]
    elif kind == "balanced":
        labeled = _balanced(targets, rest, classes, initial_size)
    elif kind == "biased":
        kept = rng.permutation(classes)[missing_classes:]
        candidates = rest[np.isin(targets[rest], kept)]
        if len(candidates) < initial_size:
            raise UserError(f"only {len(candidates)} images remain after removing {missing_classes} classes; "
                            f"lower protocol.initial ({initial_size})")
        labeled = candidates[:initial_size]
    else:
        raise UserError(f"protocol.initial_kind='{kind}' is not one of random, balanced, biased")
    unlabeled = np.setdiff1d(rest, labeled)
    return Pool(size, np.sort(labeled), unlabeled, np.sort(validation))


def _balanced(targets: np.ndarray, order: np.ndarray, classes: np.ndarray, initial_size: int) -> np.ndarray:
    if initial_size % len(classes):
        raise UserError(f"a balanced initial set of {initial_size} does not split evenly over {len(classes)} "
                        "classes; make protocol.initial a multiple of the class count")
    per_class = initial_size // len(classes)
    chosen = [order[targets[order] == c][:per_class] for c in classes]
    if any(len(c) < per_class for c in chosen):
        raise UserError(f"some class has fewer than {per_class} images for a balanced initial set")
    return np.concatenate(chosen)


def candidate_subset(unlabeled: np.ndarray, subset_size: int, seed: int, cycle: int) -> np.ndarray:
    """The random subset of M unlabeled points scored in a cycle (LL4AL, TA-VAAL, LADA); all when M is 0."""
    if subset_size <= 0 or subset_size >= len(unlabeled):
        return unlabeled
    return np.sort(numpy_rng("subset", seed, cycle).choice(unlabeled, subset_size, replace=False))
