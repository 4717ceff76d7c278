import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.lib.config import TrainConfig
from core.lib.datasets import ImageDataset, Split
from core.lib.errors import UserError
from core.lib.experiments import get_experiment
from core.lib.networks import build_network, parameter_count
from core.lib.pool import initial_pool
from core.lib.sources import Augmentation, TensorSource
from core.lib.trainer import Trainer, lr_factor
from core.tools.arguments import parse_assignments
from vaal.method import (VAAL, FrozenVAEDiscriminator, PixelDiscriminator, VAEWasserstein, endless,
                         labeled_distribution, roc_auc, wasserstein_to_labeled)
from vaal.networks import VAE, Discriminator


def test_vae_32_layout_matches_the_official_code():
    vae = VAE(32)
    recon, z, mu, logvar = vae(torch.randn(2, 3, 32, 32))
    assert recon.shape == (2, 3, 32, 32) and z.shape == mu.shape == logvar.shape == (2, 32)
    assert vae.fc_mu.in_features == 4096 and parameter_count(vae) == 22_835_139


def test_vae_64_layout_for_large_images():
    vae = VAE(128, size=64)
    recon, _, mu, _ = vae(torch.randn(2, 3, 64, 64))
    assert recon.shape == (2, 3, 64, 64) and mu.shape == (2, 128) and vae.fc_mu.in_features == 1024 * 4 * 4
    assert vae.decoder[0].out_features == 1024 * 8 * 8


@pytest.mark.parametrize("layers,count", [(5, 805_377), (3, 280_065)])
def test_discriminators(layers, count):
    disc = Discriminator(32, layers)
    out = disc(torch.randn(7, 32))
    assert out.shape == (7,) and ((out > 0) & (out < 1)).all()
    assert sum(isinstance(m, torch.nn.Linear) for m in disc.modules()) == layers and parameter_count(disc) == count


def synthetic_context(shift: float, count: int = 256, seed: int = 0, shifted_share: float = 1.0):
    """The first half is labeled, the second unlabeled; all images are dark noise (class 0) but the last
    `shifted_share` of the unlabeled ones, which are brighter (class 1)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 100, (count, 32, 32, 3)).astype(np.float64)
    first_shifted = count - round(shifted_share * count / 2)
    images[first_shifted:] += shift
    targets = (np.arange(count) >= first_shifted).astype(np.int64)
    split = Split(targets, np.clip(images, 0, 255).astype(np.uint8))
    source = TensorSource(split, (0.5,) * 3, (0.5,) * 3, Augmentation(hflip=True), "cpu")
    pool = SimpleNamespace(labeled=np.arange(count // 2), unlabeled=np.arange(count // 2, count))
    config = SimpleNamespace(train=TrainConfig(batch_size=32, iterations=1, eval_batch_size=64),
                             model=SimpleNamespace(width=0.125), data=SimpleNamespace(image_size=32))
    dataset = ImageDataset("synthetic", ["all"], split, None, (0.5,) * 3, (0.5,) * 3)
    return SimpleNamespace(config=config, source=source, pool=pool, device=torch.device("cpu"), seed=seed, cycle=0,
                           dataset=dataset, progress=False, rng=np.random.default_rng(seed), folder=None,
                           trainer=Trainer(config.train, "cpu", 1, progress=False), eval_batch_size=64, checkpoint=None)


def test_one_vaal_iteration_changes_all_three_modules():
    ctx = synthetic_context(shift=0)
    torch.manual_seed(0)
    task = build_network("vgg16_bn", 10, width=0.0625)
    task_before = [p.detach().clone() for p in task.parameters()]
    Trainer(TrainConfig(optimizer="adam", lr=5e-4, batch_size=32, iterations=1), "cpu", 10, progress=False).fit(
        task, ctx.source, ctx.pool.labeled, np.zeros(256, dtype=np.int64))
    strategy = VAAL({"iterations": 1, "latent_dim": 8})
    strategy.size = 32
    strategy.vae, strategy.disc = VAE(8, width=0.125), Discriminator(8)
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in
              (("vae", strategy.vae), ("disc", strategy.disc))}
    labeled = endless(ctx.source, ctx.pool.labeled, 32, torch.Generator().manual_seed(0), True)
    unlabeled = endless(ctx.source, ctx.pool.unlabeled, 32, torch.Generator().manual_seed(1), False)
    strategy.train_game(ctx, labeled, unlabeled, 1)
    assert strategy.diagnostics["game_iterations"] == 1
    assert any(not torch.equal(a, b) for a, b in zip(task_before, task.parameters()))
    for name, module in (("vae", strategy.vae), ("disc", strategy.disc)):
        changed = [not torch.equal(a, b) for a, b in zip(before[name], module.parameters())]
        assert all(changed), name


def test_game_diagnostics_are_means_per_optimizer_step():
    """Two VAE steps and one D step per iteration: each logged loss is its mean over the steps it was taken in."""
    ctx = synthetic_context(shift=0)
    strategy = VAAL({"iterations": 3, "latent_dim": 8})
    strategy.size = 32
    strategy.vae, strategy.disc = VAE(8, width=0.125), Discriminator(8)
    anchor = next(strategy.vae.parameters())
    strategy.vae_losses = lambda x_l, x_u, amp: (anchor.sum() * 0 + 3.0, anchor.sum() * 0 + 0.5)
    labeled = endless(ctx.source, ctx.pool.labeled, 32, torch.Generator().manual_seed(0), True)
    unlabeled = endless(ctx.source, ctx.pool.unlabeled, 32, torch.Generator().manual_seed(1), False)
    strategy.train_game(ctx, labeled, unlabeled, 3)
    assert strategy.diagnostics["vae_transductive_loss"] == pytest.approx(3.0)
    assert strategy.diagnostics["vae_adversarial_loss"] == pytest.approx(0.5)
    assert strategy.diagnostics["game_iterations"] == 3


def test_per_batch_batchnorm_hides_a_brightness_shift_between_batches():
    """Why a dark labeled set against a bright unlabeled one tests nothing about the game: the VAE sees labeled
    and unlabeled images in separate batches, and train-mode BatchNorm normalises each batch by its own
    statistics, so an untrained VAE already maps both batches to nearly the same latent distribution (only the
    zero-padded borders keep a trace of the shift). With running statistics (eval mode) the shift shows."""
    torch.manual_seed(0)
    vae = VAE(8, width=0.125)
    dark = torch.randint(0, 100, (32, 3, 32, 32), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    bright = dark + 240 / 255

    def gap(train_mode: bool) -> float:
        vae.train(train_mode)
        with torch.no_grad():
            a, b = vae.encode(dark)[0], vae.encode(bright)[0]
        return ((a.mean(0) - b.mean(0)).norm() / a.std(0).norm()).item()   # shift of the means / spread

    assert gap(train_mode=True) < 0.4 and gap(train_mode=False) > 1.5


@pytest.mark.parametrize("method", [FrozenVAEDiscriminator, PixelDiscriminator])
def test_discriminator_finds_the_class_missing_from_the_labeled_set(method):
    """The discriminator's training step and scoring on a case it must solve without BatchNorm statistics in
    the way (pixels, or a frozen VAE in eval mode): the labeled set holds dark images only, the unlabeled pool
    dark and bright ones, and the bright ones must be the least labeled-looking."""
    ctx = synthetic_context(shift=120, shifted_share=0.5)
    strategy = method({"iterations": 60, "latent_dim": 8, "health_check": True})
    strategy.prepare_selection(None, ctx)
    chosen = strategy.select(None, ctx, ctx.pool.unlabeled, 32)
    found = strategy.diagnostics
    assert found["health_held_out_base_rate"] == 0.5 and found["health_eval_held_out_share"] == 1.0
    assert (ctx.dataset.train.targets[chosen] == 1).all()
    assert found["disc_auc_labeled_vs_unlabeled"] > 0.7 and found["disc_auc_labeled_vs_unlabeled"] == found["health_eval_auc"]
    assert found["disc_mean_labeled"] > found["disc_mean_unlabeled"]


def test_health_check_by_hand():
    """Candidates 4-7: 4 and 5 of class 0, 6 and 7 of class 1, which the labeled set 0-3 (class 0) lacks."""
    ctx = synthetic_context(shift=120, count=8, shifted_share=0.5)
    strategy = VAAL({"health_check": True})
    strategy.vae = strategy.disc = None
    strategy.size = 32
    outputs = {False: torch.tensor([0.1, 0.2, 0.9, 0.8]), True: torch.tensor([0.9, 0.8, 0.1, 0.2])}
    labeled = {False: torch.tensor([0.5, 0.95]), True: torch.tensor([0.15, 0.05])}
    mu = torch.tensor([[1.0, -1.0], [0.0, 2.0], [0.5, 0.5], [-3.0, 0.0]])
    strategy.pool_outputs = lambda ctx, indices, train_mode, tag, details: {
        "d": outputs[train_mode], "mu": mu * (2 if train_mode else 1), "recon": torch.tensor([1.0, 2.0, 3.0, 6.0])}
    strategy.discriminator_outputs = lambda ctx, indices, tag, train_mode=False: labeled[train_mode]
    found = strategy.health_check(ctx, ctx.pool.unlabeled, 2)
    images = ctx.source.load(torch.arange(4, 8), False, None)
    assert found["health_held_out_base_rate"] == 0.5
    assert found["health_eval_held_out_share"] == 0.0 and found["health_train_held_out_share"] == 1.0
    assert found["health_eval_auc"] == 0.75 and found["health_train_auc"] == 0.125   # 6/8 and 1/8 pairs
    assert found["health_eval_mean_abs_mu"] == 1.0 and found["health_train_mean_abs_mu"] == 2.0
    assert found["health_eval_recon_mse"] == found["health_train_recon_mse"] == 3.0
    assert found["health_mean_image_mse"] == pytest.approx((images - images.mean(0)).pow(2).mean().item(), abs=1e-5)


def test_sampling_takes_the_lowest_discriminator_outputs_and_keeps_the_pool_valid():
    targets = np.repeat(np.arange(10), 30)
    pool = initial_pool(targets, 0, 30, 30)
    outputs = torch.rand(300, generator=torch.Generator().manual_seed(0))
    strategy = VAAL()
    strategy.vae = strategy.disc = None
    strategy.discriminator_outputs = lambda ctx, indices, tag: outputs[indices]
    ctx = SimpleNamespace(pool=pool, rng=np.random.default_rng(0), folder=None)
    chosen = strategy.select(None, ctx, pool.unlabeled, 20)
    expected = pool.unlabeled[np.argsort(outputs[pool.unlabeled].numpy())[:20]]
    assert sorted(chosen) == sorted(expected)
    pool.label(chosen, 20)
    assert len(pool.labeled) == 50


def test_equation_5_against_a_hand_computation():
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.log(torch.tensor([[4.0, 1.0]]))
    # ||mu_i - mu_j||^2 = 5; (sigma_i - sigma_j)^2 = (2 - 1)^2 + (1 - 1)^2 = 1  ->  sqrt(6)
    assert wasserstein_to_labeled(mu, logvar, torch.zeros(2), torch.ones(2)).item() == pytest.approx(math.sqrt(6))
    mean, var = labeled_distribution(torch.tensor([[0.0], [2.0]]), torch.log(torch.tensor([[1.0], [1.0]])))
    assert mean.item() == 1.0 and var.item() == pytest.approx(2.0)      # E[sigma^2 + mu^2] - mean^2 = 3 - 1


def test_kl_per_sample_is_the_summed_kl_over_the_batch_size():
    mu, logvar = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 2)
    assert VAAL().kl(mu, logvar).item() == pytest.approx(2.5)                  # 0.5 * (1 + 4)
    assert VAAL({"kl": "per_sample"}).kl(mu, logvar).item() == pytest.approx(1.25)
    with pytest.raises(UserError, match="not one of sum, per_sample"):
        VAAL({"kl": "mean"})


def test_roc_auc_by_hand():
    assert roc_auc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.85])).item() == pytest.approx(0.75)
    assert roc_auc(torch.tensor([0.5]), torch.tensor([0.5])).item() == pytest.approx(0.5)


def test_wasserstein_ablation_scores_far_candidates_higher():
    ctx = synthetic_context(shift=150)
    strategy = VAEWasserstein({"iterations": 30, "latent_dim": 4})
    strategy.prepare_selection(None, ctx)
    near = strategy.score(None, ctx, ctx.pool.labeled[:64]).mean()
    far = strategy.score(None, ctx, ctx.pool.unlabeled[:64]).mean()
    assert far > near


def test_code_2020_profile_is_the_official_code_at_67263f3():
    config = get_experiment("vaal", "fig2_cifar10").config("code_2020")
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("sgd", 0.01, 128)
    assert config.train.iterations == 39062 and config.method_options["vaal"]["disc_layers"] == 3
    assert config.method_options["vaal"]["sample_in_train_mode"] is True
    # solver.py divides the lr by 10 before iteration i when i > 0 and i % (39062 // 4) == 0: 4 times
    factors = {i: lr_factor(config.train, i, 39062) for i in (0, 9764, 9765, 19529, 19530, 29294, 29295, 39059,
                                                               39060, 39061)}
    expected = [1, 1, 0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4]
    assert list(factors.values()) == pytest.approx(expected)


def test_train_mode_scoring_draws_batches_as_the_official_sampler():
    """Shuffled, flipped batches of the game's batch size, the outputs put back in the candidates' order, and
    the VAE's BatchNorm running statistics left as they were."""
    ctx = synthetic_context(shift=120)
    images = ctx.source.load(torch.arange(256), False, None)
    seen = []

    class MeanPixel(torch.nn.Module):      # a flip-invariant "discriminator" that records what it is shown
        def forward(self, x):
            seen.append(x)
            return x.flatten(1).mean(1)

    strategy = PixelDiscriminator({"sample_in_train_mode": True})
    strategy.size, strategy.batch_size, strategy.vae, strategy.disc = 32, 48, VAE(8, width=0.125), MeanPixel()
    before = {name: buffer.clone() for name, buffer in strategy.vae.named_buffers()}
    candidates = np.random.default_rng(0).permutation(256)[:150]
    means = images[candidates].flatten(1).mean(1)
    outputs = strategy.discriminator_outputs(ctx, candidates, "unlabeled")
    assert torch.allclose(outputs, means, atol=1e-5)
    shown = torch.cat(seen)
    assert [len(x) for x in seen] == [48, 48, 48, 6]
    assert not torch.allclose(shown.flatten(1).mean(1), means, atol=1e-5)                        # shuffled
    assert not torch.allclose(shown.flatten(1).mean(1), images[np.sort(candidates)].flatten(1).mean(1), atol=1e-5)
    unflipped = (shown[:, None] == images[None]).flatten(2).all(2).any(1)
    assert 0.3 < 1 - unflipped.float().mean() < 0.7                                               # flipped
    with strategy.vae_mode(True):
        strategy.vae.encode(images[:64])
    assert all(torch.equal(before[name], buffer) for name, buffer in strategy.vae.named_buffers())


def test_method_options_given_as_text_get_their_types():
    config = get_experiment("vaal", "fig2_cifar10").config("smoke", parse_assignments(
        ["method_options.vaal.iterations=7", "method_options.vaal.sample_in_train_mode=false",
         "method_options.vaal.kl=per_sample"]))
    options = config.method_options["vaal"]
    assert options["iterations"] == 7 and options["sample_in_train_mode"] is False and options["kl"] == "per_sample"


def test_table3_values_reach_the_method_options():
    assert get_experiment("vaal", "fig2_caltech256").config().method_options["vaal"]["latent_dim"] == 64
    assert get_experiment("vaal", "fig2_caltech256").config().method_options["vaal"]["lambda2"] == 10
    # V3's N on Caltech-256 as the paper counts it (Table 2: 27,607 + 3,000), not the 29,780 images the loader keeps
    assert get_experiment("vaal", "fig2_caltech256").config().train.iterations == (27607 + 3000) * 100 // 64
    imagenet = get_experiment("vaal", "fig2_imagenet").config()
    assert imagenet.method_options["vaal"]["vae_lr"] == 1e-3 and imagenet.train.lr == 0.1


def test_readme_tables_are_the_generated_ones():
    from pathlib import Path

    from vaal.tables import markdown

    readme = (Path(__file__).resolve().parent.parent / "vaal" / "README.md").read_text()
    assert markdown().strip() in readme
