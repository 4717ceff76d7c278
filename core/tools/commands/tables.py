"""`./reproduce.sh tables`: a paper's setting tables generated from its configs (`<paper>/tables.py`)."""
from __future__ import annotations

from core.tools.arguments import paper_module

NAME = "tables"
HELP = "a paper's setting tables generated from its configs (VAAL Tables 2, 3)"


def add_arguments(parser) -> None:
    parser.add_argument("paper")


def run(args) -> int:
    print(paper_module(args.paper, "tables", f"{args.paper} has no generated tables").markdown())
    return 0
