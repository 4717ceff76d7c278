"""`./reproduce.sh figures`: a paper's own figures from stored results (`<paper>/figures.py`)."""
from __future__ import annotations

import argparse
import os

from core.tools.arguments import CALLER_CWD_ENV, paper_module

NAME = "figures"
HELP = "a paper's figures from stored results (ta_vaal, lada); './reproduce.sh figures PAPER --help' lists them"


def add_arguments(parser) -> None:
    parser.add_argument("paper")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the paper's figure command and its arguments")


def run(args) -> int:
    """A paper's figures drawn from stored results (`<paper>/figures.py`, `main(argv)`), run from the caller's
    directory so that relative paths mean what the user typed."""
    module = paper_module(args.paper, "figures",
                          f"{args.paper} draws its figures in ./reproduce.sh report; it has no figures command")
    os.chdir(os.environ.get(CALLER_CWD_ENV) or os.getcwd())
    return module.main(args.args)
