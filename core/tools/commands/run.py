"""`./reproduce.sh run`: the (method, seed) jobs of one experiment, checked whole before the first one starts,
carried out by the executor the flags choose (core.tools.dispatch), then the report of the experiment's folder."""
from __future__ import annotations

import sys

from core.lib.errors import UserError
from core.tools.arguments import (OneLineParser, add_allow_code_change, add_common, add_experiment, check_out_folder,
                                  choose_methods, jobs_count, pick_device, positive_int, resolve_data_root_arg,
                                  resolve_experiment, user_path)

NAME = "run"
HELP = "run the (method, seed) jobs of one experiment; resumes where it stopped"


def add_arguments(parser) -> None:
    add_experiment(parser)
    parser.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment)")
    parser.add_argument("--seeds", type=positive_int, help="number of seeds, 0..N-1 (default: the paper's)")
    parser.add_argument("--profile", default="paper", help="paper (default), smoke, mini, or a named variant")
    parser.add_argument("--out", default="results")
    parser.add_argument("--download", action="store_true", help="fetch CIFAR-10/100, SVHN or Fashion-MNIST in "
                                                                 "torchvision's format into the data root when missing")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. train.lr=0.01")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final summary")
    parser.add_argument("--pretrained", metavar="FILE_OR_URL",
                        help="ImageNet weights for a segmentation backbone (sets model.pretrained; '' for none)")
    add_allow_code_change(parser)
    add_common(parser)
    add_executor_flags(parser)


def add_executor_flags(parser) -> None:
    scale = parser.add_argument_group("executors (docs/running.md: Running a full reproduction)")
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


def run(args) -> int:
    from core.lib import parallel
    from core.tools.commands.report import hold_report_lock
    from core.tools.dispatch import run_jobs
    from core.tools.report import write_report

    executor = check_executor_flags(args)
    config, methods, seeds, settings = validate_run(args)
    jobs = [(method, seed) for method in methods for seed in seeds]
    if not run_jobs(executor, config, jobs, settings, args):
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


def run_command(argv: list[str]) -> int:
    """`run` with the arguments `argv` (argv[0] is "run"), as `demo` and `verify` start it."""
    parser = OneLineParser(prog="./reproduce.sh")
    add_arguments(parser.add_subparsers(dest="command", required=True).add_parser(NAME, help=HELP))
    return run(parser.parse_args(argv))
