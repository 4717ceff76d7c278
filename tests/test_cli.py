import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.tools.cli import main
from tests.conftest import assert_cli_refuses_in_one_line

REPO = Path(__file__).resolve().parent.parent


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_a_user_error_is_one_line_exit_2_and_no_traceback_from_the_real_process():
    result = cli("run", "nope", "x")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "unknown paper 'nope'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["run", "vaal", "nope"], "unknown experiment 'nope'"),
    (["run", "vaal", "fig2_cifar10", "--methods", "magic"], "unknown or unimplemented method(s) magic"),
    (["run", "vaal", "fig2_cifar10", "--set", "train.lr=fast"], "train.lr must be float"),
    (["run", "vaal", "fig2_cifar10", "--data-root", "/no/such/folder"], "is not a folder"),
    (["report", "/no/such/results"], "does not exist"),
    (["figures", "vaal", "x"], "vaal draws its figures in ./reproduce.sh report"),
])
def test_user_errors_are_one_line_exit_2(capsys, args, message):
    assert_cli_refuses_in_one_line(capsys, args, message)


def test_missing_dataset_under_a_valid_root(tmp_path, capsys):
    assert_cli_refuses_in_one_line(capsys, ["run", "vaal", "fig2_cifar10", "--profile", "smoke", "--data-root",
                                            str(tmp_path), "--quiet", "--out", str(tmp_path / "out")],
                                   "dataset cifar10 not found")


def test_list_shows_papers_experiments_and_status(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fig2_cifar10" in out and "ll4al_cifar10" in out and "pending" in out


def test_describe_prints_the_resolved_config_and_parameter_counts(capsys):
    assert main(["describe", "vaal", "fig2_cifar10"]) == 0
    out = capsys.readouterr().out
    assert '"iterations": 78125' in out and "134,309,962 parameters" in out
    runtime = json.loads(out[:out.index("\n}\n") + 2])["runtime"]
    assert runtime["deterministic"] is True and runtime["channels_last"] == "auto"


def test_run_writes_results_figure_and_table(data_root, tmp_path):
    result = cli("run", "baselines", "ll4al_cifar10", "--profile", "smoke", "--seeds", "1", "--quiet",
                 "--device", "cpu", "--out", str(tmp_path), env={"AL_DATA_ROOT": str(data_root)})
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "baselines" / "ll4al_cifar10"
    assert (folder / "baselines_ll4al_cifar10_smoke.png").exists()
    assert "| entropy |" in (folder / "baselines_ll4al_cifar10_smoke.md").read_text()
    assert cli("compare", str(tmp_path)).returncode == 0


@pytest.mark.parametrize("cuda,flags,profile,jobs", [(False, [], "demo", "2"), (True, [], "demo_gpu", "3"),
                                                     (True, ["--device", "cpu"], "demo", "2")])
def test_demo_runs_the_profile_of_the_device_it_runs_on(cuda, flags, profile, jobs, monkeypatch):
    import torch

    from core.tools.cli import build_parser
    from core.tools.commands.demo import demo_arguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    argv = demo_arguments(build_parser().parse_args(["demo", *flags]))
    assert argv[argv.index("--profile") + 1] == profile and argv[argv.index("--jobs") + 1] == jobs
    assert argv[argv.index("--device") + 1] == ("cuda" if profile == "demo_gpu" else "cpu")
    assert build_parser().parse_args(argv).command == "run"
