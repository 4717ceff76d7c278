"""BADGE (Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020), as
the official code (JordanAsh/badge, query_strategies/badge_sampling.py and strategy.py) computes it.

Alg. 1 of the paper, per candidate x with penultimate features h(x) and softmax p(x):
- hypothetical label y^ = argmax_c p_c(x);
- gradient embedding g_x = d CE(f(x), y^) / d W, W the last layer's weight: block c is (p_c - 1[c = y^]) h(x).
  The code stores the opposite sign, (1[c = y^] - p_c) h(x), class-major (`get_grad_embedding`); k-means++ only
  sees distances and norms, which the sign leaves unchanged. The bias is left out, as in the code.
- k-means++ seeding on {g_x}: the batch is the k seeds.

Seeding as the code does it (`init_centers`): the first seed is the embedding of largest norm; each next one is
drawn with probability proportional to the squared distance to its nearest seed, by inverting the cumulative
distribution at one uniform draw (scipy's `rv_discrete(...).rvs()`), chosen points having probability 0.

Nothing of size candidates x classes x features is formed: an embedding is an outer product, so the squared
distance between two is |a|^2 |h|^2 + |b|^2 |k|^2 - 2 (a . b)(h . k), the code's own shortcut since 2023
(Zhang et al.). The seeding runs on the device in float64 (the code's NumPy precision), one uniform per pick
drawn up front, so the loop over picks never waits for the device.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import (CycleContext, CycleSizes, CycleWork, ExperimentConfig, Strategy, UserError, predict,
                      register_extra, register_method)


def gradient_factors(logits: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) logits and (N, D) penultimate features -> the two factors of each gradient embedding, in float64:
    (onehot(argmax) - softmax, features); embedding row n = outer(first[n], second[n]).flatten()."""
    probabilities = torch.softmax(logits.float(), dim=1)
    predicted = F.one_hot(probabilities.argmax(1), probabilities.shape[1])
    return (predicted - probabilities).double(), features.double()


def gradient_embedding(factors: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The (N, C * D) embeddings themselves, class-major as in the code (for tests and small pools)."""
    scale, features = factors
    return (scale[:, :, None] * features[:, None, :]).flatten(1)


def squared_distances_to(factors: tuple[torch.Tensor, torch.Tensor], norms: torch.Tensor,
                         index: torch.Tensor) -> torch.Tensor:
    """Squared distance of every embedding to embedding `index` (a one-element tensor), from the factors."""
    scale, features = factors
    inner = (scale @ scale.index_select(0, index)[0]) * (features @ features.index_select(0, index)[0])
    return (norms + norms.index_select(0, index) - 2 * inner).clamp_(min=0)


def kmeans_pp_seeds(factors: tuple[torch.Tensor, torch.Tensor], count: int, uniforms: torch.Tensor,
                    first: str = "largest") -> torch.Tensor:
    """Positions of `count` k-means++ seeds among the embeddings given by `factors`. `uniforms`: one draw in
    [0, 1) per sampled seed (count - 1 with first='largest', count with 'random'). A draw picks the first point
    whose cumulative weight exceeds it, scipy's inversion, never one of weight 0 (the code draws again when it
    gets a chosen point). When every point left is at distance 0 from the seeds (duplicates), the code stops in
    a debugger; here the next seed is uniform among the points not chosen yet."""
    scale, features = factors
    norms = (scale * scale).sum(1) * (features * features).sum(1)
    free = torch.ones_like(norms)
    nearest = free.clone() if first == "random" else None      # 'random': the first seed from equal weights
    picks = torch.empty(count, dtype=torch.long, device=norms.device)
    draws = iter(uniforms.to(device=norms.device, dtype=torch.float64))
    for step in range(count):
        if nearest is None:
            pick = norms.argmax().view(1)
        else:
            cumulative = torch.where(nearest.sum() > 0, nearest, free).cumsum(0)
            drawn = torch.searchsorted(cumulative, (next(draws) * cumulative[-1]).view(1), right=True)
            pick = torch.minimum(drawn, cumulative.argmax().view(1))     # a draw rounded up to the total
        picks[step:step + 1] = pick
        free.index_fill_(0, pick, 0.0)
        reached = squared_distances_to(factors, norms, pick)
        nearest = (reached if step == 0 else torch.minimum(nearest, reached)).index_fill_(0, pick, 0.0)
    return picks


@register_method
class Badge(Strategy):
    """BADGE: k-means++ seeding on last-layer gradient embeddings at the predicted label."""

    name = "badge"
    default_options = {
        "first_center": "largest",   # the code's init_centers: largest embedding norm; 'random': k-means++ as
                                     # the paper names it (Arthur & Vassilvitskii 2007), drawn uniformly
    }

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        if self.options["first_center"] not in ("largest", "random"):
            raise UserError(f"method badge: first_center must be largest (the code) or random (k-means++), not "
                            f"{self.options['first_center']!r}")

    def adjust_config(self, config, train_size: int):
        if config.metric != "accuracy":
            raise UserError(f"method badge embeds one gradient per image from a classifier; {config.paper}/"
                            f"{config.experiment} labels pixels ({config.metric}): choose another method")
        return config

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        outputs = predict(model, ctx.source, candidates, ctx.eval_batch_size, features=True, amp=ctx.config.train.amp,
                          progress="badge embeddings" if ctx.progress else None)
        factors = gradient_factors(outputs["logits"], outputs["features"])
        draws = torch.from_numpy(ctx.rng.random(budget - (self.options["first_center"] == "largest")))
        picks = kmeans_pp_seeds(factors, budget, draws, self.options["first_center"])
        return candidates[picks.cpu().numpy()]

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """One forward pass per candidate for its logits and features (the seeding's arithmetic, budget x
        candidates x (classes + features), is not counted, as core-set's k-center)."""
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.candidates)


def joins(config: ExperimentConfig) -> bool:
    """BADGE's extra place: each paper's CIFAR comparisons, those against the usual baselines (entropy or core-set),
    not its ablations; LADA's ResNet mixing runs BADGE on the same network."""
    return config.data.dataset in ("cifar10", "cifar100") and bool({"entropy", "coreset"} & set(config.methods))


register_extra("badge", joins)
