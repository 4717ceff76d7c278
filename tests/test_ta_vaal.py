import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from baselines.learning_loss import LossPredictionModule, block_channels
from core.lib.config import run_hash
from core.lib.datasets import Split
from core.lib.experiments import get_experiment
from core.lib.loop import RunSettings
from core.lib.networks import build_network, parameter_count
from core.lib.pool import candidate_subset
from core.lib.sources import Augmentation, TensorSource
from core.tools.jobs import run_job
from ta_vaal import figures
from ta_vaal.experiments import TABLE1
from ta_vaal.figures import class_counts, improvement_over_random
from ta_vaal.method import TAVAAL, VAALInTAVAAL, kl_mean
from ta_vaal.networks import TaskAwareVAE
from tests.test_vaal import synthetic_context
from vaal.method import kl_sum
from vaal.networks import Discriminator


def test_parameter_counts_against_the_official_modules():
    # VAAL's VAE (d = 32) has 22,835,139; the decoder's first Linear(d -> 1024*4*4) gains one input (r)
    assert parameter_count(TaskAwareVAE(32)) == 22_835_139 + 16_384
    # d = 64: fc_mu and fc_logvar grow by 2 x 32 x (4096 + 1), the decoder by 32 x 16,384
    assert parameter_count(TaskAwareVAE(64)) == 22_835_139 + 2 * 32 * 4097 + 33 * 16_384
    assert parameter_count(Discriminator(65, 5)) == 65 * 512 + 512 + 3 * (512 * 512 + 512) + 513
    assert parameter_count(Discriminator(33, 3)) == 280_577                      # the code's Discriminator(32)
    ranker = LossPredictionModule(block_channels(build_network("resnet18_cifar", 10)))
    assert parameter_count(ranker) == 123_905                                   # LL4AL's LossNet


def test_fashion_mnist_latent_size_28_is_the_codes_vae_and_a_named_profile():
    # the code's VAE(28, 1, 3): d = 28, 1 channel, the 28x28 layout, decoder on z + r
    assert parameter_count(TaskAwareVAE(28, in_channels=1, size=28)) == 15_408_825
    experiment = get_experiment("ta_vaal", "supp_fig5d_fashion_mnist")
    paper, code = experiment.config(), experiment.config("code_latent_dim")
    assert paper.method_options["ta_vaal"]["latent_dim"] == 64 == paper.method_options["vaal_in_ta_vaal"]["latent_dim"]
    listed = TAVAAL(paper.method_options["ta_vaal"]).networks(paper, 10)
    assert parameter_count(listed["VAE with latent_dim=28 (option)"]) == 15_408_825
    for method in ("ta_vaal", "vaal_in_ta_vaal"):
        options = code.method_options[method]
        assert options["latent_dim"] == 28 and options["vae_lr"] == paper.method_options[method]["vae_lr"]
    networks = TAVAAL(code.method_options["ta_vaal"]).networks(code, 10)
    assert parameter_count(networks["VAE"]) == 15_408_825
    assert networks["discriminator"].net[0].in_features == 29                  # mu (28) and r


def test_28_pixel_layout_is_the_codes_fashion_mnist_vae():
    vae = TaskAwareVAE(28, in_channels=1, size=28)
    recon, z, mu, _ = vae(torch.randn(2, 1, 28, 28), torch.rand(2))
    assert recon.shape == (2, 1, 28, 28) and mu.shape == z.shape == (2, 28)
    assert vae.encoder[9].kernel_size == (3, 3) and vae.decoder[2].kernel_size == (3, 3)
    assert vae.fc_mu.in_features == 1024 * 2 * 2


def test_the_decoder_uses_r():
    vae = TaskAwareVAE(16, width=0.125).eval()
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    low = vae(x, torch.full((4,), 0.1))[0]
    torch.manual_seed(0)
    same = vae(x, torch.full((4,), 0.1))[0]
    torch.manual_seed(0)
    high = vae(x, torch.full((4,), 0.9))[0]
    assert torch.equal(low, same) and (low - high).abs().mean() > 1e-4


def test_the_discriminator_sees_r_and_vaal_in_ta_vaal_does_not():
    strategy = TAVAAL({"latent_dim": 8})
    strategy.disc = Discriminator(9)
    mu = torch.randn(5, 8)
    assert not torch.allclose(strategy.discriminate(mu, torch.zeros(5)), strategy.discriminate(mu, torch.ones(5)))
    plain = VAALInTAVAAL({"latent_dim": 8})
    plain.disc = Discriminator(8)
    assert torch.equal(plain.discriminate(mu, torch.zeros(5)), plain.discriminate(mu, torch.ones(5)))


def test_kl_mean_and_sum_by_hand():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)
    # 1 + logvar - mu^2 - exp(logvar) = (-1, 0): sum -> 0.5, mean -> 0.25
    assert kl_sum(mu, logvar).item() == pytest.approx(0.5) and kl_mean(mu, logvar).item() == pytest.approx(0.25)


def stream(images, rankings):
    while True:
        yield images, rankings


def test_first_iteration_draws_uniform_r_then_sigmoid_for_the_decoder_and_raw_r_for_d():
    strategy = TAVAAL()
    strategy.size = 32
    images, r = torch.zeros(3, 3, 32, 32), torch.tensor([-2.0, 0.0, 3.0])
    generator = torch.Generator().manual_seed(0)
    _, _, decoder_r, disc_r = strategy.draw(stream(images, r), stream(images, r), True, generator)
    assert decoder_r[0] is disc_r[0] and ((disc_r[0] > 0) & (disc_r[0] < 1)).all() and len(disc_r[1]) == 3
    _, _, decoder_r, disc_r = strategy.draw(stream(images, r), stream(images, r), False, generator)
    assert torch.equal(disc_r[0], r) and torch.allclose(decoder_r[0], torch.sigmoid(r))
    code = TAVAAL({"first_ranking": "ranker"})
    code.size = 32
    assert torch.equal(code.draw(stream(images, r), stream(images, r), True, generator)[3][0], r)


def ta_context(count: int = 256, subset: int = 64):
    ctx = synthetic_context(shift=120, count=count)
    ctx.config.protocol = SimpleNamespace(subset=subset)
    ctx.config.data.dataset = "synthetic"
    ctx.eval_batch_size = 64
    return ctx


def test_game_length_is_labeled_plus_subset_times_epochs_over_batch_and_selection_is_lowest_d():
    ctx = ta_context()
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 1, width=0.0625).eval()
    strategy = TAVAAL({"latent_dim": 8, "vae_epochs": 1})
    strategy.ranker.module = LossPredictionModule(block_channels(model), 8)
    strategy.prepare_selection(model, ctx)
    assert strategy.diagnostics["game_iterations"] == (128 + 64) * 1 // 32
    subset = candidate_subset(ctx.pool.unlabeled, 64, ctx.seed, ctx.cycle)
    scores = strategy.score(model, ctx, subset)
    chosen = strategy.select(model, ctx, subset, 10)
    assert sorted(chosen) == sorted(subset[np.argsort(-scores.numpy())[:10]])


def smoke_run(tmp_path, data_root, method, experiment="supp_fig5a_cifar10", **overrides):
    config = get_experiment("ta_vaal", experiment).config("smoke", {"seeds": 1, "protocol.cycles": 2, **overrides})
    return run_job(config, method, 0, RunSettings(data_root, tmp_path, torch.device("cpu"), "smoke", progress=False))


def test_independent_learner_selects_what_the_method_selects_and_is_tested_without_the_ranker(data_root, tmp_path):
    ranked = smoke_run(tmp_path, data_root, "learning_loss")
    independent = smoke_run(tmp_path, data_root, "learning_loss_independent")
    assert ranked[0]["selected"] == independent[0]["selected"]
    assert ranked[0]["value"] != independent[0]["value"] or ranked[1]["value"] != independent[1]["value"]


def test_lpm_for_all_methods_trains_a_ranker_beside_random(data_root, tmp_path):
    plain = smoke_run(tmp_path, data_root, "random")
    with_lpm = smoke_run(tmp_path, data_root, "random_lpm")
    assert plain[0]["train_loss"] != with_lpm[0]["train_loss"]      # same data and init, loss term added
    assert len(with_lpm[0]["diagnostics"]["ranking_loss_per_epoch"]) == 2 and "ranking_loss_per_epoch" not in \
        plain[0]["diagnostics"]
    config = get_experiment("ta_vaal", "supp_fig5a_cifar10").config("lpm_for_all_methods")
    assert config.methods == ["random_lpm", "mc_dropout_lpm", "coreset_lpm", "learning_loss", "vaal_lpm",
                              "vaal_in_ta_vaal_lpm", "ta_vaal"]


def test_ta_vaal_selects_otherwise_than_random_and_its_figures_draw(data_root, tmp_path):
    random = smoke_run(tmp_path, data_root, "random")
    ta_vaal = smoke_run(tmp_path, data_root, "ta_vaal")
    assert set(ta_vaal[0]["selected"]) != set(random[0]["selected"])
    assert len(ta_vaal[0]["diagnostics"]["ranking_loss_per_epoch"]) == 2
    results, out = tmp_path / "ta_vaal" / "supp_fig5a_cifar10", tmp_path / "figures"
    assert figures.main(["improvement", str(results), "--out", str(out)]) == 0
    assert "| ta_vaal | +0.00 ± 0.00 |" in (out / "improvement_over_random.md").read_text()   # same initial set
    assert figures.main(["ranking_loss", str(results), "--out", str(out)]) == 0
    assert figures.main(["samples", str(results), "--out", str(out), "--data-root", str(data_root)]) == 0
    counts = json.loads((out / "sampled_images_seed0.json").read_text())
    assert {c["method"] for c in counts} == {"random", "ta_vaal"} and \
        all(sum(c["counts"].values()) == 40 for c in counts)            # the smoke budget, below 100
    assert figures.main(["ranking_loss", str(tmp_path / "missing")]) == 2


def test_table1_values_reach_the_options():
    caltech = get_experiment("ta_vaal", "supp_fig6c_caltech101").config()
    options = caltech.method_options["ta_vaal"]
    assert (options["latent_dim"], options["weight"], options["lambda2"], options["vae_lr"]) == (128, 0.2, 15, 1e-4)
    assert (caltech.train.batch_size, caltech.train.lr, caltech.protocol.initial, caltech.protocol.budget) == \
        (16, 1e-2, 1000, 500)
    cifar100 = get_experiment("ta_vaal", "supp_fig5b_cifar100").config()
    assert cifar100.data.normalization == "cifar10_code"
    assert cifar100.protocol.budget == 2000 == TABLE1["cifar100"].budget
    assert cifar100.train.milestones == [160] and cifar100.method_options["learning_loss"] == {"weight": 1.0}


def test_imagenet_layout_resnet18_matches_torchvision():
    import torchvision

    ours = build_network("resnet18", 1000)
    assert parameter_count(ours) == parameter_count(torchvision.models.resnet18())
    logits, _, blocks = ours.forward_features(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 1000) and [b.shape[-1] for b in blocks] == [16, 8, 4, 2]


def test_improvement_is_paired_by_seed_and_counts_by_class():
    rows = [{"method": m, "seed": s, "n_labeled": 100, "value": v}
            for m, s, v in (("random", 0, 50.0), ("random", 1, 60.0), ("ta_vaal", 0, 53.0), ("ta_vaal", 1, 61.0))]
    assert improvement_over_random(rows)["ta_vaal"][100] == [3.0, 1.0]
    assert class_counts(np.array([0, 2, 2]), 4).tolist() == [1, 0, 2, 0]


def test_readme_table_is_the_generated_one():
    from ta_vaal.tables import markdown

    readme = (Path(__file__).resolve().parent.parent / "ta_vaal" / "README.md").read_text()
    assert markdown().strip() in readme



def test_the_codes_to_tensor_only_normalisation_option(data_root):
    from core.lib.loop import prepare_dataset

    paper = get_experiment("ta_vaal", "supp_fig5d_fashion_mnist").config("smoke")
    code = get_experiment("ta_vaal", "supp_fig5d_fashion_mnist").config("smoke", {"data.normalization": "none"})
    assert prepare_dataset(paper, data_root, 0).std == (0.3530,)
    assert (prepare_dataset(code, data_root, 0).mean, prepare_dataset(code, data_root, 0).std) == ((0.0,), (1.0,))


def class_sorted_context(count: int = 1000, classes: int = 10, seed: int = 0):
    """Images stored class by class, as an ImageFolder tree: class c holds indices [c x count/classes, ...);
    each class has its own brightness. The pool's sets are sorted, as core/lib/pool.py keeps them."""
    rng = np.random.default_rng(seed)
    targets = np.arange(count) * classes // count
    images = rng.integers(0, 60, (count, 32, 32, 3)) + 19 * targets[:, None, None, None]
    source = TensorSource(Split(targets, images.astype(np.uint8)), (0.5,) * 3, (0.5,) * 3, Augmentation(), "cpu")
    ctx = SimpleNamespace(source=source, device=torch.device("cpu"), seed=seed, cycle=1, eval_batch_size=200,
                          config=SimpleNamespace(train=SimpleNamespace(amp=False)))
    return ctx, np.arange(0, count, 2), np.arange(1, count, 2), torch.as_tensor(targets, dtype=torch.float32)


def game_passes(strategy, ctx, labeled, subset, ranking, passes: int = 2):
    """The classes of the game's batches (read through `ranking`, here each image's class), per stream and pass."""
    streams = strategy.game_streams(ctx, labeled, subset, ranking)
    per_pass = [len(labeled) // strategy.batch_size, len(subset) // strategy.batch_size]
    return [[torch.cat([next(stream)[1] for _ in range(steps)]).long() for _ in range(passes)]
            for stream, steps in zip(streams, per_pass)]


def common_class_share(classes: torch.Tensor, batch: int) -> float:
    """The mean share of a batch taken by its most common class."""
    return float(np.mean([torch.bincount(b.long()).max().item() / len(b) for b in classes.split(batch)]))


def test_the_game_reads_class_sorted_sets_in_a_random_order_fixed_for_the_game():
    ctx, labeled, subset, classes = class_sorted_context()
    strategy = TAVAAL()
    strategy.batch_size = 50
    assert common_class_share(classes[labeled], 50) == 1.0          # the sorted order: one class per batch
    for first, second in game_passes(strategy, ctx, labeled, subset, classes):
        assert common_class_share(first, 50) < 0.35                 # about 10 classes per batch, as the code's
        assert torch.equal(first, second)                           # the same order at every pass (T10)
    (seed0, _), _ = game_passes(strategy, ctx, labeled, subset, classes)
    ctx.seed = 1
    (seed1, _), _ = game_passes(strategy, ctx, labeled, subset, classes)
    assert not torch.equal(seed0, seed1) and torch.equal(seed0.sort()[0], seed1.sort()[0])
    reshuffled = VAALInTAVAAL({"shuffle_vae_loaders": True})
    reshuffled.batch_size = 50
    for first, second in game_passes(reshuffled, ctx, labeled, subset, classes):
        assert common_class_share(first, 50) < 0.35 and not torch.equal(first, second)


def test_train_mode_scoring_reads_the_candidates_in_the_games_batches():
    ctx, labeled, subset, classes = class_sorted_context(count=400)
    torch.manual_seed(0)
    strategy = VAALInTAVAAL({"latent_dim": 8, "sample_in_train_mode": True})
    strategy.batch_size, strategy.size, strategy.task_model = 40, 32, None
    strategy.vae, strategy.disc = TaskAwareVAE(8, width=0.125, ranked=False), Discriminator(8)
    positions = torch.arange(len(classes), dtype=torch.float32)    # read each batch's indices back from r
    expected = torch.zeros(len(classes))
    with torch.no_grad():
        strategy.vae.train()
        stream = strategy.game_streams(ctx, labeled, subset, positions)[1]
        for _ in range(len(subset) // 40):
            images, where = next(stream)
            expected[where.long()] = strategy.disc(strategy.vae.encode(images)[0])
    scored = strategy.discriminator_outputs(ctx, subset, "unlabeled")
    assert torch.allclose(scored, expected[subset], atol=1e-6)
    ordered = strategy.discriminator_outputs(ctx, subset, "unlabeled", train_mode=False)
    in_other_batches = strategy.discriminator_outputs(ctx, subset, "another set", train_mode=True)
    assert not torch.allclose(scored, ordered, atol=1e-3) and not torch.allclose(scored, in_other_batches, atol=1e-3)


def test_the_first_cycle_drops_the_last_partial_batch_and_later_cycles_keep_it(data_root, tmp_path):
    sizes = {"train.batch_size": 16, "train.epochs": 2}                 # 40 labels, then 80: 2.5 and 5 batches
    code = smoke_run(tmp_path / "code", data_root, "random", **sizes)
    kept = smoke_run(tmp_path / "kept", data_root, "random", **sizes, **{"train.drop_last_first_cycle": "false"})
    assert [row["train_steps"] for row in code] == [2 * 2, 2 * 5]
    assert [row["train_steps"] for row in kept] == [2 * 3, 2 * 5]
    assert code[1]["train_loss"] == kept[1]["train_loss"] and code[0]["train_loss"] != kept[0]["train_loss"]
    config = get_experiment("ta_vaal", "supp_fig5a_cifar10").config()
    assert config.train.drop_last_first_cycle and not config.train.drop_last
    off = get_experiment("ta_vaal", "supp_fig5a_cifar10").config(overrides={"train.drop_last_first_cycle": "false"})
    assert run_hash(config, "ta_vaal") != run_hash(off, "ta_vaal")
