"""The mixup baselines of LADA's Table 1, from other work, as the LADA code runs them (REFERENCES 1.3, L5):
`vanilla_mixup`, max entropy followed by manifold mixup (Verma et al., ICML 2019) of the queried images, and
`ada_mixup`, max entropy followed by AdaMixup (Guo et al., AAAI 2019) training on the queried images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from baselines.uncertainty import EntropySampling
from core.lib import (CycleContext, CycleSizes, CycleWork, TrainHook, UserError, dataset_spec, register_method,
                      seed_everything, stream_key)
from lada.method import LookAhead, after_epoch_images, image_side, mix
from lada.networks import AdaMixupPolicy, IntrusionDiscriminator


@register_method
class VanillaMixup(LookAhead):
    """The code's `VanillaMixup`: max entropy, then manifold mixup (tau = 2.0) of the queried images."""

    name = "vanilla_mixup"
    learns_tau = False
    looks_ahead = False


def truncated_normal(shape, generator: torch.Generator, device) -> torch.Tensor:
    """N(0, 1) truncated to [-2, 2] (the code's scipy truncnorm(-2, 2)), by resampling the rejected draws."""
    values = torch.randn(shape, generator=generator, device=generator.device)
    outside = values.abs() > 2
    while outside.any():
        values[outside] = torch.randn(int(outside.sum()), generator=generator, device=generator.device)
        outside = values.abs() > 2
    return values.to(device)


ADA_MIXUP_CLASS_LOSSES = ("batch_mean", "per_sample")


def mixup_class_loss(log_p: torch.Tensor, first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor,
                     reduction: str) -> torch.Tensor:
    """AdaMixup's class loss of log-probabilities against two labels per row, row i weighted w_i and 1 - w_i:
        batch_mean: mean(w) CE(y1) + (1 - mean(w)) CE(y2), CE the batch mean (the code's `mixup_criterion`
                    called with a batch-mean CrossEntropyLoss, which averages before weighting)
        per_sample: mean_i [w_i CE_i(y1) + (1 - w_i) CE_i(y2)]"""
    ce_first = -log_p.gather(1, first[:, None]).squeeze(1)
    ce_second = -log_p.gather(1, second[:, None]).squeeze(1)
    if reduction == "batch_mean":
        return weight.mean() * ce_first.mean() + (1 - weight.mean()) * ce_second.mean()
    return (weight * ce_first + (1 - weight) * ce_second).mean()


class AdaMixupHook(TrainHook):
    """`train_adamixed` of the code: after each epoch over the labeled set, one pass over the queried images in
    batches; each batch is split into a first half mixed with a shuffled partner and a second, unseen half.
        gate = (m1 x1 + m2 x2) / 2, m ~ TruncNormal(-2, 2);  (alpha, delta, alpha') = policy(gate)
        gamma = alpha + delta eps, eps ~ U(0, 1);  x_mix = gamma x1 + (1 - gamma) x2
        L_class = mixup_class_loss over [x1, x_mix] of labels (y1, y2), weights gamma' = [1, gamma]
        L_intrusion = CE(D(features), [1 for unseen and x1, 0 for x_mix])
    Both gradients are taken at the same parameters and applied as two optimizer steps, as the code meant (its
    retain_graph backward after the first step fails on current PyTorch). With `train_modules` false the policy
    and the discriminator stay out of the optimizer, so only the classifier learns, as in the code on
    Fashion-MNIST, SVHN and CIFAR-10 (lada/README.md)."""

    resumable_attributes = ("generator", "losses")

    def __init__(self, policy, discriminator, queried: np.ndarray, source, answers, batch_size: int, device,
                 seed: int, cycle: int, class_loss: str = "batch_mean", train_modules: bool = True):
        self.policy, self.discriminator, self.class_loss = policy, discriminator, class_loss
        self.modules = [policy, discriminator] if train_modules else []
        self.queried, self.source, self.batch_size, self.device = queried, source, batch_size, device
        self.answers = torch.as_tensor(np.asarray(answers), dtype=torch.long, device=device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(stream_key("ada-mixup", seed, cycle) % 2**63)
        self.losses: list[torch.Tensor] = []

    def wants_features(self) -> bool:
        return False

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        return 0.0

    def batch_losses(self, model, images: torch.Tensor, labels: torch.Tensor):
        half = -(-len(images) // 2)
        partner = torch.randperm(len(images), generator=self.generator, device=self.generator.device).to(self.device)
        x1, x2, y1, y2 = images[:half], images[partner][:half], labels[:half], labels[partner][:half]
        unseen = images[half:]
        gate = (truncated_normal(x1.shape, self.generator, self.device) * x1 +
                truncated_normal(x1.shape, self.generator, self.device) * x2) / 2
        alpha, delta, _ = self.policy(gate).unbind(1)
        eps = torch.rand(alpha.shape, generator=self.generator, device=self.generator.device).to(self.device)
        gamma = alpha + delta * eps
        mixed = mix(x1, x2, gamma)
        log_p = F.log_softmax(model(torch.cat([x1, mixed])).float(), dim=1)
        class_loss = mixup_class_loss(log_p, torch.cat([y1, y1]), torch.cat([y2, y2]),
                                      torch.cat([torch.ones_like(gamma), gamma]), self.class_loss)
        _, features, _ = model.forward_features(torch.cat([unseen, x1, mixed]))
        truth = torch.cat([torch.ones(len(unseen) + len(x1), dtype=torch.long, device=self.device),
                           torch.zeros(len(mixed), dtype=torch.long, device=self.device)])
        return class_loss, F.cross_entropy(self.discriminator(features), truth)

    def after_epoch(self, model, optimizer, epoch: int) -> None:
        model.train()
        self.policy.train()
        self.discriminator.train()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        for images, labels in self.source.labeled_batches(self.queried, self.answers, self.batch_size, augment=True,
                                                          shuffle=self.generator):
            if len(images) < 2:
                continue
            losses = self.batch_losses(model, images, labels)
            gradients = [torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
                         for loss in losses]
            for found in gradients:
                for parameter, gradient in zip(parameters, found):
                    parameter.grad = gradient
                optimizer.step()
            self.losses.append(sum(loss.detach() for loss in losses))


@register_method
class AdaMixup(EntropySampling):
    """The code's `AdaMixup` baseline: max entropy acquisition, then AdaMixup training on the queried images."""

    name = "ada_mixup"
    default_options = {
        "class_loss": "batch_mean",   # the code's mixup_criterion (the paper is silent); or per_sample
        "train_policy_and_discriminator": True,   # AdaMixup as designed (Guo et al.) and the code on CIFAR-100;
                                                  # the code never trains them on the other datasets (README)
    }

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        if self.options["class_loss"] not in ADA_MIXUP_CLASS_LOSSES:
            raise UserError(f"method_options.ada_mixup.class_loss='{self.options['class_loss']}' is not one of "
                            f"{', '.join(ADA_MIXUP_CLASS_LOSSES)}")

    def networks(self, config, num_classes: int) -> dict:
        from core.lib import scaled

        channels = dataset_spec(config.data.dataset).channels
        return {"AdaMixup policy": AdaMixupPolicy(channels, image_side(config.data.dataset)),
                "intrusion discriminator": IntrusionDiscriminator(scaled(512, config.model.width), num_classes)}

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Max entropy, plus after each epoch a pass over the queried images: the originals with their mixes
        through the classifier, then again with the unseen half for the intrusion discriminator, about twice
        the queried images forward and backward (the small policy and discriminator are not counted)."""
        work = super().cycle_work(config, num_classes, cycle)
        work.task_trained += after_epoch_images(config, cycle, 2 * cycle.budget)
        return work

    def train_hooks(self, model, ctx: CycleContext) -> list:
        if ctx.cycle == 0:
            return []
        from core.lib import resolve_count

        budget = resolve_count(ctx.config.protocol.budget, len(ctx.dataset.train))
        images = ctx.dataset.train.images
        seed_everything("ada-mixup-modules", ctx.seed, ctx.cycle)
        policy = AdaMixupPolicy(images.shape[-1], images.shape[1]).to(ctx.device)
        discriminator = IntrusionDiscriminator(model.feature_dim, ctx.dataset.num_classes).to(ctx.device)
        return [AdaMixupHook(policy, discriminator, ctx.pool.labeled[-budget:], ctx.source, ctx.answers,
                             ctx.config.train.batch_size, ctx.device, ctx.seed, ctx.cycle, self.options["class_loss"],
                             self.options["train_policy_and_discriminator"])]
