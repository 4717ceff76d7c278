import numpy as np
import pytest

from core.lib.errors import UserError
from core.lib.pool import Pool, PoolInvariantError, candidate_subset, initial_pool

TARGETS = np.repeat(np.arange(10), 100)


def test_initial_pool_partitions_every_index_once():
    pool = initial_pool(TARGETS, seed=3, validation_size=100, initial_size=50)
    together = np.concatenate([pool.labeled, pool.unlabeled, pool.validation])
    assert sorted(together) == list(range(len(TARGETS)))
    assert (len(pool.labeled), len(pool.validation), len(pool.unlabeled)) == (50, 100, 850)


def test_same_seed_same_split_and_different_seed_different_split():
    first, again = initial_pool(TARGETS, 1, 100, 50), initial_pool(TARGETS, 1, 100, 50)
    other = initial_pool(TARGETS, 2, 100, 50)
    assert np.array_equal(first.labeled, again.labeled) and np.array_equal(first.validation, again.validation)
    assert not np.array_equal(first.labeled, other.labeled)


def test_label_moves_exactly_the_budget():
    pool = initial_pool(TARGETS, 0, 100, 50)
    chosen = pool.unlabeled[:30]
    pool.label(chosen, 30)
    assert len(pool.labeled) == 80 and len(pool.unlabeled) == 820
    assert not np.isin(chosen, pool.unlabeled).any()


@pytest.mark.parametrize("bad", ["duplicates", "labeled", "validation", "wrong_count"])
def test_label_rejects_broken_selections(bad):
    pool = initial_pool(TARGETS, 0, 100, 50)
    chosen = {"duplicates": np.r_[pool.unlabeled[:29], pool.unlabeled[0]],
              "labeled": np.r_[pool.unlabeled[:29], pool.labeled[0]],
              "validation": np.r_[pool.unlabeled[:29], pool.validation[0]],
              "wrong_count": pool.unlabeled[:31]}[bad]
    with pytest.raises(PoolInvariantError):
        pool.label(chosen, 30)


def test_pool_rejects_overlapping_sets():
    with pytest.raises(PoolInvariantError):
        Pool(5, [0, 1], [1, 2, 3], [4])


def test_balanced_initial_set_has_equal_counts_per_class():
    pool = initial_pool(TARGETS, 0, 100, 20, kind="balanced")
    assert np.bincount(TARGETS[pool.labeled], minlength=10).tolist() == [2] * 10


def test_biased_initial_set_misses_exactly_m_classes():
    pool = initial_pool(TARGETS, 0, 100, 200, kind="biased", missing_classes=3)
    assert len(np.unique(TARGETS[pool.labeled])) == 7
    assert len(np.unique(TARGETS[pool.unlabeled])) == 10


def test_impossible_initial_sets_are_user_errors():
    with pytest.raises(UserError, match="exceed"):
        initial_pool(TARGETS, 0, 900, 200)
    with pytest.raises(UserError, match="evenly"):
        initial_pool(TARGETS, 0, 0, 25, kind="balanced")


def test_candidate_subset_is_a_fixed_random_subset_of_the_unlabeled_pool():
    unlabeled = np.arange(100, 1000)
    subset = candidate_subset(unlabeled, 200, seed=0, cycle=1)
    assert len(subset) == len(np.unique(subset)) == 200 and np.isin(subset, unlabeled).all()
    assert np.array_equal(subset, candidate_subset(unlabeled, 200, seed=0, cycle=1))
    assert not np.array_equal(subset, candidate_subset(unlabeled, 200, seed=0, cycle=2))
    assert np.array_equal(candidate_subset(unlabeled, 0, 0, 0), unlabeled)


def test_save_and_load_round_trip(tmp_path):
    pool = initial_pool(TARGETS, 0, 100, 50)
    pool.save(tmp_path / "pool.npz")
    loaded = Pool.load(tmp_path / "pool.npz")
    assert all(np.array_equal(getattr(pool, k), getattr(loaded, k)) for k in ("labeled", "unlabeled", "validation"))
