"""The one trainer, for image labels and for segmentation masks: epoch- or iteration-based, SGD or Adam,
step/multistep/quarter/poly decay, best-on-validation checkpoint selection (accuracy or mIoU), bfloat16 autocast
on CUDA, and hooks that add loss terms."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.lib import parallel
from core.lib.config import RuntimeConfig, TrainConfig
from core.lib.errors import UserError
from core.lib.evaluation import IGNORE_LABEL, autocast, evaluate
from core.lib.fastpaths import TrainingForward, configure
from core.lib.sources import batch_sizes


class TrainHook:
    """Adds a loss term computed from the task model's outputs (e.g. LL4AL's loss-prediction module)."""

    modules: list[nn.Module] = []
    # attributes that change during training and that a mid-cycle checkpoint keeps besides the modules:
    # generators (kept by state) and lists (restored in place, as the strategy may hold the same list)
    resumable_attributes: tuple[str, ...] = ()

    def loss(self, logits, features, blocks, per_sample_loss, progress: float) -> torch.Tensor:
        """`progress`: the share of training done before this step, in [0, 1): epoch / epochs when
        epoch-based, iteration / iterations when iteration-based. Called outside the autocast region
        (core/lib/evaluation.py): the outputs may be bfloat16 under train.amp, the term should be float32."""
        raise NotImplementedError

    def wants_features(self) -> bool:
        return True

    def after_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """An optimizer step of the hook's own after each epoch over the labeled set (LADA's mixup step)."""

    def state_dict(self) -> dict:
        state = {"modules": [module.state_dict() for module in self.modules]}
        for name in self.resumable_attributes:
            value = getattr(self, name)
            state[name] = value.get_state() if isinstance(value, torch.Generator) else list(value)
        return state

    def load_state_dict(self, state: dict) -> None:
        for module, weights in zip(self.modules, state["modules"]):
            module.load_state_dict(weights)
        for name in self.resumable_attributes:
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                value.set_state(state[name])
            else:
                value[:] = state[name]


@dataclass
class TrainReport:
    steps: int
    seconds: float
    final_loss: float
    best_validation: float | None = None
    validation_curve: list = field(default_factory=list)
    resumed_at_step: int = 0             # > 0: continued from a mid-cycle checkpoint saved after this step
    optimizer_state: dict = field(default_factory=dict, repr=False)   # the model's part, for the next cycle


def model_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict:
    """The optimizer's state of the model's own parameters (Adam: step, exp_avg, exp_avg_sq), by their position
    among the optimizer's parameters, which `fit` lists model first; the hooks' modules are new every cycle."""
    count = len(list(model.parameters()))
    return {"parameters": count, "state": {i: s for i, s in optimizer.state_dict()["state"].items() if i < count}}


def load_model_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, carried: dict) -> None:
    count = len(list(model.parameters()))
    if carried["parameters"] != count:
        raise ValueError(f"the carried optimizer state is of {carried['parameters']} parameters, the model has {count}")
    state = optimizer.state_dict()
    optimizer.load_state_dict({**state, "state": carried["state"]})


def make_optimizer(parameters, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, unit: int, total_units: int) -> float:
    """Multiplier of the base learning rate during `unit` (an epoch, or an iteration when iteration-based).

    Decays take effect after the milestone unit has ended, as MultiStepLR stepped once per epoch after it."""
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(unit >= m for m in cfg.milestones)
    if cfg.schedule == "step":
        return cfg.gamma ** (unit // cfg.step_size) if cfg.step_size else 1.0
    if cfg.schedule == "quarter":
        return cfg.gamma ** sum(unit >= q * total_units // 4 for q in (1, 2, 3))
    if cfg.schedule == "poly":
        return (1 - unit / total_units) ** 0.9
    return 1.0


def mask_loss(name: str) -> nn.Module | None:
    """segmentation-models-pytorch's multiclass losses, ignoring label 255; None for the cross-entropy."""
    if name == "cross_entropy":
        return None
    from segmentation_models_pytorch import losses

    kinds = {"dice": losses.DiceLoss, "focal": losses.FocalLoss, "lovasz": losses.LovaszLoss}
    return kinds[name]("multiclass", ignore_index=IGNORE_LABEL)


def task_loss(logits: torch.Tensor, targets: torch.Tensor, dense_loss: nn.Module | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch loss, per-image cross-entropy). Labels: mean cross-entropy. Masks: cross-entropy averaged over
    every non-ignored pixel of the batch, as fyu/drn's NLLLoss(ignore_index=255) after LogSoftmax, unless
    `dense_loss` (an smp loss) replaces it."""
    if targets.ndim == 1:
        if dense_loss is not None:
            raise UserError("train.loss other than cross_entropy applies to segmentation masks only; "
                            "set --set train.loss=cross_entropy")
        per_image = F.cross_entropy(logits, targets, reduction="none")
        return per_image.mean(), per_image
    per_pixel = F.cross_entropy(logits, targets, reduction="none", ignore_index=IGNORE_LABEL)
    valid = (targets != IGNORE_LABEL).flatten(1).sum(1)
    per_image_sum = per_pixel.flatten(1).sum(1)
    loss = per_image_sum.sum() / valid.sum().clamp(min=1) if dense_loss is None else dense_loss(logits, targets)
    return loss, per_image_sum / valid.clamp(min=1)


def training_step(model: nn.Module, cfg: TrainConfig, runtime: RuntimeConfig, device) -> Callable:
    """`step(images, targets)`: one optimizer step on a batch already on the device, built as `Trainer.fit`
    builds a job's (determinism, memory format, autocast, compile; float32 loss outside autocast), without the
    data path, hooks and schedule. What `bench train`, `plan --measure` and gpucheck time as the bare step."""
    device = torch.device(device)
    configure(runtime)
    forward = TrainingForward(model, [], False, device, runtime, cfg.batch_size)
    optimizer = make_optimizer(model.parameters(), cfg)

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        model.train()
        with autocast(device, cfg.amp):
            logits, _, _ = forward(images)
        loss, _ = task_loss(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device, num_classes: int, progress: bool = True,
                 runtime: RuntimeConfig | None = None):
        self.cfg, self.device, self.num_classes, self.progress = cfg, torch.device(device), num_classes, progress
        self.runtime = runtime or RuntimeConfig()

    def steps_per_epoch(self, labeled_count: int) -> int:
        if self.cfg.drop_last:
            return max(1, labeled_count // self.cfg.batch_size)
        return -(-labeled_count // self.cfg.batch_size)

    def fit(self, model: nn.Module, source, labeled: np.ndarray, labels: np.ndarray,
            validation: np.ndarray | None = None, validation_labels: np.ndarray | None = None,
            hooks: list[TrainHook] = (), generator: torch.Generator | None = None, desc: str = "train",
            checkpoint=None, optimizer_state: dict | None = None) -> TrainReport:
        """Train `model` on `labeled` (indices into `source`) whose answers are `labels[labeled]`; with a
        `checkpoint` (`load()`, `due(epochs, finished)`, `save(state)`, as core.tools.checkpoint's), continue
        from its saved state and save at the end of its epochs. Under torchrun each rank trains on its rows of
        every batch (core.lib.parallel). `optimizer_state`, the
        `TrainReport.optimizer_state` of an earlier fit, continues that fit's optimizer for the model's
        parameters instead of starting a new one (the state at the end of training, also when a better
        validation checkpoint is restored)."""
        cfg = self.cfg
        started = time.perf_counter()
        per_epoch = self.steps_per_epoch(len(labeled))
        iteration_based = cfg.iterations > 0
        total_steps = cfg.iterations if iteration_based else cfg.epochs * per_epoch
        total_units = total_steps if iteration_based else cfg.epochs
        hook_modules = [m for hook in hooks for m in hook.modules]
        configure(self.runtime)
        forward = TrainingForward(model, hook_modules, any(hook.wants_features() for hook in hooks), self.device,
                                  self.runtime, cfg.batch_size)
        parameters = list(model.parameters()) + [p for m in hook_modules for p in m.parameters()]
        optimizer = make_optimizer(parameters, cfg)
        if optimizer_state:
            load_model_optimizer_state(optimizer, model, optimizer_state)
        answers = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=self.device)
        dense_loss = mask_loss(cfg.loss)
        generator = generator or torch.Generator(device=self.device)
        validate = validation is not None and len(validation) > 0 and cfg.select_on_validation
        best_score, best_state, curve = None, None, []
        running = torch.zeros((), device=self.device)
        step = 0
        saved = checkpoint.load() if checkpoint else None
        if saved:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            for hook, state in zip(hooks, saved["hooks"]):
                hook.load_state_dict(state)
            generator.set_state(saved["generator"])
            step, running = saved["step"], saved["running"].to(self.device)
            best_score, best_state, curve = saved["best_score"], saved["best_state"], saved["curve"]
        resumed_at = step
        bar = tqdm(total=total_steps, initial=step, desc=desc, leave=False, disable=not self.progress)
        while step < total_steps:
            epoch = step // per_epoch
            batches = source.labeled_batches(labeled, answers, cfg.batch_size, augment=True, shuffle=generator,
                                             drop_last=cfg.drop_last, shard=True)
            for (images, targets), size in zip(batches, batch_sizes(len(labeled), cfg.batch_size, cfg.drop_last)):
                unit = step if iteration_based else epoch
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(cfg, unit, total_units)
                model.train()
                for hook in hooks:
                    for module in hook.modules:
                        module.train()
                with autocast(self.device, cfg.amp):
                    logits, features, blocks = forward(images)
                loss, per_sample = task_loss(logits.float(), targets, dense_loss)    # float32, outside autocast
                for hook in hooks:
                    loss = loss + hook.loss(logits, features, blocks, per_sample, unit / total_units)
                loss = loss * parallel.loss_weight(size)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                forward.after_backward()
                optimizer.step()
                running = 0.98 * running + 0.02 * loss.detach() if step else loss.detach()
                step += 1
                bar.update()
                end_of_unit = iteration_based or step % per_epoch == 0
                if step % per_epoch == 0:
                    for hook in hooks:
                        hook.after_epoch(model, optimizer, epoch)
                if validate and end_of_unit and self._due(unit, total_units):
                    score = evaluate(model, source, validation, validation_labels, self.num_classes,
                                     cfg.eval_batch_size, cfg.amp)["value"]
                    curve.append((step, score))
                    bar.set_postfix(loss=f"{running.item():.3f}", val=f"{score:.1f}")
                    if best_score is None or score > best_score:
                        best_score, best_state = score, copy.deepcopy(model.state_dict())
                finished = step >= total_steps
                if checkpoint and (finished or step % per_epoch == 0) and checkpoint.due(step // per_epoch, finished):
                    checkpoint.save({
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "hooks": [hook.state_dict() for hook in hooks], "generator": generator.get_state(),
                        "step": step, "running": running,
                        "best_score": best_score, "best_state": best_state, "curve": curve})
                if finished:
                    break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        forward.finish()
        return TrainReport(steps=step, seconds=time.perf_counter() - started,
                           final_loss=parallel.mean_over_ranks(running), best_validation=best_score,
                           validation_curve=curve, resumed_at_step=resumed_at,
                           optimizer_state=model_optimizer_state(optimizer, model))

    def _due(self, unit: int, total_units: int) -> bool:
        every = self.cfg.validate_every
        last = unit == total_units - 1
        return last or (every > 0 and (unit + 1) % every == 0)
