"""Command line behind ./reproduce.sh: list, run, verify, report, describe, compare, plan, bench, gpucheck, demo."""
from __future__ import annotations

import argparse
import os
import sys

from core.lib.errors import UserError
from core.tools import verify
from core.tools.arguments import OneLineParser, user_path
from core.tools.commands import (bench, compare, demo, describe, figures, gpucheck, listing, plan, report, run,
                                 tables)
from core.tools.processes import Stopped, exit_with_parent_if_asked

# Each module: NAME, HELP, add_arguments(parser), run(args) -> exit status; --help lists them in this order.
COMMANDS = (run, describe, plan, report, compare, listing, tables, figures, bench, verify, gpucheck, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="./reproduce.sh", description=__doc__)
    parser.add_argument("--plugin", action="append", metavar="MODULE",
                        help="load methods, experiments or benchmarks from a module that is not installed: a module "
                             "name, a .py file or a package folder; repeatable (docs/adding_a_method.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP))
    return parser


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
        return next(c for c in COMMANDS if c.NAME == args.command).run(args)
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
