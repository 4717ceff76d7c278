"""The two layers of core/ (README, Layout): the library (core/lib) imports nothing from the tooling (core/tools),
paper folders take the library from its one public module (core.lib), core never names a paper package, and no
module imports itself through a circle of imports, counting the imports inside functions."""
import ast
from pathlib import Path

import pytest

import core.lib
from core.lib.plugins import declared

REPO = Path(__file__).resolve().parent.parent
PAPER_PACKAGES = tuple(module for dist, _, module in declared() if dist == "al-reproductions")   # pyproject.toml
PACKAGES = ("core", *PAPER_PACKAGES)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def imported_modules(name: str) -> set[str]:
    """The project modules that `name` imports anywhere in its file: `from a.b import c` names a.b.c when that
    is a module, else a.b."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return {module for module in found if module in MODULES}


GRAPH = {name: imported_modules(name) for name in MODULES}


def circles() -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module, or of a module importing itself."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or node in GRAPH[node]:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_anywhere():
    assert circles() == []


def test_the_circle_finder_finds_a_circle(monkeypatch):
    monkeypatch.setitem(GRAPH, "core.lib.errors", GRAPH["core.lib.errors"] | {"core.lib.pool"})
    assert circles() == [["core.lib.errors", "core.lib.pool"]]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("core.lib")))
def test_the_library_imports_nothing_from_the_tooling(name):
    assert not {module for module in GRAPH[name] if module.startswith("core.tools")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("core.lib.")))
def test_library_modules_import_each_other_not_the_public_module(name):
    assert "core.lib" not in GRAPH[name]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("core")))
def test_core_names_no_paper_package(name):
    assert not {module for module in GRAPH[name] if module.split(".")[0] in PAPER_PACKAGES}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[0] in PAPER_PACKAGES))
def test_paper_folders_take_the_library_from_core_lib(name):
    assert not {module for module in GRAPH[name] if module.startswith("core.lib.")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[0] == "segmentation"))
def test_segmentation_names_no_paper_package(name):
    """segmentation/ holds what the papers build on (networks, data, the recipe); each paper registers its own
    segmentation experiments (VAAL's Fig. 3 and 4 in vaal/)."""
    assert not {module for module in GRAPH[name] if module.split(".")[0] in set(PAPER_PACKAGES) - {"segmentation"}}


def test_every_paper_package_of_the_checkout_is_declared_as_a_plugin():
    assert {path.parent.name for path in REPO.glob("*/__init__.py")} - {"core", "tests"} == set(PAPER_PACKAGES)


def test_every_public_name_resolves_to_no_module_and_the_library_stays_thin():
    # a public name equal to a module's would turn into that module once the module is imported
    assert not set(core.lib.__all__) & {name.rpartition(".")[2] for name in MODULES if name.startswith("core.lib.")}
    assert all(getattr(core.lib, name) is not None for name in core.lib.__all__)
    lines = sum(len(path.read_text().splitlines()) for name, path in MODULES.items() if name.startswith("core.lib"))
    # 2500, then exact deterministic forms, the resumable games, plugin loading and compile; then the run folder's
    # names and row fields, and one record per dataset, moved in from the tools and the papers
    assert lines <= 3050
