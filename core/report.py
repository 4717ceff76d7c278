"""Figures and tables from stored results only: learning curves with mean +- std bands over seeds, markdown
tables of mean +- std at each budget, and the area under the budget curve."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.results import load_rows, write_atomic


@dataclass
class Curve:
    method: str
    n_labeled: np.ndarray        # (points,)
    fraction: np.ndarray         # (points,)
    values: np.ndarray           # (seeds, points); NaN where a seed has not reached a point yet
    seeds: list[int]

    @property
    def mean(self) -> np.ndarray:
        return np.nanmean(self.values, axis=0)

    @property
    def std(self) -> np.ndarray:
        return np.nanstd(self.values, axis=0)

    def area(self) -> np.ndarray:
        """Per-seed area under the curve over the labeled fraction, divided by the fraction range: the mean
        metric over the budget range (seeds that have not finished every point are left out)."""
        done = ~np.isnan(self.values).any(axis=1)
        if len(self.fraction) < 2 or not done.any():
            return np.array([])
        width = self.fraction[-1] - self.fraction[0]
        heights = (self.values[done, 1:] + self.values[done, :-1]) / 2
        return (heights * np.diff(self.fraction)).sum(axis=1) / width


def group_curves(rows: list[dict]) -> dict[tuple, list[Curve]]:
    """{(paper, experiment, profile, metric): [Curve per method]} from result rows."""
    grouped = defaultdict(lambda: defaultdict(dict))
    fractions = {}
    for row in rows:
        key = (row["paper"], row["experiment"], row.get("profile", "paper"), row["metric"])
        grouped[key][row["method"]][(row["seed"], row["n_labeled"])] = row["value"]
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
                                     values, seeds))
    return curves


def _cell(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if not len(values):
        return "-"
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def markdown_table(key: tuple, curves: list[Curve]) -> str:
    """Methods side by side: mean ± std over seeds at each labeled-set size, then the area under the curve."""
    paper, experiment, profile, metric = key
    labels = sorted({int(n) for c in curves for n in c.n_labeled})
    fraction_of = {int(n): f for c in curves for n, f in zip(c.n_labeled, c.fraction)}
    header = ["method"] + [f"{100 * fraction_of[n]:.1f}% ({n:,})" for n in labels] + ["AUC", "seeds"]
    lines = [f"### {paper} / {experiment} ({profile} profile): {metric}, mean ± std over seeds", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for curve in curves:
        cells = [_cell(curve.values[:, list(curve.n_labeled).index(n)]) if n in curve.n_labeled else "-"
                 for n in labels]
        lines.append("| " + " | ".join([curve.method] + cells + [_cell(curve.area()), str(len(curve.seeds))]) + " |")
    lines.append("")
    lines.append("AUC: area under the curve over the labeled fraction divided by its range (the mean "
                 f"{metric} across budgets), per seed, then mean ± std.")
    return "\n".join(lines) + "\n"


def plot_curves(key: tuple, curves: list[Curve], path: Path, x_axis: str = "percent",
                reference: dict[str, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paper, experiment, profile, metric = key
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for curve in curves:
        if len(curve.fraction) == 1:          # a single-cycle method (full_data) is a reference line
            ax.axhline(curve.mean[0], linestyle=":", color="gray", label=f"{curve.method} (n={len(curve.seeds)})")
            continue
        x = 100 * curve.fraction if x_axis == "percent" else curve.n_labeled
        line, = ax.plot(x, curve.mean, marker="o", markersize=3, label=f"{curve.method} (n={len(curve.seeds)})")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.png")
    fig.savefig(partial)
    plt.close(fig)
    partial.replace(path)


def write_report(results: Path, out: Path | None = None, x_axis: str = "percent") -> list[Path]:
    """Regenerate every figure and table below `results` from its stored rows; no training."""
    from core.reported import full_data_reference

    results = Path(results)
    out = Path(out or results)
    written = []
    tables = []
    for key, curves in sorted(group_curves(load_rows(results)).items()):
        paper, experiment, profile, metric = key
        stem = f"{paper}_{experiment}_{profile}"
        reference = full_data_reference(paper, experiment) if profile == "paper" else {}
        plot_curves(key, curves, out / f"{stem}.png", x_axis, reference)
        table = markdown_table(key, curves)
        write_atomic(out / f"{stem}.md", table)
        tables.append(table)
        written += [out / f"{stem}.png", out / f"{stem}.md"]
    write_atomic(out / "report.md", "\n".join(tables))
    return written + [out / "report.md"]
