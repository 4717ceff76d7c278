"""Command line behind ./reproduce.sh: list, run, verify, report, describe, compare, plan, bench, gpucheck, demo."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from core.lib.errors import UserError
from core.tools.arguments import (CALLER_CWD_ENV, OneLineParser, add_allow_code_change, add_common, check_out_folder,
                                  choose_methods, jobs_count, parse_assignments, pick_device, positive_int,
                                  resolve_data_root_arg, resolve_experiment, user_path)
from core.tools.processes import Stopped, exit_with_parent_if_asked

REPO = Path(__file__).resolve().parents[2]
REPORT_LOCK = ".report.lock"
DEMO = {"paper": "baselines", "experiment": "ll4al_cifar10", "methods": "random,entropy,coreset", "out": "results/demo"}
# The demo's profile (baselines/experiments.py, 3 seeds each) and the jobs run at once, by device: on a CPU one
# job per 2 cores' share (workers of one thread on 2 cores), on one GPU 3 jobs sharing it.
DEMO_PROFILES = {"cpu": ("demo", 2), "cuda": ("demo_gpu", 3)}


def validate_run(args):
    """Check the whole command before the first job and write nothing: the experiment and every --set value,
    every method with its options, the protocol against the dataset, the data root, the output folder and
    every job's folder. Returns (config, methods, seeds, settings). Under torchrun this process joins the
    others first and trains on its own GPU (core.tools.distributed)."""
    from core.lib import parallel
    from core.lib.loop import RunSettings
    from core.tools import distributed
    from core.tools.downloads import fetch_if_missing
    from core.tools.jobs import plan_job

    _, config = resolve_experiment(args)
    methods = choose_methods(config, args.methods)
    device = pick_device(args.device)
    if config.runtime.channels_last == "on" and device.type == "cpu":
        raise UserError("runtime.channels_last=on is refused on the CPU, where oneDNN's channels-last convolution "
                        "backward has corrupted the heap; set runtime.channels_last=auto or off")
    seeds = range(args.seeds if args.seeds is not None else config.seeds)
    out = user_path(args.out)
    check_out_folder(out)
    data_root = resolve_data_root_arg(args.data_root, create=args.download)
    if args.download:
        fetch_if_missing(config.data.dataset, data_root)
    settings = RunSettings(data_root, out, distributed.start(device), args.profile,
                           progress=sys.stderr.isatty() and not args.quiet and parallel.is_main(),
                           allow_code_change=args.allow_code_change)
    for method in methods:
        for seed in seeds:
            plan_job(config, method, seed, settings)
    return config, methods, seeds, settings


def command_run(args) -> int:
    from core.lib import parallel
    from core.tools.report import write_report

    executor = check_executor_flags(args)
    config, methods, seeds, settings = validate_run(args)
    jobs = [(method, seed) for method in methods for seed in seeds]
    if executor == "local":
        run_sequentially(config, jobs, settings, args.quiet)
    elif executor == "parallel":
        run_in_parallel(config, jobs, settings, args)
    elif not run_on_slurm(config, jobs, settings, args):
        return 0
    if not parallel.is_main():
        return 0                        # rank 0 writes the report
    experiment = settings.out / config.paper / config.experiment
    with hold_report_lock(experiment, args.quiet):
        written = write_report(experiment)
    print(f"results: {experiment}; report: {written[-1]}")
    return 0


def check_executor_flags(args) -> str:
    """local, parallel or slurm; flags of another executor are refused rather than ignored."""
    slurm_flags = [flag for flag, value in (("--partition", args.partition), ("--time", args.time),
                                            ("--gpus-per-task", args.gpus_per_task),
                                            ("--cpus-per-task", args.cpus_per_task), ("--mem-gb", args.mem_gb),
                                            ("--sbatch", args.sbatch), ("--slurm-config", args.slurm_config),
                                            ("--no-wait", args.no_wait or None)) if value is not None]
    if args.executor != "local" or args.jobs not in (None, 1) or args.jobs_per_gpu is not None:
        from core.tools import distributed

        if distributed.launched():
            raise UserError("under torchrun every process trains one job together; drop --jobs and --executor, "
                            "or run them without torchrun")
    if args.executor == "local":
        if slurm_flags:
            raise UserError(f"{', '.join(slurm_flags)}: only for --executor slurm; add --executor slurm")
        return "local" if args.jobs in (None, 1) and args.jobs_per_gpu is None else "parallel"
    if args.jobs is not None or args.jobs_per_gpu is not None:
        raise UserError("--jobs and --jobs-per-gpu apply to --executor local; Slurm runs every job as its own "
                        "array task")
    return "slurm"


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


@contextlib.contextmanager
def hold_report_lock(folder: Path, quiet: bool = False):
    """One process at a time writes the figures and tables of a folder; others wait, saying for whom."""
    from core.tools.locks import FolderLock, describe_owner

    def waiting(owner):
        if not quiet:
            print(f"waiting: {describe_owner(owner)} is writing the report in {folder}", file=sys.stderr)

    lock = FolderLock(folder / REPORT_LOCK)
    lock.acquire(on_wait=waiting)
    try:
        yield
    finally:
        lock.release()


def command_report(args) -> int:
    from core.tools.report import Stats, write_report

    stats = Stats(args.test, args.alpha)
    results = [user_path(r) for r in args.results]
    out = user_path(args.out) if args.out else None
    folder = out or results[0]
    if all(r.is_dir() for r in results):
        check_out_folder(folder)
    with hold_report_lock(folder) if folder.is_dir() else contextlib.nullcontext():
        for path in write_report(results, out, args.x_axis, stats):
            print(path)
    return 0


def command_compare(args) -> int:
    from core.lib.results import write_atomic
    from core.tools.report import load_rows
    from core.tools.reported import compare, comparison_table

    results = user_path(args.results)
    comparisons, uncovered = compare(load_rows(results))
    if not comparisons:
        print("no paper-profile results match a reported number (mini/smoke runs are never compared); "
              "run with --profile paper")
        return 0
    table = comparison_table(comparisons)
    write_atomic(results / "compare.md", table)
    print(table + (f"\n{uncovered} paper-profile rows have no reported number to compare with." if uncovered else ""))
    return 0


def command_describe(args) -> int:
    from core.lib.config import to_dict
    from core.lib.datasets import NUM_CLASSES, input_channels
    from core.lib.experiments import method_status
    from core.lib.networks import build_network, parameter_count
    from core.lib.strategy import make_strategy

    _, config = resolve_experiment(args)
    print(json.dumps(to_dict(config), indent=2))
    data = config.data
    classes = 20 if data.dataset == "cifar100" and data.labels == "coarse" else NUM_CLASSES[data.dataset]
    task = build_network(config.model.arch, classes, input_channels(data.dataset), config.model.width,
                         config.model.init)
    print(f"\ntask model {config.model.arch} (width {config.model.width:g}, {classes} classes): "
          f"{parameter_count(task):,} parameters")
    for variant in [v for v in getattr(task, "family", ()) if v != config.model.arch]:
        other = build_network(variant, classes, input_channels(data.dataset), config.model.width)
        print(f"  alternative model.arch={variant}: {parameter_count(other):,} parameters")
    implemented, pending = method_status(config)
    for method in implemented:
        strategy = make_strategy(method, config.method_options.get(method))
        for name, network in strategy.networks(config, classes).items():
            print(f"{method}: {name}: {parameter_count(network):,} parameters")
    if pending:
        print(f"pending methods (not implemented yet): {', '.join(pending)}")
    return 0


def command_plan(args) -> int:
    from core.tools import plan

    measure_on = pick_device(args.device) if args.measure else None
    if args.all:
        if args.paper or args.methods or args.seeds or args.set or args.profile != "paper":
            raise UserError("plan --all covers every experiment at its paper profile; drop the experiment, "
                            "--profile, --methods, --seeds and --set")
        print(plan.summary(args.gpu, measure_on))
        return 0
    if not args.experiment:
        raise UserError("plan needs <paper> <experiment> (see ./reproduce.sh list), or --all")
    _, config = resolve_experiment(args)
    methods = choose_methods(config, args.methods)
    print(plan.job_table(config, methods, args.seeds or config.seeds, args.gpu, measure_on))
    return 0


def command_list(args) -> int:
    from core.lib import experiments
    from core.lib.strategy import STRATEGIES
    from core.tools.reported import REPORTED

    papers = experiments.papers()
    print("methods implemented: " + ", ".join(sorted(STRATEGIES)))
    for paper in papers:
        print(f"\n{paper}")
        for (p, name), experiment in sorted(experiments.EXPERIMENTS.items()):
            if p != paper:
                continue
            config = experiment.config("paper")
            implemented, pending = experiments.method_status(config)
            reported = sum(r.paper == paper and r.experiment == name for r in REPORTED)
            status = "runnable" if implemented and not pending else ("partial" if implemented else "pending")
            print(f"  {name:<22} [{status}] {config.title} ({config.source})")
            extras = [m for m in implemented if m in config.extra_methods]
            print(f"  {'':<22} methods: {', '.join(m for m in implemented if m not in extras) or '-'}"
                  + (f"; pending: {', '.join(pending)}" if pending else "")
                  + (f"; beyond the paper: {', '.join(extras)}" if extras else ""))
            print(f"  {'':<22} profiles: paper, {', '.join(experiment.profiles)}; reported numbers: {reported}")
    awaiting = sorted({(r.paper, r.experiment) for r in REPORTED} - set(experiments.EXPERIMENTS))
    print("\nfigures and tables with reported numbers, not implemented yet [pending]:")
    for paper, name in awaiting:
        print(f"  {paper}/{name}: {sum(r.paper == paper and r.experiment == name for r in REPORTED)} reported numbers")
    return 0


def paper_module(paper: str, part: str, missing: str):
    """`<paper>.<part>`: the module through which a paper adds to a command (tables, figures)."""
    import importlib

    from core.lib.experiments import papers

    if paper not in papers():
        raise UserError(f"unknown paper '{paper}'; known: {', '.join(papers())}")
    try:
        return importlib.import_module(f"{paper}.{part}")
    except ModuleNotFoundError as err:
        if err.name != f"{paper}.{part}":
            raise
        raise UserError(missing) from None


def command_tables(args) -> int:
    print(paper_module(args.paper, "tables", f"{args.paper} has no generated tables").markdown())
    return 0


def command_figures(args) -> int:
    """A paper's figures drawn from stored results (`<paper>/figures.py`, `main(argv)`), run from the caller's
    directory so that relative paths mean what the user typed."""
    module = paper_module(args.paper, "figures",
                          f"{args.paper} draws its figures in ./reproduce.sh report; it has no figures command")
    os.chdir(os.environ.get(CALLER_CWD_ENV) or os.getcwd())
    return module.main(args.args)


def command_bench(args) -> int:
    from core.tools.bench import get_benchmark

    get_benchmark(args.what).run(args, pick_device(args.device))
    return 0


def command_verify(args) -> int:
    from core.tools.verify import command

    return command(args, run_command)


def command_gpucheck(args) -> int:
    from core.tools.gpucheck import command

    return command(args)


def demo_arguments(args) -> list[str]:
    """The `run` command behind `demo`: the CPU or the GPU profile, chosen by the device it will run on."""
    device = pick_device(args.device).type
    profile, jobs = DEMO_PROFILES[device]
    argv = ["run", DEMO["paper"], DEMO["experiment"], "--methods", DEMO["methods"], "--profile", profile,
            "--out", args.out or DEMO["out"], "--device", device, "--download"]
    argv += ["--jobs", str(jobs)] if jobs > 1 else []
    return argv + (["--data-root", args.data_root] if args.data_root else []) + (["--quiet"] if args.quiet else [])


def run_command(argv: list[str]) -> int:
    """`run` with the arguments `argv`, as `demo` and `verify` start it."""
    return command_run(build_parser().parse_args(argv))


def command_demo(args) -> int:
    return run_command(demo_arguments(args))


def add_executor_flags(run) -> None:
    scale = run.add_argument_group("executors (README: Running a full reproduction)")
    scale.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local",
                       help="local (default): this machine; slurm: one array task per (method, seed) through "
                            "submitit; submitit-local: the same array on this machine")
    scale.add_argument("--jobs", type=jobs_count, nargs="?", const="auto", metavar="N",
                       help="local: run up to N jobs at once (no N: --jobs-per-gpu on every visible GPU, on CPU "
                            "one per 2 cores)")
    scale.add_argument("--jobs-per-gpu", type=positive_int, metavar="K",
                       help="local: up to K jobs at once on each GPU, as their memory allows (default: 3 for "
                            "32x32 and 28x28 images, 1 for segmentation and larger images; on the CPU: K in "
                            "all); implies --jobs")
    scale.add_argument("--partition", help="slurm: partition")
    scale.add_argument("--time", type=int, metavar="MIN", help="slurm: time limit per task in minutes (1440)")
    scale.add_argument("--gpus-per-task", type=int, help="slurm: GPUs per task (1)")
    scale.add_argument("--cpus-per-task", type=int, help="slurm: CPUs per task (8)")
    scale.add_argument("--mem-gb", type=int, help="slurm: memory per task in GB (32)")
    scale.add_argument("--sbatch", action="append", metavar="KEY=VALUE",
                       help="slurm: an extra sbatch option, e.g. --sbatch account=abc --sbatch qos=high")
    scale.add_argument("--slurm-config", metavar="FILE", help="slurm: a JSON file with the options above "
                                                              "(flags override it)")
    scale.add_argument("--no-wait", action="store_true",
                       help="slurm: submit and return; write the report later with ./reproduce.sh report")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="./reproduce.sh", description=__doc__)
    parser.add_argument("--plugin", action="append", metavar="MODULE",
                        help="load methods, experiments or benchmarks from a module that is not installed: a module "
                             "name, a .py file or a package folder; repeatable (docs/adding_a_method.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the (method, seed) jobs of one experiment; resumes where it stopped")
    run.add_argument("paper")
    run.add_argument("experiment")
    run.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment)")
    run.add_argument("--seeds", type=positive_int, help="number of seeds, 0..N-1 (default: the paper's)")
    run.add_argument("--profile", default="paper", help="paper (default), smoke, mini, or a named variant")
    run.add_argument("--out", default="results")
    run.add_argument("--download", action="store_true", help="fetch CIFAR-10/100, SVHN or Fashion-MNIST in "
                                                              "torchvision's format into the data root when missing")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr=0.01")
    run.add_argument("--quiet", action="store_true", help="print only errors and the final summary")
    run.add_argument("--pretrained", metavar="FILE_OR_URL",
                     help="ImageNet weights for a segmentation backbone (sets model.pretrained; '' for none)")
    add_allow_code_change(run)
    add_common(run)
    add_executor_flags(run)
    describe = sub.add_parser("describe", help="the resolved config and every network with its parameter count")
    describe.add_argument("paper")
    describe.add_argument("experiment")
    describe.add_argument("--profile", default="paper")
    describe.add_argument("--set", action="append", metavar="KEY=VALUE")
    plan = sub.add_parser("plan", help="every job of an experiment with its steps, counted FLOPs and estimated "
                                       "GPU-hours, without data or GPU (--all: one line per experiment)")
    plan.add_argument("paper", nargs="?")
    plan.add_argument("experiment", nargs="?")
    plan.add_argument("--all", action="store_true", help="every registered experiment at its paper profile")
    plan.add_argument("--profile", default="paper")
    plan.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment)")
    plan.add_argument("--seeds", type=positive_int, help="number of seeds (default: the paper's)")
    plan.add_argument("--set", action="append", metavar="KEY=VALUE")
    plan.add_argument("--gpu", default="h200", help="h200 (default: the measured one), h100, a100, l40s, rtx4090, "
                                                    "v100 or cpu; priced from the measured H200 rates")
    plan.add_argument("--measure", action="store_true", help="time a few training and evaluation steps of the task "
                                                             "network on this machine's device and price from them")
    plan.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="--measure: the device")
    report = sub.add_parser("report", help="figures, tables and paired comparisons from stored results, no training")
    report.add_argument("results", nargs="+", help="one or more results folders (several: one summary table)")
    report.add_argument("--out", help="where to write (default: the results folder; required with several)")
    report.add_argument("--x-axis", choices=["percent", "labels"], default="percent")
    report.add_argument("--test", choices=["t", "wilcoxon"], default="t",
                        help="paired test across seeds: t-test (default) or Wilcoxon signed-rank")
    report.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    compare = sub.add_parser("compare", help="reported vs reproduced numbers for paper-profile results")
    compare.add_argument("results")
    sub.add_parser("list", help="every paper, experiment, method and reported number, with status")
    tables = sub.add_parser("tables", help="a paper's setting tables generated from its configs (VAAL Tables 2, 3)")
    tables.add_argument("paper")
    figures = sub.add_parser("figures", help="a paper's figures from stored results (ta_vaal, lada); "
                                             "'./reproduce.sh figures PAPER --help' lists them")
    figures.add_argument("paper")
    figures.add_argument("args", nargs=argparse.REMAINDER, help="the paper's figure command and its arguments")
    bench = sub.add_parser("bench", help="benchmarks: 'train' (one epoch vs a plain DataLoader loop), 'sampling' "
                                         "(VAAL Table 1), and those the paper packages register")
    bench.add_argument("what", help="train, sampling, or a package's benchmark (segmentation)")
    bench.add_argument("--images", type=int, default=5000, help="train: images in the timed epoch")
    bench.add_argument("--pool", type=int, help="sampling: unlabeled pool size (default 45,000 on a GPU as VAAL "
                                                "Table 1, 900 on the CPU); labeled set, budget and subsets scale")
    bench.add_argument("--methods", help="sampling: comma-separated methods to time (default: every one)")
    bench.add_argument("--width", type=float, help="network width (train/sampling: 0.125, segmentation: 1)")
    bench.add_argument("--arch", help="task network (train/sampling: vgg16_bn, segmentation: drn_d_22)")
    bench.add_argument("--steps", type=int, default=5, help="segmentation: timed training steps")
    bench.add_argument("--batch-size", type=int, help="segmentation: batch (default 8, VAAL Table 3)")
    bench.add_argument("--out", default="results/bench", help="sampling: where the table is written")
    bench.add_argument("--compile", default="on", choices=("off", "on", "graphs"),
                       help="train: runtime.compile of the compiled columns (off leaves them out)")
    add_common(bench)
    from core.tools import verify

    verify.add_arguments(sub.add_parser("verify", help="run or resume the first cycles at the paper profile and check "
                                                       "them against the reported numbers (exit 1 on a miss)"))
    gpucheck = sub.add_parser("gpucheck", help="check a CUDA machine in at most 8 minutes: smoke of every experiment "
                                               "and method, trainer throughput, verify's first LL4AL cycle")
    gpucheck.add_argument("--out", default="results/gpucheck", help="where gpucheck.md and the runs go")
    gpucheck.add_argument("--data-root", help="folder with cifar10/ (part of its training images will do)")
    demo = sub.add_parser("demo", help="a small real reproduction on CIFAR-10 with a figure and a table "
                                       "(downloads CIFAR-10 into the data root when it is not there)")
    demo.add_argument("--out")
    demo.add_argument("--quiet", action="store_true")
    add_common(demo)
    return parser


COMMANDS = {"run": command_run, "report": command_report, "compare": command_compare, "describe": command_describe,
            "list": command_list, "tables": command_tables, "figures": command_figures, "bench": command_bench,
            "demo": command_demo, "plan": command_plan, "verify": command_verify,
            "gpucheck": command_gpucheck}


def use_plugins(values: list[str]) -> None:
    """--plugin: each module name, .py file or package folder joins $AL_PLUGINS, paths made absolute, so that the
    workers and Slurm tasks of a run load them too; loaded now, so that a broken one fails before any work."""
    from core.lib.plugins import ENV, load_plugins

    items = [str(user_path(value)) if value.endswith(".py") or os.sep in value or user_path(value).is_dir() else value
             for value in values]
    os.environ[ENV] = os.pathsep.join(filter(None, [os.environ.get(ENV, ""), *items]))
    load_plugins()


def main(argv: list[str] | None = None) -> int:
    exit_with_parent_if_asked()
    args = build_parser().parse_args(argv)
    try:
        if args.plugin:
            use_plugins(args.plugin)
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        sys.stdout = None
        return 0
    except OSError as err:
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {err.strerror or err}; check that path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cycles are saved; run the same command again to resume", file=sys.stderr)
        return 130
    except Stopped as stopped:
        print("stopped (SIGTERM): finished cycles and checkpoints are saved; run the same command again to resume",
              file=sys.stderr)
        return stopped.code
