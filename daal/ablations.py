"""The methods of DAAL's analysis (Sec. 4.5, Fig. 4 and 5) built from VAAL, Learning Loss and Core-set by
subclassing, nothing copied:

- RSS, the random subset selection of LL4AL: a method scores only `subset` random candidates (10,000 in LL4AL
  and DAAL Sec. 4.5), drawn from the same stream as `protocol.subset`, so `learning_loss_rss` equals
  `learning_loss` under `protocol.subset=10000`. DAAL's experiments keep `protocol.subset=0`, so plain
  `learning_loss` there is "LL w/o RSS".
- `vaal_tf` (VAAL + TF): VAAL's game (losses, 2:1 steps, discriminator on the latent means) with DAAL's MLP VAE
  on the task model's features instead of the images; `vaal_rss`, `vaal_tf_rss` add RSS.
- `ll_coreset` (LL + Core-set): Core-set's greedy k-center first keeps `subset` representative candidates, then
  LL takes the `budget` with the highest predicted loss among them (the multi-stage hybrid).
- `ll_rd` (LL + RD, one stage): LL's loss-prediction module trains with the task model as in LL; the
  informativeness rater plays against rDis only (the Fig. 6 rDis game); each candidate scores the product of
  its ScoreNet score and its min-max normalised predicted loss (`combine: "product"`), or the mean of the two
  ranks (`"rank_mean"`). The paper does not say how the two are combined.

And one ablation of this project, not of the paper: `daal_no_dpp`, DAAL whose ScoreNet and encoder minimise
L_recon + L_prior + L_LR, without L_DPP (Eq. 5-7), which on its own drives the scores to 0 or 1 (daal/README.md,
"Why the scores saturate").
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from baselines.coreset import CoreSet
from baselines.learning_loss import LearningLoss
from core.lib import (CycleContext, CycleSizes, CycleWork, UserError, candidate_subset, register_method, scaled,
                      seed_everything, stream_key)
from daal.method import (DAAL, DAAL_OPTIONS, SELECTOR_TERMS, DAALRepresentativenessOnly, FeatureBank, endless_batches,
                         feature_dim)
from daal.networks import FeatureVAE
from vaal.method import VAAL, VAAL_OPTIONS, VAALFamily
from vaal.networks import Discriminator

RSS_SIZE = 10000            # LL4AL's subset; DAAL Sec. 4.5


class RandomSubset:
    """Mixin: score only a random `subset` of the candidates (all of them when `subset` is 0 or larger)."""

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        size = self.options["subset"]
        if 0 < size < budget:
            raise UserError(f"method_options.{self.name}.subset={size} is smaller than the budget {budget}; "
                            "raise it or set 0")
        return super().select(model, ctx, candidate_subset(candidates, size, ctx.seed, ctx.cycle), budget)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        size = self.options["subset"]
        scored = min(size, cycle.candidates) if size else cycle.candidates
        return super().cycle_work(config, num_classes, dataclasses.replace(cycle, candidates=scored))


@register_method
class LearningLossRSS(RandomSubset, LearningLoss):
    """LL as LL4AL and DAAL Fig. 3-5 run it: the loss-prediction ranking over 10,000 random candidates."""

    name = "learning_loss_rss"
    default_options = {**LearningLoss.default_options, "subset": RSS_SIZE}


@register_method
class VAALRSS(RandomSubset, VAAL):
    name = "vaal_rss"
    default_options = {**VAAL_OPTIONS, "subset": RSS_SIZE}


@register_method
class VAALTaskFeatures(VAALFamily):
    """VAAL + TF (Fig. 4): VAAL's game on the task model's penultimate features."""

    name = "vaal_tf"
    default_options = {**VAAL_OPTIONS, "mlp_width": DAAL_OPTIONS["mlp_width"], "dropout": DAAL_OPTIONS["dropout"]}

    def build_features_modules(self, in_features: int, width: float) -> dict:
        opts = self.options
        hidden = scaled(opts["mlp_width"], width)
        return {"VAE": FeatureVAE(in_features, opts["latent_dim"], hidden, opts["dropout"]),
                "discriminator": Discriminator(opts["latent_dim"], opts["disc_layers"])}

    def networks(self, config, num_classes: int) -> dict:
        return self.build_features_modules(feature_dim(config, num_classes), config.model.width)

    def network_inputs(self, config, num_classes: int) -> dict[str, tuple]:
        return {"VAE": ((feature_dim(config, num_classes),),), "discriminator": ((self.options["latent_dim"],),)}

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """VAAL's game on features, plus the task-model pass that extracts them from the labeled and unlabeled
        images."""
        work = super().cycle_work(config, num_classes, cycle)
        if cycle.candidates:
            work.task_inferred += cycle.labeled + cycle.unlabeled
        return work

    def vae_input(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        config, opts, pool = ctx.config, self.options, ctx.pool
        self.bank = FeatureBank(model, ctx, np.concatenate([pool.labeled, pool.unlabeled]))
        seed_everything("vaal", ctx.seed, ctx.cycle)
        modules = self.build_features_modules(self.bank.features.shape[1], config.model.width)
        self.vae, self.disc = (modules[k].to(ctx.device) for k in ("VAE", "discriminator"))
        batch = opts["batch_size"] or config.train.batch_size
        iterations = self.game_iterations(config, len(pool.labeled), len(pool.unlabeled),
                                          ctx.trainer.steps_per_epoch(len(pool.labeled)))
        streams = []
        for tag, indices, drop_last in (("labeled", pool.labeled, True), ("unlabeled", pool.unlabeled, False)):
            generator = torch.Generator(device=ctx.device)
            generator.manual_seed(stream_key("vaal", tag, ctx.seed, ctx.cycle) % 2**63)
            streams.append(endless_batches(self.bank[indices], batch, generator, drop_last))
        self.train_game(ctx, *streams, iterations)

    @torch.no_grad()
    @torch.no_grad()
    def discriminator_outputs(self, ctx: CycleContext, indices: np.ndarray, tag: str,
                              train_mode: bool | None = None) -> torch.Tensor:
        with self.vae_mode(self.options["sample_in_train_mode"] if train_mode is None else train_mode):
            return self.disc(self.vae.encode(self.bank[indices])[0]).float()

    def save_reconstructions(self, ctx: CycleContext) -> None:
        """Features have no picture to save."""


@register_method
class VAALTaskFeaturesRSS(RandomSubset, VAALTaskFeatures):
    name = "vaal_tf_rss"
    default_options = {**VAALTaskFeatures.default_options, "subset": RSS_SIZE}


@register_method
class LearningLossCoreSet(LearningLoss):
    name = "ll_coreset"
    default_options = {**LearningLoss.default_options, "subset": RSS_SIZE}

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        size = max(budget, min(self.options["subset"], len(candidates)))
        if size < len(candidates):
            candidates = np.sort(CoreSet().select(model, ctx, candidates, size))
        return super().select(model, ctx, candidates, budget)


def min_max(values: torch.Tensor) -> torch.Tensor:
    return (values - values.min()) / (values.max() - values.min()).clamp(min=1e-12)


def normalised_ranks(values: torch.Tensor) -> torch.Tensor:
    """0 for the lowest value, 1 for the highest."""
    return torch.argsort(torch.argsort(values)).to(values.dtype) / max(1, len(values) - 1)


COMBINE = {"product": lambda s, loss: s * min_max(loss),
           "rank_mean": lambda s, loss: (normalised_ranks(s) + normalised_ranks(loss)) / 2}


@register_method
class LearningLossRD(DAALRepresentativenessOnly):
    name = "ll_rd"
    default_options = {**DAAL_OPTIONS, **LearningLoss.default_options, "combine": "product"}

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        if self.options["combine"] not in COMBINE:
            raise UserError(f"method_options.ll_rd.combine='{self.options['combine']}' is not one of "
                            f"{', '.join(COMBINE)}")
        self.loss_prediction = LearningLoss({k: self.options[k] for k in LearningLoss.default_options})

    def networks(self, config, num_classes: int) -> dict:
        return {**super().networks(config, num_classes), **self.loss_prediction.networks(config, num_classes)}

    def train_hooks(self, model, ctx: CycleContext) -> list:
        return self.loss_prediction.train_hooks(model, ctx)

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        representativeness = torch.sigmoid(super().score(model, ctx, candidates))
        predicted_loss = self.loss_prediction.score(model, ctx, candidates)
        return COMBINE[self.options["combine"]](representativeness, predicted_loss.to(representativeness.dtype))


@register_method
class DAALWithoutDPP(DAAL):
    """DAAL with L_sparsity reduced to L_LR: L_DPP is still computed and logged (`dpp_first`, `dpp_last`), but
    no update follows its gradient."""

    name = "daal_no_dpp"
    selector_terms = tuple(term for term in SELECTOR_TERMS if term != "dpp")
