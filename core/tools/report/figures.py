"""Figures of one experiment: learning curves with mean ± std bands, the improvement over random with confidence
bands, the penalty matrix as a heat-map; and `pyplot()`, the one way every figure of the project reaches matplotlib."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.tools.report.statistics import (TESTS, Curve, Stats, budget_comparisons, column_means, learning_curves,
                                          penalty_matrix)
from core.tools.report.tables import fraction_cell


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use: figures are files, drawn without a display,
    and commands that draw none do not pay for the import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """Write the figure whole or not at all: a reader never sees a half-written PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial)
    pyplot().close(fig)
    partial.replace(path)


def plot_curves(key: tuple, curves: list[Curve], path: Path, x_axis: str = "percent",
                reference: dict[str, float] | None = None) -> None:
    plt = pyplot()
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
    save(fig, path)


def plot_improvement(key: tuple, curves: list[Curve], path: Path, stats: Stats, x_axis: str = "percent") -> bool:
    """Each method minus random per budget, paired by seed, with the confidence band of the mean difference
    (TA-VAAL Fig. 3's form). False (nothing drawn) when the experiment has no random or nothing to compare."""
    by_method = {c.method: c for c in learning_curves(curves)}
    random = by_method.pop("random", None)
    if random is None or not by_method:
        return False
    plt = pyplot()
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
    save(fig, path)
    return True


def plot_penalty(key: tuple, curves: list[Curve], path: Path, stats: Stats) -> bool:
    """The penalty matrix as a heat-map; False when it could not be computed (too few seeds or methods)."""
    penalty = penalty_matrix(curves, stats)
    if not penalty.computed:
        return False
    methods, matrix = penalty.methods, penalty.matrix
    plt = pyplot()
    paper, experiment, profile, _ = key
    size = 1.6 + 0.9 * len(methods)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), dpi=120)
    image = ax.imshow(np.where(np.eye(len(methods), dtype=bool), np.nan, matrix), cmap="Reds", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        if i != j:
            ax.text(j, i, fraction_cell(value), ha="center", va="center", fontsize=9,
                    color="white" if value > 0.6 else "black")
    means = column_means(matrix)
    ax.set_xticks(range(len(methods)), [f"{m}\n{fraction_cell(v)}" for m, v in zip(methods, means)], rotation=30,
                  fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_xlabel("j (beaten); below each name: column mean, lower is better")
    ax.set_ylabel("i (beats j)")
    ax.set_title(f"{paper} / {experiment} ({profile})\nfraction of budgets i beats j ({TESTS[stats.test]}, "
                 f"α={stats.alpha:g})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    save(fig, path)
    return True
