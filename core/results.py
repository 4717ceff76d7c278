"""Results are data: one append-only JSON-lines file per run, rewritten atomically on every append."""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.errors import UserError

RESULTS_FILE = "results.jsonl"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    for number, line in enumerate(path.read_text().splitlines(), 1):
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


def load_rows(folder: Path) -> list[dict]:
    """Every row of every run below `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"results folder {folder} does not exist; pass the --out folder of a run")
    files = sorted(folder.rglob(RESULTS_FILE))
    if not files:
        raise UserError(f"no {RESULTS_FILE} below {folder}; run an experiment with --out {folder} first")
    return [row for file in files for row in read_jsonl(file)]
