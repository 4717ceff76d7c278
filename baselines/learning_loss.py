"""Learning Loss for Active Learning (Yoo & Kweon 2019; REFERENCES 1.5): a loss-prediction module on the
task model's block features, trained jointly with the task model, picks the candidates with the highest
predicted loss.

Defaults follow the LL4AL paper: the margin ranking loss (margin 1, weight 1) over the pairs (i, B-1-i), and
the gradient into the backbone stopped after epoch 120 of 200 (TA-VAAL's code detaches for epoch > 120,
0-based). The cut-off is a share of training progress, epoch / epochs > 0.6, or iteration / iterations > 0.6
under an iteration schedule (VAAL's configs, segmentation). `ranking_loss: "bce"` is TA-VAAL's "learning loss
v2" (supplement Sec. 3)."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib import (CycleContext, ScoringStrategy, TrainHook, UserError, autocast, inference, register_method,
                      seed_everything, without_autocast)


class LossPredictionModule(nn.Module):
    """Per block: global average pool, Linear(C_i -> hidden), ReLU; concatenated, then Linear(-> 1)."""

    def __init__(self, block_channels: list[int], hidden: int = 128):
        super().__init__()
        self.branches = nn.ModuleList(nn.Linear(c, hidden) for c in block_channels)
        self.out = nn.Linear(hidden * len(block_channels), 1)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """The predicted loss, in float32 inside an autocast region too (after pooling): it is the ranked score,
        and bfloat16 keeps 8 significant bits, so thousands of candidates would tie."""
        with without_autocast(blocks[0].device):
            pooled = [F.relu(branch(torch.flatten(F.adaptive_avg_pool2d(b, 1), 1).float()))
                      for branch, b in zip(self.branches, blocks)]
            return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def _pairs(values: torch.Tensor) -> torch.Tensor:
    """Differences over the pairs (i, B-1-i), i < B // 2 (an odd batch leaves its middle sample out)."""
    half = len(values) // 2
    return values[:half] - values.flip(0)[:half]


def margin_ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LL4AL Eq. 2: mean over pairs of max(0, -sign(l_i - l_j) (l^_i - l^_j) + margin), ties counted as -1."""
    target = target.detach()
    sign = torch.where(_pairs(target) > 0, 1.0, -1.0)
    return (margin - sign * _pairs(predicted)).clamp(min=0).mean()


def bce_ranking_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TA-VAAL's learning loss v2: BCE(sigmoid(l^_i - l^_j), 1[l_i > l_j])."""
    target = target.detach()
    return F.binary_cross_entropy_with_logits(_pairs(predicted), (_pairs(target) > 0).float())


RANKING_LOSSES = {"margin": margin_ranking_loss, "bce": bce_ranking_loss}


class LossPredictionHook(TrainHook):
    def __init__(self, module: LossPredictionModule, ranking: str, weight: float, margin: float,
                 detach_fraction: float):
        self.module, self.modules = module, [module]
        self.ranking, self.weight, self.margin, self.detach_fraction = ranking, weight, margin, detach_fraction

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        if progress > self.detach_fraction:
            blocks = [b.detach() for b in blocks]
        predicted = self.module(blocks)
        if self.ranking == "margin":
            return self.weight * margin_ranking_loss(predicted, per_sample_loss, self.margin)
        return self.weight * bce_ranking_loss(predicted, per_sample_loss)


def block_channels(model: nn.Module, size: int = 32) -> list[int]:
    """Channel counts of the blocks `forward_features` exposes, from one dummy forward pass."""
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        was_training = model.training
        dummy = torch.zeros(1, first_conv.in_channels, size, size, device=first_conv.weight.device)
        blocks = model.eval().forward_features(dummy)[2]
        model.train(was_training)
    return [b.shape[1] for b in blocks]


@register_method
class LearningLoss(ScoringStrategy):
    name = "learning_loss"
    default_options = {"ranking_loss": "margin", "weight": 1.0, "margin": 1.0, "detach_fraction": 0.6,
                       "hidden": 128}

    def __init__(self, options=None):
        super().__init__(options)
        if self.options["ranking_loss"] not in RANKING_LOSSES:
            raise UserError(f"learning_loss ranking_loss '{self.options['ranking_loss']}' is not one of "
                            f"{', '.join(RANKING_LOSSES)}")
        self.module = None

    def networks(self, config, num_classes: int) -> dict:
        from core.lib import build_network, dataset_spec

        task = build_network(config.model.arch, num_classes, dataset_spec(config.data.dataset).channels,
                             config.model.width)
        return {"loss prediction module": LossPredictionModule(block_channels(task), self.options["hidden"])}

    def train_hooks(self, model, ctx: CycleContext) -> list:
        seed_everything("loss-module", ctx.seed, ctx.cycle)
        self.module = LossPredictionModule(block_channels(model), self.options["hidden"]).to(ctx.device)
        return [LossPredictionHook(self.module, self.options["ranking_loss"], self.options["weight"],
                                   self.options["margin"], self.options["detach_fraction"])]

    @torch.no_grad()
    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        model.eval()
        self.module.eval()
        scores = []
        forward = inference(model.forward_features, ctx.eval_batch_size)
        for images, _ in ctx.source.batches(candidates, ctx.eval_batch_size):
            with autocast(ctx.device, ctx.config.train.amp):
                scores.append(self.module(forward(images)[2]).float())
        return torch.cat(scores)
