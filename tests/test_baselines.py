"""Baselines on hand-checkable cases, the core-set equivalence with the textbook algorithm, and every method
end to end in the smoke profile."""
import math

import numpy as np
import pytest
import torch

from baselines.committee import dense_max_cover, greedy_max_cover, vote_entropy
from baselines.coreset import dense_kcenter, kcenter_greedy
from baselines.learning_loss import LossPredictionModule, bce_ranking_loss, margin_ranking_loss
from baselines.mc_dropout import bald, mc_dropout_samples, mean_entropy, variation_ratio
from baselines.uncertainty import entropy, least_confidence, smallest_margin
from core.lib.datasets import Split
from core.lib.experiments import get_experiment
from core.lib.loop import RunSettings
from core.lib.networks import build_network
from core.lib.sources import Augmentation, TensorSource
from core.lib.strategy import STRATEGIES, load_plugins
from core.tools.jobs import run_job


def textbook_kcenter(points: np.ndarray, centres: np.ndarray, budget: int) -> list[int]:
    """Sener & Savarese's greedy loop with a full distance matrix, in float64."""
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    if len(centres):
        nearest = np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)).min(1)
    else:
        nearest = np.full(len(points), np.inf)
    picks = []
    for _ in range(budget):
        chosen = int(np.argmax(nearest))
        picks.append(chosen)
        nearest = np.minimum(nearest, distances[chosen])
    return picks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("active_size", [7, 64, 10_000])
def test_kcenter_greedy_selects_exactly_what_the_textbook_algorithm_selects(seed, active_size):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(300, 6)) * rng.uniform(0.5, 3, size=(300, 1))
    centres = rng.normal(size=(20 * (seed % 2), 6))
    ours = kcenter_greedy(torch.tensor(points, dtype=torch.float64), torch.tensor(centres, dtype=torch.float64),
                          40, active_size=active_size).tolist()
    assert ours == textbook_kcenter(points, centres, 40)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_gpu_kcenter_loop_selects_what_the_textbook_and_cpu_loops_select(seed, dtype):
    """The loop a GPU runs, here on the CPU device: float32 features are taken to float64 first."""
    rng = np.random.default_rng(seed)
    points = torch.tensor(rng.normal(size=(300, 6)) * rng.uniform(0.5, 3, size=(300, 1)), dtype=dtype)
    centres = torch.tensor(rng.normal(size=(20 * (seed % 2), 6)), dtype=dtype)
    ours = dense_kcenter(points, centres, 40).tolist()
    assert ours == textbook_kcenter(points.double().numpy(), centres.double().numpy(), 40)
    if dtype == torch.float64:
        assert ours == kcenter_greedy(points, centres, 40, active_size=16).tolist()


HOST_VALUES = {"__float__", "__int__", "__bool__", "__index__", "item", "tolist", "cpu", "numpy"}


class HostValues(torch.overrides.TorchFunctionMode):
    """Records every tensor value brought to Python, each a wait for the GPU there."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_VALUES:
            self.seen.add(func.__name__)
        return func(*args, **(kwargs or {}))


def test_the_gpu_selection_loops_never_wait_for_the_device():
    generator = torch.Generator().manual_seed(0)
    points, centres = torch.randn(200, 8, generator=generator), torch.randn(10, 8, generator=generator)
    with HostValues() as dense:
        dense_kcenter(points, centres, 30)
        dense_max_cover(points[:50], points, 20)
    with HostValues() as cpu_loops:
        kcenter_greedy(points, centres, 30, active_size=16)
        greedy_max_cover(points[:50], points, 20)
    assert dense.seen == set() and "__float__" in cpu_loops.seen


def test_a_gpu_tensor_takes_the_gpu_loops(monkeypatch):
    """The meta device stands in for a GPU: anything but the CPU takes the dense loops."""
    from baselines import committee, coreset

    taken = []
    monkeypatch.setattr(coreset, "dense_kcenter", lambda *args: taken.append("kcenter"))
    monkeypatch.setattr(committee, "dense_max_cover", lambda *args: taken.append("max_cover"))
    elsewhere = torch.empty(5, 3, device="meta")
    coreset.kcenter_greedy(elsewhere, elsewhere[:0], 2)
    committee.greedy_max_cover(elsewhere, elsewhere, 2)
    assert taken == ["kcenter", "max_cover"]


def test_single_pass_acquisitions_on_hand_checked_probabilities():
    probabilities = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.6, 0.3, 0.1]])
    assert entropy(probabilities).tolist() == pytest.approx([0, math.log(2), -(0.6 * math.log(0.6) + 0.3 *
                                                                                math.log(0.3) + 0.1 * math.log(0.1))])
    assert least_confidence(probabilities).tolist() == pytest.approx([0, 0.5, 0.4])
    assert smallest_margin(probabilities).tolist() == pytest.approx([-1, 0, -0.3])


def test_mc_acquisitions_on_hand_checked_samples():
    # two passes, two points: point 0 flips between confident classes, point 1 is uniform in both passes
    samples = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
    assert mean_entropy(samples).tolist() == pytest.approx([math.log(2), math.log(2)])
    assert bald(samples).tolist() == pytest.approx([math.log(2), 0])
    votes = torch.tensor([[[0.9, 0.1]], [[0.8, 0.2]], [[0.2, 0.8]], [[0.6, 0.4]], [[0.7, 0.3]]])
    assert variation_ratio(votes).tolist() == pytest.approx([1 - 4 / 5])
    assert vote_entropy(votes).tolist() == pytest.approx([-(0.8 * math.log(0.8) + 0.2 * math.log(0.2))])


def _tiny_source():
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    return TensorSource(Split(np.zeros(20, dtype=np.int64), images), (0.5,) * 3, (0.5,) * 3, Augmentation(), "cpu")


def test_mc_dropout_uses_dropout_but_frozen_batchnorm():
    torch.manual_seed(0)
    model = build_network("vgg16_bn", 10, width=0.125)
    source = _tiny_source()
    running_mean = model.features[1].running_mean.clone()
    first = mc_dropout_samples(model, source, np.arange(20), 10, 1, lambda s: s[0].max(-1).values)
    second = mc_dropout_samples(model, source, np.arange(20), 10, 1, lambda s: s[0].max(-1).values)
    assert not torch.allclose(first, second)                       # dropout is on
    assert torch.equal(model.features[1].running_mean, running_mean) and not model.training
    model.head[2].p = model.head[5].p = 0.0                         # no dropout: T passes == one eval pass
    deterministic = torch.softmax(model(source.load(torch.arange(20), False, None)), 1)
    assert torch.allclose(mc_dropout_samples(model, source, np.arange(20), 10, 3, lambda s: s.mean(0).max(-1).values),
                          deterministic.max(1).values, atol=1e-6)


def test_margin_and_bce_ranking_losses_on_hand_checked_pairs():
    predicted = torch.tensor([2.0, 0.0, 0.5, 1.0])       # pairs (0, 3) and (1, 2): differences 1.0 and -0.5
    target = torch.tensor([3.0, 1.0, 2.0, 1.0])          # true differences 2 (> 0) and -1 (< 0)
    # pair (0,3): max(0, 1 - 1 * 1.0) = 0; pair (1,2): max(0, 1 - (-1)(-0.5)) = 0.5 -> mean 0.25
    assert margin_ranking_loss(predicted, target).item() == pytest.approx(0.25)
    expected = (-math.log(torch.sigmoid(torch.tensor(1.0)).item()) - math.log(1 - torch.sigmoid(
        torch.tensor(-0.5)).item())) / 2
    assert bce_ranking_loss(predicted, target).item() == pytest.approx(expected)
    tie = torch.tensor([1.0, 1.0])
    assert margin_ranking_loss(torch.tensor([0.0, 0.0]), tie).item() == pytest.approx(1.0)


def test_loss_prediction_module_shapes_and_parameter_count():
    module = LossPredictionModule([64, 128, 256, 512])
    blocks = [torch.randn(3, c, s, s) for c, s in ((64, 32), (128, 16), (256, 8), (512, 4))]
    assert module(blocks).shape == (3,)
    assert sum(p.numel() for p in module.parameters()) == 123_905


def test_greedy_max_cover_prefers_representative_candidates():
    pool = torch.tensor([[1.0, 0.0]] * 8 + [[0.0, 1.0]] * 2)
    candidates = torch.tensor([[0.0, 1.0], [1.0, 0.05], [0.7, 0.7]])
    assert greedy_max_cover(candidates, pool, 1).tolist() == [1]
    assert greedy_max_cover(candidates, pool, 2).tolist() == [1, 0]


load_plugins()


CYCLING_METHODS = sorted(m for m, cls in STRATEGIES.items() if not cls.single_cycle)


def one_pass_options(method: str) -> dict:
    """A method's own training loops counted in epochs (LADA's generator, the STN) cut to one pass."""
    options = STRATEGIES[method].default_options or {}
    return {f"method_options.{method}.{key}": 1 for key, value in options.items()
            if key.endswith("_epochs") and value > 1}


def check_smoke_selections(method, cycles, data_root, tmp_path, overrides=None):
    config = get_experiment("baselines", "ll4al_cifar10").config("smoke", {"seeds": 1, "protocol.cycles": cycles,
                                                                **(overrides or {})})
    rows = run_job(config, method, 0, RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke", progress=False))
    assert [r["n_labeled"] for r in rows] == [40 * (cycle + 1) for cycle in range(cycles)]
    chosen = np.concatenate([r["selected"] for r in rows[:-1]])
    assert len(np.unique(chosen)) == len(chosen) == 40 * (cycles - 1)


@pytest.mark.parametrize("method", CYCLING_METHODS)
def test_every_method_runs_in_the_smoke_profile(method, data_root, tmp_path):
    """One selection (the method's own epoch loops cut to one pass) and the cycle trained on it; the full smoke
    run with a second selection, which must avoid the first: -m slow."""
    check_smoke_selections(method, 2, data_root, tmp_path, one_pass_options(method))


@pytest.mark.slow
@pytest.mark.parametrize("method", CYCLING_METHODS)
def test_every_method_selects_twice_without_repeating_itself(method, data_root, tmp_path):
    check_smoke_selections(method, 3, data_root, tmp_path)


def test_scoring_methods_select_differently_from_random(data_root, tmp_path):
    config = get_experiment("baselines", "ll4al_cifar10").config("smoke", {"seeds": 1, "protocol.cycles": 2})
    settings = RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke", progress=False)
    random = set(run_job(config, "random", 0, settings)[0]["selected"])
    for method in ("entropy", "coreset", "learning_loss", "mc_dropout"):
        assert set(run_job(config, method, 0, settings)[0]["selected"]) != random, method


def plain_greedy_max_cover(candidates: torch.Tensor, pool: torch.Tensor, count: int) -> list[int]:
    similarity = torch.nn.functional.normalize(candidates, dim=1) @ torch.nn.functional.normalize(pool, dim=1).T
    covered, chosen = torch.zeros(len(pool), dtype=similarity.dtype), []
    for _ in range(count):
        gain = (similarity - covered).clamp(min=0).sum(1)
        gain[chosen] = -1
        chosen.append(int(gain.argmax()))
        covered = torch.maximum(covered, similarity[chosen[-1]])
    return chosen


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("refresh", [1, 4, 1000])
def test_lazy_max_cover_equals_plain_greedy(seed, refresh):
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.randn(80, 5, generator=generator, dtype=torch.float64)
    pool = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    assert greedy_max_cover(candidates, pool, 30, refresh=refresh).tolist() == \
        plain_greedy_max_cover(candidates, pool, 30)


@pytest.mark.parametrize("seed", range(3))
def test_the_gpu_max_cover_equals_plain_greedy(seed):
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.randn(80, 5, generator=generator, dtype=torch.float64)
    pool = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    assert dense_max_cover(candidates, pool, 30).tolist() == plain_greedy_max_cover(candidates, pool, 30) == \
        greedy_max_cover(candidates, pool, 30).tolist()


def test_full_data_trains_once_on_every_non_validation_image(data_root, tmp_path):
    config = get_experiment("vaal", "fig2_cifar10").config("smoke", {"seeds": 1})
    (row,) = run_job(config, "full_data", 0, RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke",
                                                          progress=False))
    assert row["n_labeled"] == 600 - 50 and row["selected"] == []


@pytest.mark.parametrize("experiment", ["ll4al_cifar10", "ll4al_cifar100"])
def test_ll4al_protocol_normalises_with_the_codes_cifar10_statistics(experiment, monkeypatch):
    """The LL4AL, TA-VAAL and LADA codes normalise with std (0.2023, 0.1994, 0.2010), for CIFAR-100 too."""
    from core.lib import loop
    from core.lib.datasets import CIFAR10_CODE_STATS, CIFAR100_STATS, ImageDataset

    tiny = Split(targets=np.arange(4) % 2, images=np.zeros((4, 32, 32, 3), dtype=np.uint8))
    monkeypatch.setattr(loop, "_loaded", lambda *args: ImageDataset("cifar100", ["a", "b"], tiny, tiny,
                                                                      *CIFAR100_STATS))
    config = get_experiment("baselines", experiment).config("paper")
    assert (loop.prepare_dataset(config, "unused", 0).std) == CIFAR10_CODE_STATS[1] == (0.2023, 0.1994, 0.2010)
    config = get_experiment("baselines", experiment).config("paper", {"data.normalization": "dataset"})
    assert loop.prepare_dataset(config, "unused", 0).std == CIFAR100_STATS[1]


@pytest.mark.parametrize("schedule", [{"epochs": 10}, {"iterations": 10}])
def test_learning_loss_stops_the_backbone_gradient_after_60_percent_of_training(schedule, monkeypatch):
    """One batch per epoch: the module's inputs carry the backbone's gradient in steps 0-6 of 10 (progress up to
    0.6, as epochs 0-120 of 200) and are detached after, for epoch and iteration schedules alike."""
    from baselines.learning_loss import LossPredictionHook, block_channels
    from core.lib.config import TrainConfig
    from core.lib.trainer import Trainer

    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    split = Split(targets=np.arange(8) % 2, images=images)
    source = TensorSource(split, (0.5,) * 3, (0.5,) * 3, Augmentation(hflip=False), "cpu")
    model = build_network("resnet18_cifar", 2, width=0.0625)
    module = LossPredictionModule(block_channels(model), 8)
    backbone_gradient = []
    forward = module.forward
    monkeypatch.setattr(module, "forward", lambda blocks: backbone_gradient.append(blocks[0].requires_grad)
                        or forward(blocks))
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=8, **schedule)
    Trainer(cfg, "cpu", 2, progress=False).fit(model, source, np.arange(8), split.targets,
                                               hooks=[LossPredictionHook(module, "margin", 1.0, 1.0, 0.6)])
    assert backbone_gradient == [True] * 7 + [False] * 3


@pytest.mark.parametrize("descriptors", ["zero", "duplicate"])
@pytest.mark.parametrize("refresh", [1, 3, 16, "gpu loop"])
def test_max_cover_never_picks_a_candidate_twice_when_the_gains_run_out(descriptors, refresh):
    """Zero or duplicate descriptors leave zero gains after the first picks: every candidate still comes once."""
    rows = torch.zeros(6, 4) if descriptors == "zero" else torch.tensor([[1.0, 0, 0, 0]] * 4 + [[0, 1.0, 0, 0]] * 2)
    if refresh == "gpu loop":
        chosen = dense_max_cover(rows, rows, 6).tolist()
    else:
        chosen = greedy_max_cover(rows, rows, 6, refresh=refresh).tolist()
    assert sorted(chosen) == list(range(6))
