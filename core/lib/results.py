"""Results are data: one append-only JSON-lines file per run, rewritten atomically on every append (under the
run folder's lock, so two processes never append to one file)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from core.lib.errors import UserError

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


def save_atomic(state, path: Path) -> None:
    """torch.save under a temporary name, then renamed over `path`: a reader never sees half a file."""
    import torch      # here, so that reading results (report, verify) starts without PyTorch

    partial = partial_name(path)
    torch.save(state, partial)
    partial.replace(path)


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
