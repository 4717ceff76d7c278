"""`./reproduce.sh plan`: the jobs of an experiment priced in steps, FLOPs and GPU-hours (core.tools.plan)."""
from __future__ import annotations

from core.lib.errors import UserError
from core.tools.arguments import add_experiment, choose_methods, pick_device, positive_int, resolve_experiment

NAME = "plan"
HELP = ("every job of an experiment with its steps, counted FLOPs and estimated GPU-hours, without data or GPU "
        "(--all: one line per experiment)")


def add_arguments(parser) -> None:
    add_experiment(parser, optional=True)
    parser.add_argument("--all", action="store_true", help="every registered experiment at its paper profile")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment)")
    parser.add_argument("--seeds", type=positive_int, help="number of seeds (default: the paper's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--gpu", default="h200", help="h200 (default: the measured one), h100, a100, l40s, rtx4090, "
                                                      "v100 or cpu; priced from the measured H200 rates")
    parser.add_argument("--measure", action="store_true", help="time a few training and evaluation steps of the task "
                                                               "network on this machine's device and price from them")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="--measure: the device")


def run(args) -> int:
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
