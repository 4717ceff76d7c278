"""Where methods, experiments and benchmarks come from: the modules that packages declare as entry points in the
group `al_reproductions.plugins` (this project's own papers in pyproject.toml, any installed package in its own),
then the modules named in $AL_PLUGINS, which `--plugin` sets so that `--jobs` workers and Slurm tasks load them
too. Importing a plugin registers what it defines (`register_method`, `register_experiment`,
`register_benchmark`); a name that another module has registered is refused, naming both modules, as a
silent replacement would run something else than the user asked for.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from functools import cache
from importlib.metadata import distributions
from pathlib import Path

from core.lib.errors import UserError

GROUP = "al_reproductions.plugins"
ENV = "AL_PLUGINS"          # module names, .py files or package folders, os.pathsep apart
REGISTRANTS: dict[tuple[str, object], str] = {}      # (kind, name) -> the module that registered it


def register(registry: dict, kind: str, name, value, module: str) -> None:
    """`registry[name] = value`, unless another module registered `name` (a module run again, as a reload does,
    replaces its own)."""
    earlier = REGISTRANTS.setdefault((kind, name), module)
    if earlier != module:
        shown = "/".join(name) if isinstance(name, tuple) else name
        raise UserError(f"{kind} '{shown}' is registered twice, by {earlier} and by {module}; rename one of them")
    registry[name] = value


@cache
def declared() -> tuple[tuple[str, str, str], ...]:
    """(distribution, entry name, module) of every entry point of the group, read once per process. Every
    distribution is asked, not only the first of each name that `entry_points()` keeps: a stale egg-info in a
    checkout on PYTHONPATH would otherwise hide the installed metadata."""
    found = {(dist.name, entry.name, entry.module) for dist in distributions()
             for entry in dist.entry_points.select(group=GROUP)}
    if not found:
        raise UserError(f"no installed package declares an entry point in {GROUP}, so no paper is loaded: install "
                        "the project (pip install -e . in the checkout; ./reproduce.sh does it when pyproject.toml "
                        "changes)")
    return tuple(sorted(found))


def import_file(path: Path) -> None:
    """A .py file or a package folder as the module named by its stem, without putting its folder on sys.path."""
    if not path.exists():
        raise UserError(f"--plugin {path} does not exist; pass a module name, a .py file or a package folder")
    name, location = path.stem, path / "__init__.py" if path.is_dir() else path
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() != location.resolve():
            raise UserError(f"--plugin {path}: a module named {name} is already loaded from "
                            f"{getattr(loaded, '__file__', 'elsewhere')}; rename the file")
        return
    spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=[str(path)] if path.is_dir() else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def import_module(name: str, origin: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name.partition(".")[0] and err.name != name:
            raise
        raise UserError(f"{origin}: no module {name} can be imported; install it, or pass its .py file or package "
                        "folder to --plugin") from None


def load_plugins() -> None:
    """Import every plugin (those already imported cost a dictionary look-up)."""
    for dist, name, module in declared():
        import_module(module, f"entry point {name} of {dist}")
    for item in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        if item.endswith(".py") or os.sep in item:
            import_file(Path(item))
        else:
            import_module(item, f"--plugin {item}")
