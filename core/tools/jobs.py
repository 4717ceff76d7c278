"""Running one job in its run folder: hold the folder's lock (core.tools.locks) from the first read to the last
write, so that two processes given the same folder never both run a cycle; check the whole job and the folder
before anything is written; then run the missing cycles (core.lib.loop) with mid-cycle checkpoints
(core.tools.checkpoint).

The folder's rows must be cycles 0..k-1, each once, complete and made by the same config (its run hash, under the
same definition of the hash), and the pool file of cycle k must continue them; anything else is refused with one
line, the folder untouched. Rows made by other code (code_version) are refused too, unless the user accepts the
mix (--allow-code-change). Under torchrun every
process runs the job, and only rank 0 locks and writes (core.tools.distributed).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np

from core.lib import parallel
from core.lib.config import HASH_SCHEME, ExperimentConfig, to_dict
from core.lib.errors import UserError
from core.lib.loop import JobPlan, RunSettings, first_pool, prepare_job, run_cycles, run_folder, with_method_options
from core.lib.pool import Pool
from core.lib.results import RESUME_FIELDS, RunFolder, wrong_fields
from core.lib.plugins import declared
from core.tools import distributed
from core.tools.checkpoint import JobCheckpoints

# PyTorch's text when an op without a deterministic kernel runs under use_deterministic_algorithms(True)
NO_DETERMINISTIC_KERNEL = " does not have a deterministic implementation"


def tree_version(root: Path) -> str:
    """The code below `root`: its git commit; `<commit>-dirty-<hash>` when tracked files differ from the commit,
    the hash of those files' contents, so that two different edits are two versions (untracked files are not
    counted: run folders may lie in the tree; `git add` a new module to count it); `files-<hash>` of the
    project's Python files outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short=12", "HEAD").strip()
        changed = sorted(name for name in git("diff", "HEAD", "--name-only", "-z").split("\0") if name)
    except (OSError, subprocess.CalledProcessError):
        packages = {"core", *(module.partition(".")[0] for _, _, module in declared())}
        sources = sorted(path.relative_to(root).as_posix() for package in packages
                         for path in (root / package).rglob("*.py"))
        return f"files-{_contents_hash(root, sources)}"
    return f"{commit}-dirty-{_contents_hash(root, changed)}" if changed else commit


def _contents_hash(root: Path, names: list[str]) -> str:
    digest = hashlib.sha1()
    for name in names:
        path = root / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"(deleted)") + b"\0")
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The version of this checkout (tree_version), taken once per process: the code it imported."""
    return tree_version(Path(__file__).resolve().parents[2])


def run_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings, wait: bool = True,
            on_wait: Callable[[Path, dict], None] | None = None) -> list[dict]:
    """Run the missing cycles of one job while holding its folder's lock. A job whose lock another process
    holds waits for it, calling `on_wait(folder, owner)` once, or raises LockBusy when not `wait`."""
    folder = run_folder(settings.out, config, method, seed)
    lock = distributed.folder_lock(folder.lock)
    lock.acquire(wait=wait, on_wait=on_wait and functools.partial(on_wait, folder.path))
    try:
        plan = plan_job(config, method, seed, settings)
        if plan.done:
            return plan.rows
        writes = parallel.is_main()
        if plan.stored_config is None and writes:
            folder.write_config({"config_hash": plan.digest, "hash_scheme": HASH_SCHEME, "method": method,
                                 "seed": seed, "config": to_dict(with_method_options(config, method))})
        settings = dataclasses.replace(settings, code_version=code_version())
        checkpoints = JobCheckpoints(folder, plan.digest, settings.code_version,
                                     plan.config.runtime.checkpoint_every, lock.verify, writes, settings.device)
        try:
            return run_cycles(plan, method, seed, settings, lock.verify, checkpoints)
        except RuntimeError as err:
            kernel = nondeterministic_kernel(err)
            if kernel is None:
                raise
            raise UserError(f"{method} runs {kernel}, which has no deterministic kernel on {settings.device.type}; "
                            "rerun with --set runtime.deterministic=false (every row records it); finished cycles "
                            "are kept") from None
    finally:
        lock.release()


def nondeterministic_kernel(err: BaseException) -> str | None:
    """The kernel named by PyTorch's error for an op without a deterministic implementation, else None."""
    text = str(err)
    return text.split(NO_DETERMINISTIC_KERNEL)[0].split()[-1] if NO_DETERMINISTIC_KERNEL in text else None


def plan_job(config: ExperimentConfig, method: str, seed: int, settings: RunSettings) -> JobPlan:
    """Check one job completely (core.lib.loop.prepare_job), the state of its folder and, for a job that starts
    afresh, its initial pool, and raise a UserError before anything is written."""
    plan = prepare_job(config, method, seed, settings)
    folder = plan.folder
    # a folder without a finished cycle holds nothing to lose: a corrected command starts it over
    stored = _stored_config(folder, plan.digest) if folder.rows() else None
    rows = finished_cycles(folder, plan.config, method, seed, plan.digest, plan.train_size)
    if not settings.allow_code_change:
        check_code_version(folder.results, rows, code_version())
    if not rows:
        first_pool(plan.config, plan.dataset, seed, plan.train_size)
    return dataclasses.replace(plan, rows=rows, stored_config=stored)


def _stored_config(folder: RunFolder, digest: str) -> dict | None:
    if not folder.config.exists():
        return None
    stored, path = folder.read_config(), folder.config
    scheme = stored.get("hash_scheme", 1)      # folders from before the number was stored: definition 1
    if scheme != HASH_SCHEME:
        raise UserError(f"{path.parent} was made under run-hash definition {scheme}, and this code defines the "
                        f"run hash differently ({HASH_SCHEME}: with the method's default options), so its config "
                        "cannot be checked; pass another --out to start anew, or move that folder aside to rerun")
    if stored["config_hash"] != digest:
        raise UserError(f"{path.parent} holds results of a different config (hash {stored['config_hash']}, now "
                        f"{digest}); pass another --out, or move that folder aside to start over")
    return stored


def check_code_version(results: Path, rows: list[dict], current: str) -> None:
    """Rows made by other code are continued only when the user accepts the mix (--allow-code-change)."""
    others = sorted({row.get("code_version", "unknown") for row in rows} - {current})
    if others:
        raise UserError(f"{results} holds rows made by code version {', '.join(others)}, and this code is "
                        f"{current}; pass --allow-code-change to continue them with this code (the report marks "
                        "the mix), or another --out to start anew")


def finished_cycles(folder: RunFolder, config: ExperimentConfig, method: str, seed: int, digest: str,
                    train_size: int) -> list[dict]:
    """The rows of cycles 0..k-1, each once, complete and made by this config, with the pool file to resume
    cycle k from; anything else is refused, naming the file, before the folder is touched."""
    results = folder.results
    rows = folder.rows()
    redo = "move the run folder aside to start that run over"
    if results.exists() and not rows:
        raise UserError(f"{results} holds no row, yet it is written only with a finished cycle's row (rows "
                        f"were lost); {redo}")
    for line, row in enumerate(rows, 1):
        where = f"{results} line {line}"
        missing = wrong_fields(row, RESUME_FIELDS)
        if missing:
            raise UserError(f"{where} is not a complete results row (missing or wrong: {', '.join(missing)}); {redo}")
        if row["cycle"] != line - 1:
            raise UserError(f"{where} is cycle {row['cycle']} where cycle {line - 1} belongs (cycles must be "
                            f"0, 1, 2, ... each once); {redo}")
        if row["config_hash"] != digest or row["method"] != method or row["seed"] != seed:
            raise UserError(f"{where} was made by another config, method or seed (hash {row['config_hash']}, "
                            f"{row['method']} seed {row['seed']}; now {digest}, {method} seed {seed}); {redo}")
        if line > 1 and row["n_labeled"] != rows[line - 2]["n_labeled"] + len(rows[line - 2]["selected"]):
            raise UserError(f"{where} has {row['n_labeled']} labels but the cycle before ended with "
                            f"{rows[line - 2]['n_labeled'] + len(rows[line - 2]['selected'])}; {redo}")
    if len(rows) > config.protocol.cycles:
        raise UserError(f"{results} holds {len(rows)} cycles but the protocol has {config.protocol.cycles}; {redo}")
    if rows and len(rows) < config.protocol.cycles:
        _check_resume_pool(folder, config, rows, train_size, redo)
    return rows


def _check_resume_pool(folder: RunFolder, config: ExperimentConfig, rows: list[dict], train_size: int, redo: str):
    pool_file = folder.pool(len(rows))
    if not pool_file.exists():
        raise UserError(f"{folder.path} has {len(rows)} finished cycles but no {pool_file.name} to resume from; "
                        f"{redo}")
    pool = Pool.load(pool_file)
    last = rows[-1]
    selected = np.concatenate([np.asarray(r["selected"], dtype=np.int64) for r in rows])
    if pool.size != train_size or len(pool.labeled) != last["n_labeled"] + len(last["selected"]) \
            or not np.isin(selected, pool.labeled).all():
        raise UserError(f"{pool_file} does not continue {folder.results} (pool of {pool.size} images with "
                        f"{len(pool.labeled)} labeled; the rows select {len(selected)} images of {train_size}); "
                        f"{redo}")
    model_file = folder.model(len(rows) - 1)
    if not config.train.reinit and not model_file.exists():
        raise UserError(f"{folder.path} warm-starts cycle {len(rows)} from {model_file.name}, which is missing; "
                        f"{redo}")
    optimizer_file = folder.optimizer(len(rows) - 1)
    if config.train.keep_optimizer and not optimizer_file.exists():
        raise UserError(f"{folder.path} continues the optimizer of cycle {len(rows) - 1} from {optimizer_file.name}, "
                        f"which is missing; {redo}")
