"""LADA (Kim et al., NeurIPS 2021) and its variants, as selection strategies (REFERENCES 1.3, L1-L9).

Acquisition (`method_InfoManifoldAcqBeta.py`), on the random subset of 2P candidates (P = 1,000):
    pairs (x_i, x'_i) = (candidate i, candidate i + P) of a random order
    h_i = f^k(x_i), h'_i = f^k(x'_i)              k drawn from {1, 2} per acquisition (stem / layer1 output)
    tau_i = pi_phi(h_i, h'_i)                      a new generator per acquisition (lada/networks.py)
    lambda ~ Beta(tau_i, tau_i), by rsample        (OMT pathwise gradient, supplement Sec. C)
    L_G = - sum_i (1/N) sum_n H[f_rest(lambda_n h_i + (1 - lambda_n) h'_i)]     N = num_lambda (Table 1)
    score_i = H(x_i) + H(x'_i) + (1/N) sum_n H[mix_n]    with tau* of the generator epoch of lowest L_G
    the top b/2 pairs are queried, both members.
H is the predictive entropy in bits with the classifier in eval mode, as the code (the ranking does not depend on
the base). Training after each acquisition (`utils_al.acquire_points`): every epoch over the labeled set is
followed by one step on the pairs just queried,
    L_mix = mean_i [lambda_i CE(f_rest(mix_i), y_i) + (1 - lambda_i) CE(f_rest(mix_i), y'_i)],
    lambda_i ~ Beta(tau*_i, tau*_i),
the mixing at the same layer k; the gradient is zeroed before it (L3 fixed; `replicate_grad_accumulation`).

Variants: `lada_fixed` (tau = 2.0, no generator), and the supplement's Eq. 6-7: LADA on VAAL (`lada_vaalmix`: the
acquisition is P(mix in X_U) = 1 - D(mu(mix))) and on LL4AL (`lada_ll4almix`: the predicted loss of the mix), both
mixing the pixels (k = 0) with the fixed tau 0.2 in their `_fixed_` versions (supplement Table 1). Elsewhere:
`lada_stn`, LADA with max entropy and an STN augmentation (supplement Alg. 1), in lada/stn.py; the mixup baselines
`vanilla_mixup` and `ada_mixup`, in lada/ada_mixup.py.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from baselines.learning_loss import LearningLoss
from baselines.uncertainty import entropy
from core.lib import (CycleContext, CycleSizes, CycleWork, NetworkUse, RunFolder, Strategy, TrainHook, UserError,
                      dataset_spec, is_main, map_batches, register_method, seed_everything, stream_key)
from lada.networks import PolicyGenerator
from vaal.method import VAAL, VAAL_OPTIONS

LOOKAHEAD_OPTIONS = {
    "num_lambda": 5,                 # lambda draws per pair; the experiments set Table 1's value per dataset (L1)
    "generator_lr": 5e-5,            # supplement A.3
    "generator_epochs": 10,          # code `Gepochs`
    "generator_batch": 100,          # supplement A.3 (code `pool_batch_size`)
    "sharp": 1.0,                    # tau = sigmoid output x sharp, so tau in (0, 1) (L8)
    "fixed_tau": 2.0,                # the `_fixed` variants and vanilla mixup: Table 1 (0.2 at the input level)
    "layers": [1, 2],                # k drawn uniformly per acquisition (code rangeLayerMixFrom/To)
    "replicate_grad_accumulation": False,   # True: the code's mixup step without zero_grad (L3)
}


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    return entropy(torch.softmax(logits.float(), dim=1)) / math.log(2)


def mix(first: torch.Tensor, second: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lambda x + (1 - lambda) x' with one lambda per row of `lam` (any leading shape of lam broadcasts)."""
    lam = lam.view(*lam.shape, *([1] * (first.ndim - lam.ndim)))
    return lam * first + (1 - lam) * second


def beta_draws(tau: torch.Tensor, draws: int) -> torch.Tensor:
    """(draws, B) samples of Beta(tau_i, tau_i), differentiable in tau (pathwise/OMT gradient)."""
    return torch.distributions.Beta(tau, tau).rsample((draws,))


def after_epoch_images(config, cycle: CycleSizes, per_epoch: int) -> int:
    """Images through the task model's forward and backward in a training hook's steps after each epoch, from
    the second cycle on (the first has queried nothing yet)."""
    epochs = config.train.epochs or config.train.iterations // cycle.steps_per_epoch
    return epochs * per_epoch if cycle.cycle else 0


def image_side(dataset: str) -> int:
    """The side of the square images of the datasets LADA runs on (28 for Fashion-MNIST, 32 for SVHN and CIFAR)."""
    return dataset_spec(dataset).image_size[0]


@contextlib.contextmanager
def frozen(*modules):
    """Eval mode and no parameter gradients: the generator's loss flows through them to lambda only."""
    states = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for module in modules:
        module.eval()
        module.requires_grad_(False)
    try:
        yield
    finally:
        for module, training, flags in states:
            module.train(training)
            for parameter, flag in zip(module.parameters(), flags):
                parameter.requires_grad_(flag)


@dataclass
class QueriedPairs:
    first: np.ndarray        # dataset indices
    second: np.ndarray
    tau: np.ndarray          # the mixing policy tau* of each pair
    layer: int               # k: 0 input, 1 stem, 2 layer1
    repair: bool = False     # vanilla mixup: the queried images are re-paired at random every epoch

    def save(self, path) -> None:
        np.savez(path, first=self.first, second=self.second, tau=self.tau, layer=self.layer, repair=self.repair)

    @classmethod
    def load(cls, path) -> "QueriedPairs":
        with np.load(path) as stored:
            return cls(stored["first"], stored["second"], stored["tau"], int(stored["layer"]), bool(stored["repair"]))


class PairMixupHook(TrainHook):
    """After each epoch over the labeled set, one mixup step on the queried pairs (and on nothing else)."""

    modules = []
    resumable_attributes = ("generator", "losses")

    def __init__(self, pairs: QueriedPairs, source, answers: np.ndarray, device, seed: int, cycle: int,
                 zero_grad: bool = True):
        self.pairs, self.source, self.zero_grad, self.device = pairs, source, zero_grad, device
        self.answers = torch.as_tensor(np.asarray(answers), dtype=torch.long, device=device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(stream_key("lada-mixup", seed, cycle) % 2**63)
        self.tau = torch.as_tensor(pairs.tau, dtype=torch.float32, device=device)
        self.losses: list[torch.Tensor] = []

    def wants_features(self) -> bool:
        return False

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        return 0.0

    def members(self) -> tuple[torch.Tensor, torch.Tensor]:
        first = torch.as_tensor(self.pairs.first, device=self.device)
        second = torch.as_tensor(self.pairs.second, device=self.device)
        if not self.pairs.repair:
            return first, second
        everyone = torch.cat([first, second])
        order = torch.randperm(len(everyone), generator=self.generator, device=self.generator.device).to(self.device)
        everyone = everyone[order]
        return everyone[:len(first)], everyone[len(first):]

    def after_epoch(self, model, optimizer, epoch: int) -> None:
        first, second = self.members()
        lam = torch.distributions.Beta(self.tau, self.tau).sample()
        model.train()
        k = self.pairs.layer
        hidden = mix(model.kth_featuremap(self.source.load(first, True, self.generator), k),
                     model.kth_featuremap(self.source.load(second, True, self.generator), k), lam)
        log_p = F.log_softmax(model.forward_rest(hidden, k).float(), dim=1)
        picked = torch.stack([log_p.gather(1, self.answers[first, None]).squeeze(1),
                              log_p.gather(1, self.answers[second, None]).squeeze(1)])
        loss = -(lam * picked[0] + (1 - lam) * picked[1]).mean()
        if self.zero_grad:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.losses.append(loss.detach())


class LookAhead(Strategy):
    """The LADA framework over an acquisition f_acq: `instance_scores` (per image) and `mixed_scores` (on mixed
    inputs or feature maps, differentiable in the mix)."""

    default_options = LOOKAHEAD_OPTIONS
    task_archs = ("resnet18_cifar",)     # f^k and f_rest: the CIFAR ResNet-18's input, stem and layer1 (k = 0, 1, 2)
    learns_tau = True
    looks_ahead = True       # False: plain top-b acquisition, the mixing only augments training (vanilla mixup)

    def networks(self, config, num_classes: int) -> dict:
        found = super().networks(config, num_classes)
        if self.learns_tau:
            channels, side = policy_input(config, self.options["layers"])
            found["policy generator"] = PolicyGenerator(channels, side, self.options["sharp"])
        return found

    # --- the acquisition f_acq
    def scoring_modules(self, model) -> list:
        return [model]

    @torch.no_grad()
    def instance_scores(self, model, ctx: CycleContext, indices: np.ndarray) -> torch.Tensor:
        return map_batches(ctx.source, indices, ctx.eval_batch_size, lambda images: entropy_bits(model(images)))

    def mixed_scores(self, model, ctx: CycleContext, mixed: torch.Tensor, k: int) -> torch.Tensor:
        return entropy_bits(model.forward_rest(mixed, k))

    # --- LADA
    def mean_mixed_scores(self, model, ctx, first, second, tau, k) -> torch.Tensor:
        """(1/N) sum_n f_acq(mix_n) per pair, the N draws batched into one forward pass."""
        draws = self.options["num_lambda"]
        mixed = mix(first.unsqueeze(0), second.unsqueeze(0), beta_draws(tau, draws)).flatten(0, 1)
        return self.mixed_scores(model, ctx, mixed, k).view(draws, -1).mean(0)

    def learn_tau(self, model, ctx: CycleContext, first, second, k) -> tuple[torch.Tensor, list[float], int]:
        """Trains a new policy generator; returns tau* of every pair from the epoch of lowest mean L_G."""
        opts = self.options
        seed_everything("lada-generator", ctx.seed, ctx.cycle)
        generator = PolicyGenerator(first.shape[1] * 2, first.shape[-1], opts["sharp"]).to(ctx.device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=opts["generator_lr"])
        shuffle = torch.Generator(device=ctx.device)
        shuffle.manual_seed(stream_key("lada-generator-order", ctx.seed, ctx.cycle) % 2**63)
        count, batch = len(first), opts["generator_batch"]
        best_loss, best_tau, best_epoch, losses = math.inf, None, -1, []
        for epoch in range(opts["generator_epochs"]):
            order = torch.randperm(count, generator=shuffle, device=shuffle.device).to(ctx.device)
            taus, total = torch.empty(count, device=ctx.device), torch.zeros((), device=ctx.device)
            for start in range(0, count, batch):
                chosen = order[start:start + batch]
                tau = generator(first[chosen], second[chosen])
                loss = -self.mean_mixed_scores(model, ctx, first[chosen], second[chosen], tau, k).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                taus[chosen] = tau.detach()
                total += loss.detach()
            losses.append(float(total) / -(-count // batch))
            if losses[-1] < best_loss:
                best_loss, best_tau, best_epoch = losses[-1], taus, epoch
        return best_tau, losses, best_epoch

    @torch.no_grad()
    def final_mixed_scores(self, model, ctx, first, second, tau, k) -> torch.Tensor:
        batch = self.options["generator_batch"]
        return torch.cat([self.mean_mixed_scores(model, ctx, first[s:s + batch], second[s:s + batch],
                                                 tau[s:s + batch], k) for s in range(0, len(first), batch)])

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        if budget % 2:
            raise UserError(f"{self.name} queries pairs, so the budget must be even, got {budget}; "
                            "set --set protocol.budget=N with an even N")
        opts = self.options
        k = int(ctx.rng.choice(opts["layers"]))
        started = time.perf_counter()
        with frozen(*self.scoring_modules(model)):
            if not self.looks_ahead:
                return self.select_then_pair(model, ctx, candidates, budget, k, started)
            order = ctx.rng.permutation(candidates)
            half = len(order) // 2
            if half < budget // 2:
                raise UserError(f"{self.name} needs at least {budget} candidates to pair; raise protocol.subset")
            first, second = order[:half], order[half:2 * half]
            scores = self.instance_scores(model, ctx, first) + self.instance_scores(model, ctx, second)
            h1 = map_batches(ctx.source, first, ctx.eval_batch_size, lambda x: model.kth_featuremap(x, k))
            h2 = map_batches(ctx.source, second, ctx.eval_batch_size, lambda x: model.kth_featuremap(x, k))
            generator_started = time.perf_counter()
            if self.learns_tau:
                tau, losses, best_epoch = self.learn_tau(model, ctx, h1, h2, k)
                self.diagnostics.update({"generator_losses": [round(v, 5) for v in losses],
                                         "generator_best_epoch": best_epoch})
            else:
                tau = torch.full((half,), float(opts["fixed_tau"]), device=ctx.device)
            generator_seconds = time.perf_counter() - generator_started
            scores = scores + self.final_mixed_scores(model, ctx, h1, h2, tau, k)
        scored = time.perf_counter()
        top = torch.topk(scores, budget // 2).indices
        top_cpu = top.cpu().numpy()
        sorted_at = time.perf_counter()
        pairs = QueriedPairs(first[top_cpu], second[top_cpu], tau[top].cpu().numpy(), k)
        self.remember(pairs, ctx)
        tau_cpu = tau.cpu()
        self.diagnostics.update({
            "layer": k, "tau_mean": round(float(tau_cpu.mean()), 5), "tau_min": round(float(tau_cpu.min()), 5),
            "tau_max": round(float(tau_cpu.max()), 5), "tau_selected_mean": round(float(pairs.tau.mean()), 5),
            "scoring_seconds": round(scored - started, 4), "generator_seconds": round(generator_seconds, 4),
            "sorting_seconds": round(sorted_at - scored, 4)})
        return np.concatenate([pairs.first, pairs.second])

    def select_then_pair(self, model, ctx, candidates, budget, k, started) -> np.ndarray:
        """Vanilla mixup: the top-b instances, mixed with random partners among themselves while training."""
        scores = self.instance_scores(model, ctx, candidates)
        scored = time.perf_counter()
        chosen = candidates[torch.topk(scores, budget).indices.cpu().numpy()]
        sorted_at = time.perf_counter()
        half = budget // 2
        self.remember(QueriedPairs(chosen[:half], chosen[half:], np.full(half, float(self.options["fixed_tau"])),
                                   k, repair=True), ctx)
        self.diagnostics.update({"layer": k, "scoring_seconds": round(scored - started, 4),
                                 "sorting_seconds": round(sorted_at - scored, 4)})
        return chosen

    # --- training with the queried pairs
    def remember(self, pairs: QueriedPairs, ctx: CycleContext) -> None:
        """The next cycle's training needs the pairs; on disk too, so a resumed run finds them."""
        self.pending = pairs
        if ctx.folder is not None and is_main():
            pairs.save(RunFolder(ctx.folder).method_file("lada_pairs", ctx.cycle, ".npz"))

    def queried_pairs(self, ctx: CycleContext) -> QueriedPairs | None:
        if ctx.cycle == 0:
            return None
        stored = (RunFolder(ctx.folder).method_file("lada_pairs", ctx.cycle - 1, ".npz") if ctx.folder is not None
                  else None)
        if stored is not None and stored.exists():
            return QueriedPairs.load(stored)
        return getattr(self, "pending", None)

    def train_hooks(self, model, ctx: CycleContext) -> list:
        hooks = list(super().train_hooks(model, ctx))
        pairs = self.queried_pairs(ctx)
        self.mixup_hook = None
        if pairs is not None:
            self.mixup_hook = PairMixupHook(pairs, ctx.source, ctx.answers, ctx.device, ctx.seed, ctx.cycle,
                                            zero_grad=not self.options["replicate_grad_accumulation"])
            hooks.append(self.mixup_hook)
        return hooks

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Training: after each epoch one mixup step on the last queried pairs. Selection: the candidates'
        scores and feature maps, then `generator_epochs` passes of the generator over the pairs, each pair's
        `num_lambda` mixes through the task model forward and backward, and a last forward of the mixes; all
        priced as whole task-model passes (an upper bound: a mix at layer k skips the layers before it)."""
        work = super().cycle_work(config, num_classes, cycle)
        work.task_trained += after_epoch_images(config, cycle, cycle.budget)
        if not cycle.candidates:
            return work
        opts, pairs = self.options, cycle.candidates // 2
        work.scored = cycle.candidates
        if not self.looks_ahead:
            work.task_inferred += cycle.candidates
            return work
        work.task_inferred += 2 * cycle.candidates + pairs * opts["num_lambda"]
        if self.learns_tau:
            work.task_trained += opts["generator_epochs"] * pairs * opts["num_lambda"]
            channels, side = policy_input(config, opts["layers"])
            half = (channels // 2, side, side)
            work.networks["policy generator"] = NetworkUse((half, half), trained=opts["generator_epochs"] * pairs)
        return work

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        super().prepare_selection(model, ctx)
        hook = getattr(self, "mixup_hook", None)
        if hook is not None and hook.losses:
            self.diagnostics.update({"mixup_steps": len(hook.losses),
                                     "mixup_loss_last": round(float(hook.losses[-1]), 5)})


def policy_input(config, layers) -> tuple[int, int]:
    """(channels, side) of the generator's input: two feature maps of 64 x width channels, or two images."""
    from core.lib import scaled

    channels = dataset_spec(config.data.dataset).channels if list(layers) == [0] else scaled(64, config.model.width)
    return 2 * channels, image_side(config.data.dataset)


@register_method
class LADA(LookAhead):
    """LADA_EntMix: max entropy + manifold mixup with a learned policy."""

    name = "lada"


@register_method
class LADAFixed(LookAhead):
    name = "lada_fixed"
    learns_tau = False


INPUT_LEVEL = {**LOOKAHEAD_OPTIONS, "layers": [0]}


@register_method
class LADAVAALMix(LookAhead, VAAL):
    """Eq. 6: tau* = argmax P(mix in X_U; D) = 1 - D(mu(mix)), input mixup (supplement Sec. D)."""

    name = "lada_vaalmix"
    default_options = {**VAAL_OPTIONS, **INPUT_LEVEL}

    def scoring_modules(self, model) -> list:
        return [model] + [m for m in (self.vae, self.disc) if m is not None]

    def disc_unlabeled(self, images: torch.Tensor) -> torch.Tensor:
        return 1 - self.disc(self.vae.encode(self.vae_input(images))[0]).float()

    @torch.no_grad()
    def instance_scores(self, model, ctx, indices) -> torch.Tensor:
        return map_batches(ctx.source, indices, ctx.eval_batch_size, self.disc_unlabeled)

    def mixed_scores(self, model, ctx, mixed, k) -> torch.Tensor:
        return self.disc_unlabeled(mixed)


@register_method
class LADAFixedVAALMix(LADAVAALMix):
    name = "lada_fixed_vaalmix"
    learns_tau = False
    default_options = {**LADAVAALMix.default_options, "fixed_tau": 0.2}


@register_method
class LADALL4ALMix(LookAhead, LearningLoss):
    """Eq. 7: tau* = argmax f_LPM(f^k(mix) | k in K), the predicted loss of the mixed image, input mixup."""

    name = "lada_ll4almix"
    default_options = {**LearningLoss.default_options, **INPUT_LEVEL}

    def scoring_modules(self, model) -> list:
        return [model, self.module]

    def predicted_loss(self, model, images: torch.Tensor) -> torch.Tensor:
        return self.module(model.forward_features(images)[2]).float()

    @torch.no_grad()
    def instance_scores(self, model, ctx, indices) -> torch.Tensor:
        return map_batches(ctx.source, indices, ctx.eval_batch_size, lambda x: self.predicted_loss(model, x))

    def mixed_scores(self, model, ctx, mixed, k) -> torch.Tensor:
        return self.predicted_loss(model, mixed)


@register_method
class LADAFixedLL4ALMix(LADALL4ALMix):
    name = "lada_fixed_ll4almix"
    learns_tau = False
    default_options = {**LADALL4ALMix.default_options, "fixed_tau": 0.2}
