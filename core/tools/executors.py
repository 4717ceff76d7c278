"""How the (method, seed) jobs of one `run` are carried out.

- local (default): one after another in this process.
- `--jobs N`: up to N jobs at once on this machine, each in a worker process. On a CUDA machine each worker sees
  one GPU through CUDA_VISIBLE_DEVICES, `--jobs-per-gpu K` of them per GPU, and jobs are placed round robin on
  the GPUs while their estimated memory fits (core.tools.packing); on the CPU each worker gets its share of the
  cores.
- slurm: one Slurm array task per job through submitit, requeued on preemption or time-out; `submitit-local`
  runs the same array on this machine through submitit's LocalExecutor, to try a setup before a cluster.

Every job holds its run folder's lock and resumes from its finished cycles and its mid-cycle checkpoint
(core.tools.jobs), so a requeued task continues where it stopped, and jobs of several executors may share one
output folder. The figures and tables are written once every job has finished.
"""
from __future__ import annotations

import gc
import json
import os
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.lib.errors import UserError
from core.lib.plugins import ENV
from core.tools.processes import exit_with_parent, stop_on_sigterm

SLURM_DEFAULTS = {"partition": "", "time": 1440, "gpus_per_task": 1, "cpus_per_task": 8, "mem_gb": 32,
                  "array_parallelism": 256, "sbatch": {}}


@dataclass(frozen=True)
class JobSpec:
    """One (method, seed) job with everything a fresh process needs to run it."""

    config: object
    method: str
    seed: int
    data_root: str
    out: str
    device: str
    profile: str
    progress: bool = False
    quiet: bool = False
    allow_code_change: bool = False
    plugins: str = field(default_factory=lambda: os.environ.get(ENV, ""))   # --plugin, for a Slurm task's process


def cycle_line(row: dict) -> str:
    return (f"{row['method']} seed {row['seed']} cycle {row['cycle']}: {row['n_labeled']} labels "
            f"({100 * row['fraction_labeled']:.1f}%) -> {row['metric']} {row['value']:.2f} "
            f"(train {row['train_seconds']:.0f} s, select {row['select_seconds']:.1f} s)")


def run_spec(spec: JobSpec, on_cycle: Callable[[dict], None] | None = None) -> int:
    """Run one job in this process; returns its number of finished cycles."""
    import torch

    from core.lib.experiments import papers
    from core.lib.loop import RunSettings
    from core.tools.jobs import run_job

    if spec.plugins:
        os.environ[ENV] = spec.plugins
    papers()                              # a fresh process registers the papers' and plugins' methods first
    if on_cycle is None and not spec.quiet:
        def on_cycle(row):
            print(cycle_line(row), flush=True)
    settings = RunSettings(Path(spec.data_root), Path(spec.out), torch.device(spec.device), spec.profile,
                           progress=spec.progress, on_cycle=on_cycle, allow_code_change=spec.allow_code_change)
    return len(run_job(spec.config, spec.method, spec.seed, settings))


# ---------------------------------------------------------------- several jobs at once on this machine

def device_environments(device: str, count: int) -> list[dict]:
    """The environment of the workers of each device: on CUDA one entry per visible GPU, which its workers see
    alone; on the CPU one entry, the CPU, whose `count` workers get a share of the cores each (PyTorch's CPU
    results depend on the threads per process: they equal a sequential run's made with OMP_NUM_THREADS set to
    that share)."""
    if device == "cuda":
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = [g for g in visible.split(",") if g.strip()] if visible else \
            [str(i) for i in range(torch.cuda.device_count())]
        return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus]
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // count))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}]


def default_jobs(device: str) -> int:
    """On the CPU, two cores per job; on CUDA no bound beyond the jobs per GPU."""
    if device == "cuda":
        return sys.maxsize
    return max(1, (os.cpu_count() or 1) // 2)


def _start_worker(environment: dict, parent: int, stop) -> None:
    """Sets the device's environment before torch starts CUDA, which reads CUDA_VISIBLE_DEVICES once; the worker
    ends with the run (core.tools.processes)."""
    exit_with_parent(parent, stop)
    os.environ.update(environment)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))


def run_spec_sending_cycles(spec: JobSpec, cycles) -> int:
    """run_spec in a worker, its finished cycles' rows put on the parent's queue instead of printed; then the
    memory the job's tensors left in PyTorch's caching allocator goes back to the GPU for the next job, which
    may run in another worker."""
    import torch

    try:
        return run_spec(spec, cycles.put)
    finally:
        if torch.cuda.is_available():
            gc.collect()                      # tensors held in reference cycles would keep their blocks
            torch.cuda.empty_cache()


def forward_cycles(cycles, on_cycle: Callable[[dict], None]) -> None:
    while not cycles.empty():
        on_cycle(cycles.get())


def run_parallel(specs: list[JobSpec], count: int, per_device: int,
                 on_job_done: Callable[[JobSpec, int], None], on_cycle: Callable[[dict], None]) -> None:
    """Run `specs`, at most `count` at once and `per_device` on each GPU (the CPU counts as one device), in
    worker processes pinned to their device, placed by core.tools.packing.Packing (memory-aware on CUDA); `on_cycle`
    gets each finished cycle's row in this process, as it finishes (the workers then print nothing). The workers
    and the queue's manager end with this process: when it dies, and when it is stopped (an exception, Ctrl-C,
    SIGTERM), after which the stopped jobs resume from their checkpoints at the next run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.managers import SyncManager

    from core.tools.packing import Packing, free_memory_of_every_gpu, job_memory

    if not specs:
        return
    context = multiprocessing.get_context("spawn")      # no CUDA state or threads copied from this process
    device = specs[0].device
    with stop_on_sigterm():
        stop = context.Event()
        manager = SyncManager(ctx=context)
        manager.start(exit_with_parent, (os.getpid(),))
        cycles = manager.Queue()
        pools = [ProcessPoolExecutor(min(per_device, count), mp_context=context, initializer=_start_worker,
                                     initargs=(environment, os.getpid(), stop))
                 for environment in device_environments(device, count)]
        try:
            free = free_memory_of_every_gpu(context) if device == "cuda" else [None]
            if len(free) != len(pools):
                raise UserError(f"CUDA_VISIBLE_DEVICES names {len(pools)} GPUs and PyTorch sees {len(free)}; name "
                                "GPUs that exist (nvidia-smi -L)")
            needs = {m: job_memory(specs[0].config, m) if device == "cuda" else 0 for m in {s.method for s in specs}}
            run_packed([(spec, needs[spec.method]) for spec in specs], Packing(free, per_device, count),
                       lambda where, spec: pools[where].submit(run_spec_sending_cycles, spec, cycles), on_job_done,
                       lambda: forward_cycles(cycles, on_cycle))
        except BaseException:
            stop.set()                        # the running jobs end now, not when they finish
            raise
        finally:
            for pool in pools:
                pool.shutdown(cancel_futures=True)
            forward_cycles(cycles, on_cycle)
            manager.shutdown()


def run_packed(jobs: list[tuple[JobSpec, int]], packing, start: Callable[[int, JobSpec], Future],
               on_job_done: Callable[[JobSpec, int], None], poll: Callable[[], None] = lambda: None) -> None:
    """Start the (spec, memory estimate) jobs in order, each on the device `packing` gives it (`start(device,
    spec)` returns its future); a job that does not fit yet waits, and the jobs after it wait behind it. `poll`
    runs at least every half second while jobs run. After a failed job, the jobs not started are cancelled and
    the running ones finish (their cycles are kept); then the first error is raised."""
    waiting, running, first_error = deque(jobs), {}, None
    while waiting or running:
        while waiting and (where := packing.place(waiting[0][1])) is not None:
            spec, need = waiting.popleft()
            running[start(where, spec)] = (spec, where, need)
        done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
        poll()                                         # a job's rows are queued before its future is done
        for future in done:
            spec, where, need = running.pop(future)
            packing.release(where, need)
            try:
                on_job_done(spec, future.result())
            except Exception as err:                   # noqa: BLE001 - reported after the running jobs end
                if first_error is None:
                    first_error = err
                    print(f"error in {spec.method} seed {spec.seed}: {err}; {len(waiting)} jobs not started are "
                          "cancelled, the running ones finish", file=sys.stderr)
                    waiting.clear()
    if first_error is not None:
        raise first_error


# ---------------------------------------------------------------- Slurm through submitit

def slurm_options(config_file: Path | None, flags: dict) -> dict:
    """SLURM_DEFAULTS, then the JSON file's values, then the flags given on the command line."""
    options = dict(SLURM_DEFAULTS)
    if config_file is not None:
        try:
            stored = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UserError(f"--slurm-config {config_file} cannot be read as JSON ({err}); see docs/running.md, "
                            "'Running a full reproduction'") from None
        unknown = sorted(set(stored) - set(SLURM_DEFAULTS)) if isinstance(stored, dict) else ["(not an object)"]
        if unknown:
            raise UserError(f"--slurm-config {config_file} has unknown keys {', '.join(unknown)}; known: "
                            f"{', '.join(SLURM_DEFAULTS)}")
        options.update(stored)
    options.update({k: v for k, v in flags.items() if v not in (None, {})})
    for key in ("time", "gpus_per_task", "cpus_per_task", "mem_gb", "array_parallelism"):
        if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < 0:
            raise UserError(f"Slurm option {key}={options[key]!r} must be a whole number >= 0")
    return options


class SlurmTask:
    """The callable of every array task. submitit calls `checkpoint` on preemption or time-out and requeues
    the same task, which then resumes from the run folder."""

    def __call__(self, spec: JobSpec) -> int:
        return run_spec(spec)

    def checkpoint(self, spec: JobSpec):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec)


def submitit_executor(folder: Path, options: dict, local: bool):
    try:
        import submitit
    except ImportError:
        raise UserError("--executor slurm needs submitit: .venv/bin/pip install -e '.[slurm]'") from None
    if local:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options["time"])
        return executor
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:                        # no srun/sbatch on this machine
        raise UserError(f"--executor slurm cannot reach Slurm here ({err}); run on a cluster's login node, or "
                        "use --jobs N on this machine") from None
    parameters = {"timeout_min": options["time"], "gpus_per_node": options["gpus_per_task"],
                  "cpus_per_task": options["cpus_per_task"], "mem_gb": options["mem_gb"], "tasks_per_node": 1,
                  "nodes": 1, "slurm_array_parallelism": options["array_parallelism"],
                  "slurm_additional_parameters": dict(options["sbatch"])}
    if options["partition"]:
        parameters["slurm_partition"] = options["partition"]
    executor.update_parameters(**parameters)
    return executor


def submit_array(specs: list[JobSpec], options: dict, folder: Path, local: bool = False) -> list:
    """One array task per job; their logs go to `folder`/<job id>_<task>_log.out."""
    executor = submitit_executor(folder / "%j", options, local)
    try:
        return executor.map_array(SlurmTask(), specs)
    except Exception as err:                           # noqa: BLE001 - sbatch missing or refused: one line
        raise UserError(f"submitting {len(specs)} Slurm array tasks failed ({err.__class__.__name__}: "
                        f"{str(err).strip().splitlines()[-1] if str(err).strip() else err}); check sbatch and "
                        "the Slurm options") from None


def wait_for_array(jobs: list, on_job_done: Callable[[int, object], None]) -> None:
    """Wait for every task; a failed task is reported with its log file, after the others have ended."""
    from submitit.helpers import as_completed

    failures = []
    for job in as_completed(jobs, poll_frequency=1):
        try:
            on_job_done(job.result(), job)
        except Exception as err:                       # noqa: BLE001 - the task's traceback is in its log
            failures.append(f"task {job.job_id} ({err.__class__.__name__}; log {job.paths.stderr})")
    if failures:
        raise UserError(f"{len(failures)} Slurm tasks failed: {'; '.join(failures)}; run the same command again "
                        "to resume them")
