"""Scale-out: mid-cycle checkpoints resume exactly, parallel and Slurm executors give the rows of a sequential
run (issue 14)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.results import read_jsonl

REPO = Path(__file__).resolve().parent.parent
VOLATILE = {"train_seconds", "select_seconds", "selector_train_seconds", "code_version", "train_resumed_at_step"}


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def run_command(out, *extra):
    return [sys.executable, "-m", "core", "run", "baselines", "ll4al_cifar10", "--profile", "smoke",
            "--seeds", "1", "--out", str(out), "--quiet", "--device", "cpu", *extra]


def job_rows(out, method, seed=0):
    return read_jsonl(Path(out) / "baselines" / "ll4al_cifar10" / method / f"seed{seed}" / "results.jsonl")


def test_a_job_killed_mid_cycle_resumes_from_its_checkpoint_to_the_uninterrupted_rows(data_root, tmp_path):
    """LL4AL's loss-prediction hook has modules of its own: they, the optimizer and the RNG streams must all
    come back. The job is killed once the first checkpoint of cycle 0 exists and before cycle 0 ends."""
    env = {**os.environ, "AL_DATA_ROOT": str(data_root)}
    settings = ["--methods", "learning_loss", "--set", "train.epochs=12", "--set", "protocol.cycles=2",
                "--set", "runtime.checkpoint_every=4"]
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    folder = interrupted / "baselines" / "ll4al_cifar10" / "learning_loss" / "seed0"
    process = subprocess.Popen(run_command(interrupted, *settings), cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "train_cycle0.ckpt").exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (folder / "train_cycle0.ckpt").exists() and not job_rows(interrupted, "learning_loss"), \
        "the job must be killed during cycle 0, after its first checkpoint"
    subprocess.run(run_command(interrupted, *settings), cwd=REPO, env=env, check=True)
    subprocess.run(run_command(clean, *settings), cwd=REPO, env=env, check=True)
    resumed, uninterrupted = job_rows(interrupted, "learning_loss"), job_rows(clean, "learning_loss")
    assert resumed[0]["train_resumed_at_step"] > 0 and uninterrupted[0]["train_resumed_at_step"] == 0
    assert stable(resumed) == stable(uninterrupted) and len(resumed) == 2
    assert not list(folder.glob("*.ckpt")), "finished cycles leave no checkpoint behind"


PARALLEL = ["--methods", "random,entropy", "--set", "train.epochs=15", "--set", "protocol.cycles=2",
            "--set", "runtime.checkpoint_every=3"]


def one_thread(data_root):
    """PyTorch's CPU results depend on the threads per process, and `--jobs 2` gives each worker half the
    cores: every run here uses one thread, as a worker of `--jobs 2` does on this 2-core machine."""
    return {**os.environ, "AL_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sequential(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    subprocess.run(run_command(out, *PARALLEL), cwd=REPO, env=one_thread(data_root), check=True)
    return {method: job_rows(out, method) for method in ("random", "entropy")}


def test_two_jobs_at_once_give_the_rows_of_one_at_a_time(sequential, data_root, tmp_path):
    """Also in a log: the workers' cycles reach the parent, which prints one plain line per finished cycle."""
    command = [arg for arg in run_command(tmp_path, *PARALLEL, "--jobs", "2") if arg != "--quiet"]
    log = subprocess.run(command, cwd=REPO, env=one_thread(data_root), check=True, capture_output=True,
                         text=True).stdout
    for method, rows in sequential.items():
        assert stable(job_rows(tmp_path, method)) == stable(rows) and len(rows) == 2
        assert all(log.count(f"{method} seed 0 cycle {cycle}: ") == 1 for cycle in (0, 1))
    assert (tmp_path / "baselines" / "ll4al_cifar10" / "report.md").exists()


@pytest.mark.slow
def test_slurm_array_on_submitits_local_executor_survives_a_requeue(sequential, data_root, tmp_path):
    """Both jobs are submitted as one array; the entropy task gets submitit's preemption signal (SIGUSR2) after
    its first checkpoint, is requeued, and resumes from that checkpoint; the report is written at the end."""
    pytest.importorskip("submitit")
    folder = tmp_path / "baselines" / "ll4al_cifar10" / "entropy" / "seed0"
    process = subprocess.Popen(run_command(tmp_path, *PARALLEL, "--executor", "submitit-local", "--time", "60"),
                               cwd=REPO, env=one_thread(data_root))
    deadline = time.time() + 180
    while time.time() < deadline and not (folder / "train_cycle0.ckpt").exists():
        time.sleep(0.01)
    owner = json.loads((folder / ".lock").read_text())
    os.kill(owner["pid"], signal.SIGUSR2)
    assert process.wait(timeout=300) == 0
    resumed = job_rows(tmp_path, "entropy")
    assert resumed[0]["train_resumed_at_step"] > 0, "the requeued task continues from its checkpoint"
    for method, rows in sequential.items():
        assert stable(job_rows(tmp_path, method)) == stable(rows)
    logs = "".join(p.read_text() for p in (tmp_path / ".submitit").rglob("*_log.out"))
    assert "Requeued" in logs
    assert (tmp_path / "baselines" / "ll4al_cifar10" / "report.md").exists()


BLOCK_SUBMITIT = """
import sys
class NoSubmitit:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "submitit":
            raise ImportError("submitit is not installed")
sys.meta_path.insert(0, NoSubmitit())
from core.cli import main
code = main(sys.argv[1:])
assert "submitit" not in sys.modules
sys.exit(code)
"""


def test_the_default_path_needs_no_submitit(data_root, tmp_path):
    env = {**os.environ, "AL_DATA_ROOT": str(data_root)}
    command = [sys.executable, "-c", BLOCK_SUBMITIT] + run_command(tmp_path, "--methods", "random")[3:]
    subprocess.run(command, cwd=REPO, env=env, check=True)
    assert len(job_rows(tmp_path, "random")) == 3
    slurm = subprocess.run(command + ["--executor", "slurm"], cwd=REPO, env=env, capture_output=True, text=True)
    assert slurm.returncode == 2 and slurm.stderr.strip().splitlines() == [
        "error: --executor slurm needs submitit: .venv/bin/pip install -e '.[slurm]'"]


@pytest.mark.parametrize("flags,message", [
    (["--jobs", "2", "--executor", "slurm"], "--jobs applies to --executor local"),
    (["--partition", "gpu"], "--partition: only for --executor slurm"),
    (["--jobs", "0"], "must be 1 or more"),
])
def test_executor_flags_of_another_executor_are_refused(flags, message, data_root, tmp_path, capsys):
    from core.cli import main

    try:
        code = main(run_command(tmp_path, "--methods", "random", *flags)[3:])
    except SystemExit as exit_:            # argparse's own refusals
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err and not tmp_path.joinpath("baselines").exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a Slurm cluster is reachable here")
def test_slurm_where_there_is_none_is_one_line(data_root, tmp_path, capsys):
    pytest.importorskip("submitit")
    from core.cli import main

    assert main(run_command(tmp_path, "--methods", "random", "--executor", "slurm")[3:]) == 2
    assert "cannot reach Slurm here" in capsys.readouterr().err and not tmp_path.joinpath("baselines").exists()


def test_slurm_options_come_from_defaults_then_file_then_flags(tmp_path):
    from core.errors import UserError
    from core.executors import slurm_options

    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"partition": "a100", "time": 600, "sbatch": {"account": "lab"}}))
    options = slurm_options(config, {"time": 120, "mem_gb": None, "sbatch": {}})
    assert (options["partition"], options["time"], options["mem_gb"], options["sbatch"]) == \
        ("a100", 120, 32, {"account": "lab"})
    config.write_text(json.dumps({"partitoin": "a100"}))
    with pytest.raises(UserError, match="unknown keys partitoin"):
        slurm_options(config, {})


def test_workers_are_pinned_one_gpu_each_round_robin(monkeypatch):
    from core.executors import worker_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert worker_devices(3, "cuda") == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"},
                                         {"CUDA_VISIBLE_DEVICES": "2"}]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert worker_devices(4, "cpu") == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 4
