"""Core-set (Sener & Savarese 2018): greedy k-center on the task model's penultimate features, the labeled
points being the initial centres.

The distance of every candidate to its nearest centre is kept in one vector and lowered after each pick by
the distances to the new centre only, in chunks on the device: O(N x d) memory, never an N x N matrix. On the
CPU only the largest distances are updated (`active_set_kcenter`); on a GPU every distance is, in float64,
without waiting for the GPU between picks (`dense_kcenter`). Both pick what the textbook loop picks."""
import numpy as np
import torch

from core.lib import CycleContext, CycleSizes, CycleWork, Strategy, predict, register_method


def squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, d), (M, d) -> (N, M) squared Euclidean distances through one matrix product."""
    distances = (points * points).sum(1, keepdim=True) - 2 * points @ centres.T + (centres * centres).sum(1)
    return distances.clamp_(min=0)


def nearest_centre_distances(points: torch.Tensor, centres: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Squared distance of every point to its nearest centre; (N,)."""
    nearest = torch.full((len(points),), float("inf"), device=points.device, dtype=points.dtype)
    for start in range(0, len(centres), chunk):
        block = centres[start:start + chunk]
        for row in range(0, len(points), chunk):
            piece = squared_distances(points[row:row + chunk], block).min(dim=1).values
            nearest[row:row + chunk] = torch.minimum(nearest[row:row + chunk], piece)
    return nearest


def kcenter_greedy(candidates: torch.Tensor, centres: torch.Tensor, budget: int, active_size: int = 4096
                   ) -> torch.Tensor:
    """Positions (into `candidates`) of `budget` greedy k-center picks, the same as the textbook loop
    `pick argmax(nearest); nearest = min(nearest, dist(all, pick))`, on the features' device."""
    if candidates.device.type == "cpu":
        return active_set_kcenter(candidates, centres, budget, active_size)
    return dense_kcenter(candidates, centres, budget)


def dense_kcenter(candidates: torch.Tensor, centres: torch.Tensor, budget: int) -> torch.Tensor:
    """The textbook loop in float64, every distance updated at every pick. No value comes back to the host
    before the end, so on a GPU the picks are a queue of a few kernels each that never waits for the GPU (the
    active-set loop compares with its bound on the host at every pick, one synchronisation each)."""
    points = candidates.double()
    if len(centres):
        nearest = nearest_centre_distances(points, centres.double())
    else:                               # every distance is infinite: the argmax takes the first candidate
        nearest = torch.full((len(points),), float("inf"), dtype=torch.float64, device=points.device)
    norms = (points * points).sum(1)
    picks = torch.empty(budget, dtype=torch.long, device=points.device)
    for step in range(budget):
        best = torch.argmax(nearest, dim=0, keepdim=True)
        picks[step:step + 1] = best
        to_centre = torch.addmv(norms + norms.index_select(0, best), points, points.index_select(0, best)[0],
                                alpha=-2).clamp_(min=0)
        nearest = torch.minimum(nearest, to_centre).index_fill_(0, best, -1.0)
    return picks


def active_set_kcenter(candidates: torch.Tensor, centres: torch.Tensor, budget: int, active_size: int = 4096
                       ) -> torch.Tensor:
    """The textbook loop's picks with fewer operations, in the features' precision.

    Nearest-centre distances only shrink, so only the `active_size` largest need exact updates: every other
    point is bounded by the largest value outside the active set and cannot be picked while the active maximum
    stays above that bound. When it drops below, the stale points catch up in one matrix product against the
    centres picked meanwhile, and a new active set is drawn."""
    count = len(candidates)
    picks = torch.empty(budget, dtype=torch.long, device=candidates.device)
    picked = 0
    if not len(centres):
        # every distance is infinite: the textbook argmax takes the first candidate
        centres, picks[0], picked = candidates[:1], 0, 1
    nearest = nearest_centre_distances(candidates, centres)
    nearest[picks[:picked]] = -1.0
    norms = (candidates * candidates).sum(1)
    caught_up = picked
    while picked < budget:
        if caught_up < picked:
            nearest = torch.minimum(nearest, nearest_centre_distances(candidates, candidates[picks[caught_up:picked]]))
            caught_up = picked
        size = min(active_size, count)
        values, active = torch.topk(nearest, min(size + 1, count))
        bound = float(values[size]) if size < count else float("-inf")
        active = active[:size]
        rows, row_norms, row_nearest = candidates[active], norms[active], nearest[active]
        while picked < budget:
            best = torch.argmax(row_nearest)
            if float(row_nearest[best]) < bound:
                break
            chosen = active[best]
            picks[picked] = chosen
            picked += 1
            to_centre = torch.addmv(row_norms + norms[chosen], rows, candidates[chosen], alpha=-2).clamp_(min=0)
            row_nearest = torch.minimum(row_nearest, to_centre)
            row_nearest[best] = -1.0
        nearest[active] = row_nearest
        if size == count:
            caught_up = picked
    return picks


@register_method
class CoreSet(Strategy):
    name = "coreset"

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        both = np.concatenate([candidates, ctx.pool.labeled])
        features = predict(model, ctx.source, both, ctx.eval_batch_size, features=True, logits=False,
                           amp=ctx.config.train.amp,
                           progress="coreset features" if ctx.progress else None)["features"]
        picks = kcenter_greedy(features[:len(candidates)], features[len(candidates):], budget)
        return candidates[picks.cpu().numpy()]

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Features of the candidates and the labeled centres (the k-center arithmetic is not counted)."""
        if not cycle.candidates:
            return CycleWork()
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.candidates + cycle.labeled)
