"""Results are data: one folder per job holding its config, its rows (one JSON line per finished cycle, the file
rewritten atomically on every append under the folder's lock, so two processes never append to one file) and the
state a resumed cycle reads. `RunFolder` owns every name in that folder, and `ROW_FIELDS` every field of a row:
the loop builds rows with `cycle_row`, resuming checks RESUME_FIELDS and reports check REPORT_FIELDS."""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from core.lib.errors import UserError

RESULTS_FILE = "results.jsonl"
NUMBER = (int, float)


class RowField(NamedTuple):
    kind: type | tuple                 # what isinstance accepts; a bool is of its kind only where bool is named
    resume: bool = False               # checked before a folder's rows are continued (core.tools.jobs)
    report: bool = False               # checked before figures and tables read the row (core.tools.report)


KEY = RowField(str, resume=True, report=True)
ROW_FIELDS: dict[str, RowField] = {
    "paper": KEY, "experiment": KEY, "method": KEY,
    "dataset": RowField(str),                                   # as trained on: cifar10_imb10 under imbalance
    "seed": RowField(int, resume=True, report=True),
    "cycle": RowField(int, resume=True),                        # 0, 1, ... each once, in file order
    "profile": RowField(str),                                   # paper, mini, smoke, ...
    "beyond_paper": RowField(bool),                             # a method the paper did not run here
    "n_labeled": RowField(int, resume=True, report=True),       # labels the task model trained on
    "fraction_labeled": RowField(NUMBER, resume=True, report=True),   # of protocol.fraction_base or train_size
    "train_size": RowField(int),                                # the training split, validation included
    "metric": KEY,                                              # what `value` is: accuracy or miou
    "value": RowField(NUMBER, resume=True, report=True),        # the test metric, %
    "per_class": RowField(list),                                # %, per class (None: absent from the test set)
    "best_validation": RowField((*NUMBER, type(None))),         # %, when training selects on validation
    "train_steps": RowField(int),
    "train_loss": RowField(NUMBER),                             # the last epoch's mean over ranks
    "train_seconds": RowField(NUMBER),
    "train_resumed_at_step": RowField(int),                     # > 0: continued from a mid-cycle checkpoint
    "select_seconds": RowField(NUMBER),
    "selector_train_seconds": RowField(NUMBER),                 # the method's own training before selecting
    "noisy_labels_in_labeled": RowField(int),                   # labels the noisy oracle flipped
    "diagnostics": RowField(dict),                              # the method's own numbers of this cycle
    "method_options": RowField(dict),
    "selected": RowField(list, resume=True),                    # training-set indices labeled next, in order
    "config_hash": RowField(str, resume=True),                  # core.lib.config.run_hash
    "code_version": RowField(str),                              # core.tools.jobs.code_version
    "device": RowField(str),
    "processes": RowField(int),                                 # torchrun's world size
    # what besides code and seed changes the floats on a GPU (core.lib.seeding.float_settings)
    "deterministic": RowField(bool),
    "tf32_matmul": RowField((bool, type(None))), "tf32_cudnn": RowField((bool, type(None))),
    "cuda_version": RowField((str, type(None))), "cudnn_version": RowField((int, type(None))),
}
ROW_KINDS = {name: field.kind for name, field in ROW_FIELDS.items()}
RESUME_FIELDS = {name: field.kind for name, field in ROW_FIELDS.items() if field.resume}
REPORT_FIELDS = {name: field.kind for name, field in ROW_FIELDS.items() if field.report}


def wrong_fields(row, fields: dict) -> list[str]:
    """The names of `fields` that `row` lacks or holds with another type (True is not an int here)."""
    def fits(value, kind) -> bool:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))

    return [name for name, kind in fields.items() if not isinstance(row, dict) or not fits(row.get(name), kind)]


def cycle_row(**values) -> dict:
    """The row of one finished cycle: every field of ROW_FIELDS, each of its kind (anything else is a bug in the
    caller, not the user's error)."""
    unknown, wrong = sorted(set(values) - set(ROW_FIELDS)), wrong_fields(values, ROW_KINDS)
    if unknown or wrong:
        raise TypeError(f"a results row with unknown fields {unknown} and missing or mistyped fields {wrong}")
    return values


@dataclass(frozen=True)
class RunFolder:
    """The files of one job, <out>/<paper>/<experiment>/<method>/seed<seed>: the only place that names them."""

    path: Path
    GAME = "game"           # the tag of a game's mid-cycle checkpoint (core.lib.game)

    @classmethod
    def of(cls, out: Path, paper: str, experiment: str, method: str, seed: int) -> "RunFolder":
        return cls.below(Path(out) / paper / experiment, method, seed)

    @classmethod
    def below(cls, experiment_folder: Path, method: str, seed: int) -> "RunFolder":
        return cls(Path(experiment_folder) / method / f"seed{seed}")

    @property
    def config(self) -> Path:
        """The config the rows are made by, with its run hash (core.tools.jobs writes and checks it)."""
        return self.path / "config.json"

    @property
    def results(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def lock(self) -> Path:
        """Held from a job's first read to its last write (core.tools.locks)."""
        return self.path / ".lock"

    def pool(self, cycle: int) -> Path:
        """The pool at the start of `cycle`, written before the row of the cycle before."""
        return self.path / f"pool_cycle{cycle}.npz"

    def model(self, cycle: int) -> Path:
        """The task model trained in `cycle`, which the next cycle warm-starts from (train.reinit=false)."""
        return self.path / f"model_cycle{cycle}.pt"

    def optimizer(self, cycle: int) -> Path:
        """The optimizer's state at the end of a cycle's training, which the next cycle continues
        (train.keep_optimizer); only the last finished cycle's is kept."""
        return self.path / f"optimizer_cycle{cycle}.pt"

    def checkpoint(self, cycle: int, tag: str = "") -> Path:
        """The mid-cycle checkpoint of a cycle's task model, or of a further model or game trained in it (`tag`)."""
        return self.path / (f"train_cycle{cycle}_{tag}.ckpt" if tag else f"train_cycle{cycle}.ckpt")

    def checkpoints(self, cycle: int) -> list[Path]:
        """Every mid-cycle checkpoint of `cycle` that exists."""
        return [path for path in (self.checkpoint(cycle), *self.path.glob(self.checkpoint(cycle, "*").name))
                if path.exists()]

    def method_file(self, name: str, cycle: int, suffix: str) -> Path:
        """A file a method writes for `cycle` (VAAL's reconstructions, LADA's queried pairs)."""
        return self.path / f"{name}_cycle{cycle}{suffix}"

    def rows(self) -> list[dict]:
        return read_jsonl(self.results)

    def write_config(self, stored: dict) -> None:
        write_json(self.config, stored)

    def read_config(self) -> dict:
        """What `write_config` stored; a file that cannot be read is the user's error, naming it."""
        try:
            stored = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"{self.config} cannot be read ({err.__class__.__name__}: {err}); move that run folder "
                            "aside to start the run over") from None
        if not isinstance(stored, dict) or "config_hash" not in stored:
            raise UserError(f"{self.config} holds no config_hash; move that run folder aside to start the run over")
        return stored


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
