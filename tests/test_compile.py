"""runtime.compile (core.lib.fastpaths): compiled runs against eager ones, resume, and how often a run compiles.

On the CPU with a one-convolution network: Inductor's C++ compiles a full ResNet-18 training step for over 12
minutes on two cores (those are under -m slow). The first compile on a machine also builds Inductor's headers
(about 90 s here); later ones come from its cache in seconds."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch._dynamo.utils import counters

from core.lib.config import RuntimeConfig, TrainConfig
from core.lib.errors import UserError
from core.lib.experiments import get_experiment
from core.lib.loop import RunSettings
from core.lib.networks import ARCHITECTURES, TaskNetwork, build_network, register_architecture
from core.tools.jobs import run_job

VOLATILE = {"train_seconds", "select_seconds", "selector_train_seconds", "code_version"}


class OneConv(TaskNetwork):
    """Convolution, BatchNorm, ReLU, pooled, linear: the layers a task network's step compiles, at seconds' cost."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, init: str = "default"):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Linear(8, num_classes)

    def forward_features(self, x):
        block = self.block(x)
        features = block.mean((2, 3))
        return self.classifier(features), features, [block]


@pytest.fixture(autouse=True)
def one_conv(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "one_conv", OneConv)
    torch._dynamo.reset()                 # every test counts its own compilations (Inductor's cache stays)
    counters.clear()


def config(compile: str = "off", **overrides):
    """Two cycles of 40 and 70 labels in batches of 16: full batches and a last one of 8, then of 6."""
    return get_experiment("baselines", "ll4al_cifar10").config("smoke", {
        "model.arch": "one_conv", "train.batch_size": 16, "train.eval_batch_size": 50, "protocol.cycles": 2,
        "protocol.budget": 30, "runtime.compile": compile, **overrides})


def run(data_root, out, cfg, method="entropy", on_cycle=None):
    return run_job(cfg, method, 0, RunSettings(data_root, out, torch.device("cpu"), "smoke", progress=False,
                                                on_cycle=on_cycle))


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def test_compile_takes_off_on_or_graphs_and_old_booleans_get_one_line():
    assert config().runtime.compile == "off" and config("graphs").runtime.compile == "graphs"
    for value, message in (("true", "is no longer a boolean: set --set runtime.compile=on (was true)"),
                           ("fast", "runtime.compile='fast' is not one of off, on, graphs")):
        with pytest.raises(UserError) as raised:
            config(value)
        assert message in str(raised.value) and "\n" not in str(raised.value)
    assert RuntimeConfig(compile=True).compile == "on"        # a config.json written when it was a bool


def test_compiled_rows_equal_eager_ones_up_to_rounding(data_root, tmp_path):
    """Inductor's fused kernels round differently, so the weights drift apart by float32 rounding; at this size
    the rows (accuracy, loss to 5 digits, selections) are the same (docs/running.md, Compile)."""
    rows = {setting: run(data_root, tmp_path / setting, config(setting)) for setting in ("off", "on", "graphs")}
    assert stable(rows["on"]) == stable(rows["off"]) and stable(rows["graphs"]) == stable(rows["off"])


def test_a_run_compiles_once_per_function_not_per_epoch_or_cycle(data_root, tmp_path):
    """The training forward and backward, and the eval forward (testing and entropy's scores) compile once at
    their full batches; the last, smaller batches (8 labels, then 6) run eagerly; cycle 1's new model reuses
    cycle 0's compilations."""
    graphs = []
    run(data_root, tmp_path, config("on"), on_cycle=lambda row: graphs.append(counters["stats"]["unique_graphs"]))
    assert graphs == [2, 2]


def test_a_compiled_run_resumes_to_the_uninterrupted_result(data_root, tmp_path):
    class Interrupted(Exception):
        pass

    def stop_after_cycle_0(row):
        if row["cycle"] == 0:
            raise Interrupted

    cfg = config("on", **{"runtime.checkpoint_every": 1})
    with pytest.raises(Interrupted):
        run(data_root, tmp_path / "interrupted", cfg, on_cycle=stop_after_cycle_0)
    resumed = run(data_root, tmp_path / "interrupted", cfg)
    assert stable(resumed) == stable(run(data_root, tmp_path / "clean", cfg))


@pytest.mark.slow
@pytest.mark.long_compile      # Inductor on two CPU cores: over 12 minutes per network, past CI's 20 minutes
@pytest.mark.parametrize("arch", ["resnet18_cifar", "vgg16_bn"])
def test_full_networks_train_compiled_as_eager_up_to_rounding(arch):
    from core.lib.sources import Augmentation, TensorSource
    from core.lib.datasets import Split
    from core.lib.trainer import Trainer

    rng = np.random.default_rng(0)
    split = Split(targets=rng.integers(0, 10, 40), images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
    source = TensorSource(split, (0.5,) * 3, (0.25,) * 3, Augmentation(hflip=True, crop_padding=4), "cpu")
    weights = {}
    for setting in ("off", "on"):
        torch.manual_seed(0)
        model = build_network(arch, 10)
        Trainer(TrainConfig(batch_size=16, epochs=1, lr=0.01), "cpu", 10, progress=False,
                runtime=RuntimeConfig(compile=setting)).fit(model, source, np.arange(40), split.targets,
                                                            generator=torch.Generator().manual_seed(1))
        weights[setting] = model.state_dict()
    for name, value in weights["off"].items():
        torch.testing.assert_close(weights["on"][name], value, rtol=1e-3, atol=1e-4)
