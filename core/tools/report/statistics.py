"""Learning curves over seeds and how two methods are compared: the area under the budget curve, paired tests
across seeds with confidence intervals, and the pairwise penalty matrix of Ash et al. (BADGE, ICLR 2020, Fig. 4)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.lib.errors import UserError

MIN_SEEDS = 3           # a paired test on 2 seeds has 1 degree of freedom: its verdicts are noise
TOO_FEW_SEEDS = f"a paired test needs at least {MIN_SEEDS} seeds"
TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
BETTER, WORSE = "▲", "▼"
EXTRA = "(extra)"


@dataclass
class Curve:
    method: str
    n_labeled: np.ndarray        # (points,)
    fraction: np.ndarray         # (points,)
    values: np.ndarray           # (seeds, points); NaN where a seed has not reached a point yet
    seeds: list[int]
    beyond_paper: bool = False   # not among the paper's methods for this experiment (BADGE, a method of your own)

    @property
    def label(self) -> str:
        return f"{self.method} {EXTRA}" if self.beyond_paper else self.method

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.values, axis=0)

    @property
    def std(self) -> np.ndarray:
        return np.nanstd(self.values, axis=0)

    def area(self) -> np.ndarray:
        """Per-seed area under the curve over the labeled fraction, divided by the fraction range: the mean
        metric over the budget range (seeds that have not finished every point are left out)."""
        return np.array(list(self.area_by_seed().values()))

    def area_by_seed(self, budgets: list[int] | None = None) -> dict[int, float]:
        """{seed: area} over all budgets, or over the given ones (to pair with a method that has fewer)."""
        keep = np.isin(self.n_labeled, self.n_labeled if budgets is None else budgets)
        values, fraction = self.values[:, keep], self.fraction[keep]
        done = ~np.isnan(values).any(axis=1)
        if len(fraction) < 2:
            return {}
        width = fraction[-1] - fraction[0]
        heights = (values[:, 1:] + values[:, :-1]) / 2
        areas = (heights * np.diff(fraction)).sum(axis=1) / width
        return {seed: float(area) for seed, area, finished in zip(self.seeds, areas, done) if finished}

    def at(self, n_labeled: int) -> dict[int, float]:
        """{seed: value} at one labeled-set size, for the seeds that reached it."""
        if n_labeled not in self.n_labeled:
            return {}
        column = self.values[:, list(self.n_labeled).index(n_labeled)]
        return {seed: float(v) for seed, v in zip(self.seeds, column) if not np.isnan(v)}


@dataclass(frozen=True)
class Stats:
    """How two methods are compared over seeds."""
    test: str = "t"          # "t": paired t-test (scipy.stats.ttest_rel); "wilcoxon": signed-rank test
    alpha: float = 0.05      # two-sided level; the confidence intervals are at 1 - alpha

    def __post_init__(self):
        if self.test not in TESTS:
            raise UserError(f"unknown test '{self.test}'; choose one of {', '.join(TESTS)}")
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha must be between 0 and 1, not {self.alpha}")

    def describe(self) -> str:
        return f"{TESTS[self.test]} over seeds, two-sided, α = {self.alpha:g}, not corrected for multiple comparisons"


@dataclass(frozen=True)
class Comparison:
    """Method a minus method b over the seeds both have: mean difference, its confidence interval (NaN with
    fewer than 2 seeds) and the test's p-value (NaN with fewer than MIN_SEEDS seeds)."""
    seeds: int
    mean: float
    low: float
    high: float
    p: float
    alpha: float

    @property
    def verdict(self) -> int | None:
        """+1: a significantly better, -1: significantly worse, 0: no significant difference, None: too few seeds."""
        if self.seeds < MIN_SEEDS:
            return None
        return int(np.sign(self.mean)) if self.p < self.alpha else 0

    @property
    def mark(self) -> str:
        return {1: BETTER, -1: WORSE}.get(self.verdict, "")


def paired_p_value(a: np.ndarray, b: np.ndarray, test: str) -> float:
    from scipy import stats

    differences = a - b
    if not differences.any():
        return 1.0                       # identical at every seed
    if test == "wilcoxon":
        return float(stats.wilcoxon(a, b).pvalue)
    if np.ptp(differences) <= 1e-9 * abs(differences.mean()):
        return 0.0                       # the same nonzero difference at every seed: t = c / 0, no round-off noise
    return float(stats.ttest_rel(a, b).pvalue)


def compare_seeds(a: dict[int, float], b: dict[int, float], stats: Stats) -> Comparison:
    """Pair two methods' {seed: value} on their shared seeds."""
    seeds = sorted(set(a) & set(b))
    first, second = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    differences = first - second
    n = len(seeds)
    mean = float(differences.mean()) if n else math.nan
    low = high = math.nan
    if n >= 2:
        from scipy import stats as scipy_stats

        half = scipy_stats.t.ppf(1 - stats.alpha / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n)
        low, high = mean - half, mean + half
    p = paired_p_value(first, second, stats.test) if n >= MIN_SEEDS else math.nan
    return Comparison(n, mean, low, high, p, stats.alpha)


def shared_budgets(a: Curve, b: Curve) -> list[int]:
    return [int(n) for n in np.intersect1d(a.n_labeled, b.n_labeled)]


def budget_comparisons(a: Curve, b: Curve, stats: Stats) -> dict[int, Comparison]:
    """{n_labeled: a - b} at every labeled-set size both methods have."""
    return {n: compare_seeds(a.at(n), b.at(n), stats) for n in shared_budgets(a, b)}


def paired_areas(a: Curve, b: Curve, stats: Stats) -> Comparison:
    """a's AUBC minus b's, both over the budgets they share."""
    budgets = shared_budgets(a, b)
    return compare_seeds(a.area_by_seed(budgets), b.area_by_seed(budgets), stats)


def learning_curves(curves: list[Curve]) -> list[Curve]:
    """Curves with more than one budget; a single-cycle method (full_data) is a reference, not a competitor."""
    return [c for c in curves if len(c.n_labeled) > 1]


@dataclass
class Penalty:
    """A penalty matrix: the methods, the budgets it judged, those it left out for lack of seeds, the entries."""
    methods: list[str]
    budgets: list[int]
    too_few_seeds: list[int]
    matrix: np.ndarray           # (methods, methods); NaN on the diagonal and when no budget could be judged

    @property
    def computed(self) -> bool:
        return len(self.methods) > 1 and bool(self.budgets)


def penalty_matrix(curves: list[Curve], stats: Stats) -> Penalty:
    """Ash et al. (BADGE, Fig. 4): entry (i, j) is the number of budgets at which method i beats method j
    significantly, divided by the number of budgets judged, so 1 means i beats j at every budget. The first
    budget is left out: there no method has selected anything yet (same initial set, same first model). A budget
    is judged when every pair has MIN_SEEDS paired seeds there; the others (runs still going) are listed."""
    competing = learning_curves(curves)
    initial = min((int(c.n_labeled[0]) for c in competing), default=0)
    pairs = {(i, j): budget_comparisons(a, b, stats) for i, a in enumerate(competing)
             for j, b in enumerate(competing) if i != j}
    budgets = sorted({n for by_budget in pairs.values() for n in by_budget if n > initial})
    judged = [n for n in budgets
              if all(n in by_budget and by_budget[n].verdict is not None for by_budget in pairs.values())]
    matrix = np.full((len(competing), len(competing)), np.nan)
    for (i, j), by_budget in pairs.items():
        if judged:
            matrix[i, j] = sum(by_budget[n].verdict == 1 for n in judged) / len(judged)
    return Penalty([c.method for c in competing], judged, [n for n in budgets if n not in judged], matrix)


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Mean of each column over the other methods (NaN where none was computed; the diagonal is no comparison)."""
    off_diagonal = np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix)
    counted = (~np.isnan(off_diagonal)).sum(axis=0)
    return np.where(counted > 0, np.nansum(off_diagonal, axis=0) / np.maximum(counted, 1), np.nan)
