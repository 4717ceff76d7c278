"""The benchmark registry; `bench sampling`: its split of a selection into feature extraction and selection, its
sizes scaled from VAAL Table 1's to any pool (or one line refusing the pool), its method filter and progress."""
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
    times = bench.bench_sampling(tmp_path, torch.device("cpu"), "resnet18_cifar", 0.0625,
                                 bench.SamplingSizes.for_pool(324), tmp_path)
    assert times["random"]["features"] == 0
    for name in ("entropy", "coreset"):
        assert times[name]["features"] > 0 and times[name]["selection"] > 0, name
        assert times[name]["features"] + times[name]["selection"] == pytest.approx(times[name]["total"])
    table = (tmp_path / "sampling.md").read_text()
    assert "| Feature extraction (s) | Selection (s) |" in table
    assert json.loads((tmp_path / "sampling.json").read_text())["seconds"]["coreset"]["total"] > 0


@pytest.mark.slow      # every method's selection, 11 s; the method filter test runs two in the default suite
def test_bench_sampling_times_every_registered_method(monkeypatch, tmp_path):
    """The whole list at smoke size; a method that needs another task network (LADA's ResNet feature maps)
    selects from that one, and the table's note says so."""
    from core.lib.strategy import STRATEGIES, load_plugins

    load_plugins()
    monkeypatch.setattr(bench, "load_dataset", lambda name, root: tiny_cifar(200))     # pool 180 + 20 labeled
    times = bench.bench_sampling(tmp_path, torch.device("cpu"), "vgg16_bn", 0.0625, bench.SamplingSizes.for_pool(180),
                                 tmp_path, game_iterations=1)
    methods = {name for name, cls in STRATEGIES.items() if not cls.single_cycle}
    assert set(times) == methods
    table = (tmp_path / "sampling.md").read_text()
    assert all(f"| {name} " in table for name in methods)
    needing = {name for name in methods if STRATEGIES[name].task_archs}
    assert "lada" in needing and {name for name, t in times.items() if t.get("arch") == "resnet18_cifar"} == needing
    note = table.splitlines()[-1]
    assert "resnet18_cifar" in note and all(name in note for name in needing)


def test_bench_train_times_the_jobs_step_in_two_rows_eager_and_compiled(monkeypatch):
    """As the paper profile runs and fastest, each eager and compiled; the trainer applies each row's
    determinism (it used to leave it to the loop); the table says what it timed."""
    from core.lib.networks import ARCHITECTURES
    from tests.test_compile import OneConv

    monkeypatch.setitem(ARCHITECTURES, "one_conv", OneConv)
    assert bench.warm_up_count(1000, 128) == 2 * 128 + 1000 % 128 and bench.warm_up_count(40, 16) == 40
    rows = bench.step_rows(tiny_cifar(40).train, torch.device("cpu"), "one_conv", 1.0, 16, "on")
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark   # FASTEST last
    assert [r["settings"] for r in rows] == [bench.PAPER.name, bench.FASTEST.name]
    assert all(r[key] > 0 for r in rows for key in ("ours_off", "bare_off", "ours_on", "bare_on"))
    table = bench.step_table(rows, "on").splitlines()
    assert "trainer, compile=on" in table[0] and len(table) == 4 and "cuDNN benchmark" in table[3]
    assert "warm-up epoch at the same batch shapes" in bench.STEP_TIMED


def test_gpucheck_times_compile_on_cuda_only_and_says_so(monkeypatch):
    from core.lib.networks import ARCHITECTURES
    from core.tools import gpucheck
    from tests.test_compile import OneConv

    monkeypatch.setitem(ARCHITECTURES, "one_conv", OneConv)
    sizes = gpucheck.Sizes(bench_archs=("one_conv",), bench_images=40)
    rows = gpucheck.measure_throughput(torch.device("cpu"), tiny_cifar(40).train, sizes, budget=60)
    assert set(rows[0]) == {"arch", "images", "ours", "bare"}
    late = gpucheck.measure_throughput(torch.device("cpu"), tiny_cifar(40).train, sizes, budget=0)
    assert set(late[0]) == {"arch", "images"} and "not run (time budget)" in gpucheck.throughput_table(late, sizes)
    table = gpucheck.throughput_table(rows, sizes)
    assert table.endswith("runtime.compile (on, graphs) is timed on CUDA only: skipped here.")
    timed = gpucheck.throughput_table([{**rows[0], "on": 2 * rows[0]["ours"], "graphs": 3 * rows[0]["ours"]}], sizes)
    assert "| trainer, compile=graphs | compile=graphs / eager |" in timed and "| 3.00x |" in timed
    partly = gpucheck.throughput_table([{**rows[0], "on": 2 * rows[0]["ours"], "graphs": 3 * rows[0]["ours"]},
                                        {**rows[0], "on": 2 * rows[0]["ours"]}], sizes)
    assert "| 2.00x | not run (time budget) | |" in partly


@pytest.mark.parametrize("pool", [180, 2000, 4500, 45000, 100003])
def test_sampling_sizes_scale_table1_so_every_pick_fits_its_candidates(pool):
    sizes = bench.SamplingSizes.for_pool(pool)
    assert sizes.pool == pool and sizes.budget % 2 == 0 and bench.MIN_BUDGET <= sizes.budget <= pool / 18
    assert sizes.labeled == pool // 9
    subset = sizes.options({"subset": 10000, "members": 5})
    assert subset == {"subset": 10000 * pool // 45000} and sizes.budget <= subset["subset"] <= pool
    assert sizes.options({"subset": 0}) == {}           # 0: every candidate, nothing to scale
    if pool == 45000:
        assert (sizes.labeled, sizes.budget, subset["subset"]) == (5000, 2500, 10000)     # Table 1, LL4AL's subset
        assert bench.default_pool(torch.device("cuda")) == pool and bench.default_pool(torch.device("cpu")) < pool


@pytest.mark.parametrize("args,message", [
    (["--pool", "179"], "--pool 179 is too small: its budget (pool x 2,500 / 45,000, even) is 8, under 10 picks; "
                        "use --pool 180 or more"),
    (["--pool", "0"], "--pool 0 is too small"),
    (["--pool", "-5"], "--pool -5 is too small"),
    (["--pool", "1000"], "--pool 1000 is too large: with its 111 labeled images it needs 1,111 CIFAR-10 training "
                         "images and"),
    (["--pool", "1000"], "holds 1,000; use --pool 900 or less"),
    (["--methods", "coreset,nope"], "bench sampling: unknown or non-selecting method(s) nope; methods that select: "
                                    "ada_mixup, badge, coreset,"),
    (["--methods", "full_data"], "bench sampling: unknown or non-selecting method(s) full_data;"),
    (["--methods", ","], "--methods ',' names no method"),
])
def test_bench_sampling_refuses_a_pool_or_method_in_one_line(monkeypatch, capsys, tmp_path, args, message):
    from tests.conftest import assert_cli_refuses_in_one_line

    monkeypatch.setattr(bench, "load_dataset", lambda name, root: tiny_cifar(1000))
    monkeypatch.setattr(bench, "subsample", lambda *a: pytest.fail("sizes are checked before any image is drawn"))
    assert_cli_refuses_in_one_line(capsys, ["bench", "sampling", "--device", "cpu", "--data-root", str(tmp_path),
                                            "--out", str(tmp_path / "out"), *args], message)
    assert not (tmp_path / "out").exists()


def test_bench_sampling_times_the_methods_asked_for_in_their_order_with_a_line_as_each_starts_and_ends(
        monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "load_dataset", lambda name, root: tiny_cifar(200))
    assert main(["bench", "sampling", "--pool", "180", "--methods", "margin,random", "--width", "0.0625", "--device",
                 "cpu", "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "bench sampling: 2 method(s), 180 unlabeled, 20 labeled, budget 10, vgg16_bn width 0.0625, cpu"
    progress = [line.strip() for line in lines if line.startswith("  [")]
    assert progress[0] == "[1/2] margin: selecting 10 ..." and progress[2] == "[2/2] random: selecting 10 ..."
    assert progress[1].startswith("[1/2] margin: ") and progress[3].startswith("[2/2] random: ")
    assert set(json.loads((tmp_path / "sampling.json").read_text())["seconds"]) == {"margin", "random"}
