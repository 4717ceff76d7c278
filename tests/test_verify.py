"""./reproduce.sh verify (core/tools/verify.py): stored results whose numbers are known pass or fail against the
registry with exit codes 0/1; bad arguments are one line and exit 2; run mode stops after the first cycles and
a later call resumes the same folders."""
import json

import pytest

from core.lib.results import append_jsonl
from core.tools.cli import main
from core.tools.reported import LL4AL_PAPER, LL4AL_REPRODUCTION, REPORTED, Comparison
from core.tools.verify import VERIFY_FILE
from tests.conftest import assert_cli_refuses_in_one_line


def loop_row(method, seed, cycle, n_labeled, value, profile="paper", train_size=40000):
    """A row with the fields the loop writes, on a CIFAR-10 copy of 40,000 training images (part of it)."""
    return {"paper": "baselines", "experiment": "ll4al_cifar10", "dataset": "cifar10", "method": method,
            "seed": seed, "cycle": cycle, "profile": profile, "n_labeled": n_labeled,
            "fraction_labeled": round(n_labeled / train_size, 6), "train_size": train_size, "metric": "accuracy",
            "value": value, "selected": [], "config_hash": "abc"}


def store(folder, curves: dict) -> None:
    """curves: {(method, seed): [value at 1,000 labels, at 2,000, ...]}, written as the loop writes rows."""
    for (method, seed), values in curves.items():
        for cycle, value in enumerate(values):
            append_jsonl(folder / "baselines" / "ll4al_cifar10" / method / f"seed{seed}" / "results.jsonl",
                         loop_row(method, seed, cycle, 1000 * (cycle + 1), value))


def table_rows(text: str) -> dict:
    """(method, labeled, source) -> the cells of the verify table."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return {(row[1], row[2], row[9]): row for row in cells[1:]}


def test_stored_results_within_tolerance_pass_with_exit_0(tmp_path, capsys):
    # at 1,000 labels: the LL4AL paper's learning loss 51.1 (±3), Mephisto405's reproduction's learning loss 51
    # and random 48 (information)
    store(tmp_path, {("random", 0): [47.0, 60.0], ("random", 1): [49.0, 61.0],
                     ("learning_loss", 0): [50.0, 64.0], ("learning_loss", 1): [52.0, 66.0]})
    assert main(["verify", "--results", str(tmp_path), "--cycles", "1"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[("learning_loss", "1,000", LL4AL_PAPER)][3:10] == \
        ["51.10", "51.00 ± 1.00 (n=2)", "-0.10", "±3", "pass", "yes", LL4AL_PAPER]
    assert rows[("learning_loss", "1,000", LL4AL_REPRODUCTION)][3:9] == \
        ["51.00", "51.00 ± 1.00 (n=2)", "+0.00", "-", "info", "yes"]
    assert rows[("random", "1,000", LL4AL_REPRODUCTION)][3:9] == \
        ["48.00", "48.00 ± 1.00 (n=2)", "+0.00", "-", "info", "yes"]
    assert len(rows) == 3 and not any(labeled == "2,000" for _, labeled, _ in rows)   # cycle 1 is not checked
    assert "| result | read off a plot | source |" in out
    assert "1 of 1 checked point(s) within tolerance." in out
    assert (tmp_path / VERIFY_FILE).read_text() == out


def test_a_point_outside_its_tolerance_fails_with_exit_1(tmp_path, capsys):
    # the H200 numbers: learning_loss 47.65 at 1,000 labels, 59.02 at 2,000 (the paper's 51.1 and 65.2, ±3)
    store(tmp_path, {("random", 0): [46.04, 60.85], ("learning_loss", 0): [47.65, 59.02]})
    assert main(["verify", "--results", str(tmp_path), "--cycles", "2", "--methods", "learning_loss"]) == 1
    rows = table_rows(capsys.readouterr().out)
    assert rows[("learning_loss", "1,000", LL4AL_PAPER)][5:8] == ["-3.45", "±3", "FAIL"]
    assert rows[("learning_loss", "2,000", LL4AL_PAPER)][5:8] == ["-6.18", "±3", "FAIL"]
    assert rows[("learning_loss", "2,000", LL4AL_REPRODUCTION)][5:8] == ["-5.98", "-", "info"]
    assert not any(method == "random" for method, _, _ in rows)


def test_information_points_never_fail(tmp_path, capsys):
    """Random at 1,000 labels has only the reproduction's 48, without a tolerance: 20 points below it pass."""
    store(tmp_path, {("random", 0): [28.0]})
    assert main(["verify", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert table_rows(out)[("random", "1,000", LL4AL_REPRODUCTION)][5:8] == ["-20.00", "-", "info"]
    assert "no point with a tolerance at these budgets; 1 information point(s) shown." in out
    info = [r for r in REPORTED if r.tolerance is None]
    assert info and all(Comparison(r, r.value - 50, 0.0, 1).within is None for r in info)


def test_seeds_limit_and_mini_rows_are_not_checked(tmp_path, capsys):
    store(tmp_path, {("random", 0): [48.0], ("random", 1): [20.0]})
    assert main(["verify", "--results", str(tmp_path), "--seeds", "1"]) == 0
    assert "48.00 ± 0.00 (n=1)" in capsys.readouterr().out
    mini = tmp_path / "mini"
    append_jsonl(mini / "results.jsonl", loop_row("random", 0, 0, 1000, 10.0, profile="mini"))
    assert main(["verify", "--results", str(mini)]) == 0
    assert "nothing to verify" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["verify", "baselines"], "verify needs <paper> <experiment>"),
    (["verify", "baselines", "ll4al_cifar10", "--cycles", "0"], "argument --cycles: must be 1 or more"),
    (["verify", "baselines", "ll4al_cifar10", "--cycles", "11"], "--cycles 11: baselines/ll4al_cifar10 has 10"),
    (["verify", "baselines", "nope"], "unknown experiment"),
    (["verify", "--results", "/nonexistent/folder"], "results folder /nonexistent/folder does not exist"),
    (["verify", "--results", "/tmp", "--set", "train.epochs=1"], "--set: only when verify runs the jobs"),
    (["verify", "--results", "/tmp", "baselines"], "verify --results DIR takes both <paper> and <experiment>"),
])
def test_bad_arguments_are_one_line_with_exit_2(capsys, args, message):
    assert_cli_refuses_in_one_line(capsys, args, message)


def test_run_mode_stops_after_the_first_cycles_and_resumes_the_same_folder(tmp_path, data_root, capsys):
    """Paper profile shrunk by --set to seconds on the CPU: 1 epoch of a narrow ResNet-18 on 1,000 labels
    cannot reach the paper's 51.1, so the first call exits 1; --cycles 2 then adds cycle 1 to the same job."""
    tiny = ["--seeds", "1", "--methods", "learning_loss", "--device", "cpu", "--quiet", "--out", str(tmp_path),
            "--set", "train.epochs=1", "--set", "model.width=0.0625", "--set", "data.test_subset=200",
            "--set", "protocol.subset=2000"]
    assert main(["verify", "baselines", "ll4al_cifar10", *tiny]) == 1
    out = capsys.readouterr().out
    assert "with --set changes" in out and "| FAIL |" in out
    results = tmp_path / "baselines" / "ll4al_cifar10" / "learning_loss" / "seed0" / "results.jsonl"
    first = results.read_text().splitlines()
    assert [json.loads(line)["cycle"] for line in first] == [0]
    assert (results.parent / "pool_cycle1.npz").exists()              # the last cycle run still selected
    main(["verify", "baselines", "ll4al_cifar10", "--cycles", "2", *tiny])
    second = results.read_text().splitlines()
    assert second[0] == first[0] and json.loads(second[1])["n_labeled"] == 2000
