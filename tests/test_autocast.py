"""train.amp on the CPU as it runs on CUDA. On the CPU `core.lib.evaluation.autocast` is a no-op, so no other test
reaches the bfloat16 path; here every call of it enters CPU bfloat16 autocast instead, and the op CUDA's
autocast refuses (binary_cross_entropy, the only entry of the "banned" list in PyTorch's autocast_mode.cpp)
raises under it, as on CUDA. Every experiment that trains with train.amp and every method with amp forced on
run a smoke selection under this emulation; amp off stays bit-identical."""
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import core.lib.evaluation
from core.lib.experiments import EXPERIMENTS, get_experiment, method_status, papers
from core.lib.loop import RunSettings
from core.lib.strategy import STRATEGIES, load_plugins
from core.tools.jobs import run_job
from tests.test_experiments import FIXTURE_DATASETS, fixture_root

papers()
load_plugins()

CUDA_BANNED = ("binary_cross_entropy",)
BANNED_MESSAGE = "unsafe to autocast"


def cpu_autocast(device: torch.device, enabled: bool):
    """`core.lib.evaluation.autocast` with the CPU treated as CUDA: bfloat16 autocast whenever train.amp asks."""
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def refuse(name: str):
    def banned(*args, **kwargs):
        raise RuntimeError(f"aten::{name} is {BANNED_MESSAGE}: CUDA's autocast refuses it (emulated on the CPU)")
    return banned


@pytest.fixture
def emulated_cuda_autocast(monkeypatch):
    """Every module's `autocast` (imported by name from core.lib.evaluation) replaced by `cpu_autocast`, and CUDA's
    banned ops given a CPU-autocast kernel that raises: any call path (F.binary_cross_entropy, nn.BCELoss,
    torch.ops.aten) under CPU autocast fails as it does on CUDA; with autocast off they run as usual."""
    import sys

    original = core.lib.evaluation.autocast
    for module in list(sys.modules.values()):
        if getattr(module, "autocast", None) is original:
            monkeypatch.setattr(module, "autocast", cpu_autocast)
    library = torch.library.Library("aten", "IMPL")
    for name in CUDA_BANNED:
        library.impl(name, refuse(name), "AutocastCPU")
    yield
    library._destroy()


def test_the_emulation_autocasts_and_refuses_what_cuda_refuses(emulated_cuda_autocast):
    from baselines import learning_loss
    from vaal import method as vaal_method

    probabilities, target = torch.rand(6), torch.ones(6)
    linear = torch.nn.Linear(3, 2)
    for helper in (core.lib.evaluation.autocast, vaal_method.autocast, learning_loss.autocast):
        with helper(torch.device("cpu"), True):
            assert torch.is_autocast_enabled("cpu") and linear(torch.ones(1, 3)).dtype == torch.bfloat16
            with pytest.raises(RuntimeError, match=BANNED_MESSAGE):
                F.binary_cross_entropy(probabilities, target)
            with pytest.raises(RuntimeError, match=BANNED_MESSAGE):
                torch.nn.BCELoss()(probabilities, target)
            F.binary_cross_entropy_with_logits(probabilities, target)      # on CUDA's float32 list, allowed
        with helper(torch.device("cpu"), False):
            assert not torch.is_autocast_enabled("cpu")
            F.binary_cross_entropy(probabilities, target)
    F.binary_cross_entropy(probabilities, target)


# the four cases that crashed on an H200 (issue 21), DAAL's game and the methods whose losses changed run by default; every
# other (experiment, method) pair and every other method with amp forced on is marked slow (bfloat16 convolutions
# are several times slower than float32 ones on a CPU without bfloat16 units)
QUICK_CASES = {("vaal", "fig3_cityscapes", "vaal"), ("vaal", "fig3_bdd100k", "vaal"), ("vaal", "fig4_bdd100k", "vaal"),
               ("ta_vaal", "supp_fig6d_cityscapes", "ta_vaal"), ("daal", "fig3_cityscapes", "daal")}
QUICK_METHODS = {"vaal", "ta_vaal", "learning_loss", "mc_dropout"}
SMALLER = {"data.test_subset": 20}       # the test set is only evaluated; TA-VAAL needs the smoke pool for a game


def amp_cases() -> list:
    """(paper, experiment, method) for every implemented method of every experiment with train.amp on."""
    cases = []
    for key in sorted(EXPERIMENTS):
        config = EXPERIMENTS[key].config("smoke", {"seeds": 1})
        if not config.train.amp:
            continue
        implemented, _ = method_status(config)
        cases += [pytest.param(*key, method, id="/".join((*key, method)),
                               marks=() if (*key, method) in QUICK_CASES else pytest.mark.slow)
                  for method in implemented if not STRATEGIES[method].single_cycle]
    return cases


def one_selection(config, method: str, root, out) -> None:
    """Train, select, train: the smoke protocol cut to two cycles."""
    rows = run_job(config, method, 0, RunSettings(root, out, torch.device("cpu"), "smoke", progress=False))
    assert len(rows) == 2 and rows[1]["n_labeled"] > rows[0]["n_labeled"]
    assert all(np.isfinite(r["value"]) for r in rows)


@pytest.mark.parametrize("paper,experiment,method", amp_cases())
def test_amp_experiments_select_under_emulated_cuda_autocast(paper, experiment, method, emulated_cuda_autocast,
                                                             tmp_path, request):
    config = get_experiment(paper, experiment).config("smoke", {"seeds": 1, "protocol.cycles": 2})
    assert config.train.amp
    dataset = config.data.dataset
    root = fixture_root(dataset, tmp_path / "data") if dataset in FIXTURE_DATASETS else \
        request.getfixturevalue("data_root")
    one_selection(config, method, root, tmp_path / "out")


@pytest.mark.parametrize("method", [pytest.param(m, marks=() if m in QUICK_METHODS else pytest.mark.slow)
                                    for m in sorted(STRATEGIES) if not STRATEGIES[m].single_cycle])
def test_every_method_selects_with_amp_under_emulated_cuda_autocast(method, emulated_cuda_autocast, data_root,
                                                                    tmp_path):
    config = get_experiment("baselines", "ll4al_cifar10").config("smoke", {"seeds": 1, "protocol.cycles": 2,
                                                                 "train.amp": True, **SMALLER})
    one_selection(config, method, data_root, tmp_path)


def test_discriminator_and_loss_prediction_module_run_in_float32_under_autocast(emulated_cuda_autocast):
    """A logit of 8 gives 0.99966 in float32; a bfloat16 sigmoid rounds it to 1, where BCE(D, 0) is clamped."""
    from baselines.learning_loss import LossPredictionModule
    from vaal.networks import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(4, 3)
    torch.nn.init.zeros_(disc.net[-2].weight)
    torch.nn.init.constant_(disc.net[-2].bias, 8.0)
    module = LossPredictionModule([4, 8], hidden=16)
    blocks = [torch.randn(5, 4, 6, 6), torch.randn(5, 8, 3, 3)]
    with cpu_autocast(torch.device("cpu"), True):
        d = disc(torch.randn(5, 4))
        predicted = module([b.bfloat16() for b in blocks])
    assert d.dtype == torch.float32 and (d < 1).all()
    assert predicted.dtype == torch.float32
    torch.testing.assert_close(predicted, module(blocks), rtol=1e-2, atol=1e-2)   # only the blocks were rounded


def test_float32_game_losses_are_the_formulas_before_the_autocast_fix_bit_for_bit():
    """amp off: VAAL's VAE and discriminator losses, their gradients and the loss-prediction module's output equal
    the expressions the code had before the losses moved out of the autocast region, bit for bit."""
    from baselines.learning_loss import LossPredictionModule
    from core.lib.strategy import make_strategy
    from vaal.method import discriminator_loss, kl_sum
    from vaal.networks import VAE, Discriminator

    torch.manual_seed(0)
    vaal = make_strategy("vaal")
    vaal.vae, vaal.disc = VAE(8, 3, 32, 0.0625), Discriminator(8, 3)
    x_l, x_u = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)

    def before():
        recon_l, _, mu_l, logvar_l = vaal.vae(x_l)
        recon_u, _, mu_u, logvar_u = vaal.vae(x_u)
        transductive = F.mse_loss(recon_l.float(), x_l) + kl_sum(mu_l.float(), logvar_l.float()) + \
            F.mse_loss(recon_u.float(), x_u) + kl_sum(mu_u.float(), logvar_u.float())
        d_l, d_u = (vaal.disc.net(torch.flatten(mu, 1)).squeeze(1).float() for mu in (mu_l, mu_u))
        adversarial = F.binary_cross_entropy(d_l, torch.ones_like(d_l)) + \
            F.binary_cross_entropy(d_u, torch.ones_like(d_u))
        return transductive, adversarial, mu_l.detach(), mu_u.detach()

    found = {}
    for name, compute in (("before", before), ("now", lambda: vaal.vae_losses(x_l, x_u, False))):
        torch.manual_seed(1)
        transductive, adversarial = compute()[:2]
        gradients = torch.autograd.grad(transductive + adversarial, list(vaal.vae.parameters()))
        found[name] = [transductive, adversarial, *gradients]
    assert all(torch.equal(a, b) for a, b in zip(found["before"], found["now"]))

    mu_l, mu_u = torch.randn(6, 8), torch.randn(6, 8)
    d_l, d_u = (vaal.disc.net(torch.flatten(mu, 1)).squeeze(1) for mu in (mu_l, mu_u))
    expected = F.binary_cross_entropy(d_l, torch.ones_like(d_l)) + F.binary_cross_entropy(d_u, torch.zeros_like(d_u))
    assert torch.equal(discriminator_loss(vaal.disc(mu_l), vaal.disc(mu_u)), expected)

    module = LossPredictionModule([4, 8], hidden=16)
    blocks = [torch.randn(5, 4, 6, 6), torch.randn(5, 8, 3, 3)]
    pooled = [F.relu(branch(torch.flatten(F.adaptive_avg_pool2d(b, 1), 1)))
              for branch, b in zip(module.branches, blocks)]
    assert torch.equal(module(blocks), module.out(torch.cat(pooled, dim=1)).squeeze(1))
