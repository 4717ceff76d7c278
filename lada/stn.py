"""LADA with max entropy and a spatial transformer (supplement Alg. 1; REFERENCES 1.3, L7): the STN is part of the
task model and trained end to end with it; per acquisition a copy of its localisation network is trained to the
tau* that maximises the candidates' entropy, and after each epoch the classifier takes one step on the queried
images warped with tau*.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import (CycleContext, CycleSizes, CycleWork, NetworkUse, RunFolder, Strategy, TrainHook, dataset_spec,
                      is_main, map_batches, register_method, seed_everything, stream_key)
from lada.method import after_epoch_images, entropy_bits, frozen, image_side
from lada.networks import SpatialTransformer, STNClassifier

STN_OPTIONS = {
    "stn_lr": 5e-5,                  # tau* search (Alg. 1 line 4): unspecified, the policy generator's (L7)
    "stn_epochs": 10,
    "stn_batch": 100,
}


class AugmentedStepHook(TrainHook):
    """Alg. 1 line 12: after each epoch over the labeled set (STN and classifier end to end, line 11), one step of
    the classifier alone on the STN-augmented queried images, which were warped with tau* at acquisition."""

    modules = []
    resumable_attributes = ("losses",)

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels, self.losses = images, labels, []

    def wants_features(self) -> bool:
        return False

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        return 0.0

    def after_epoch(self, model, optimizer, epoch: int) -> None:
        model.train()
        loss = F.cross_entropy(model.task(self.images), self.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.losses.append(loss.detach())


@register_method
class LADASTN(Strategy):
    """LADA with max entropy and STN (supplement Alg. 1). tau (the STN's localisation network) is part of the
    task model; per acquisition a copy is trained to tau* = argmax mean H[f_theta(STN(x_U; tau))] over the
    candidates, the b candidates with the highest H(x) + H(STN(x; tau*)) are queried, their STN(x; tau*) images
    kept, and the model's own tau is left as saved (line 9)."""

    name = "lada_stn"
    default_options = STN_OPTIONS

    def networks(self, config, num_classes: int) -> dict:
        return {"STN": SpatialTransformer(dataset_spec(config.data.dataset).channels, image_side(config.data.dataset))}

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Training: after each epoch one step on the queried STN images. Selection: `stn_epochs` passes over
        the candidates through the STN and the task model, forward and backward, then two scoring passes."""
        work = CycleWork(task_trained=after_epoch_images(config, cycle, cycle.budget))
        if not cycle.candidates:
            return work
        side = image_side(config.data.dataset)
        passes = self.options["stn_epochs"] * cycle.candidates
        work.scored, work.task_inferred = cycle.candidates, 2 * cycle.candidates
        work.task_trained += passes
        work.networks["STN"] = NetworkUse(((dataset_spec(config.data.dataset).channels, side, side),), trained=passes,
                                          inferred=cycle.candidates)
        return work

    def prepare_model(self, model, ctx: CycleContext):
        seed_everything("lada-stn", ctx.seed, ctx.cycle)
        images = ctx.dataset.train.images
        return STNClassifier(SpatialTransformer(images.shape[-1], images.shape[1]), model).to(ctx.device)

    def learn_stn(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.nn.Module:
        opts = self.options
        stn = copy.deepcopy(model.stn).train()
        optimizer = torch.optim.Adam(stn.parameters(), lr=opts["stn_lr"])
        shuffle = torch.Generator(device=ctx.device)
        shuffle.manual_seed(stream_key("lada-stn-order", ctx.seed, ctx.cycle) % 2**63)
        losses = []
        with frozen(model):
            for _ in range(opts["stn_epochs"]):
                total = torch.zeros((), device=ctx.device)
                for images, _ in ctx.source.batches(candidates, opts["stn_batch"], shuffle=shuffle):
                    loss = -entropy_bits(model.task(stn(images))).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach()
                losses.append(round(float(total), 5))
        self.diagnostics["stn_losses"] = losses
        return stn.eval()

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        started = time.perf_counter()
        stn = self.learn_stn(model, ctx, candidates)
        with frozen(model), torch.no_grad():
            scores = map_batches(ctx.source, candidates, ctx.eval_batch_size,
                                 lambda x: entropy_bits(model(x)) + entropy_bits(model.task(stn(x))))
            scored = time.perf_counter()
            chosen = candidates[torch.topk(scores, budget).indices.cpu().numpy()]
            sorted_at = time.perf_counter()
            augmented = map_batches(ctx.source, chosen, ctx.eval_batch_size, stn)
        self.pending = (chosen, augmented)
        if ctx.folder is not None and is_main():
            np.savez(RunFolder(ctx.folder).method_file("lada_stn", ctx.cycle, ".npz"), indices=chosen,
                     images=augmented.cpu().numpy())
        self.diagnostics.update({"scoring_seconds": round(scored - started, 4),
                                 "sorting_seconds": round(sorted_at - scored, 4)})
        return chosen

    def train_hooks(self, model, ctx: CycleContext) -> list:
        if ctx.cycle == 0:
            return []
        stored = (RunFolder(ctx.folder).method_file("lada_stn", ctx.cycle - 1, ".npz") if ctx.folder is not None
                  else None)
        if stored is not None and stored.exists():
            with np.load(stored) as found:
                chosen, images = found["indices"], torch.as_tensor(found["images"], device=ctx.device)
        else:
            chosen, images = self.pending
        labels = torch.as_tensor(np.asarray(ctx.answers)[chosen], dtype=torch.long, device=ctx.device)
        return [AugmentedStepHook(images, labels)]
