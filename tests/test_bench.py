"""The benchmark registry and `bench sampling`'s split of a selection into feature extraction and selection."""
import json

import numpy as np
import pytest
import torch

from core.lib.datasets import CIFAR10_STATS, ImageDataset, Split
from core.tools import bench
from core.tools.cli import main


def test_packages_register_their_benchmarks_and_unknown_names_are_one_line_errors(capsys):
    assert bench.get_benchmark("segmentation").name == "segmentation"
    assert main(["bench", "nonsense"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unknown benchmark 'nonsense'" in error and "segmentation" in error


def tiny_cifar(count: int = 360) -> ImageDataset:
    rng = np.random.default_rng(0)
    split = Split(targets=np.arange(count) % 10, images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8))
    return ImageDataset("cifar10", [str(c) for c in range(10)], split, split, *CIFAR10_STATS)


def test_bench_sampling_times_feature_extraction_and_selection_apart(monkeypatch, tmp_path):
    import core.lib.strategy

    core.lib.strategy.load_plugins()
    methods = ("random", "entropy", "coreset")
    monkeypatch.setattr(core.lib.strategy, "STRATEGIES", {m: core.lib.strategy.STRATEGIES[m] for m in methods})
    monkeypatch.setattr(bench, "load_dataset", lambda name, root: tiny_cifar())
    times = bench.bench_sampling(tmp_path, torch.device("cpu"), "resnet18_cifar", 0.0625, 300, tmp_path, budget=20,
                                 labeled_size=60)
    assert times["random"]["features"] == 0
    for name in ("entropy", "coreset"):
        assert times[name]["features"] > 0 and times[name]["selection"] > 0, name
        assert times[name]["features"] + times[name]["selection"] == pytest.approx(times[name]["total"])
    table = (tmp_path / "sampling.md").read_text()
    assert "| Feature extraction (s) | Selection (s) |" in table
    assert json.loads((tmp_path / "sampling.json").read_text())["seconds"]["coreset"]["total"] > 0


def test_bench_sampling_times_every_registered_method(monkeypatch, tmp_path):
    """The whole list at smoke size; a method that needs another task network (LADA's ResNet feature maps)
    selects from that one, and the table's note says so."""
    from core.lib.strategy import STRATEGIES, load_plugins

    load_plugins()
    monkeypatch.setattr(bench, "load_dataset", lambda name, root: tiny_cifar(200))
    times = bench.bench_sampling(tmp_path, torch.device("cpu"), "vgg16_bn", 0.0625, 120, tmp_path, budget=10,
                                 labeled_size=60, game_iterations=1)
    methods = {name for name, cls in STRATEGIES.items() if not cls.single_cycle}
    assert set(times) == methods
    table = (tmp_path / "sampling.md").read_text()
    assert all(f"| {name} " in table for name in methods)
    needing = {name for name in methods if STRATEGIES[name].task_archs}
    assert "lada" in needing and {name for name, t in times.items() if t.get("arch") == "resnet18_cifar"} == needing
    note = table.splitlines()[-1]
    assert "resnet18_cifar" in note and all(name in note for name in needing)
