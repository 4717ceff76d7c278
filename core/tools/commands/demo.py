"""`./reproduce.sh demo`: a small real reproduction on CIFAR-10, the `run` of the profile of the device it runs on."""
from __future__ import annotations

from core.tools.arguments import add_common, pick_device
from core.tools.commands.run import run_command

NAME = "demo"
HELP = ("a small real reproduction on CIFAR-10 with a figure and a table (downloads CIFAR-10 into the data root "
        "when it is not there)")
DEMO = {"paper": "baselines", "experiment": "ll4al_cifar10", "methods": "random,entropy,coreset", "out": "results/demo"}
# The demo's profile (baselines/experiments.py, 3 seeds each) and the jobs run at once, by device: on a CPU one
# job per 2 cores' share (workers of one thread on 2 cores), on one GPU 3 jobs sharing it.
DEMO_PROFILES = {"cpu": ("demo", 2), "cuda": ("demo_gpu", 3)}


def add_arguments(parser) -> None:
    parser.add_argument("--out")
    parser.add_argument("--quiet", action="store_true")
    add_common(parser)


def run(args) -> int:
    return run_command(demo_arguments(args))


def demo_arguments(args) -> list[str]:
    """The `run` command behind `demo`: the CPU or the GPU profile, chosen by the device it will run on."""
    device = pick_device(args.device).type
    profile, jobs = DEMO_PROFILES[device]
    argv = ["run", DEMO["paper"], DEMO["experiment"], "--methods", DEMO["methods"], "--profile", profile,
            "--out", args.out or DEMO["out"], "--device", device, "--download"]
    argv += ["--jobs", str(jobs)] if jobs > 1 else []
    return argv + (["--data-root", args.data_root] if args.data_root else []) + (["--quiet"] if args.quiet else [])
