"""The oracle that answers label queries: ideal, or noisy within CIFAR-100 superclasses (VAAL Sec. 5.2)."""
from __future__ import annotations

import numpy as np

from core.lib.errors import UserError
from core.lib.seeding import numpy_rng


class Oracle:
    """Holds the label every training image would receive when queried; fixed per seed."""

    def __init__(self, answers: np.ndarray, true_targets: np.ndarray):
        self.answers = answers
        self.flipped = answers != true_targets

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        return self.answers[indices]


def ideal_oracle(targets: np.ndarray) -> Oracle:
    return Oracle(targets.copy(), targets)


def noisy_oracle(targets: np.ndarray, noise: float, superclass_of_class: np.ndarray | None, seed: int) -> Oracle:
    """A fraction `noise` of all training labels is flipped to another class of the same superclass."""
    if not 0 <= noise < 1:
        raise UserError(f"oracle.noise={noise} must be in [0, 1)")
    if superclass_of_class is None:
        raise UserError("a noisy oracle flips labels within superclasses: use a dataset with superclasses "
                        "(cifar100 with fine labels)")
    rng = numpy_rng("oracle", seed)
    siblings = _sibling_table(superclass_of_class)
    sibling_count = (siblings >= 0).sum(axis=1)
    flipped = rng.choice(len(targets), int(round(noise * len(targets))), replace=False)
    classes = targets[flipped]
    if (sibling_count[classes] == 0).any():
        raise UserError("a noisy oracle needs every superclass to hold at least two classes")
    picks = (rng.random(len(flipped)) * sibling_count[classes]).astype(np.int64)
    answers = targets.copy()
    answers[flipped] = siblings[classes, picks]
    return Oracle(answers, targets)


def _sibling_table(superclass_of_class: np.ndarray) -> np.ndarray:
    """Row c lists the other classes of c's superclass, padded with -1."""
    num_classes = len(superclass_of_class)
    same = superclass_of_class[:, None] == superclass_of_class[None, :]
    np.fill_diagonal(same, False)
    table = np.full((num_classes, max(1, same.sum(axis=1).max())), -1, dtype=np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(same[c])
        table[c, :len(members)] = members
    return table


def make_oracle(targets: np.ndarray, noise: float, superclass_of_class, seed: int) -> Oracle:
    if noise == 0:
        return ideal_oracle(targets)
    return noisy_oracle(targets, noise, superclass_of_class, seed)
