"""Methods that score with several task models trained through the shared trainer: Ensembles with variation
ratios (Beluch et al. 2018; VAAL Sec. 4.1: 5 models), query-by-committee with vote entropy (5 models, used by
VAAL for segmentation), and Suggestive Annotation's generic parts (Yang et al. 2017: bootstrap models, then
greedy max-cover by cosine similarity).

The cycle's task model is member 0 (its accuracy is the one reported, as for every method); the others are
independently initialised and trained on the same labeled set. For segmentation (REFERENCES B5) the scores are
computed per pixel and averaged over the image, and the descriptors are globally pooled backbone features."""
import numpy as np
import torch

from baselines.mc_dropout import variation_ratio
from baselines.uncertainty import entropy
from core.evaluate import autocast, class_last, image_scores, map_batches, predict
from core.strategy import CycleContext, CycleSizes, CycleWork, ScoringStrategy, register


def vote_entropy(samples: torch.Tensor) -> torch.Tensor:
    """samples: (T, N, ..., C) member softmax outputs -> entropy of the vote distribution, (N, ...)."""
    votes = torch.nn.functional.one_hot(samples.argmax(dim=-1), samples.shape[-1]).float().mean(dim=0)
    return entropy(votes)


def member_scores(members, ctx: CycleContext, indices: np.ndarray, reduce) -> torch.Tensor:
    """One score per image: `reduce` of the members' stacked softmax outputs (T, B, ..., C), batch by batch."""
    for member in members:
        member.eval()

    def compute(images):
        with autocast(ctx.device, ctx.config.train.amp):
            samples = torch.stack([torch.softmax(m(images).float(), dim=1) for m in members])
        return image_scores(reduce(class_last(samples, class_dim=2)))

    return map_batches(ctx.source, indices, ctx.eval_batch_size, compute)


def mean_class_variance(samples: torch.Tensor) -> torch.Tensor:
    """Suggestive Annotation's uncertainty: the members' variance, averaged over the classes."""
    return samples.var(dim=0).mean(dim=-1)


class CommitteeStrategy(ScoringStrategy):
    """Subclasses set `reduce`: (T, N, ..., C) member softmax outputs -> (N, ...) scores."""

    default_options = {"members": 5}

    def committee(self, model, ctx: CycleContext) -> list:
        return [model] + [ctx.train_model(f"member{k}", None) for k in range(1, self.options["members"])]

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        self.members = self.committee(model, ctx)
        self.diagnostics = {"members": len(self.members)}

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        return member_scores(self.members, ctx, candidates, self.reduce)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Members 1..T-1 trained like the cycle's model; every member scores every candidate."""
        if not cycle.candidates:
            return CycleWork()
        members = self.options["members"]
        return CycleWork(scored=cycle.candidates, task_trainings=members - 1,
                         task_inferred=members * cycle.candidates)


@register
class EnsembleVariationRatio(CommitteeStrategy):
    name = "ensemble_varratio"
    reduce = staticmethod(variation_ratio)


@register
class QueryByCommittee(CommitteeStrategy):
    name = "qbc"
    reduce = staticmethod(vote_entropy)


def greedy_max_cover(candidate_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, count: int,
                     chunk: int = 4096, refresh: int = 16) -> torch.Tensor:
    """Positions of `count` candidates chosen greedily to maximise sum_x max_{s in chosen} cos(s, x) over the
    pool (Suggestive Annotation's representativeness step).

    Coverage is submodular, so a candidate's gain only shrinks as others are chosen: stale gains are upper
    bounds, and only the `refresh` largest are re-evaluated until the best fresh gain beats every stale bound
    (lazy greedy, Minoux 1978): the same picks as re-evaluating every candidate at every step."""
    candidates = torch.nn.functional.normalize(candidate_descriptors, dim=1)
    pool = torch.nn.functional.normalize(pool_descriptors, dim=1)
    similarity = torch.cat([candidates @ pool[i:i + chunk].T for i in range(0, len(pool), chunk)], dim=1)
    covered = torch.zeros(len(pool), device=pool.device, dtype=similarity.dtype)
    bounds = similarity.clamp(min=0).sum(dim=1)
    available = torch.ones(len(candidates), dtype=torch.bool, device=pool.device)
    chosen = torch.empty(count, dtype=torch.long, device=pool.device)
    for step in range(count):
        while True:
            top = torch.topk(bounds, min(refresh + 1, len(bounds)))
            rows = top.indices[:refresh]
            fresh = (similarity[rows] - covered).clamp_(min=0).sum(dim=1)
            # once the gains left are zero (duplicate or all-zero descriptors), chosen rows reach the top too
            fresh = torch.where(available[rows], fresh, float("-inf"))
            bounds[rows] = fresh
            best = torch.argmax(fresh)
            outside = float(top.values[refresh]) if len(top.values) > refresh else float("-inf")
            if float(fresh[best]) >= outside:
                break
        pick = rows[best]
        chosen[step] = pick
        available[pick] = False
        bounds[pick] = float("-inf")
        covered = torch.maximum(covered, similarity[pick])
    return chosen


@register
class SuggestiveAnnotation(CommitteeStrategy):
    """Top `shortlist` x budget candidates by the bootstrap models' mean per-class variance, then greedy max-cover
    of the scored candidates by cosine similarity of the task model's features, down to the budget."""

    name = "suggestive_annotation"
    default_options = {"members": 4, "shortlist": 2}

    def committee(self, model, ctx: CycleContext) -> list:
        labeled = ctx.pool.labeled
        return [ctx.train_model(f"bootstrap{k}", ctx.rng.choice(labeled, len(labeled), replace=True))
                for k in range(self.options["members"])]

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """T bootstrap models besides the cycle's, all scoring every candidate, and the cycle's model's features."""
        if not cycle.candidates:
            return CycleWork()
        members = self.options["members"]
        return CycleWork(scored=cycle.candidates, task_trainings=members,
                         task_inferred=(members + 1) * cycle.candidates)

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        uncertainty = member_scores(self.members, ctx, candidates, mean_class_variance)
        shortlist = torch.topk(uncertainty, min(len(candidates), self.options["shortlist"] * budget)).indices
        features = predict(model, ctx.source, candidates, ctx.eval_batch_size, features=True, logits=False,
                           amp=ctx.config.train.amp)["features"]
        chosen = greedy_max_cover(features[shortlist], features, budget)
        return candidates[shortlist[chosen].cpu().numpy()]
