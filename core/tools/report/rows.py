"""Reading stored rows: the fields a report needs, checked with the file and line of the first bad row, and the rows
grouped into one learning curve per method of each experiment."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from core.lib.errors import UserError
from core.lib.results import REPORT_FIELDS, RESULTS_FILE, read_jsonl, wrong_fields
from core.tools.report.statistics import Curve

def check_report_fields(path: Path, rows: list[dict]) -> list[dict]:
    """Rows that figures and tables can use; the first one that cannot is named with its file and line."""
    for number, row in enumerate(rows, 1):
        missing = wrong_fields(row, REPORT_FIELDS)
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
