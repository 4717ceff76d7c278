"""Issue 28: one identity per run (the method's resolved options in the run hash, the code version checked on
resume and named in the report), and the data a clone without it lacks named by the test command."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.lib.config import HASH_SCHEME, run_hash
from core.lib.experiments import get_experiment
from core.lib.loop import RunSettings
from core.lib.results import RunFolder, read_jsonl
from core.lib.strategy import STRATEGIES, load_plugins
from core.tools import cli, dispatch, executors, verify
from core.tools.checkpoint import JobCheckpoints
from core.tools.jobs import code_version, tree_version
from tests.test_reliability import SMALL, run_cli, snapshot

REPO = Path(__file__).resolve().parent.parent
OTHER = "0123456789ab"          # a commit this checkout is not
SEED0 = Path("vaal") / "fig2_cifar10" / "random" / "seed0"


def run_random(capsys, data_root, out, cycles: int, *flags):
    return run_cli(capsys, "run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", data_root,
                   "--out", out, *SMALL, "--set", f"runtime.stop_after_cycles={cycles}", *flags)


@pytest.fixture(scope="module")
def first_cycle(data_root, tmp_path_factory):
    """Cycle 0 of a smoke job whose row says it was made by the commit OTHER."""
    out = tmp_path_factory.mktemp("first_cycle")
    assert cli.main(["run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", str(data_root),
                     "--out", str(out), *SMALL, "--set", "runtime.stop_after_cycles=1"]) == 0
    results = out / SEED0 / "results.jsonl"
    results.write_text("".join(json.dumps({**row, "code_version": OTHER}) + "\n" for row in read_jsonl(results)))
    return out


def copied(first_cycle, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(first_cycle, out)
    return out


# ---------------------------------------------------------------- the run hash

def test_a_changed_method_default_is_another_run(monkeypatch):
    load_plugins()
    config = get_experiment("vaal", "fig2_cifar10").config("smoke")
    before = run_hash(config, "vaal")
    monkeypatch.setattr(STRATEGIES["vaal"], "default_options", {**STRATEGIES["vaal"].default_options, "beta": 2.0})
    assert run_hash(config, "vaal") != before


def test_a_folder_of_the_older_hash_definition_is_named_as_such(capsys, data_root, first_cycle, tmp_path):
    out = copied(first_cycle, tmp_path)
    stored = json.loads((out / SEED0 / "config.json").read_text())
    assert stored.pop("hash_scheme") == HASH_SCHEME
    (out / SEED0 / "config.json").write_text(json.dumps({**stored, "config_hash": "1b79f17c4184"}))
    before = snapshot(out)
    code, _, err = run_random(capsys, data_root, out, 2, "--allow-code-change")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"run-hash definition 1, and this code defines the run hash differently ({HASH_SCHEME}" in err
    assert "another --out" in err and "different config" not in err
    assert snapshot(out) == before


# ---------------------------------------------------------------- the code version

def test_rows_of_other_code_are_refused_naming_both_versions_and_the_flag(capsys, data_root, first_cycle, tmp_path):
    out = copied(first_cycle, tmp_path)
    before = snapshot(out)
    code, _, err = run_random(capsys, data_root, out, 2)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"made by code version {OTHER}, and this code is {code_version()}" in err and "--allow-code-change" in err
    assert snapshot(out) == before


def test_the_flag_continues_them_and_the_report_marks_the_mix(capsys, data_root, first_cycle, tmp_path):
    out = copied(first_cycle, tmp_path)
    code, _, err = run_random(capsys, data_root, out, 2, "--allow-code-change")
    assert code == 0, err
    assert [row["code_version"] for row in read_jsonl(out / SEED0 / "results.jsonl")] == [OTHER, code_version()]
    versions = ", ".join(sorted([OTHER, code_version()]))
    assert f"⚠ rows made by 2 code versions ({versions})" in (out / "vaal" / "fig2_cifar10" / "report.md").read_text()
    assert f"warning: vaal/fig2_cifar10 (smoke): ⚠ rows made by 2 code versions ({versions})" in err


def test_code_version_is_the_commit_or_a_hash_of_what_changed(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("x = 1\n")
    outside = tree_version(tmp_path)
    assert outside.startswith("files-") and len(outside) == len("files-") + 12
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path, capture_output=True,
                            text=True).stdout.strip()
    assert tree_version(tmp_path) == commit
    (tmp_path / "results.jsonl").write_text("{}\n")           # untracked files are not code
    assert tree_version(tmp_path) == commit
    (tmp_path / "core" / "a.py").write_text("x = 2\n")
    edited = tree_version(tmp_path)
    (tmp_path / "core" / "a.py").write_text("x = 3\n")
    assert edited.startswith(f"{commit}-dirty-") and tree_version(tmp_path) not in (edited, commit)
    (tmp_path / "core" / "a.py").write_text("x = 2\n")
    assert tree_version(tmp_path) == edited


def test_a_checkpoint_of_other_code_is_not_resumed(tmp_path):
    labeled = np.arange(4)
    ours, theirs = (JobCheckpoints(RunFolder(tmp_path), "abc", version, 1, lambda: None, True,
                                   torch.device("cpu"))(0, labeled)
                    for version in (code_version(), OTHER))
    theirs.save({"step": 7})
    assert theirs.load()["step"] == 7 and ours.load() is None


def test_the_flag_reaches_every_executor_and_verify(monkeypatch):
    config = get_experiment("vaal", "fig2_cifar10").config("smoke")
    settings = RunSettings(Path("data"), Path("out"), torch.device("cpu"), "smoke", allow_code_change=True)
    (spec,) = dispatch.job_specs(config, [("random", 0)], settings, quiet=True)
    assert spec.allow_code_change
    seen = []
    monkeypatch.setattr("core.tools.jobs.run_job", lambda config, method, seed, settings: seen.append(settings) or [])
    executors.SlurmTask()(spec)                                # Slurm and submitit run a spec as --jobs does
    assert seen[0].allow_code_change
    argvs = []
    args = cli.build_parser().parse_args(["verify", "vaal", "fig2_cifar10", "--allow-code-change"])
    verify.run_first_cycles(args, argvs.append)
    assert "--allow-code-change" in argvs[0]


# ---------------------------------------------------------------- a clone without data

def test_the_test_command_says_how_many_tests_lacked_data_and_where_it_goes(tmp_path):
    environment = {**os.environ, "AL_DATA_ROOT": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                           "older_hash_definition or other_code_are_refused"], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 tests skipped for lack of data: set AL_DATA_ROOT to a folder holding cifar10/train" in done.stdout
    assert str(REPO.parent / "shared" / "datasets") in done.stdout
