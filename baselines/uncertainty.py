"""Random sampling and single-pass uncertainty sampling: max entropy, least confidence, smallest margin.

`entropy` is what VAAL calls DBAL: its Table 1 time (10.95 s, close to VAAL's) shows a single forward pass,
not MC-Dropout (REFERENCES 1.5, B4). For segmentation an image scores the mean of its pixels' scores."""
import numpy as np
import torch

from core.lib import CycleContext, ScoringStrategy, Strategy, register_method, softmax_scores


@register_method
class RandomSampling(Strategy):
    name = "random"

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        return ctx.rng.choice(candidates, budget, replace=False)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last dimension; 0 log 0 counts as 0."""
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=-1)


def least_confidence(probabilities: torch.Tensor) -> torch.Tensor:
    return 1 - probabilities.max(dim=-1).values


def smallest_margin(probabilities: torch.Tensor) -> torch.Tensor:
    top = probabilities.topk(2, dim=-1).values
    return -(top[..., 0] - top[..., 1])


class SinglePassStrategy(ScoringStrategy):
    """Scores the softmax of one deterministic forward pass (model in eval mode)."""

    acquisition = staticmethod(entropy)

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        return softmax_scores(model, ctx.source, candidates, ctx.eval_batch_size, self.acquisition,
                              ctx.config.train.amp, f"score {self.name}" if ctx.progress else None)


@register_method
class EntropySampling(SinglePassStrategy):
    name = "entropy"
    acquisition = staticmethod(entropy)


@register_method
class LeastConfidenceSampling(SinglePassStrategy):
    name = "least_confidence"
    acquisition = staticmethod(least_confidence)


@register_method
class MarginSampling(SinglePassStrategy):
    name = "margin"
    acquisition = staticmethod(smallest_margin)
