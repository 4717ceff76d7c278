"""`./reproduce.sh gpucheck`: a CUDA machine checked in at most 8 minutes (core/tools/gpucheck.py, imported when
it runs: it needs torch)."""
from __future__ import annotations

NAME = "gpucheck"
HELP = ("check a CUDA machine in at most 8 minutes: smoke of every experiment and method, trainer throughput, "
        "verify's first LL4AL cycle")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="results/gpucheck", help="where gpucheck.md and the runs go")
    parser.add_argument("--data-root", help="folder with cifar10/ (part of its training images will do)")


def run(args) -> int:
    from core.tools.gpucheck import command

    return command(args)
