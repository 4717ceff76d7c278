"""Power sampling (Kirsch et al., "Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning",
TMLR 2023): draw the batch with probability proportional to score ** beta instead of taking the top scores, so
that near-duplicates of one uncertain image do not fill the batch. The worked example of
docs/adding_a_method.md: a method in one module, registered when imported."""
import numpy as np
import torch

from core.lib import CycleContext, CycleSizes, CycleWork, ScoringStrategy, register_method, softmax_scores


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=-1)


@register_method
class PowerEntropy(ScoringStrategy):
    """Entropy of one forward pass, the batch drawn in proportion to entropy ** beta (Gumbel top-k)."""

    name = "power_entropy"
    default_options = {
        "beta": 1.0,        # the power; Kirsch et al. use 1; large beta tends to top-k entropy
    }

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        return softmax_scores(model, ctx.source, candidates, ctx.eval_batch_size, entropy, ctx.config.train.amp)

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        scores = self.score(model, ctx, candidates).double()
        # top-k of log(score ** beta) + Gumbel noise draws k without replacement, proportional to score ** beta
        uniforms = torch.from_numpy(ctx.rng.random(len(candidates))).to(scores.device).clamp_(min=1e-12)
        keys = self.options["beta"] * scores.clamp(min=1e-12).log() - (-uniforms.log()).log()
        return candidates[torch.topk(keys, budget).indices.cpu().numpy()]

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """One forward pass per candidate, as entropy sampling (the draw itself is negligible)."""
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.candidates)
