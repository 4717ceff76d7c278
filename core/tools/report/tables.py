"""Markdown tables of one experiment: mean ± std per budget with the AUBC, the paired differences of every pair of
methods, and the penalty matrix."""
from __future__ import annotations

import numpy as np

from core.tools.report.statistics import (BETTER, EXTRA, MIN_SEEDS, TESTS, TOO_FEW_SEEDS, WORSE, Comparison, Curve,
                                          Stats, budget_comparisons, column_means, learning_curves, paired_areas,
                                          penalty_matrix)

EXTRA_NOTE = (f"{EXTRA}: a method beyond the paper's own for this experiment, run under the same protocol, seeds "
              "and initial sets.")


def mean_std_cell(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "-"
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def _budget_header(curves: list[Curve]) -> tuple[list[int], list[str]]:
    labels = sorted({int(n) for c in curves for n in c.n_labeled})
    fraction_of = {int(n): f for c in curves for n, f in zip(c.n_labeled, c.fraction)}
    return labels, [f"{100 * fraction_of[n]:.1f}% ({n:,})" for n in labels]


def markdown_row(cells: list[str]) -> str:
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
             markdown_row(header), "|" + "---|" * len(header)]
    for curve in curves:
        cells = [mean_std_cell(curve.values[:, list(curve.n_labeled).index(n)]) if n in curve.n_labeled else "-"
                 for n in labels]
        lines.append(markdown_row([curve.label] + cells + [mean_std_cell(curve.area()), str(len(curve.seeds))]))
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
             markdown_row(["A − B", "seeds"] + budgets + ["AUC"]), "|" + "---|" * (len(budgets) + 3)]
    for a, b in pairs:
        paired = len(set(a.seeds) & set(b.seeds))
        by_budget = budget_comparisons(a, b, stats)
        cells = [difference_cell(by_budget[n], paired) if n in by_budget else "-" for n in labels]
        area = difference_cell(paired_areas(a, b, stats), paired)
        lines.append(markdown_row([f"{a.method} − {b.method}", str(paired)] + cells + [area]))
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
              markdown_row(["i beats j"] + methods), "|" + "---|" * (len(methods) + 1)]
    for method, row in zip(methods, penalty.matrix):
        lines.append(markdown_row([method] + [fraction_cell(v) for v in row]))
    lines.append(markdown_row(["column mean"] + [fraction_cell(v) for v in column_means(penalty.matrix)]))
    return "\n".join(lines) + "\n"


def fraction_cell(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.2f}"
