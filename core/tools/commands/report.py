"""`./reproduce.sh report`: figures, tables and paired comparisons from stored results (core.tools.report), one
process at a time per folder."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from core.tools.arguments import check_out_folder, user_path

NAME = "report"
HELP = "figures, tables and paired comparisons from stored results, no training"
REPORT_LOCK = ".report.lock"


def add_arguments(parser) -> None:
    parser.add_argument("results", nargs="+", help="one or more results folders (several: one summary table)")
    parser.add_argument("--out", help="where to write (default: the results folder; required with several)")
    parser.add_argument("--x-axis", choices=["percent", "labels"], default="percent")
    parser.add_argument("--test", choices=["t", "wilcoxon"], default="t",
                        help="paired test across seeds: t-test (default) or Wilcoxon signed-rank")
    parser.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")


def run(args) -> int:
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
