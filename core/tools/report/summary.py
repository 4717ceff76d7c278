"""The report of one or more results folders: the summary table of AUBC and final value per method and experiment,
the penalty matrix summed over experiments, then each experiment's figures and tables (report.md)."""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.lib.errors import UserError
from core.lib.results import write_atomic
from core.tools.report.figures import plot_curves, plot_improvement, plot_penalty
from core.tools.report.rows import code_versions, group_curves, load_rows
from core.tools.report.statistics import (BETTER, EXTRA, TOO_FEW_SEEDS, WORSE, Comparison, Curve, Stats,
                                          compare_seeds, learning_curves, penalty_matrix)
from core.tools.report.tables import (EXTRA_NOTE, fraction_cell, markdown_row, markdown_table, mean_std_cell,
                                      mixed_versions_note, pairwise_table, penalty_table)

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
    text = f"{mean_std_cell(np.array(list(values.values())))} (n={len(values)})"
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
             markdown_row(header), "|" + "---|" * len(header)]
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
        lines.append(markdown_row([f"{method} {EXTRA}" if method in extras else method] + cells))
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
             markdown_row(["i beats j"] + methods), "|" + "---|" * (len(methods) + 1)]
    for i, method in enumerate(methods):
        lines.append(markdown_row([method] + ["-" if not counted[i, j] else f"{total[i, j]:.2f} / {counted[i, j]}"
                                      for j in range(len(methods))]))
    lines.append(markdown_row(["beaten"] + [fraction_cell(v) if counted[:, j].any() else "-"
                                            for j, v in enumerate(beaten)]))
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
