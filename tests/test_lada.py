"""LADA: network sizes against the official code, the Beta pathwise gradient against Eq. 4, the mixing on hand
cases, pairs queried and used for mixup, and the paper tables reaching the options."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.lib.config import TrainConfig
from core.lib.datasets import Split
from core.lib.errors import UserError
from core.lib.networks import CifarResNet18, parameter_count
from core.lib.pool import Pool
from core.lib.sources import Augmentation, TensorSource
from lada.ada_mixup import AdaMixup, VanillaMixup
from lada.experiments import TABLE1, lada_options
from lada.method import LADA, LADAFixed, PairMixupHook, QueriedPairs, beta_draws, frozen, mix
from lada.networks import PolicyGenerator


@pytest.mark.parametrize("side,count", [(32, 98_183), (28, 77_063)])
def test_policy_generator_matches_supplement_tables_2_and_3(side, count):
    generator = PolicyGenerator(128, side)
    assert parameter_count(generator) == count          # lambdanet without its unused 3-way head
    assert generator.fc1.in_features == {32: 576, 28: 400}[side]
    tau = generator(torch.randn(5, 64, side, side), torch.randn(5, 64, side, side))
    assert tau.shape == (5,) and ((tau > 0) & (tau < 1)).all()


@pytest.mark.parametrize("channels,side", [(3, 32), (1, 28)])
def test_forward_rest_of_the_kth_feature_map_is_the_whole_forward(channels, side):
    torch.manual_seed(0)
    model = CifarResNet18(10, channels, width=0.25).eval()
    x = torch.randn(4, channels, side, side)
    for k in (0, 1, 2):
        hidden = model.kth_featuremap(x, k)
        assert hidden.shape == ((4, channels, side, side) if k == 0 else (4, 16, side, side))
        torch.testing.assert_close(model.forward_rest(hidden, k), model(x))


def test_beta_rsample_gradient_is_the_implicit_cdf_derivative_of_eq4():
    """d lambda / d tau = -(dF/dtau)(lambda) / p(lambda) (supplement Eq. 4), F by a central finite difference;
    PyTorch approximates this derivative (series and rational fits), hence the 0.5% tolerance."""
    from scipy import special, stats

    torch.manual_seed(0)
    tau = torch.tensor([0.3, 0.7, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    lam = beta_draws(tau, 1)[0]
    gradient = torch.autograd.grad(lam.sum(), tau)[0].numpy()
    t, x, eps = tau.detach().numpy(), lam.detach().numpy(), 1e-6
    dcdf = (special.betainc(t + eps, t + eps, x) - special.betainc(t - eps, t - eps, x)) / (2 * eps)
    expected = -dcdf / stats.beta.pdf(x, t, t)
    np.testing.assert_allclose(gradient, expected, rtol=5e-3, atol=1e-6)


def test_mix_on_a_hand_case():
    first, second = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    mixed = mix(first, second, torch.tensor([0.25, 1.0]))
    assert mixed[0].unique().tolist() == [0.25] and mixed[1].unique().tolist() == [1.0]
    draws = mix(first.unsqueeze(0), second.unsqueeze(0), torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    assert draws.shape == (2, 2, 1, 2, 2) and draws[1, 0].unique().tolist() == pytest.approx([0.3])


def test_frozen_restores_modes_and_gradients():
    model = CifarResNet18(10, width=0.125).train()
    model.classifier.weight.requires_grad_(False)
    with frozen(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.training and not model.classifier.weight.requires_grad and model.conv1.weight.requires_grad


def context(count: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    targets = np.arange(count) % 10
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    source = TensorSource(Split(targets, images), (0.5,) * 3, (0.5,) * 3, Augmentation(hflip=True, crop_padding=4),
                          "cpu")
    pool = Pool(count, np.arange(20), np.arange(20, count), np.array([], dtype=np.int64))
    config = SimpleNamespace(train=TrainConfig(eval_batch_size=64, amp=False))
    return SimpleNamespace(config=config, source=source, pool=pool, device=torch.device("cpu"), seed=seed, cycle=0,
                           rng=np.random.default_rng(seed), folder=None, answers=targets, eval_batch_size=64,
                           progress=False)


def small_lada(cls=LADA, **options):
    return cls({"num_lambda": 2, "generator_epochs": 2, "generator_batch": 20, **options})


@pytest.mark.parametrize("cls", [LADA, LADAFixed])
def test_lada_queries_both_members_of_the_top_pairs(cls):
    torch.manual_seed(0)
    ctx, model = context(), CifarResNet18(10, width=0.125)
    strategy = small_lada(cls)
    candidates = ctx.pool.unlabeled
    chosen = strategy.select(model, ctx, candidates, 10)
    pairs = strategy.pending
    assert len(np.unique(chosen)) == 10 and np.isin(chosen, candidates).all()
    assert chosen.tolist() == pairs.first.tolist() + pairs.second.tolist() and pairs.layer in (1, 2)
    assert (pairs.tau > 0).all() and (pairs.tau < 1).all() if cls is LADA else (pairs.tau == 2.0).all()
    assert strategy.diagnostics["scoring_seconds"] >= 0 and "sorting_seconds" in strategy.diagnostics
    assert model.training and all(p.requires_grad for p in model.parameters())   # left as found


def test_the_mixup_step_uses_only_the_queried_pairs_which_are_labeled():
    torch.manual_seed(0)
    ctx, model = context(), CifarResNet18(10, width=0.125)
    strategy = small_lada()
    chosen = strategy.select(model, ctx, ctx.pool.unlabeled, 10)
    ctx.pool.label(chosen, 10)
    ctx.cycle = 1
    hook, = strategy.train_hooks(model, ctx)
    loaded = []
    original = ctx.source.load
    ctx.source.load = lambda indices, augment, generator: loaded.append(indices.tolist()) or original(
        indices, augment, generator)
    before = [p.detach().clone() for p in model.parameters()]
    hook.after_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), epoch=0)
    used = sorted(loaded[0] + loaded[1])
    assert used == sorted(chosen.tolist()) and np.isin(used, ctx.pool.labeled).all()
    assert loaded[0] == strategy.pending.first.tolist() and loaded[1] == strategy.pending.second.tolist()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert hook.losses and torch.isfinite(hook.losses[0])


@pytest.mark.parametrize("zero_grad", [True, False])
def test_mixup_step_zeroes_the_gradient_unless_replicating_the_code(zero_grad):
    """L3: the code steps on the last labeled batch's gradient plus the mixup gradient."""
    ctx = context()
    pairs = QueriedPairs(np.array([20, 21]), np.array([22, 23]), np.array([0.5, 0.5]), 2)
    results = []
    for stale in (0.0, 1.0):
        torch.manual_seed(0)
        model = CifarResNet18(10, width=0.125)
        for p in model.parameters():
            p.grad = torch.full_like(p, stale)
        hook = PairMixupHook(pairs, ctx.source, ctx.answers, ctx.device, 0, 1, zero_grad=zero_grad)
        hook.after_epoch(model, torch.optim.SGD(model.parameters(), lr=1.0), 0)
        results.append(model.classifier.bias.detach().clone())
    difference = results[0] - results[1]
    torch.testing.assert_close(difference, torch.zeros(10) if zero_grad else torch.ones(10))


def test_vanilla_mixup_takes_the_top_entropy_images_and_repairs_them():
    torch.manual_seed(0)
    ctx, model = context(), CifarResNet18(10, width=0.125)
    chosen = small_lada(VanillaMixup).select(model, ctx, ctx.pool.unlabeled, 10)
    from baselines.uncertainty import EntropySampling

    assert sorted(chosen) == sorted(EntropySampling().select(model, ctx, ctx.pool.unlabeled, 10))


def test_table1_reaches_the_options():
    assert {d: lada_options(d, ["lada"])["lada"]["num_lambda"] for d in TABLE1} == \
        {"fashion_mnist": 10, "svhn": 1, "cifar10": 10, "cifar100": 5}
    options = lada_options("cifar10", ["lada_fixed", "lada_fixed_vaalmix", "lada_ll4almix", "entropy"])
    assert options["lada_fixed"]["fixed_tau"] == 2.0 and options["lada_fixed_vaalmix"]["fixed_tau"] == 0.2
    assert "entropy" not in options and options["lada_ll4almix"]["num_lambda"] == 10


def test_table1_follows_the_codes_optimizer_and_adamixup_training_per_dataset():
    """L5: one Adam kept across acquisitions and AdaMixup's networks untrained where the code warm-starts;
    CIFAR-100 rebuilds Adam and trains them."""
    from core.lib.experiments import get_experiment

    for dataset in TABLE1:
        config = get_experiment("lada", f"table1_{dataset}").config()
        code_resets = dataset == "cifar100"
        assert config.train.keep_optimizer is not code_resets and config.train.reinit is code_resets
        assert config.method_options["ada_mixup"] == {"train_policy_and_discriminator": code_resets}


def result_row(method, seed, cycle, value, **extra):
    return {"paper": "lada", "experiment": "table1_x", "profile": "smoke", "metric": "accuracy", "method": method,
            "seed": seed, "cycle": cycle, "n_labeled": 20 + 10 * cycle, "fraction_labeled": (20 + 10 * cycle) / 100,
            "value": value, "selected": [1] if cycle < 2 else [], "select_seconds": 0.5, "train_seconds": 2.0,
            "diagnostics": extra}


def test_best_final_aubc_and_table4_on_hand_rows():
    from lada.tables import summary, table4

    rows = [result_row("entropy", 0, c, v) for c, v in enumerate((10.0, 30.0, 20.0))]
    rows += [result_row("lada", 0, c, 40.0, scoring_seconds=1.5, sorting_seconds=0.001, generator_seconds=1.0)
             for c in range(2)] + [result_row("lada", 0, 2, 40.0)]
    text = summary(rows)
    assert "| entropy | 30.00 | 20.00 | 22.50 | 1 |" in text          # AUBC: (20 + 25) / 2 over the range
    assert "| lada | 40.00 | 40.00 | 40.00 | 1 |" in text
    times = table4(rows)
    assert "| table1_x | smoke | entropy | 0.500 (with sorting) | - | 2.00 | 2 |" in times
    assert "| table1_x | smoke | lada | 1.500 (1.000) | 0.00100 | 2.00 | 2 |" in times


@pytest.mark.slow
def test_figures_from_smoke_runs(data_root, tmp_path):
    from core.lib.experiments import get_experiment
    from core.lib.loop import RunSettings
    from core.tools.jobs import run_job
    from lada.figures import main

    config = get_experiment("lada", "table1_fashion_mnist").config("smoke", {"seeds": 1})
    settings = RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke", progress=False)
    for method in ("entropy", "lada"):
        run_job(config, method, 0, settings)
    assert main(["fig2", str(tmp_path)]) == 0 and (tmp_path / "lada_fig2_tau.png").exists()
    assert main(["tables", str(tmp_path)]) == 0 and "Table 4" in (tmp_path / "lada_tables.md").read_text()
    assert main(["tsne", str(tmp_path), "--cycle", "1", "--data-root", str(data_root)]) == 0


@pytest.mark.parametrize("channels,side", [(3, 32), (1, 28)])
def test_stn_starts_at_the_identity_transform(channels, side):
    from lada.networks import SpatialTransformer

    x = torch.rand(2, channels, side, side)
    torch.testing.assert_close(SpatialTransformer(channels, side)(x), x, atol=1e-5, rtol=0)


def test_lada_stn_keeps_the_saved_tau_and_trains_the_classifier_alone_on_augmented_images():
    """Alg. 1: tau* is searched on a copy (line 9 reloads tau); line 12 updates theta only."""
    from lada.stn import LADASTN

    torch.manual_seed(0)
    ctx = context()
    ctx.dataset = SimpleNamespace(train=SimpleNamespace(images=np.zeros((1, 32, 32, 3), dtype=np.uint8)))
    strategy = LADASTN({"stn_epochs": 2, "stn_batch": 50})
    model = strategy.prepare_model(CifarResNet18(10, width=0.125), ctx)
    saved = [p.detach().clone() for p in model.stn.parameters()]
    chosen = strategy.select(model, ctx, ctx.pool.unlabeled, 10)
    assert len(np.unique(chosen)) == 10 and all(torch.equal(a, b) for a, b in zip(saved, model.stn.parameters()))
    assert len(strategy.diagnostics["stn_losses"]) == 2
    ctx.pool.label(chosen, 10)
    ctx.cycle = 1
    hook, = strategy.train_hooks(model, ctx)
    assert hook.images.shape == (10, 3, 32, 32) and hook.labels.tolist() == (chosen % 10).tolist()
    task = [p.detach().clone() for p in model.task.parameters()]
    hook.after_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), 0)
    assert all(torch.equal(a, b) for a, b in zip(saved, model.stn.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(task, model.task.parameters()))


@pytest.mark.parametrize("train_modules", [True, False])
def test_ada_mixup_step_trains_on_the_queried_images_only_and_its_networks_only_when_asked(train_modules):
    """The code never trains AdaMixup's policy and discriminator on Fashion-MNIST, SVHN and CIFAR-10 (L5): with
    `train_modules` false they stay out of the optimizer the trainer builds, and only the classifier changes."""
    from lada.ada_mixup import AdaMixupHook
    from lada.networks import AdaMixupPolicy, IntrusionDiscriminator

    torch.manual_seed(0)
    ctx, model = context(), CifarResNet18(10, width=0.125)
    policy, discriminator = AdaMixupPolicy(3, 32), IntrusionDiscriminator(model.feature_dim, 10)
    assert parameter_count(AdaMixupPolicy(3, 32)) == 228_211 and parameter_count(AdaMixupPolicy(1, 28)) == 145_715
    queried = np.arange(30, 40)
    hook = AdaMixupHook(policy, discriminator, queried, ctx.source, ctx.answers, 10, ctx.device, 0, 1,
                        train_modules=train_modules)
    loaded, original = [], ctx.source.batches
    ctx.source.batches = lambda indices, *a, **k: loaded.append(np.asarray(indices).tolist()) or original(
        indices, *a, **k)
    modules = (model, policy, discriminator)
    before = [[p.detach().clone() for p in m.parameters()] for m in modules]
    optimizer = torch.optim.Adam([p for m in (model, *hook.modules) for p in m.parameters()], lr=1e-3)
    hook.after_epoch(model, optimizer, 0)
    assert loaded == [queried.tolist()] and len(hook.losses) == 1
    changed = [any(not torch.equal(a, b) for a, b in zip(old, m.parameters())) for m, old in zip(modules, before)]
    assert changed == [True, train_modules, train_modules]


def test_ada_mixup_class_loss_on_a_hand_case():
    """Two rows, probabilities of (y1, y2): row 0 (0.5, 0.25), row 1 (0.8, 0.1); weights 1 and 0.5.
    per_sample: mean(1 ln 2 + 0, 0.5 ln 1.25 + 0.5 ln 10); batch_mean, the code's mixup_criterion:
    0.75 mean(ln 2, ln 1.25) + 0.25 mean(ln 4, ln 10)."""
    from lada.ada_mixup import mixup_class_loss

    log_p = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    first, second, weight = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([1.0, 0.5])
    per_sample = (math.log(2) + 0.5 * math.log(1.25) + 0.5 * math.log(10)) / 2
    batch_mean = 0.75 * (math.log(2) + math.log(1.25)) / 2 + 0.25 * (math.log(4) + math.log(10)) / 2
    assert mixup_class_loss(log_p, first, second, weight, "per_sample").item() == pytest.approx(per_sample)
    assert mixup_class_loss(log_p, first, second, weight, "batch_mean").item() == pytest.approx(batch_mean)
    assert abs(per_sample - batch_mean) > 0.1
    with pytest.raises(UserError, match="class_loss='mean' is not one of batch_mean, per_sample"):
        AdaMixup({"class_loss": "mean"})
    assert AdaMixup().options["class_loss"] == "batch_mean"


def test_readme_table1_is_the_generated_one():
    from pathlib import Path

    from lada.tables import markdown

    assert markdown() in (Path(__file__).resolve().parent.parent / "lada" / "README.md").read_text()


def test_tsne_without_scikit_learn_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import sys

    from lada.figures import main

    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    assert main(["tsne", str(tmp_path), "--data-root", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "[tsne]" in error and error.count("\n") == 1


def test_lada_on_another_task_network_is_a_one_line_user_error_before_anything_is_written(data_root, tmp_path):
    from core.lib.errors import UserError
    from core.lib.experiments import get_experiment
    from core.lib.loop import RunSettings
    from core.tools.jobs import plan_job

    config = get_experiment("baselines", "ll4al_cifar10").config("smoke", {"seeds": 1, "model.arch": "vgg16_bn"})
    with pytest.raises(UserError, match="lada works with model.arch resnet18_cifar only, not vgg16_bn") as error:
        plan_job(config, "lada", 0, RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke", progress=False))
    assert "\n" not in str(error.value) and not any(tmp_path.iterdir())
