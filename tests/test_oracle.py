import json

import numpy as np
import pytest

from core.lib.errors import UserError
from core.lib.oracle import make_oracle

SUPERCLASS = np.repeat(np.arange(20), 5)          # CIFAR-100: 20 superclasses of 5 classes
TARGETS = np.tile(np.arange(100), 50)


def test_ideal_oracle_returns_the_true_labels():
    oracle = make_oracle(TARGETS, 0.0, None, seed=0)
    assert np.array_equal(oracle(np.arange(10)), TARGETS[:10]) and not oracle.flipped.any()


@pytest.mark.parametrize("noise", [0.1, 0.2, 0.3])
def test_noisy_oracle_flips_the_fraction_within_the_superclass(noise):
    oracle = make_oracle(TARGETS, noise, SUPERCLASS, seed=4)
    flipped = np.flatnonzero(oracle.flipped)
    assert len(flipped) == round(noise * len(TARGETS))
    assert (SUPERCLASS[oracle.answers[flipped]] == SUPERCLASS[TARGETS[flipped]]).all()
    assert (oracle.answers[flipped] != TARGETS[flipped]).all()


def test_noisy_oracle_is_fixed_per_seed():
    a, b, c = (make_oracle(TARGETS, 0.2, SUPERCLASS, s).answers for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_noisy_oracle_on_the_shared_cifar100_superclasses(data_root):
    from core.lib.datasets import load_dataset

    dataset = load_dataset("cifar100", data_root)
    mapping = json.loads((data_root / "cifar100" / "coarse_labels.json").read_text())
    assert [dataset.superclasses[s] for s in dataset.superclass_of_class] == [mapping[c] for c in dataset.classes]
    oracle = make_oracle(dataset.train.targets, 0.3, dataset.superclass_of_class, 0)
    flipped = oracle.flipped
    assert abs(flipped.mean() - 0.3) < 1e-3
    assert (dataset.superclass_of_class[oracle.answers] == dataset.superclass_of_class[dataset.train.targets]).all()


def test_noise_needs_superclasses():
    with pytest.raises(UserError, match="superclass"):
        make_oracle(TARGETS, 0.1, None, 0)
