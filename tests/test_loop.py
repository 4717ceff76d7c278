import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.lib.errors import UserError
from core.lib.experiments import get_experiment
from core.lib.loop import RunSettings, run_folder
from core.lib.results import (REPORT_FIELDS, RESUME_FIELDS, ROW_FIELDS, ROW_KINDS, RunFolder, cycle_row, read_jsonl,
                              wrong_fields)
from core.tools.jobs import run_job

VOLATILE = {"train_seconds", "select_seconds", "code_version"}


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def smoke(**overrides):
    return get_experiment("vaal", "fig2_cifar10").config("smoke", overrides)


def settings(root, out):
    return RunSettings(root, out, torch.device("cpu"), "smoke", progress=False)


@pytest.fixture(scope="module")
def two_methods(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("loop")
    config = smoke()
    return {m: run_job(config, m, 0, settings(data_root, out)) for m in ("random", "entropy")}, out, config


def test_rows_follow_the_protocol_and_the_pool_invariants(two_methods):
    runs, out, config = two_methods
    for method, rows in runs.items():
        assert [r["cycle"] for r in rows] == [0, 1, 2] and [r["n_labeled"] for r in rows] == [60, 90, 120]
        assert all(len(r["selected"]) == 30 for r in rows[:-1]) and rows[-1]["selected"] == []
        chosen = np.concatenate([r["selected"] for r in rows[:-1]])
        assert len(np.unique(chosen)) == len(chosen)
        first = np.load(run_folder(out, config, method, 0).path / "pool_cycle0.npz")
        assert not np.isin(chosen, first["labeled"]).any() and not np.isin(chosen, first["validation"]).any()
        assert all(set(row) == set(ROW_FIELDS) and not wrong_fields(row, ROW_KINDS) for row in read_jsonl(
            run_folder(out, config, method, 0).results))


def test_the_run_folder_holds_only_the_files_it_names(two_methods):
    runs, out, config = two_methods
    folder = run_folder(out, config, "random", 0)
    assert folder == RunFolder.of(out, "vaal", "fig2_cifar10", "random", 0) == RunFolder(
        out / "vaal" / "fig2_cifar10" / "random" / "seed0")
    named = {folder.config, folder.results, *(folder.pool(cycle) for cycle in range(3))}
    assert set(folder.path.iterdir()) == named, "the lock is released and no checkpoint outlives its cycle"
    assert [path.name for path in (folder.model(1), folder.optimizer(1), folder.checkpoint(1),
                                   folder.checkpoint(1, RunFolder.GAME), folder.lock)] == [
        "model_cycle1.pt", "optimizer_cycle1.pt", "train_cycle1.ckpt", "train_cycle1_game.ckpt", ".lock"]
    assert folder.read_config()["method"] == "random" and folder.rows() == runs["random"]


def test_a_row_has_every_field_of_its_kind_and_the_checks_are_subsets(two_methods):
    row = dict(two_methods[0]["random"][0])
    assert cycle_row(**row) == row
    for broken in ({**row, "extra": 1}, {**row, "seed": True}, {k: v for k, v in row.items() if k != "value"}):
        with pytest.raises(TypeError):
            cycle_row(**broken)
    assert set(REPORT_FIELDS) < set(RESUME_FIELDS) < set(ROW_FIELDS)
    assert wrong_fields({**row, "n_labeled": 1.5, "beyond_paper": 1}, {**REPORT_FIELDS, "beyond_paper": bool}) == [
        "n_labeled", "beyond_paper"]


def test_methods_share_the_first_cycle_but_select_differently(two_methods):
    runs, _, _ = two_methods
    assert runs["random"][0]["value"] == runs["entropy"][0]["value"]
    assert set(runs["random"][0]["selected"]) != set(runs["entropy"][0]["selected"])


def test_same_seed_gives_identical_selections_and_accuracies(two_methods, data_root, tmp_path):
    runs, _, config = two_methods
    again = run_job(config, "entropy", 0, settings(data_root, tmp_path))
    assert stable(again) == stable(runs["entropy"])


def test_finished_runs_are_not_recomputed(two_methods, data_root):
    runs, out, config = two_methods
    results = run_folder(out, config, "random", 0).path / "results.jsonl"
    stamp = results.stat().st_mtime_ns
    assert run_job(config, "random", 0, settings(data_root, out)) == runs["random"]
    assert results.stat().st_mtime_ns == stamp


def test_another_config_in_the_same_folder_is_refused(two_methods, data_root):
    _, out, _ = two_methods
    with pytest.raises(UserError, match="different config"):
        run_job(smoke(**{"train.iterations": 5}), "random", 0, settings(data_root, out))


def test_corrupt_results_file_is_a_user_error(data_root, tmp_path):
    config = smoke()
    folder = run_folder(tmp_path, config, "random", 0).path
    run_job(config, "random", 0, settings(data_root, tmp_path))
    results = folder / "results.jsonl"
    results.write_text(results.read_text()[:-20])
    before = results.read_text()
    with pytest.raises(UserError, match="not valid JSON"):
        run_job(config, "random", 0, settings(data_root, tmp_path))
    assert results.read_text() == before


def test_budget_larger_than_the_pool_is_a_user_error(data_root, tmp_path):
    with pytest.raises(UserError, match="lower protocol.budget"):
        run_job(smoke(**{"protocol.budget": 400}), "random", 0, settings(data_root, tmp_path))


def _command(out):
    return [sys.executable, "-m", "core", "run", "vaal", "fig2_cifar10", "--profile", "smoke", "--methods",
            "entropy", "--seeds", "1", "--out", str(out), "--quiet", "--device", "cpu",
            "--set", "train.iterations=30", "--set", "protocol.cycles=4"]


@pytest.mark.slow   # by default test_scaleout kills a run mid-cycle, which resumes through the same folder checks
def test_a_killed_run_resumes_to_the_uninterrupted_result(data_root, tmp_path):
    env = {**os.environ, "AL_DATA_ROOT": str(data_root)}
    repo = Path(__file__).resolve().parent.parent
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    results = interrupted / "vaal" / "fig2_cifar10" / "entropy" / "seed0" / "results.jsonl"
    process = subprocess.Popen(_command(interrupted), cwd=repo, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and len(read_jsonl(results)) >= 1):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_after = len(read_jsonl(results))
    assert 1 <= killed_after < 4, "the run must be killed part-way"
    subprocess.run(_command(interrupted), cwd=repo, env=env, check=True)
    subprocess.run(_command(clean), cwd=repo, env=env, check=True)
    resumed = read_jsonl(results)
    assert stable(resumed) == stable(read_jsonl(Path(str(results).replace("interrupted", "clean"))))
    assert [r["cycle"] for r in resumed] == [0, 1, 2, 3]


def test_warm_start_continues_from_the_previous_cycle(data_root, tmp_path):
    config = smoke(**{"train.reinit": False})
    rows = run_job(config, "random", 0, settings(data_root, tmp_path))
    folder = run_folder(tmp_path, config, "random", 0).path
    assert len(rows) == 3 and sorted(p.name for p in folder.glob("model_cycle*.pt")) == [
        "model_cycle0.pt", "model_cycle1.pt", "model_cycle2.pt"]
    cold = run_job(smoke(), "random", 0, settings(data_root, tmp_path / "cold"))
    assert rows[0]["value"] == cold[0]["value"] and stable(rows[1:]) != stable(cold[1:])


def test_warm_start_works_with_a_method_that_changes_the_network(data_root, tmp_path):
    config = get_experiment("baselines", "ll4al_cifar10").config("smoke", {"train.reinit": False, "seeds": 1})
    rows = run_job(config, "mc_dropout", 0, settings(data_root, tmp_path))
    assert len(rows) == 3 and rows[0]["diagnostics"] == {"dropout_added_before_classifier": 0.5}


def test_init_seed_restarts_every_cycle_from_the_same_weights(data_root):
    from core.lib.loop import new_model, prepare_dataset

    def weights(config, cycle):
        dataset = prepare_dataset(config, data_root, 0)
        return torch.cat([p.flatten() for p in new_model(config, dataset, 0, cycle, "cpu").parameters()])

    same = smoke(**{"train.init_seed": "seed"})
    assert torch.equal(weights(same, 0), weights(same, 2))
    assert not torch.equal(weights(smoke(), 0), weights(smoke(), 2))


class Interrupted(Exception):
    pass


def stop_after_cycle_0(row):
    if row["cycle"] == 0:
        raise Interrupted


KEEP_ADAM = {"train.optimizer": "adam", "train.lr": 1e-3, "train.weight_decay": 0.0, "train.reinit": False}


def test_a_carried_optimizer_resumes_to_the_uninterrupted_result(data_root, tmp_path):
    """train.keep_optimizer: each cycle continues the last cycle's Adam from optimizer_cycle<c>.pt, so a job
    stopped after a finished cycle resumes to the rows of an uninterrupted one; only the last file is kept."""
    config = smoke(**KEEP_ADAM, **{"train.keep_optimizer": True})
    stopped = RunSettings(data_root, tmp_path / "interrupted", torch.device("cpu"), "smoke", progress=False,
                          on_cycle=stop_after_cycle_0)
    with pytest.raises(Interrupted):
        run_job(config, "random", 0, stopped)
    folder = run_folder(tmp_path / "interrupted", config, "random", 0).path
    assert (folder / "optimizer_cycle0.pt").exists()
    resumed = run_job(config, "random", 0, settings(data_root, tmp_path / "interrupted"))
    clean = run_job(config, "random", 0, settings(data_root, tmp_path / "clean"))
    assert stable(resumed) == stable(read_jsonl(folder / "results.jsonl")) == stable(clean) and len(clean) == 3
    assert sorted(p.name for p in folder.glob("optimizer_cycle*")) == ["optimizer_cycle2.pt"]
    steps = sum(row["train_steps"] for row in clean)
    assert all(float(state["step"]) == steps for state in torch.load(folder / "optimizer_cycle2.pt")["state"].values())
    fresh = run_job(smoke(**KEEP_ADAM), "random", 0, settings(data_root, tmp_path / "fresh"))
    losses = lambda rows: [row["train_loss"] for row in rows]
    assert losses(fresh[:1]) == losses(clean[:1]) and all(a != b for a, b in zip(losses(fresh[1:]), losses(clean[1:])))


def test_a_missing_carried_optimizer_is_refused(data_root, tmp_path):
    config = smoke(**KEEP_ADAM, **{"train.keep_optimizer": True})
    out = tmp_path / "out"
    stopped = RunSettings(data_root, out, torch.device("cpu"), "smoke", progress=False, on_cycle=stop_after_cycle_0)
    with pytest.raises(Interrupted):
        run_job(config, "random", 0, stopped)
    folder = run_folder(out, config, "random", 0).path
    (folder / "optimizer_cycle0.pt").unlink()
    with pytest.raises(UserError, match="optimizer_cycle0.pt, which is missing"):
        run_job(config, "random", 0, settings(data_root, out))


def test_a_carried_optimizer_resumes_mid_cycle_to_the_uninterrupted_result(data_root, tmp_path, monkeypatch):
    """Stopped after the first mid-cycle checkpoint of cycle 1, whose optimizer continued cycle 0's: the
    checkpoint holds the carried state, so the resumed cycle ends as the uninterrupted one."""
    from core.tools.checkpoint import TrainCheckpoint

    config = smoke(**KEEP_ADAM, **{"train.keep_optimizer": True, "runtime.checkpoint_every": 1})
    save = TrainCheckpoint.save

    def save_then_stop_in_cycle_1(checkpoint, state):
        save(checkpoint, state)
        if checkpoint.key.split("/")[1] == "1":
            raise Interrupted

    monkeypatch.setattr(TrainCheckpoint, "save", save_then_stop_in_cycle_1)
    with pytest.raises(Interrupted):
        run_job(config, "random", 0, settings(data_root, tmp_path / "interrupted"))
    monkeypatch.undo()
    resumed = run_job(config, "random", 0, settings(data_root, tmp_path / "interrupted"))
    clean = run_job(config, "random", 0, settings(data_root, tmp_path / "clean"))
    assert resumed[1]["train_resumed_at_step"] == 1 and clean[1]["train_resumed_at_step"] == 0
    drop = lambda rows: [{k: v for k, v in row.items() if k != "train_resumed_at_step"} for row in stable(rows)]
    assert drop(resumed) == drop(clean) and len(clean) == 3
