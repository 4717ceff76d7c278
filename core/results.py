"""Results are data: one append-only JSON-lines file per run, rewritten atomically on every append (under the
run folder's lock, so two processes never append to one file)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from core.errors import UserError

RESULTS_FILE = "results.jsonl"


def partial_name(path: Path) -> Path:
    """A temporary name next to `path` that no other process uses, to write and then rename over `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_name(path)
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"results file {path} cannot be read ({err.__class__.__name__}: {err}); move the file "
                        "aside to redo that run") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"results file {path} line {number} is not valid JSON ({err.msg}); "
                            "move the file aside to redo that run, or delete the broken line") from None
    return rows


def append_jsonl(path: Path, row: dict) -> None:
    existing = path.read_text() if path.exists() else ""
    write_atomic(path, existing + json.dumps(row, sort_keys=True) + "\n")


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
