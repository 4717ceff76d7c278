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
from core.lib import (CycleContext, CycleSizes, CycleWork, ScoringStrategy, autocast, class_last, image_scores,
                      map_batches, predict, register_method)


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
        """Members 1..T-1 trained like the cycle's model; every member scores every candidate. Held while a batch
        is scored: the T softmax outputs and their stack, then the one-hot votes in int64 (twice the stack) and
        their float copy: 4T outputs."""
        if not cycle.candidates:
            return CycleWork()
        members = self.options["members"]
        return CycleWork(scored=cycle.candidates, task_trainings=members - 1,
                         task_inferred=members * cycle.candidates, held_outputs=4 * members)


@register_method
class EnsembleVariationRatio(CommitteeStrategy):
    name = "ensemble_varratio"
    reduce = staticmethod(variation_ratio)


@register_method
class QueryByCommittee(CommitteeStrategy):
    name = "qbc"
    reduce = staticmethod(vote_entropy)


def cosine_similarities(candidate_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, chunk: int = 4096
                        ) -> torch.Tensor:
    """(C, d), (P, d) -> (C, P) cosine similarities, pool columns in chunks."""
    candidates = torch.nn.functional.normalize(candidate_descriptors, dim=1)
    pool = torch.nn.functional.normalize(pool_descriptors, dim=1)
    return torch.cat([candidates @ pool[i:i + chunk].T for i in range(0, len(pool), chunk)], dim=1)


def greedy_max_cover(candidate_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, count: int,
                     chunk: int = 4096, refresh: int = 16) -> torch.Tensor:
    """Positions of `count` candidates chosen greedily to maximise sum_x max_{s in chosen} cos(s, x) over the
    pool (Suggestive Annotation's representativeness step), on the descriptors' device: lazily on the CPU,
    densely in float64 on a GPU; both pick what re-evaluating every candidate at every step picks."""
    if candidate_descriptors.device.type == "cpu":
        return lazy_max_cover(candidate_descriptors, pool_descriptors, count, chunk, refresh)
    return dense_max_cover(candidate_descriptors, pool_descriptors, count, chunk)


def dense_max_cover(candidate_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, count: int,
                    chunk: int = 4096) -> torch.Tensor:
    """Every candidate's gain re-evaluated at every step, in float64, with no value brought to the host before
    the end: on a GPU a queue of a few kernels per pick that never waits (the lazy loop compares gains with
    stale bounds on the host, one synchronisation or more per pick). Chosen candidates are held at -inf, so
    none comes twice when the gains run out."""
    similarity = cosine_similarities(candidate_descriptors.double(), pool_descriptors.double(), chunk)
    covered = torch.zeros(similarity.shape[1], dtype=torch.float64, device=similarity.device)
    taken = torch.zeros(len(similarity), dtype=torch.float64, device=similarity.device)
    chosen = torch.empty(count, dtype=torch.long, device=similarity.device)
    for step in range(count):
        gains = (similarity - covered).clamp_(min=0).sum(dim=1) + taken
        best = torch.argmax(gains, dim=0, keepdim=True)
        chosen[step:step + 1] = best
        taken.index_fill_(0, best, float("-inf"))
        covered = torch.maximum(covered, similarity.index_select(0, best)[0])
    return chosen


def lazy_max_cover(candidate_descriptors: torch.Tensor, pool_descriptors: torch.Tensor, count: int,
                   chunk: int = 4096, refresh: int = 16) -> torch.Tensor:
    """The greedy picks with few gain evaluations, in the descriptors' precision.

    Coverage is submodular, so a candidate's gain only shrinks as others are chosen: stale gains are upper
    bounds, and only the `refresh` largest are re-evaluated until the best fresh gain beats every stale bound
    (lazy greedy, Minoux 1978): the same picks as re-evaluating every candidate at every step."""
    similarity = cosine_similarities(candidate_descriptors, pool_descriptors, chunk)
    covered = torch.zeros(similarity.shape[1], device=similarity.device, dtype=similarity.dtype)
    bounds = similarity.clamp(min=0).sum(dim=1)
    available = torch.ones(len(similarity), dtype=torch.bool, device=similarity.device)
    chosen = torch.empty(count, dtype=torch.long, device=similarity.device)
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


@register_method
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
        """T bootstrap models besides the cycle's, all scoring every candidate, and the cycle's model's features.
        Held while a batch is scored: the T softmax outputs and their stack, then their variance (2T + 1)."""
        if not cycle.candidates:
            return CycleWork()
        members = self.options["members"]
        return CycleWork(scored=cycle.candidates, task_trainings=members,
                         task_inferred=(members + 1) * cycle.candidates, held_outputs=2 * members + 1)

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        uncertainty = member_scores(self.members, ctx, candidates, mean_class_variance)
        shortlist = torch.topk(uncertainty, min(len(candidates), self.options["shortlist"] * budget)).indices
        features = predict(model, ctx.source, candidates, ctx.eval_batch_size, features=True, logits=False,
                           amp=ctx.config.train.amp)["features"]
        chosen = greedy_max_cover(features[shortlist], features, budget)
        return candidates[shortlist[chosen].cpu().numpy()]
