"""Figures and tables from stored results only: learning curves with mean ± std bands over seeds, tables of
mean ± std at each budget with the area under the budget curve (AUBC), and paired comparisons of methods.

Every method of an experiment starts each seed from the same initial labeled set and the same first model
(core/lib/loop.py), so two methods are compared seed by seed: at every budget a paired test across seeds (a paired
t-test by default, Wilcoxon's signed-rank test as an option) and the mean difference with its confidence
interval; the pairwise penalty matrix of Ash et al. (BADGE, ICLR 2020, Fig. 4); the improvement over random
per budget with confidence bands (the form of TA-VAAL's Fig. 3); and, over several experiments, one table of
AUBC and final accuracy per method with the mark against random. Nothing is marked on fewer than MIN_SEEDS
paired seeds."""
from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.lib.errors import UserError
from core.lib.results import RESULTS_FILE, read_jsonl, write_atomic

MIN_SEEDS = 3           # a paired test on 2 seeds has 1 degree of freedom: its verdicts are noise
TOO_FEW_SEEDS = f"a paired test needs at least {MIN_SEEDS} seeds"
TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
BETTER, WORSE = "▲", "▼"
EXTRA = "(extra)"
EXTRA_NOTE = (f"{EXTRA}: a method beyond the paper's own for this experiment, run under the same protocol, seeds "
              "and initial sets.")


# ---------------------------------------------------------------- reading stored rows

REPORT_FIELDS = {"paper": str, "experiment": str, "method": str, "seed": int, "n_labeled": int,
                 "fraction_labeled": (int, float), "metric": str, "value": (int, float)}


def check_report_fields(path: Path, rows: list[dict]) -> list[dict]:
    """Rows that figures and tables can use; the first one that cannot is named with its file and line."""
    for number, row in enumerate(rows, 1):
        missing = [name for name, kind in REPORT_FIELDS.items()
                   if not isinstance(row, dict) or not isinstance(row.get(name), kind) or isinstance(row.get(name), bool)]
        if missing:
            raise UserError(f"results file {path} row {number} lacks {', '.join(missing)} (or holds the wrong type); "
                            "move the file aside, or rerun that job into a fresh --out")
    return rows


def load_rows(folder: Path) -> list[dict]:
    """Every row of every run below `folder`, each with the fields a report needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist; pass the --out folder of a run")
    files = sorted(folder.rglob(RESULTS_FILE))
    if not files:
        raise UserError(f"no {RESULTS_FILE} below {folder}; run an experiment with --out {folder} first")
    return [row for file in files for row in check_report_fields(file, read_jsonl(file))]


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


def experiment_key(row: dict) -> tuple:
    return row["paper"], row["experiment"], row.get("profile", "paper"), row["metric"]


def code_versions(rows: list[dict]) -> dict[tuple, list[str]]:
    """{experiment key: the code versions its rows were made by (core.tools.jobs.code_version)}; several mean
    that a run was continued by other code (--allow-code-change)."""
    versions = defaultdict(set)
    for row in rows:
        versions[experiment_key(row)].add(row.get("code_version", "unknown"))
    return {key: sorted(found) for key, found in versions.items()}


def group_curves(rows: list[dict]) -> dict[tuple, list[Curve]]:
    """{(paper, experiment, profile, metric): [Curve per method]} from result rows."""
    grouped = defaultdict(lambda: defaultdict(dict))
    fractions, extras = {}, set()
    for row in rows:
        key = experiment_key(row)
        grouped[key][row["method"]][(row["seed"], row["n_labeled"])] = row["value"]
        if row.get("beyond_paper"):
            extras.add((key, row["method"]))
        fractions[(key, row["n_labeled"])] = row["fraction_labeled"]
    curves = {}
    for key, methods in grouped.items():
        curves[key] = []
        for method in sorted(methods):
            points = methods[method]
            labels = sorted({n for _, n in points})
            seeds = sorted({s for s, _ in points})
            values = np.full((len(seeds), len(labels)), np.nan)
            for (seed, n), value in points.items():
                values[seeds.index(seed), labels.index(n)] = value
            curves[key].append(Curve(method, np.array(labels), np.array([fractions[(key, n)] for n in labels]),
                                     values, seeds, (key, method) in extras))
    return curves


def _cell(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "-"
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def _budget_header(curves: list[Curve]) -> tuple[list[int], list[str]]:
    labels = sorted({int(n) for c in curves for n in c.n_labeled})
    fraction_of = {int(n): f for c in curves for n, f in zip(c.n_labeled, c.fraction)}
    return labels, [f"{100 * fraction_of[n]:.1f}% ({n:,})" for n in labels]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def mixed_versions_note(versions: list[str]) -> str:
    return (f"⚠ rows made by {len(versions)} code versions ({', '.join(versions)}): runs continued by other code "
            "(--allow-code-change); rerun into a fresh --out for rows of one version.")


def markdown_table(key: tuple, curves: list[Curve], versions: list[str] = ()) -> str:
    """Methods side by side: mean ± std over seeds at each labeled-set size, then the area under the curve; a ⚠
    note when the rows come from several code versions."""
    paper, experiment, profile, metric = key
    labels, budgets = _budget_header(curves)
    header = ["method"] + budgets + ["AUC", "seeds"]
    lines = [f"### {paper} / {experiment} ({profile} profile): {metric}, mean ± std over seeds", "",
             _row(header), "|" + "---|" * len(header)]
    for curve in curves:
        cells = [_cell(curve.values[:, list(curve.n_labeled).index(n)]) if n in curve.n_labeled else "-"
                 for n in labels]
        lines.append(_row([curve.label] + cells + [_cell(curve.area()), str(len(curve.seeds))]))
    lines.append("")
    lines.append("AUC: area under the curve over the labeled fraction divided by its range (the mean "
                 f"{metric} across budgets), per seed, then mean ± std."
                 + (f" {EXTRA_NOTE}" if any(c.beyond_paper for c in curves) else ""))
    if len(versions) > 1:
        lines += ["", mixed_versions_note(versions)]
    return "\n".join(lines) + "\n"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def difference_cell(comparison: Comparison, seeds: int) -> str:
    """'+3.02 [+2.51, +3.53] p=0.001 ▲', with '(n=k)' where fewer seeds than the row's are paired."""
    if comparison.seeds == 0:
        return "-"
    text = _signed(comparison.mean)
    if comparison.seeds >= 2:
        text += f" [{_signed(comparison.low)}, {_signed(comparison.high)}]"
    if comparison.seeds >= MIN_SEEDS:
        text += " p<0.001" if comparison.p < 0.001 else f" p={comparison.p:.3f}"
    if comparison.seeds != seeds:
        text += f" (n={comparison.seeds})"
    return text + (f" {comparison.mark}" if comparison.mark else "")


def ordered_pairs(curves: list[Curve]) -> list[tuple[Curve, Curve]]:
    """Every pair once, random always the one subtracted."""
    competing = sorted(learning_curves(curves), key=lambda c: (c.method == "random", c.method))
    return [(a, b) for i, a in enumerate(competing) for b in competing[i + 1:]]


def _wilcoxon_floor(seeds: int, stats: Stats) -> str:
    """An exact two-sided signed-rank test on n pairs cannot go below p = 2 / 2^n (0.0625 for 5 seeds)."""
    if stats.test != "wilcoxon" or not seeds or 2 / 2 ** seeds < stats.alpha:
        return ""
    return (f" With {seeds} seeds the exact Wilcoxon test cannot go below p = {2 / 2 ** seeds:.4g} ≥ α, so it "
            "can mark nothing; use the t-test or more seeds.")


def pairwise_table(curves: list[Curve], stats: Stats) -> str:
    """Per pair of methods and per budget: the paired mean difference with its CI, the p-value and the mark."""
    pairs = ordered_pairs(curves)
    if not pairs:
        return ""
    labels, budgets = _budget_header(learning_curves(curves))
    seeds = max(len(set(a.seeds) & set(b.seeds)) for a, b in pairs)
    lines = [f"#### Paired differences: A − B, mean over seeds [{100 * (1 - stats.alpha):g}% CI], "
             f"{TESTS[stats.test]} p-value", "",
             (f"No significance marks: {TOO_FEW_SEEDS} and these comparisons rest on {seeds}."
              if seeds < MIN_SEEDS else
              f"{BETTER} / {WORSE}: A significantly better / worse than B ({stats.describe()})."
              + _wilcoxon_floor(seeds, stats)), "",
             _row(["A − B", "seeds"] + budgets + ["AUC"]), "|" + "---|" * (len(budgets) + 3)]
    for a, b in pairs:
        paired = len(set(a.seeds) & set(b.seeds))
        by_budget = budget_comparisons(a, b, stats)
        cells = [difference_cell(by_budget[n], paired) if n in by_budget else "-" for n in labels]
        area = difference_cell(paired_areas(a, b, stats), paired)
        lines.append(_row([f"{a.method} − {b.method}", str(paired)] + cells + [area]))
    return "\n".join(lines) + "\n"


def penalty_table(curves: list[Curve], stats: Stats) -> str:
    penalty = penalty_matrix(curves, stats)
    methods = penalty.methods
    if len(methods) < 2:
        return ""
    lines = ["#### Pairwise penalty matrix (Ash et al., BADGE, Fig. 4)", ""]
    if not penalty.computed:
        return "\n".join(lines + [f"Not computed: it counts significant wins, and {TOO_FEW_SEEDS} at some budget "
                                   "after the initial set."]) + "\n"
    left_out = (f" Left out, fewer than {MIN_SEEDS} paired seeds there so far: "
                f"{', '.join(f'{n:,}' for n in penalty.too_few_seeds)}." if penalty.too_few_seeds else "")
    lines += [f"Row i, column j: the fraction of the {len(penalty.budgets)} budgets judged "
              f"({', '.join(f'{n:,}' for n in penalty.budgets)} labels) at which i is significantly better than j "
              f"({stats.describe()}); 1 = at every budget. The initial budget is not judged: no method has "
              f"selected anything there.{left_out} Bottom row: the column mean, how often that method is beaten "
              "(lower is better).", "",
              _row(["i beats j"] + methods), "|" + "---|" * (len(methods) + 1)]
    for method, row in zip(methods, penalty.matrix):
        lines.append(_row([method] + [_fraction(v) for v in row]))
    lines.append(_row(["column mean"] + [_fraction(v) for v in column_means(penalty.matrix)]))
    return "\n".join(lines) + "\n"


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Mean of each column over the other methods (NaN where none was computed; the diagonal is no comparison)."""
    off_diagonal = np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix)
    counted = (~np.isnan(off_diagonal)).sum(axis=0)
    return np.where(counted > 0, np.nansum(off_diagonal, axis=0) / np.maximum(counted, 1), np.nan)


def _fraction(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.2f}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial)
    _pyplot().close(fig)
    partial.replace(path)


def plot_curves(key: tuple, curves: list[Curve], path: Path, x_axis: str = "percent",
                reference: dict[str, float] | None = None) -> None:
    plt = _pyplot()
    paper, experiment, profile, metric = key
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for curve in curves:
        if len(curve.fraction) == 1:          # a single-cycle method (full_data) is a reference line
            ax.axhline(curve.mean[0], linestyle=":", color="gray", label=f"{curve.label} (n={len(curve.seeds)})")
            continue
        x = 100 * curve.fraction if x_axis == "percent" else curve.n_labeled
        line, = ax.plot(x, curve.mean, marker="o", markersize=3, label=f"{curve.label} (n={len(curve.seeds)})")
        ax.fill_between(x, curve.mean - curve.std, curve.mean + curve.std, color=line.get_color(), alpha=0.18)
    for label, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="black", linewidth=1)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
    ax.set_xlabel("labeled images (% of training set)" if x_axis == "percent" else "labeled images")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{paper} / {experiment} ({profile})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_improvement(key: tuple, curves: list[Curve], path: Path, stats: Stats, x_axis: str = "percent") -> bool:
    """Each method minus random per budget, paired by seed, with the confidence band of the mean difference
    (TA-VAAL Fig. 3's form). False (nothing drawn) when the experiment has no random or nothing to compare."""
    by_method = {c.method: c for c in learning_curves(curves)}
    random = by_method.pop("random", None)
    if random is None or not by_method:
        return False
    plt = _pyplot()
    paper, experiment, profile, metric = key
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    ax.axhline(0, color="black", linewidth=1, label="random")
    fraction_of = dict(zip(random.n_labeled.tolist(), random.fraction.tolist()))
    for method, curve in sorted(by_method.items()):
        comparisons = budget_comparisons(curve, random, stats)
        budgets = [n for n, c in comparisons.items() if c.seeds]
        if not budgets:
            continue
        x = np.array([100 * fraction_of[n] if x_axis == "percent" else n for n in budgets])
        chosen = [comparisons[n] for n in budgets]
        seeds = max(c.seeds for c in chosen)
        means = np.array([c.mean for c in chosen])
        line, = ax.plot(x, means, marker="o", markersize=4, markerfacecolor="white",
                        label=f"{method} (n={seeds}{', no band' if seeds < 2 else ''})")
        significant = np.array([bool(c.mark) for c in chosen])
        ax.plot(x[significant], means[significant], "o", markersize=4, color=line.get_color())
        ax.fill_between(x, [c.low for c in chosen], [c.high for c in chosen], color=line.get_color(), alpha=0.18)
    ax.set_xlabel("labeled images (% of training set)" if x_axis == "percent" else "labeled images")
    ax.set_ylabel(f"{metric} minus random's (points)")
    ax.set_title(f"{paper} / {experiment} ({profile}): improvement over random\n"
                 f"paired mean over seeds, {100 * (1 - stats.alpha):g}% CI band; filled: significant "
                 f"({TESTS[stats.test]}, α={stats.alpha:g})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_penalty(key: tuple, curves: list[Curve], path: Path, stats: Stats) -> bool:
    """The penalty matrix as a heat-map; False when it could not be computed (too few seeds or methods)."""
    penalty = penalty_matrix(curves, stats)
    if not penalty.computed:
        return False
    methods, matrix = penalty.methods, penalty.matrix
    plt = _pyplot()
    paper, experiment, profile, _ = key
    size = 1.6 + 0.9 * len(methods)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), dpi=120)
    image = ax.imshow(np.where(np.eye(len(methods), dtype=bool), np.nan, matrix), cmap="Reds", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        if i != j:
            ax.text(j, i, _fraction(value), ha="center", va="center", fontsize=9,
                    color="white" if value > 0.6 else "black")
    means = column_means(matrix)
    ax.set_xticks(range(len(methods)), [f"{m}\n{_fraction(v)}" for m, v in zip(methods, means)], rotation=30,
                  fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_xlabel("j (beaten); below each name: column mean, lower is better")
    ax.set_ylabel("i (beats j)")
    ax.set_title(f"{paper} / {experiment} ({profile})\nfraction of budgets i beats j ({TESTS[stats.test]}, "
                 f"α={stats.alpha:g})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
    return True


@dataclass
class Experiment:
    """One (paper, experiment, profile, metric) group of one results folder."""
    key: tuple
    curves: list[Curve]
    label: str
    stem: str
    versions: list[str]             # the code versions of its rows


def collect(folders: list[Path]) -> list[Experiment]:
    """Every experiment below every folder; one found in several folders is labeled and named by its folder."""
    found = []
    for folder in folders:
        rows = load_rows(folder)
        versions = code_versions(rows)
        found += [(folder, key, curves, versions[key]) for key, curves in sorted(group_curves(rows).items())]
    counts = defaultdict(int)
    for _, key, _, _ in found:
        counts[key] += 1
    experiments = []
    for index, (folder, key, curves, versions) in enumerate(found):
        paper, experiment, profile, _ = key
        label, stem = f"{paper}/{experiment} ({profile})", f"{paper}_{experiment}_{profile}"
        if counts[key] > 1:
            label, stem = f"{label} [{folder}]", f"{stem}_{index}_{folder.name}"
        experiments.append(Experiment(key, curves, label, stem, versions))
    return experiments


def common_budgets(curves: list[Curve]) -> list[int]:
    """The labeled-set sizes every learning curve of an experiment has, so that its methods' AUBC and final
    values cover the same range while some runs are still going."""
    competing = learning_curves(curves)
    if not competing:
        return []
    return [int(n) for n in sorted(set.intersection(*(set(c.n_labeled.tolist()) for c in competing)))]


def summary_cell(values: dict[int, float], against: Comparison | None) -> str:
    """'43.20 ± 0.17 (n=3) ▲': mean ± std over seeds, the seeds it rests on, the mark against random."""
    if not values:
        return "-"
    text = f"{_cell(np.array(list(values.values())))} (n={len(values)})"
    if against is None:
        return text
    return text + (" n<3" if against.verdict is None else (f" {against.mark}" if against.mark else ""))


def summary_table(experiments: list[Experiment], stats: Stats) -> str:
    """One row per method, for each experiment its AUBC and final value over the budgets all its methods reached,
    marked against that experiment's random."""
    methods = sorted({c.method for e in experiments for c in e.curves}, key=lambda m: (m != "random", m))
    extras = {c.method for e in experiments for c in e.curves if c.beyond_paper}
    budgets = [common_budgets(e.curves) for e in experiments]
    header = ["method"]
    for experiment, common in zip(experiments, budgets):
        final = f" ({common[-1]:,})" if common else ""
        header += [f"{experiment.label} AUBC", f"{experiment.label} final {experiment.key[3]}{final}"]
    lines = ["## Summary: area under the budget curve (AUBC) and final value per method and experiment", "",
             f"mean ± std over seeds (n = seeds); {BETTER} / {WORSE}: significantly better / worse than random of "
             f"the same experiment ({stats.describe()}, paired by seed); n<3: no mark, {TOO_FEW_SEEDS}; no mark: no "
             "significant difference, or no random in that experiment. AUBC and final value over the budgets every "
             "method of the experiment has reached (final: the largest, in brackets)."
             + (f" {EXTRA_NOTE}" if extras else ""), "",
             _row(header), "|" + "---|" * len(header)]
    for method in methods:
        cells = []
        for experiment, common in zip(experiments, budgets):
            by_method = {c.method: c for c in experiment.curves}
            curve, random = by_method.get(method), by_method.get("random")
            if curve is None or not common or len(curve.n_labeled) < 2:
                cells += ["-", "-"]
                continue
            versus = random is not None and method != "random"
            area, final = curve.area_by_seed(common), curve.at(common[-1])
            area_random, final_random = (random.area_by_seed(common), random.at(common[-1])) if versus else ({}, {})
            cells.append(summary_cell(area, compare_seeds(area, area_random, stats) if area_random else None))
            cells.append(summary_cell(final, compare_seeds(final, final_random, stats) if final_random else None))
        lines.append(_row([f"{method} {EXTRA}" if method in extras else method] + cells))
    return "\n".join(lines) + "\n"


def summed_penalty(experiments: list[Experiment], stats: Stats) -> tuple[list[str], np.ndarray, np.ndarray]:
    """BADGE Fig. 4 over several experiments: the sum of their penalty matrices (each experiment adds at most 1
    to an entry) and, per entry, the number of experiments that computed it (both methods, enough seeds)."""
    per_experiment = [penalty_matrix(e.curves, stats) for e in experiments]
    methods = sorted({m for p in per_experiment for m in p.methods}, key=lambda m: (m == "random", m))
    index = {m: k for k, m in enumerate(methods)}
    total, counted = np.zeros((len(methods),) * 2), np.zeros((len(methods),) * 2, dtype=int)
    for penalty in per_experiment:
        for (i, j), value in np.ndenumerate(penalty.matrix):
            if not np.isnan(value):
                total[index[penalty.methods[i]], index[penalty.methods[j]]] += value
                counted[index[penalty.methods[i]], index[penalty.methods[j]]] += 1
    return methods, total, counted


def summed_penalty_table(experiments: list[Experiment], stats: Stats) -> str:
    """The summed matrix as markdown, when at least two experiments computed one."""
    if sum(penalty_matrix(e.curves, stats).computed for e in experiments) < 2:
        return ""
    methods, total, counted = summed_penalty(experiments, stats)
    beaten = total.sum(axis=0) / np.maximum(counted.sum(axis=0), 1)
    lines = ["### Pairwise penalty matrix summed over experiments (Ash et al., BADGE, Fig. 4)", "",
             "Row i, column j: the sum over experiments of the fraction of budgets at which i beats j, '/ k': the "
             "k experiments that compared the pair. Bottom row: the column sum over the comparisons made, how "
             "often that method is beaten (lower is better).", "",
             _row(["i beats j"] + methods), "|" + "---|" * (len(methods) + 1)]
    for i, method in enumerate(methods):
        lines.append(_row([method] + ["-" if not counted[i, j] else f"{total[i, j]:.2f} / {counted[i, j]}"
                                      for j in range(len(methods))]))
    lines.append(_row(["beaten"] + [_fraction(v) if counted[:, j].any() else "-" for j, v in enumerate(beaten)]))
    return "\n".join(lines) + "\n"


def write_report(results: Path | list[Path], out: Path | None = None, x_axis: str = "percent",
                 stats: Stats = Stats()) -> list[Path]:
    """Regenerate every figure and table below the results folder(s) from their stored rows; no training.
    report.md holds the summary across experiments, then each experiment's tables."""
    from core.tools.reported import full_data_reference

    folders = list(dict.fromkeys(Path(f) for f in ([results] if isinstance(results, (str, Path)) else results)))
    if len(folders) > 1 and out is None:
        raise UserError("several results folders are reported together into one place: pass --out DIR")
    out = Path(out or folders[0])
    experiments = collect(folders)
    written, sections = [], [part for part in (summary_table(experiments, stats),
                                               summed_penalty_table(experiments, stats)) if part]
    for experiment in experiments:
        key, curves, stem = experiment.key, experiment.curves, experiment.stem
        if len(experiment.versions) > 1:
            print(f"warning: {experiment.label}: {mixed_versions_note(experiment.versions)}", file=sys.stderr)
        reference = full_data_reference(key[0], key[1]) if key[2] == "paper" else {}
        plot_curves(key, curves, out / f"{stem}.png", x_axis, reference)
        written.append(out / f"{stem}.png")
        if plot_improvement(key, curves, out / f"{stem}_vs_random.png", stats, x_axis):
            written.append(out / f"{stem}_vs_random.png")
        if plot_penalty(key, curves, out / f"{stem}_penalty.png", stats):
            written.append(out / f"{stem}_penalty.png")
        table = "\n".join(part for part in (markdown_table(key, curves, experiment.versions),
                                            pairwise_table(curves, stats),
                                            penalty_table(curves, stats)) if part)
        write_atomic(out / f"{stem}.md", table)
        written.append(out / f"{stem}.md")
        sections.append(table)
    write_atomic(out / "report.md", "\n".join(sections))
    return written + [out / "report.md"]
