"""The parent's side of a `run`'s executors (core.tools.executors): its jobs one after another in this process,
several at once in worker processes, or as a Slurm array, with one progress bar over every job's cycles."""
from __future__ import annotations

import sys

from core.tools.arguments import parse_assignments, user_path


def run_jobs(executor: str, config, jobs, settings, args) -> bool:
    """Carry out the (method, seed) jobs on the executor `check_executor_flags` chose (core.tools.commands.run);
    True once every job has finished, False when Slurm was told not to wait."""
    if executor == "local":
        run_sequentially(config, jobs, settings, args.quiet)
    elif executor == "parallel":
        run_in_parallel(config, jobs, settings, args)
    else:
        return run_on_slurm(config, jobs, settings, args)
    return True


def run_sequentially(config, jobs, settings, quiet: bool) -> None:
    from core.lib import parallel
    from core.tools.jobs import run_job
    from core.tools.locks import LockBusy, describe_owner

    quiet = quiet or not parallel.is_main()
    new_cycles: list[dict] = []
    overall = cycle_bar(config, jobs, f"{config.paper}/{config.experiment}", quiet)

    def finished_cycle(row):
        new_cycles.append(row)
        report_cycle(overall, row, quiet)

    def waiting(folder, owner):
        if not quiet:
            overall.write(f"waiting: {folder} is in use by {describe_owner(owner)}", file=sys.stderr)

    settings.on_cycle = finished_cycle
    for wait in (False, True):          # jobs another process holds are done last, after waiting for it
        busy = []
        for method, seed in jobs:
            new_cycles.clear()
            try:
                rows = run_job(config, method, seed, settings, wait, waiting)
            except LockBusy:
                busy.append((method, seed))
                continue
            overall.update(len(rows) - len(new_cycles))
        jobs = busy
    overall.close()


def cycle_bar(config, jobs, description: str, quiet: bool):
    """The overall progress bar in cycles, with tqdm's estimate of the time left; shown on a terminal only."""
    from tqdm.auto import tqdm

    from core.lib.loop import last_cycle
    from core.lib.strategy import STRATEGIES

    total = sum(1 if STRATEGIES[m].single_cycle else last_cycle(config) for m, _ in jobs)
    return tqdm(total=total, desc=description, unit="cycle", disable=quiet or not sys.stderr.isatty())


def report_cycle(overall, row: dict, quiet: bool) -> None:
    """A finished cycle moves the bar; its line is written above the bar on a terminal, plainly in a log."""
    from core.tools.executors import cycle_line

    overall.update()
    if quiet:
        return
    if sys.stderr.isatty():
        overall.write(cycle_line(row))
    else:
        print(cycle_line(row), flush=True)


def job_specs(config, jobs, settings, quiet: bool) -> list:
    from core.tools.executors import JobSpec

    return [JobSpec(config, method, seed, str(settings.data_root), str(settings.out), settings.device.type,
                    settings.profile, quiet=quiet, allow_code_change=settings.allow_code_change)
            for method, seed in jobs]


def run_in_parallel(config, jobs, settings, args) -> None:
    from collections import Counter

    from core.tools.executors import default_jobs, device_environments, run_parallel
    from core.tools.packing import default_jobs_per_gpu

    device = settings.device.type
    count = min(default_jobs(device) if args.jobs in (None, "auto") else args.jobs, len(jobs))
    if device == "cuda":
        per_device = args.jobs_per_gpu or default_jobs_per_gpu(config)
        gpus = len(device_environments(device, count))
        count, where = min(count, gpus * per_device), f"{per_device} per GPU on {gpus} GPUs"
    else:                               # the CPU is one device; its workers share the cores
        count = min(count, args.jobs_per_gpu or count)
        per_device, where = count, "cpu"
    overall = cycle_bar(config, jobs, f"{config.paper}/{config.experiment} ({count} at once)", args.quiet)
    if not args.quiet:
        print(f"running {len(jobs)} jobs, {count} at once ({where})", file=sys.stderr)
    reported = Counter()

    def finished_cycle(row):
        reported[row["method"], row["seed"]] += 1
        report_cycle(overall, row, args.quiet)

    def finished_job(spec, cycles):
        overall.update(cycles - reported[spec.method, spec.seed])      # cycles an earlier run finished

    run_parallel(job_specs(config, jobs, settings, args.quiet), count, per_device, finished_job, finished_cycle)
    overall.close()


def run_on_slurm(config, jobs, settings, args) -> bool:
    """Submit one array task per job; True once they have all finished, False with --no-wait."""
    from core.tools.executors import slurm_options, submit_array, wait_for_array

    options = slurm_options(args.slurm_config and user_path(args.slurm_config), {
        "partition": args.partition, "time": args.time, "gpus_per_task": args.gpus_per_task,
        "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb,
        "sbatch": parse_assignments(args.sbatch or [])})
    logs = settings.out / ".submitit"
    array = submit_array(job_specs(config, jobs, settings, quiet=False), options, logs,
                         local=args.executor == "submitit-local")
    print(f"submitted {len(array)} array tasks (job {array[0].job_id.split('_')[0]}); logs in {logs}",
          flush=True)
    if args.no_wait:
        print(f"when they have finished: ./reproduce.sh report {settings.out / config.paper / config.experiment}")
        return False
    wait_for_array(array, lambda cycles, job: args.quiet or print(f"task {job.job_id} finished", flush=True))
    return True
