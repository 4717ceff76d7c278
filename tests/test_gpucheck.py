"""./reproduce.sh gpucheck (core/tools/gpucheck.py): the one-line refusal without a GPU, and its three steps on the
CPU at tiny size on a data root holding part of CIFAR-10's training images, writing gpucheck.md with every figure.
The CUDA part itself needs a GPU machine."""
import sys

import pytest
import torch

from core.tools import gpucheck
from core.tools.cli import main
from tests.conftest import write_png_tree

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_without_a_gpu_it_refuses_in_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpucheck", "--out", str(tmp_path / "check")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: gpucheck checks a CUDA GPU and PyTorch sees none here")
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "check").exists()


def test_cases_are_told_apart_by_exit_status_and_the_budget():
    cases = [gpucheck.Case(name, [sys.executable, "-c", code]) for name, code in (
        ("ok", "print('fine')"), ("refused", "import sys; print('error: no data', file=sys.stderr); sys.exit(2)"),
        ("crash", "raise RuntimeError('binary_cross_entropy is unsafe to autocast')"))]
    gpucheck.run_cases(cases, 2, budget=60, case_seconds=60)
    assert [c.result for c in cases] == ["pass", "refused", "CRASH"]
    assert cases[1].last_line == "error: no data" and "unsafe to autocast" in cases[2].last_line
    late = gpucheck.Case("late", [sys.executable, "-c", "pass"])
    gpucheck.run_cases([late], 1, budget=0, case_seconds=60)
    assert late.result == "not run (time budget)"
    slow = gpucheck.Case("slow", [sys.executable, "-c", "import time; time.sleep(30)"])
    gpucheck.run_cases([slow], 1, budget=60, case_seconds=1)
    assert slow.result == "timed out"
    gpucheck.run_cases([slow], 1, budget=1, case_seconds=60)
    assert slow.result == "not finished (time budget)" and slow.seconds < 10


def test_a_refused_verify_is_reported_as_a_refusal_not_a_crash():
    """verify on fewer than 10,000 CIFAR-10 training images stops with exit 2 and its one-line reason."""
    verify = gpucheck.Case("verify", [sys.executable, "-c", "import sys; print('error: the protocol needs 10000 "
                                      "training images', file=sys.stderr); sys.exit(2)"])
    gpucheck.run_cases([verify], 1, budget=60, case_seconds=60)
    assert not gpucheck.crashed([verify])
    assert gpucheck.verify_section(verify) == "refused: error: the protocol needs 10000 training images"
    crash = gpucheck.Case("verify", [sys.executable, "-c", "raise SystemExit(3)"])
    assert gpucheck.crashed(gpucheck.run_cases([crash], 1, budget=60, case_seconds=60))
    outside = gpucheck.Case("verify", [sys.executable, "-c", "print('Reported vs reproduced'); raise SystemExit(1)"])
    gpucheck.run_cases([outside], 1, budget=60, case_seconds=60)
    assert not gpucheck.machine_failed([], outside) and gpucheck.machine_failed([], crash)
    assert gpucheck.verify_section(outside).startswith("exit 1: a point lies outside its tolerance")


def test_the_budget_counts_from_the_process_start_and_keeps_a_margin():
    """A process that waits 1.5 s before its first import has used at least that much of its budget; the full
    check's steps and margin leave 40 s for the start and the data; a late step gets what is left."""
    import subprocess
    import time

    started = time.monotonic()
    shown = subprocess.run([sys.executable, "-c", "import time; time.sleep(1.5); from core.tools.processes import "
                            "seconds_since_process_start as s; print(s())"], capture_output=True, text=True,
                           check=True).stdout
    assert 1.5 <= float(shown) <= time.monotonic() - started + 0.02     # /proc start times come in 10 ms ticks
    assert gpucheck.FULL.total_seconds == 480 and gpucheck.FULL.start_seconds >= 30
    assert gpucheck.FULL.margin_seconds >= 30
    age = gpucheck.seconds_since_process_start()
    deadline = gpucheck.Deadline(gpucheck.Sizes(total_seconds=age + 100, margin_seconds=10))
    assert 58 < deadline.limit(200, later_seconds=30) <= 60 and deadline.limit(20, later_seconds=30) == 20
    assert gpucheck.Deadline(gpucheck.Sizes(total_seconds=age, margin_seconds=10)).limit(200, 0) == 0


@pytest.mark.slow
def test_the_steps_run_on_the_cpu_at_tiny_size_on_part_of_cifar10(monkeypatch, tmp_path):
    """1,100 of CIFAR-10's 50,000 training images (random pixels, the official class folders): enough for the
    LL4AL protocol's 1,000 initial labels, so verify's first point is checked (and fails: one epoch of a
    1/16-width network on noise)."""
    root = tmp_path / "data"
    write_png_tree(root / "cifar10" / "train", CLASSES, 110, size=(32, 32))
    write_png_tree(root / "cifar10" / "test", CLASSES, 10, size=(32, 32), seed=1)
    monkeypatch.setenv("AL_CACHE_DIR", str(tmp_path / "cache"))
    report, crashed = gpucheck.run_checks(torch.device("cpu"), root, tmp_path / "out", gpucheck.TINY)
    assert not crashed, report
    assert (tmp_path / "out" / gpucheck.REPORT_FILE).read_text() == report
    assert [p.name for p in (tmp_path / "out").iterdir()] == [gpucheck.REPORT_FILE]   # its runs are removed
    assert "1,100 CIFAR-10 training images (of 50,000)" in report
    assert "| baselines/ll4al_cifar10 | pass |" in report
    assert "| baselines/ll4al_cifar10 --methods entropy | pass |" in report
    (throughput,) = [line for line in report.splitlines() if line.startswith("| resnet18_cifar |")]
    images, ours, bare, ratio = [cell.strip() for cell in throughput.strip("|").split("|")][1:]
    assert images == "256" and float(ours.replace(",", "")) > 0 and float(bare.replace(",", "")) > 0
    assert "exit 1: a point lies outside its tolerance" in report
    assert "| baselines/ll4al_cifar10 | random | 1,000 | 48.00 |" in report
    assert "| baselines/ll4al_cifar10 | learning_loss | 1,000 | 51.00 |" in report
