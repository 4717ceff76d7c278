"""Issue 10: a results folder is never corrupted, and every bad input is refused, in one line, before any work."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.lib.errors import UserError
from core.lib.results import read_jsonl
from core.tools import cli
from core.tools.arguments import CALLER_CWD_ENV
from core.tools.locks import FolderLock, LockBusy
from tests.conftest import write_png_tree

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--profile", "smoke", "--seeds", "1", "--device", "cpu", "--quiet",
         "--set", "train.iterations=2", "--set", "train.eval_batch_size=200"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """core.tools.cli.main in this process (no interpreter start-up), with what it printed."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- locks

def test_a_held_lock_refuses_a_second_holder_naming_pid_and_host(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        other = FolderLock(tmp_path / ".lock")
        assert not other.try_acquire()
        with pytest.raises(LockBusy, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
            other.acquire(wait=False)
    assert not (tmp_path / ".lock").exists()
    with FolderLock(tmp_path / ".lock") as again:
        assert again.held()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "token": "old"}))
    lock = FolderLock(tmp_path / ".lock")
    assert lock.try_acquire() and lock.held()
    lock.release()


def test_a_lock_from_another_host_is_stale_only_when_its_heartbeat_stops(tmp_path):
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "remote"}))
    beating, stop = FolderLock(path, stale_after=0.3), threading.Event()

    def heartbeat():
        while not stop.wait(0.05):
            os.utime(path, ns=(time.time_ns(), time.time_ns()))

    beat = threading.Thread(target=heartbeat)
    beat.start()
    with pytest.raises(LockBusy, match="pid 1 on host elsewhere"):
        beating.acquire(timeout=1.0)
    stop.set()
    beat.join()
    silent = FolderLock(path, stale_after=0.3)
    silent.acquire(timeout=5)
    assert silent.held() and json.loads(path.read_text())["token"] == silent.token
    silent.release()


def test_a_process_whose_lock_was_taken_over_never_writes(tmp_path):
    slow = FolderLock(tmp_path / ".lock")
    slow.acquire()
    (tmp_path / ".lock").unlink()
    FolderLock(tmp_path / ".lock").try_acquire()
    with pytest.raises(UserError, match="lost the lock"):
        slow.verify()
    slow.release()
    assert (tmp_path / ".lock").exists(), "releasing a lost lock must not remove the new holder's"


def test_locks_exclude_each_other_under_contention(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")

    def work():
        for _ in range(15):
            lock = FolderLock(tmp_path / ".lock")
            while not lock.try_acquire():
                time.sleep(0.001)
            value = int(counter.read_text())
            time.sleep(0.001)
            counter.write_text(str(value + 1))
            lock.release()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.read_text() == "60"


# ---------------------------------------------------------------- the command is checked before any work

@pytest.mark.parametrize("extra,message", [
    (["--set", "train.lr=inf"], "train.lr=inf must be a finite number"),
    (["--set", "train.lr=nan"], "train.lr=nan must be a finite number"),
    (["--set", "data.train_subset=-5"], "data.train_subset=-5 must not be negative"),
    (["--set", "protocol.oracle_noise=1.5"], "protocol.oracle_noise=1.5 must be in [0, 1)"),
    (["--set", "protocol.budget=400"], "lower protocol.budget"),
    (["--set", "protocol.budget=0.0001"], "0 new labels per cycle of 600 training images"),
    (["--set", "model.arch=nope"], "unknown model.arch 'nope'"),
    (["--methods", "random,entropy", "--set", "method_options.entropy.bogus=1"], "entropy has no option bogus"),
    (["--methods", ","], "names no method"),
    (["--set", "runtime.channels_last=on"], "runtime.channels_last=on is refused on the CPU"),
    (["--set", "runtime.deterministic=maybe"], "runtime.deterministic must be bool, got 'maybe'"),
])
def test_a_bad_command_is_refused_before_anything_is_written(capsys, data_root, tmp_path, extra, message):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", data_root, "--out", out, *SMALL,
                           *extra)
    assert_one_line_error(code, err, message)
    assert not out.exists()


def test_a_wrong_method_option_type_is_refused_before_the_first_job(capsys, data_root, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "baselines", "ll4al_cifar10", "--methods", "random,mc_dropout",
                           "--data-root", data_root, "--out", out, *SMALL,
                           "--set", "method_options.mc_dropout.passes=many")
    assert_one_line_error(code, err, "method_options.mc_dropout.passes must be int")
    assert not out.exists()


@pytest.mark.parametrize("seeds,message", [("0", "must be 1 or more"), ("-1", "must be 1 or more"),
                                           ("abc", "'abc' is not a whole number")])
def test_bad_seed_counts_are_one_line(capsys, seeds, message):
    code, out, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--seeds", seeds)
    assert_one_line_error(code, err, "--seeds", message)
    assert "usage:" not in err + out


def test_an_out_folder_that_is_a_file_or_below_one_is_refused(capsys, data_root, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, message in ((a_file, "is a file, not a folder"), (a_file / "below", "which is a file")):
        code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", data_root, "--out", out, *SMALL)
        assert_one_line_error(code, err, message)
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused(capsys, data_root, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", data_root, "--out",
                           locked / "out", *SMALL)
    assert_one_line_error(code, err, "cannot be written")


def tiny_cifar(root: Path, per_class: int = 2) -> Path:
    classes = [f"c{k}" for k in range(10)]
    write_png_tree(root / "cifar10" / "train", classes, per_class)
    write_png_tree(root / "cifar10" / "test", classes, 1)
    return root


def test_a_truncated_image_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AL_CACHE_DIR", str(tmp_path / "cache"))
    root = tiny_cifar(tmp_path / "data")
    broken = root / "cifar10" / "train" / "c3" / "0001.png"
    broken.write_bytes(broken.read_bytes()[:60])
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", root, "--out", tmp_path / "o", *SMALL)
    assert_one_line_error(code, err, f"image {broken} cannot be read")
    assert not (tmp_path / "o").exists()


def test_an_image_of_another_size_is_named(capsys, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("AL_CACHE_DIR", str(tmp_path / "cache"))
    root = tiny_cifar(tmp_path / "data")
    odd = root / "cifar10" / "train" / "c7" / "0000.png"
    Image.new("RGB", (9, 8)).save(odd)
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", root, "--out", tmp_path / "o", *SMALL)
    assert_one_line_error(code, err, f"image {odd} is 9x8", "8x8")


def test_a_missing_test_folder_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AL_CACHE_DIR", str(tmp_path / "cache"))
    root = tiny_cifar(tmp_path / "data")
    shutil.rmtree(root / "cifar10" / "test")
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--data-root", root, "--out", tmp_path / "o", *SMALL)
    assert_one_line_error(code, err, f"{root / 'cifar10' / 'test'} is missing")


# ---------------------------------------------------------------- resuming only from consistent folders

@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """One finished smoke job (three cycles) to copy and damage."""
    out = tmp_path_factory.mktemp("finished")
    assert cli.main(["run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", str(data_root),
                     "--out", str(out), *SMALL]) == 0
    return out


def damaged(finished_run, tmp_path, damage) -> tuple[Path, dict]:
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    damage(out / "vaal" / "fig2_cifar10" / "random" / "seed0")
    return out, snapshot(out)


def edit_rows(edit):
    def damage(folder):
        results = folder / "results.jsonl"
        rows = edit(read_jsonl(results))
        results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return damage


def drop_value(rows):
    del rows[1]["value"]
    return rows


def corrupt_pool(folder):
    edit_rows(lambda rows: rows[:2])(folder)
    (folder / "pool_cycle2.npz").write_bytes(b"not a zip file")


@pytest.mark.parametrize("damage,message", [
    (edit_rows(drop_value), "line 2 is not a complete results row (missing or wrong: value)"),
    (edit_rows(lambda rows: rows[:2] + rows[1:2]), "line 3 is cycle 1 where cycle 2 belongs"),
    (edit_rows(lambda rows: rows[1:]), "line 1 is cycle 1 where cycle 0 belongs"),
    (edit_rows(lambda rows: rows[:1] + [{**rows[1], "config_hash": "0123456789ab"}]), "made by another config"),
    (corrupt_pool, "pool_cycle2.npz cannot be read"),
    (lambda folder: (folder / "config.json").write_text("{ broken"), "config.json cannot be read"),
    (lambda folder: (folder / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage\n"), "results.jsonl cannot be read"),
    (lambda folder: (folder / "results.jsonl").write_bytes(b""), "results.jsonl holds no row"),
])
def test_an_inconsistent_folder_is_refused_without_changing_a_byte(capsys, data_root, finished_run, tmp_path, damage,
                                                                   message):
    out, before = damaged(finished_run, tmp_path, damage)
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", data_root,
                           "--out", out, *SMALL)
    assert_one_line_error(code, err, message)
    assert snapshot(out) == before


def test_a_deleted_config_json_does_not_let_another_config_in(capsys, data_root, finished_run, tmp_path):
    out, before = damaged(finished_run, tmp_path, lambda folder: (folder / "config.json").unlink())
    code, _, err = run_cli(capsys, "run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", data_root,
                           "--out", out, *SMALL, "--set", "train.lr=0.05")
    assert_one_line_error(code, err, "made by another config")
    assert snapshot(out) == before


def test_report_on_rows_lacking_fields_is_one_line_naming_the_file(capsys, finished_run, tmp_path):
    out, _ = damaged(finished_run, tmp_path, edit_rows(drop_value))
    code, _, err = run_cli(capsys, "report", out)
    assert_one_line_error(code, err, "results.jsonl row 2 lacks value")


def test_relative_report_paths_resolve_against_the_callers_directory(capsys, finished_run, tmp_path, monkeypatch):
    shutil.copytree(finished_run, tmp_path / "mine")
    monkeypatch.setenv(CALLER_CWD_ENV, str(tmp_path))
    code, out, err = run_cli(capsys, "report", "mine", "--out", "figures")
    assert code == 0, err
    assert (tmp_path / "figures" / "report.md").exists() and str(tmp_path / "figures") in out


# ---------------------------------------------------------------- two processes on one folder

def test_two_processes_on_one_folder_leave_one_complete_copy_and_a_correct_report(data_root, tmp_path):
    command = [sys.executable, "-m", "core", "run", "vaal", "fig2_cifar10", "--methods", "random,entropy",
               "--out", str(tmp_path), *SMALL]
    env = {**os.environ, "AL_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    quiet = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chatty = subprocess.Popen([c for c in command if c != "--quiet"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    (quiet_out, quiet_err), (chatty_out, chatty_err) = quiet.communicate(), chatty.communicate()
    assert quiet.returncode == 0 and chatty.returncode == 0, quiet_err + chatty_err
    experiment = tmp_path / "vaal" / "fig2_cifar10"
    for method in ("random", "entropy"):
        rows = read_jsonl(experiment / method / "seed0" / "results.jsonl")
        assert [row["cycle"] for row in rows] == [0, 1, 2]
    assert not list(tmp_path.rglob("*lock*")) and not list(tmp_path.rglob("*.partial*"))
    means = (experiment / "vaal_fig2_cifar10_smoke.md").read_text().split("\n\n")[1]   # the mean ± std table
    assert "| random |" in means and "| entropy |" in means and means.count(" | 1 |") == 2   # one seed each
    # --quiet: only the summary; without a terminal: plain per-cycle lines, no progress bars
    assert quiet_out.splitlines() == [f"results: {experiment}; report: {experiment / 'report.md'}"]
    assert "\r" not in chatty_out + chatty_err and "it/s" not in chatty_err
    assert all(line.startswith(("random seed 0 cycle", "entropy seed 0 cycle", "results: "))
               for line in chatty_out.splitlines())


def test_a_diverging_run_stops_without_a_row_and_the_corrected_command_runs(capsys, data_root, tmp_path):
    command = ["run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", data_root, "--out", tmp_path,
               *SMALL, "--set", "protocol.cycles=1"]
    code, _, err = run_cli(capsys, *command, "--set", "train.lr=1e30")
    assert_one_line_error(code, err, "training diverged (random seed 0 cycle 0: loss nan); lower train.lr")
    assert not list(tmp_path.rglob("results.jsonl"))
    code, _, err = run_cli(capsys, *command)
    assert code == 0, err
    assert len(read_jsonl(tmp_path / "vaal" / "fig2_cifar10" / "random" / "seed0" / "results.jsonl")) == 1


def test_an_op_without_a_deterministic_kernel_stops_the_run_in_one_line_unless_allowed(capsys, data_root, tmp_path,
                                                                                     monkeypatch):
    """put_ has no deterministic kernel on any device, so the CPU shows what CUDA does for the ops of
    tests/test_determinism.py: strict by default, allowed by runtime.deterministic=false, which the rows record."""
    import torch

    from core.lib import loop

    real_evaluate = loop.evaluate

    def evaluate_after_put(*args, **kwargs):
        torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate_after_put)
    command = ["run", "vaal", "fig2_cifar10", "--methods", "random", "--data-root", data_root, "--out", tmp_path,
               *SMALL, "--set", "protocol.cycles=1"]
    code, _, err = run_cli(capsys, *command)
    assert_one_line_error(code, err, "random runs put_, which has no deterministic kernel on cpu",
                          "--set runtime.deterministic=false")
    assert not list(tmp_path.rglob("results.jsonl"))
    code, _, err = run_cli(capsys, *command, "--set", "runtime.deterministic=false")
    assert code == 0, err
    row, = read_jsonl(tmp_path / "vaal" / "fig2_cifar10" / "random" / "seed0" / "results.jsonl")
    assert {k: row[k] for k in ("deterministic", "tf32_matmul", "tf32_cudnn", "cuda_version", "cudnn_version")} == {
        "deterministic": False, "tf32_matmul": None, "tf32_cudnn": None, "cuda_version": None, "cudnn_version": None}


def test_a_truncated_jpeg_read_by_dataloader_workers_is_named_in_one_line(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from core.lib.datasets import Split
    from core.lib.sources import Augmentation, make_source

    files = []
    for index in range(4):
        files.append(str(tmp_path / f"{index}.jpg"))
        Image.fromarray(np.full((12, 12, 3), 40 * index, dtype=np.uint8)).save(files[-1])
    Path(files[2]).write_bytes(Path(files[2]).read_bytes()[:100])
    source = make_source(Split(targets=np.zeros(4, dtype=np.int64), files=files), (0.5,) * 3, (0.5,) * 3,
                         Augmentation(image_size=8, resize=8), torch.device("cpu"), workers=1)
    with pytest.raises(UserError) as caught:
        list(source.batches(np.arange(4), batch_size=2))
    assert str(caught.value).startswith(f"image {files[2]} cannot be read") and "\n" not in str(caught.value)
