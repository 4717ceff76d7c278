"""What the commands share: the user's paths, the device, the experiment and methods a command names, and the
argparse pieces that make every mistake one line with exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.lib.errors import UserError

CALLER_CWD_ENV = "AL_CALLER_CWD"


def pick_device(name: str | None):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def resolve_experiment(args):
    from core.lib import experiments

    experiment = experiments.get_experiment(args.paper, args.experiment)
    overrides = parse_assignments(args.set or [])
    if getattr(args, "pretrained", None) is not None:
        local = args.pretrained and "://" not in args.pretrained
        overrides["model.pretrained"] = str(user_path(args.pretrained)) if local else args.pretrained
    return experiment, experiment.config(args.profile, overrides)


def paper_module(paper: str, part: str, missing: str):
    """`<paper>.<part>`: the module through which a paper adds to a command (tables, figures)."""
    import importlib

    from core.lib.experiments import papers

    if paper not in papers():
        raise UserError(f"unknown paper '{paper}'; known: {', '.join(papers())}")
    try:
        return importlib.import_module(f"{paper}.{part}")
    except ModuleNotFoundError as err:
        if err.name != f"{paper}.{part}":
            raise
        raise UserError(missing) from None


def choose_methods(config, requested: str | None) -> list[str]:
    from core.lib.experiments import method_status

    implemented, pending = method_status(config)
    if not requested:
        if not implemented:
            raise UserError(f"no method of {config.paper}/{config.experiment} is implemented yet "
                            f"(pending: {', '.join(pending)})")
        return implemented
    from core.lib.strategy import STRATEGIES

    return method_list(requested, STRATEGIES, "unknown or unimplemented", "implemented")


def method_list(requested: str, known, refused: str, offered: str) -> list[str]:
    """The methods a `--methods a,b` argument names, in its order without repeats; a name not in `known` is one
    line: '<refused> method(s) ...; <offered>: <known, sorted>'."""
    methods = list(dict.fromkeys(m.strip() for m in requested.split(",") if m.strip()))
    if not methods:
        raise UserError(f"--methods '{requested}' names no method; pass e.g. --methods random,entropy")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UserError(f"{refused} method(s) {', '.join(unknown)}; {offered}: {', '.join(sorted(known))}")
    return methods


def user_path(value: str) -> Path:
    """A path as the user typed it: relative ones resolve against the directory the command was started in
    (reproduce.sh changes to the checkout and passes the caller's directory in $AL_CALLER_CWD)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(os.environ.get(CALLER_CWD_ENV) or os.getcwd()) / path


def check_out_folder(out: Path) -> None:
    """The output folder must be a folder (or creatable as one) that this user can write into."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out} lies below {existing}, which is a file; pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} cannot be written ({existing} is read-only for this user); "
                        "pass a folder you can write to")


def resolve_data_root_arg(value: str | None, create: bool = False) -> Path:
    from core.lib.datasets import resolve_data_root

    return resolve_data_root(value and str(user_path(value)), create=create)


def add_experiment(parser, optional: bool = False) -> None:
    """The <paper> <experiment> positionals of the commands that act on one experiment."""
    for name in ("paper", "experiment"):
        parser.add_argument(name, nargs="?" if optional else None)


def add_common(parser, data: bool = True) -> None:
    if data:
        parser.add_argument("--data-root", help="folder with cifar10/, cifar100/, ... (default: $AL_DATA_ROOT, "
                                                "else data/ in the project)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def add_allow_code_change(parser) -> None:
    parser.add_argument("--allow-code-change", action="store_true",
                        help="resume run folders whose rows other code made (another commit, or uncommitted "
                             "changes); the report marks the mix")


class OneLineParser(argparse.ArgumentParser):
    """argparse's mistakes as one line and exit code 2, like every other user error."""

    def error(self, message):
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def jobs_count(text: str):
    return text if text == "auto" else positive_int(text)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """--set KEY=VALUE items as {key: value}."""
    parsed = {}
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE (e.g. train.lr=0.01), got '{item}'")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value.strip()
    return parsed
