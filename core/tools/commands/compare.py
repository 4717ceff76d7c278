"""`./reproduce.sh compare`: reported vs reproduced numbers for paper-profile results (core.tools.reported)."""
from __future__ import annotations

from core.tools.arguments import user_path

NAME = "compare"
HELP = "reported vs reproduced numbers for paper-profile results"


def add_arguments(parser) -> None:
    parser.add_argument("results")


def run(args) -> int:
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
