"""LADA's tables: the scenarios of supplement Table 1 generated from the configs (`./reproduce.sh tables lada`), and,
from stored results only, the best / final / AUBC summary (L6), Table 4's measured times and Table 5 beside the
reported values (`./reproduce.sh figures lada ...`)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from core.lib import get_experiment
from core.tools.report import group_curves
from core.tools.reported import REPORTED
from lada.experiments import ACQUISITIONS, TABLE1, TABLE5


def _cell(values) -> str:
    values = np.asarray(values, dtype=float)
    if not len(values):
        return "-"
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def table1() -> str:
    lines = ["| Dataset | Initial (per class) | Budget b | Acquisitions | fixed tau (input level) | N lambda draws | "
             "batch | warm start | Adam state |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset in TABLE1:
        config = get_experiment("lada", f"table1_{dataset}").config()
        initial, budget = int(config.protocol.initial), int(config.protocol.budget)
        options = config.method_options
        lines.append(f"| {dataset} | {initial} ({initial // 10 if dataset != 'cifar100' else initial // 100}) | "
                     f"{budget} | {config.protocol.cycles - 1} | {options['lada_fixed']['fixed_tau']:g} "
                     f"({TABLE1[dataset].input_tau:g}) | {options['lada']['num_lambda']} | {config.train.batch_size} | "
                     f"{'no (re-initialised)' if config.train.reinit else 'yes'} | "
                     f"{'kept' if config.train.keep_optimizer else 'new per acquisition'} |")
    return "\n".join(lines)


def table5_setting() -> str:
    lines = ["| Dataset | Initial | Budget | Last labeled size | Subset | Epochs | Optimizer |",
             "|---|---|---|---|---|---|---|"]
    for dataset, row in TABLE5.items():
        config = get_experiment("lada", f"table5_{dataset}").config()
        lines.append(f"| {dataset} | {row.initial} | {row.budget} | {row.initial + row.budget * (row.models - 1)} | "
                     f"{config.protocol.subset} | {config.train.epochs} | {config.train.optimizer} "
                     f"{config.train.lr:g} |")
    return "\n".join(lines)


def markdown() -> str:
    return (f"Supplement Table 1 (scenarios; {ACQUISITIONS} acquisitions, subset 2,000 in pairs)\n\n{table1()}\n\n"
            f"Sec. B.3 (Fig. 3, Table 5 setting)\n\n{table5_setting()}\n")


def summary(rows: list[dict]) -> str:
    """Best (over acquisitions, as Table 5 and the code), final and AUBC test accuracy per method (L6)."""
    out = []
    for (paper, experiment, profile, metric), curves in sorted(group_curves(rows).items()):
        if paper != "lada":
            continue
        out += [f"#### {experiment} ({profile} profile)", "",
                "| method | best | final | AUBC | seeds |", "|---|---|---|---|---|"]
        for curve in curves:
            done = ~np.isnan(curve.values).any(axis=1)
            values = curve.values[done]
            out.append(f"| {curve.method} | {_cell(values.max(axis=1)) if len(values) else '-'} | "
                       f"{_cell(values[:, -1]) if len(values) else '-'} | {_cell(curve.area())} | {int(done.sum())} |")
        out.append("")
    return "\n".join(out)


def table4(rows: list[dict]) -> str:
    """Measured seconds per acquisition: scoring, sorting (top-k) and the training that follows. The baselines log
    scoring and sorting together (`select_seconds`)."""
    seconds = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["experiment"], row.get("profile", "paper"), row["method"])
        diagnostics = row.get("diagnostics") or {}
        if "scoring_seconds" in diagnostics:
            seconds[key]["scoring"].append(diagnostics["scoring_seconds"])
            seconds[key]["sorting"].append(diagnostics["sorting_seconds"])
            seconds[key]["generator"].append(diagnostics.get("generator_seconds", 0.0))
        elif row["selected"]:
            seconds[key]["scoring + sorting"].append(row["select_seconds"])
        if row["cycle"] > 0:
            seconds[key]["training"].append(row["train_seconds"])
    lines = ["| experiment | profile | method | scoring (of which generator) | sorting | training | acquisitions |",
             "|---|---|---|---|---|---|---|"]
    for (experiment, profile, method), found in sorted(seconds.items()):
        if "scoring" in found:
            scoring = f"{np.mean(found['scoring']):.3f} ({np.mean(found['generator']):.3f})"
            sorting = f"{np.mean(found['sorting']):.5f}"
        else:
            scoring = f"{np.mean(found['scoring + sorting']):.3f} (with sorting)" if found["scoring + sorting"] else "-"
            sorting = "-"
        training = f"{np.mean(found['training']):.2f}" if found["training"] else "-"
        count = len(found.get("scoring") or found.get("scoring + sorting") or [])
        lines.append(f"| {experiment} | {profile} | {method} | {scoring} | {sorting} | {training} | {count} |")
    return "\n".join(lines) + "\n"


def table5(rows: list[dict]) -> str:
    """Supplement Table 5 beside ours: the best accuracy over acquisitions, mean ± std over seeds."""
    best = defaultdict(list)
    for (paper, experiment, profile, _), curves in group_curves(rows).items():
        for curve in curves:
            done = ~np.isnan(curve.values).any(axis=1)
            best[(experiment, profile, curve.method)] = list(curve.values[done].max(axis=1)) if done.any() else []
    lines = ["| experiment | method | reported | ours (profile: best over acquisitions) |", "|---|---|---|---|"]
    for reported in REPORTED:
        if reported.paper != "lada" or not reported.experiment.startswith("table5"):
            continue
        ours = "; ".join(f"{profile}: {_cell(values)} (n={len(values)})" for (experiment, profile, method), values
                         in sorted(best.items()) if experiment == reported.experiment and method == reported.method
                         and values) or "not run"
        lines.append(f"| {reported.experiment} | {reported.method} | {reported.value:.2f} ± {reported.std:.2f} | "
                     f"{ours} |")
    return "\n".join(lines) + "\n"
