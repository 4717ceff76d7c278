"""Golden results: the smoke-profile rows of one experiment per paper, stored so that a change which is not meant
to alter results (a refactor, a move of code) is seen to keep them exactly (tests/test_golden.py, issue 24).

Each case runs one method that exercises its paper's own code, seed 0, in a child process with one thread
(`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`): PyTorch's CPU results depend on the threads per process,
so one thread makes them independent of the cores a machine has. Per cycle the stored row holds what
identifies behaviour: the test metric and per-class values, the validation score, the training steps and
loss, the indices selected, the method's diagnostics and the config hash; not times, code version or device.
Floats change with the library versions and the CPU's vector instructions, so those are stored with the
rows (versions.json) and the test skips elsewhere. Regenerate: `python -m tests.golden --regenerate`
(README.md here).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
REPO = FOLDER.parent.parent
VERSIONS_FILE = FOLDER / "versions.json"
REGENERATE = ".venv/bin/python -m tests.golden --regenerate"
SEED = 0

# (paper, experiment, method): the method that runs the paper's own code in the cheapest of its experiments
CASES = (
    ("baselines", "ll4al_cifar10", "learning_loss"),
    ("vaal", "fig2_cifar10", "vaal"),
    ("ta_vaal", "supp_fig5a_cifar10", "ta_vaal"),
    ("daal", "fig3_cifar10", "daal"),
    ("lada", "table1_cifar10", "lada"),
    ("segmentation", "camvid", "entropy"),
)
KEPT_FIELDS = ("paper", "experiment", "method", "seed", "cycle", "n_labeled", "train_size", "fraction_labeled",
               "metric", "value", "per_class", "best_validation", "train_steps", "train_loss",
               "noisy_labels_in_labeled", "selected", "diagnostics", "method_options", "config_hash")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def golden_file(paper: str) -> Path:
    return FOLDER / f"{paper}.jsonl"


def golden_row(row: dict) -> dict:
    """The fields of a results row that results depend on; diagnostics lose their timings (`*_seconds`)."""
    kept = {name: row[name] for name in KEPT_FIELDS}
    kept["diagnostics"] = {k: v for k, v in row["diagnostics"].items() if not k.endswith("_seconds")}
    return kept


def platform() -> dict:
    """What the stored floats depend on besides the code: the libraries that compute or decode (Pillow reads
    the JPEGs, torchvision resizes), and the vector instructions PyTorch's CPU kernels were chosen for."""
    import numpy
    import PIL
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def platform_mismatch(stored: dict, current: dict) -> str | None:
    """Why the stored rows cannot be compared exactly here, or None when they can."""
    if stored == current:
        return None
    made = ", ".join(f"{k} {v}" for k, v in stored.items())
    here = ", ".join(f"{k} {v}" for k, v in current.items())
    return f"the golden rows were made with {made}; this is {here}: `{REGENERATE}` makes this platform's"


def run_cases(data_root: Path, out: Path) -> dict[str, list[dict]]:
    """Every case's golden rows, computed in this process (the child that `produce` starts)."""
    import torch

    from core.lib.experiments import EXPERIMENTS, papers
    from core.lib.loop import RunSettings
    from core.tools.jobs import run_job

    papers()
    settings = RunSettings(data_root, out, torch.device("cpu"), "smoke", progress=False)
    produced = {}
    for paper, experiment, method in CASES:
        config = EXPERIMENTS[(paper, experiment)].config("smoke", {"seeds": 1})
        produced[paper] = [golden_row(row) for row in run_job(config, method, SEED, settings)]
    return produced


def produce(data_root: Path) -> dict[str, list[dict]]:
    """Every case's golden rows from a fresh one-thread process, as they would be stored (through JSON)."""
    with tempfile.TemporaryDirectory(prefix="golden-") as scratch:
        rows_file = Path(scratch) / "rows.json"
        env = {**os.environ, **ONE_THREAD, "AL_DATA_ROOT": str(data_root)}
        subprocess.run([sys.executable, "-m", "tests.golden", "--child", str(rows_file)], cwd=REPO, env=env,
                       check=True)
        return json.loads(rows_file.read_text())


def stored_rows() -> dict[str, list[dict]]:
    return {paper: [json.loads(line) for line in golden_file(paper).read_text().splitlines()]
            for paper, _, _ in CASES}


def stored_platform() -> dict:
    return json.loads(VERSIONS_FILE.read_text())


def differences(stored: dict[str, list[dict]], produced: dict[str, list[dict]]) -> list[str]:
    """One line per cycle and field whose value differs, naming the experiment, the cycle and the field."""
    lines = []
    for paper, experiment, method in CASES:
        case = f"{paper}/{experiment} {method} seed {SEED}"
        old, new = stored[paper], produced[paper]
        if len(old) != len(new):
            lines.append(f"{case}: {len(new)} cycles, stored {len(old)}")
        for cycle, (old_row, new_row) in enumerate(zip(old, new)):
            old_row, new_row = flat(old_row), flat(new_row)
            for field in sorted(old_row.keys() | new_row.keys()):
                was, now = old_row.get(field), new_row.get(field)
                if json.dumps(was, sort_keys=True) != json.dumps(now, sort_keys=True):
                    lines.append(f"{case} cycle {cycle} {field}: {describe_change(was, now)}")
    return lines


def flat(row: dict) -> dict:
    """Dict-valued fields (diagnostics, method options) as one field per key: `diagnostics.tau_mean`."""
    fields = {}
    for name, value in row.items():
        if isinstance(value, dict):
            fields.update({f"{name}.{key}": inner for key, inner in value.items()})
        else:
            fields[name] = value
    return fields


def describe_change(was, now) -> str:
    if isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        first = next(i for i, (a, b) in enumerate(zip(was, now)) if a != b)
        return f"first differs at position {first} of {len(now)}: {now[first]!r}, stored {was[first]!r}"
    return f"{now!r}, stored {was!r}"


def write_goldens(produced: dict[str, list[dict]]) -> None:
    for paper, rows in produced.items():
        golden_file(paper).write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    VERSIONS_FILE.write_text(json.dumps(platform(), indent=2) + "\n")
