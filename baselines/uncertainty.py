"""Random sampling and single-pass uncertainty sampling.

`entropy` is what VAAL calls DBAL: its Table 1 time (10.95 s, close to VAAL's) shows a single forward pass,
not MC-Dropout (REFERENCES 1.5, B4)."""
import numpy as np
import torch

from core.evaluate import predict
from core.strategy import CycleContext, ScoringStrategy, Strategy, register


@register
class RandomSampling(Strategy):
    name = "random"

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        return ctx.rng.choice(candidates, budget, replace=False)


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits, dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


@register
class EntropySampling(ScoringStrategy):
    name = "entropy"

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        logits = predict(model, ctx.source, candidates, ctx.eval_batch_size, amp=ctx.config.train.amp,
                         progress="score entropy" if ctx.progress else None)["logits"]
        return softmax_entropy(logits)
