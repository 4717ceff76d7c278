import copy

import numpy as np
import pytest
import torch

from core.lib.config import TrainConfig
from core.lib.datasets import load_dataset, subsample
from core.lib.networks import build_network
from core.lib.sources import Augmentation, TensorSource
from core.lib.trainer import Trainer, TrainHook, load_model_optimizer_state, lr_factor, make_optimizer


def test_multistep_decays_after_the_milestone_epoch():
    cfg = TrainConfig(schedule="multistep", milestones=[160], gamma=0.1)
    assert lr_factor(cfg, 159, 200) == 1.0 and lr_factor(cfg, 160, 200) == pytest.approx(0.1)


def test_quarter_schedule_divides_at_each_quarter():
    cfg = TrainConfig(schedule="quarter", gamma=0.1)
    factors = [lr_factor(cfg, step, 100) for step in (24, 25, 50, 75, 99)]
    assert factors == pytest.approx([1, 0.1, 0.01, 0.001, 0.001])


@pytest.fixture(scope="module")
def small_cifar(data_root):
    dataset = load_dataset("cifar10", data_root)
    split = subsample(dataset.train, 600, "trainer-test")
    return split, TensorSource(split, dataset.mean, dataset.std, Augmentation(hflip=True, crop_padding=4), "cpu")


def test_training_decreases_the_loss_on_real_images(small_cifar):
    split, source = small_cifar
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 10, width=0.125)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=50, epochs=1)   # 0.05 sat at the 0.8 bar (2.30 -> 2.02)
    trainer = Trainer(cfg, "cpu", 10, progress=False)
    labeled = np.arange(300)
    loss_of = lambda: torch.nn.functional.cross_entropy(
        model.eval()(source.load(torch.arange(300), False, None)), torch.as_tensor(split.targets[:300])).item()
    before = loss_of()
    cfg.epochs = 12   # 8 sat at the bar with one thread (2.30 -> 1.87); 12 gives 1.04
    trainer.fit(model, source, labeled, split.targets)
    assert loss_of() < 0.8 * before


def test_best_validation_checkpoint_is_restored(small_cifar):
    split, source = small_cifar
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 10, width=0.0625)
    cfg = TrainConfig(optimizer="sgd", lr=0.5, batch_size=50, iterations=12, select_on_validation=True,
                      validate_every=3)
    report = Trainer(cfg, "cpu", 10, progress=False).fit(
        model, source, np.arange(200), split.targets, np.arange(400, 600), split.targets)
    from core.lib.evaluation import evaluate

    scores = [score for _, score in report.validation_curve]
    assert len(scores) == 4 and report.best_validation == max(scores)
    restored = evaluate(model, source, np.arange(400, 600), split.targets, 10, 100)["value"]
    assert restored == pytest.approx(max(scores))


class CountingHook(TrainHook):
    def __init__(self):
        self.extra = torch.nn.Linear(2, 1)
        self.modules = [self.extra]
        self.calls = 0

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        self.calls += 1
        assert features is not None and len(blocks) == 4 and per_sample_loss.shape == logits.shape[:1]
        return self.extra(torch.ones(1, 2)).sum() ** 2


def test_hooks_add_their_loss_and_train_their_modules(small_cifar):
    split, source = small_cifar
    hook = CountingHook()
    before = hook.extra.weight.detach().clone()
    cfg = TrainConfig(optimizer="sgd", lr=0.01, batch_size=50, epochs=1)
    Trainer(cfg, "cpu", 10, progress=False).fit(build_network("resnet18_cifar", 10, width=0.0625), source,
                                                np.arange(100), split.targets, hooks=[hook])
    assert hook.calls == 2 and not torch.equal(before, hook.extra.weight)


def test_a_carried_optimizer_state_continues_adam_and_a_fresh_fit_starts_it_over(small_cifar):
    """train.keep_optimizer (LADA's code builds Adam once): the next fit starts from the moments and step count
    the last one left, for the model's parameters only (a hook's modules are new every cycle)."""
    split, source = small_cifar
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 10, width=0.0625)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=50, epochs=1)
    trainer = Trainer(cfg, "cpu", 10, progress=False)
    first = trainer.fit(model, source, np.arange(100), split.targets, hooks=[CountingHook()])
    parameters = list(model.parameters())
    assert sorted(first.optimizer_state["state"]) == list(range(len(parameters)))   # not the hook's Linear

    hook = CountingHook()
    optimizer = make_optimizer(parameters + list(hook.extra.parameters()), cfg)
    load_model_optimizer_state(optimizer, model, first.optimizer_state)
    for index, parameter in enumerate(parameters):
        saved = first.optimizer_state["state"][index]
        assert float(optimizer.state[parameter]["step"]) == float(saved["step"]) == 2
        assert torch.equal(optimizer.state[parameter]["exp_avg"], saved["exp_avg"])
        assert torch.equal(optimizer.state[parameter]["exp_avg_sq"], saved["exp_avg_sq"])
    assert hook.extra.weight not in optimizer.state

    weights = copy.deepcopy(model.state_dict())

    def fit_from_the_same_weights(optimizer_state):
        model.load_state_dict(weights)
        torch.manual_seed(1)
        report = trainer.fit(model, source, np.arange(100), split.targets, hooks=[CountingHook()],
                             generator=torch.Generator().manual_seed(1), optimizer_state=optimizer_state)
        return report, torch.cat([p.detach().flatten() for p in model.parameters()])

    continued, continued_weights = fit_from_the_same_weights(first.optimizer_state)
    fresh, fresh_weights = fit_from_the_same_weights(None)
    assert all(float(state["step"]) == 4 for state in continued.optimizer_state["state"].values())
    assert all(float(state["step"]) == 2 for state in fresh.optimizer_state["state"].values())
    assert torch.equal(fit_from_the_same_weights(None)[1], fresh_weights)
    assert not torch.equal(continued_weights, fresh_weights)
