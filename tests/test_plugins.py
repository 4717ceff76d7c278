"""Plugins: the worked example (examples/power_sampling) loaded from outside the repository's packages through
--plugin (also by --jobs workers: -m slow) and as an installed distribution through its entry point, each
running a smoke cycle; a name registered twice refused in one line that names both modules."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.lib.plugins import ENV, GROUP
from core.tools.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "power_sampling"
SMOKE_RUN = ["run", "baselines", "ll4al_cifar10", "--profile", "smoke", "--seeds", "1", "--set", "protocol.cycles=2",
             "--device", "cpu", "--quiet"]


def run_cli(commands: list[list[str]], cwd: Path, **environment) -> subprocess.CompletedProcess:
    """The commands one after another in one fresh process (one PyTorch start-up), stopping at the first that
    fails; each prints its exit code."""
    script = ("import json, sys\nfrom core.tools.cli import main\nfor argv in json.loads(sys.argv[1]):\n"
              "    code = main(argv)\n    print(f'exit {code}', flush=True)\n    if code:\n        sys.exit(code)\n")
    env = {**os.environ, "AL_CALLER_CWD": str(cwd), **environment}
    env.pop(ENV, None)
    return subprocess.run([sys.executable, "-c", script, json.dumps(commands)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def plugin_run(tmp_path: Path, data_root: Path, *jobs: str) -> Path:
    """Power sampling and random, one seed, two cycles, with the example copied to a folder of its own."""
    shutil.copy(EXAMPLE / "power_sampling.py", tmp_path / "power_sampling.py")
    out = tmp_path / "out"
    done = run_cli([["--plugin", "power_sampling.py", *SMOKE_RUN, "--methods", "power_entropy,random",
                     "--out", str(out), "--data-root", str(data_root), *jobs]], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return out / "baselines" / "ll4al_cifar10"


def check_plugin_run(experiment: Path) -> None:
    rows = [json.loads(line) for method in ("power_entropy", "random")
            for line in (experiment / method / "seed0" / "results.jsonl").open()]
    assert [(r["method"], r["cycle"], r["beyond_paper"]) for r in rows] == [
        ("power_entropy", 0, True), ("power_entropy", 1, True), ("random", 0, False), ("random", 1, False)]
    assert rows[0]["selected"] != rows[2]["selected"]
    report = (experiment / "report.md").read_text()
    assert "| power_entropy (extra) |" in report and "| random |" in report


@pytest.mark.slow      # a smoke run in a subprocess, 7 s; the installed entry point's run stays in the default suite
def test_a_method_in_a_file_outside_the_packages_runs_through_plugin(tmp_path, data_root):
    check_plugin_run(plugin_run(tmp_path, data_root))


@pytest.mark.slow
def test_jobs_workers_load_the_plugin_too(tmp_path, data_root):
    check_plugin_run(plugin_run(tmp_path, data_root, "--jobs", "2"))


def installed_site(tmp_path: Path) -> Path:
    """What `pip install` leaves in site-packages: the module and a dist-info whose entry_points.txt comes from
    the example's pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    shutil.copy(EXAMPLE / "power_sampling.py", site)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entries = project["entry-points"][GROUP]
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    return site


def test_an_installed_method_runs_through_its_entry_point_and_plan_prices_it(tmp_path, data_root):
    path = os.pathsep.join([str(installed_site(tmp_path)), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "out"
    done = run_cli([["list"],
                    ["plan", "baselines", "ll4al_cifar10", "--methods", "power_entropy,entropy", "--seeds", "1"],
                    [*SMOKE_RUN, "--methods", "power_entropy", "--out", str(out), "--data-root", str(data_root)]],
                   cwd=tmp_path, PYTHONPATH=path)
    assert done.returncode == 0, done.stderr
    assert "power_entropy" in done.stdout.splitlines()[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in done.stdout.splitlines() if line[:2] == "| "}
    assert rows["power_entropy"] == rows["entropy"]           # the same passes: priced the same
    assert (out / "baselines" / "ll4al_cifar10" / "power_entropy" / "seed0" / "results.jsonl").exists()


@pytest.mark.parametrize("kind, code, earlier", [
    ("method", "from core.lib import Strategy, register_method\n\n"
               "@register_method\nclass Mine(Strategy):\n    name = 'entropy'\n", "baselines.uncertainty"),
    ("experiment", "from core.lib import Experiment, ExperimentConfig, register_experiment\n\n"
                   "register_experiment(Experiment('baselines', 'll4al_cifar10', lambda: ExperimentConfig()))\n",
     "baselines.experiments"),
    ("benchmark", "from core.tools.bench import Benchmark, register_benchmark\n\n"
                  "register_benchmark(Benchmark('train', lambda args, device: None, 'mine'))\n", "core.tools.bench"),
])
def test_a_name_registered_twice_is_refused_naming_both_modules(kind, code, earlier, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "")          # restored afterwards: --plugin sets it
    (tmp_path / "taken.py").write_text(textwrap.dedent(code))
    assert main(["--plugin", str(tmp_path / "taken.py"), "list"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{kind} '" in error and f"by {earlier} and by taken;" in error
    assert "taken" not in sys.modules


@pytest.mark.parametrize("plugin, says", [("no_such_plugin_module", "no module no_such_plugin_module"),
                                          ("missing/mine.py", "does not exist")])
def test_a_plugin_that_cannot_be_found_is_one_line(plugin, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "")          # restored afterwards: --plugin sets it
    monkeypatch.setenv("AL_CALLER_CWD", str(tmp_path))
    assert main(["--plugin", plugin, "list"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and says in error


def test_an_install_without_the_entry_points_says_to_reinstall(monkeypatch):
    import core.lib.plugins as plugins

    monkeypatch.setattr(plugins, "distributions", lambda: [])
    plugins.declared.cache_clear()
    try:
        with pytest.raises(plugins.UserError, match=r"pip install -e \."):
            plugins.declared()
    finally:
        monkeypatch.undo()
        plugins.declared.cache_clear()
    assert plugins.declared()
