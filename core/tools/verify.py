"""`./reproduce.sh verify`: the first cycles of an experiment at the paper profile, checked against the numbers
the papers report at those budgets (core/tools/reported.py).

    verify <paper> <experiment> [--cycles K] [--seeds N] [--methods a,b] [--out DIR] [run's data, device,
           --set, --jobs and --allow-code-change flags]
        runs, or resumes, the first K cycles (default 1) of every (method, seed) job through `run`: the same
        folders, resume and locks, with runtime.stop_after_cycles=K, which is outside the run hash, so a later
        `run` continues these jobs and a finished `run` is checked without training;
    verify --results DIR [<paper> <experiment>] [--cycles K] [--seeds N] [--methods a,b]
        checks the paper-profile rows stored below DIR, without training.

Each reported number at the budgets of those cycles is printed beside the reproduced mean ± std over the seeds
found, with its tolerance and pass/FAIL (info where the registry gives no tolerance: such a point never fails),
its source and whether it was read off a plot; the table is also written
to verify.md in the experiment's folder. Exit status 0 when every checked point is within its tolerance, 1 when
one is not, 2 on a user error.
"""
from __future__ import annotations

from pathlib import Path

from core.lib.errors import UserError
from core.tools.arguments import (add_allow_code_change, add_common, add_experiment, choose_methods, jobs_count,
                                  positive_int, resolve_experiment, user_path)
from core.tools.reported import Comparison, budget, compare

NAME = "verify"
HELP = ("run or resume the first cycles at the paper profile and check them against the reported numbers (exit 1 on a "
        "miss)")
VERIFY_FILE = "verify.md"


def add_arguments(parser) -> None:
    add_experiment(parser, optional=True)
    parser.add_argument("--cycles", type=positive_int, default=1, help="check the first K cycles (default 1)")
    parser.add_argument("--seeds", type=positive_int, help="seeds 0..N-1 (default: the paper's; with --results: "
                                                          "every seed stored)")
    parser.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment; "
                                          "with --results: every method stored)")
    parser.add_argument("--out", default="results", help="where the runs are (default results/)")
    parser.add_argument("--results", metavar="DIR", help="check the results stored below DIR; train nothing")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="as in run (a changed config is a "
                                                                            "different run; the table says so)")
    parser.add_argument("--jobs", type=jobs_count, nargs="?", const="auto", metavar="N",
                        help="run N jobs at once, as in run")
    parser.add_argument("--download", action="store_true", help="as in run")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the table")
    add_allow_code_change(parser)
    add_common(parser)
    parser.set_defaults(profile="paper")      # verify compares paper-profile results only


def run(args) -> int:
    from core.tools.commands.run import run_command

    return command(args, run_command)


def command(args, run_command) -> int:
    """`run_command(argv)` runs `./reproduce.sh run` with the arguments argv (core.tools.commands.run)."""
    from core.lib.results import write_atomic
    from core.tools.report import load_rows

    if args.results:
        given = [flag for flag, value in (("--set", args.set), ("--jobs", args.jobs), ("--download", args.download),
                                          ("--data-root", args.data_root),
                                          ("--allow-code-change", args.allow_code_change)) if value]
        if given:
            raise UserError(f"{', '.join(given)}: only when verify runs the jobs; drop them with --results")
        if bool(args.paper) != bool(args.experiment):
            raise UserError("verify --results DIR takes both <paper> and <experiment>, or neither")
        folder = user_path(args.results)
        rows = load_rows(folder)
        methods = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
        seeds, where = args.seeds, folder
    else:
        if not args.experiment:
            raise UserError("verify needs <paper> <experiment> (see ./reproduce.sh list), or --results DIR")
        methods, seeds, where = run_first_cycles(args, run_command)
        rows = load_rows(where)
    rows = first_cycles(rows, args.paper, args.experiment, methods, seeds, args.cycles)
    comparisons, _ = compare(rows)
    if not comparisons:
        print(f"no reported number at the budgets of the first {args.cycles} cycle(s) of the {len(rows)} rows "
              "checked (paper profile only); nothing to verify")
        return 0
    table = verdict_table(comparisons, args.cycles, bool(args.set))
    write_atomic(where / VERIFY_FILE, table)
    print(table, end="")
    return 1 if any(c.within is False for c in comparisons) else 0


def run_first_cycles(args, run_command) -> tuple[list[str], int, Path]:
    """`run` with runtime.stop_after_cycles=K; the methods and seeds it ran, and the experiment's folder."""
    _, config = resolve_experiment(args)
    if args.cycles > config.protocol.cycles:
        raise UserError(f"--cycles {args.cycles}: {args.paper}/{args.experiment} has {config.protocol.cycles} "
                        "cycles")
    methods = choose_methods(config, args.methods)
    argv = ["run", args.paper, args.experiment, "--methods", ",".join(methods), "--out", args.out,
            "--set", f"runtime.stop_after_cycles={args.cycles}", "--device", args.device]
    seeds = args.seeds or config.seeds
    argv += ["--seeds", str(seeds)]
    argv += [part for item in args.set or [] for part in ("--set", item)]
    argv += ["--data-root", args.data_root] if args.data_root else []
    argv += ["--jobs", str(args.jobs)] if args.jobs else []
    argv += ["--download"] * args.download + ["--quiet"] * args.quiet
    argv += ["--allow-code-change"] * args.allow_code_change
    run_command(argv)
    return methods, seeds, user_path(args.out) / config.paper / config.experiment


def first_cycles(rows: list[dict], paper: str | None, experiment: str | None, methods: list[str] | None,
                 seeds: int | None, cycles: int) -> list[dict]:
    """The rows of the first `cycles` cycles, of the experiment, methods and seeds 0..seeds-1 asked for."""
    return [row for row in rows
            if (paper is None or (row["paper"], row["experiment"]) == (paper, experiment))
            and (not methods or row["method"] in methods) and (seeds is None or row["seed"] < seeds)
            and row.get("cycle", 0) < cycles]


def verdict_table(comparisons: list[Comparison], cycles: int, changed_config: bool = False) -> str:
    lines = [f"Reported vs reproduced at the budgets of the first {cycles} cycle(s), paper profile"
             + (" with --set changes (a different config than the paper's)" if changed_config else "") + ".", "",
             "| experiment | method | labeled | reported | reproduced (mean ± std, seeds) | difference | tolerance "
             "| result | read off a plot | source |", "|---|---|---:|---:|---|---:|---:|---|---|---|"]
    for c in comparisons:
        r = c.reported
        result = {None: "info", True: "pass", False: "FAIL"}[c.within]
        tolerance = "-" if r.tolerance is None else f"±{r.tolerance:g}"
        lines.append(f"| {r.paper}/{r.experiment} | {r.method} | {budget(r)} | {r.value:.2f} | {c.mean:.2f} ± "
                     f"{c.std:.2f} (n={c.seeds}) | {c.difference:+.2f} | {tolerance} | {result} | "
                     f"{'yes' if r.plot else 'no'} | {r.source} |")
    failed = sum(c.within is False for c in comparisons)
    checked = sum(c.within is not None for c in comparisons)
    if checked:
        lines += ["", f"{checked - failed} of {checked} checked point(s) within tolerance"
                  + (f"; {failed} outside" if failed else "") + "."]
    else:
        lines += ["", f"no point with a tolerance at these budgets; {len(comparisons)} information point(s) shown."]
    return "\n".join(lines) + "\n"
