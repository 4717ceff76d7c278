"""Data-parallel training (core.lib.parallel, core.tools.distributed) on CPU with gloo, and the runtime config's
fast paths."""
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.lib import parallel
from core.lib.config import RuntimeConfig, run_hash
from core.lib.datasets import Split
from core.lib.errors import UserError
from core.lib.experiments import get_experiment
from core.lib.fastpaths import TrainingForward, use_channels_last
from core.lib.sources import Augmentation, TensorSource, batch_sizes
from core.lib.trainer import Trainer, TrainHook
from core.tools import distributed
from core.tools.cli import main
from core.tools.locks import FolderLock, LockBusy

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- sharing out a batch

@pytest.mark.parametrize("count", [1, 3, 4, 5, 7, 64, 65])
def test_rank_rows_cover_the_batch_and_weights_restore_its_mean_loss(monkeypatch, count):
    world = 2
    monkeypatch.setattr(parallel, "world_size", lambda: world)
    losses = torch.rand(count, dtype=torch.float64)
    parts, weighted = [], []
    for me in range(world):
        monkeypatch.setattr(parallel, "rank", lambda me=me: me)
        part = parallel.rank_rows(count)
        parts.append(part)
        weighted.append(parallel.loss_weight(count) * losses[part].mean())
    if count < 2 * world:       # too small for two rows each: every rank takes it whole
        assert all(p == slice(0, count) for p in parts)
    else:
        assert [i for p in parts for i in range(p.start, p.stop)] == list(range(count))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
    # DDP averages the ranks' gradients: the average of the weighted rank losses must be the batch's mean loss
    assert float(sum(weighted) / world) == pytest.approx(float(losses.mean()), rel=1e-12)


def test_one_process_is_the_single_process_run():
    assert parallel.world_size() == 1 and parallel.rank() == 0 and parallel.is_main()
    assert parallel.rank_rows(5) == slice(0, 5) and parallel.loss_weight(5) == 1.0
    assert parallel.main_value([3, 1]) == [3, 1]
    assert batch_sizes(10, 4, drop_last=False) == [4, 4, 2] and batch_sizes(10, 4, drop_last=True) == [4, 4]


def test_rank_0_holds_the_folder_lock_and_the_others_follow_it(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "WAIT_ROUND_SECONDS", 0.05)
    path = tmp_path / ".lock"
    other = FolderLock(path)                # another command's job
    other.acquire()
    monkeypatch.setattr(parallel, "rank", lambda: 0)
    told = []
    monkeypatch.setattr(distributed, "main_value", lambda value: told.append(value) or value)
    with pytest.raises(LockBusy):
        distributed.RankLock(path).acquire(wait=False)
    told.clear()
    threading.Timer(1.2, other.release).start()     # polled every 0.5 s (core.tools.locks)
    lock = distributed.RankLock(path)
    lock.acquire(wait=True)                 # waits in rounds, telling the other ranks after each one
    assert len(told) >= 2 and told[0] is not None and told[-1] is None and lock.lock.held()
    lock.release()
    monkeypatch.setattr(parallel, "rank", lambda: 1)
    answers = iter([{"pid": 1, "host": "h"}, None])
    monkeypatch.setattr(distributed, "main_value", lambda value: next(answers))
    follower = distributed.RankLock(path)
    follower.acquire(wait=True)             # rank 0 waited one round, then got it
    follower.verify()
    follower.release()
    assert follower.lock is None and not path.exists()


# ---------------------------------------------------------------- one step equals the single-process step

class Tiny(nn.Module):
    """No BatchNorm, so that two processes must match one up to rounding."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

    def forward_features(self, x):
        block = F.relu(self.conv(x))
        features = block.mean((2, 3))
        return self.fc(features), features, [block]

    def forward(self, x):
        return self.forward_features(x)[0]


class LossGuess(TrainHook):
    """A hook with a module of its own (as LL4AL's) and an extra step after every epoch (as LADA's)."""

    def __init__(self, source, answers):
        self.module, self.source, self.answers = nn.Linear(4, 1), source, answers
        self.modules = [self.module]

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        return F.mse_loss(self.module(features).squeeze(1), per_sample_loss.detach())

    def after_epoch(self, model, optimizer, epoch):
        images = self.source.load(torch.arange(6), False, None)
        loss = F.cross_entropy(model(images), self.answers[:6])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def tiny_fit() -> tuple[dict, dict, float]:
    """3 epochs over 11 images in batches of 5 (5, 5, 1: split 3 + 2, and the last taken whole by both)."""
    from core.lib.config import TrainConfig

    rng = np.random.default_rng(0)
    split = Split(targets=rng.integers(0, 3, 20), images=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8))
    source = TensorSource(split, (0.5,) * 3, (0.25,) * 3, Augmentation(hflip=True, crop_padding=2), "cpu")
    torch.manual_seed(0)
    model = Tiny()
    hook = LossGuess(source, torch.as_tensor(split.targets))
    generator = torch.Generator().manual_seed(1)
    cfg = TrainConfig(optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=5, epochs=3)
    report = Trainer(cfg, "cpu", 3, progress=False).fit(model, source, np.arange(11), split.targets,
                                                         hooks=[hook], generator=generator)
    return model.state_dict(), hook.module.state_dict(), report.final_loss


def _tiny_worker(me: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(me),
                      LOCAL_RANK=str(me))
    torch.set_num_threads(1)
    distributed.start(torch.device("cpu"))
    torch.save(tiny_fit(), Path(out) / f"rank{me}.pt")
    distributed.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_processes_train_as_one(tmp_path):
    """Same shuffled order and augmentation, rows shared out, gradients averaged (the task model's by DDP, the
    hook module's by hand), uneven batches weighted: the weights match the one-process run to rounding."""
    torch.multiprocessing.spawn(_tiny_worker, args=(free_port(), str(tmp_path)), nprocs=2)
    single_model, single_hook, single_loss = tiny_fit()
    ranks = [torch.load(tmp_path / f"rank{me}.pt") for me in range(2)]
    for model, hook, loss in ranks:
        for name, value in single_model.items():
            torch.testing.assert_close(model[name], value, rtol=1e-5, atol=1e-6)
        for name, value in single_hook.items():
            torch.testing.assert_close(hook[name], value, rtol=1e-5, atol=1e-6)
        assert loss == pytest.approx(single_loss, rel=1e-5)
    for name in single_model:                          # every rank ends with rank 0's weights, bit for bit
        assert torch.equal(ranks[0][0][name], ranks[1][0][name])


# ---------------------------------------------------------------- a smoke cycle under torchrun

def rows_of(out: Path) -> list[dict]:
    folder = out / "baselines" / "ll4al_cifar10" / "random" / "seed0"
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow   # by default test_two_gloo_processes_train_as_one covers the data-parallel step
def test_torchrun_two_processes_run_the_smoke_cycles_as_one(data_root, tmp_path, monkeypatch):
    """`python -m torch.distributed.run --nproc_per_node 2 -m core run ...` with gloo against the same command in
    one process: rank 0 alone writes, the labeled sets (random selection, which does not depend on the model) and
    step counts are equal, and the train loss is close. Not equal: on CPU each rank's BatchNorm normalises by its
    own 20 rows of every 40-image batch (SyncBatchNorm runs on GPUs only), which moved the loss by 0.1-1% in
    these runs; 5% allows for that. The step itself is checked exactly above, without BatchNorm."""
    args = ["run", "baselines", "ll4al_cifar10", "--profile", "smoke", "--methods", "random", "--seeds", "1",
            "--set", "protocol.cycles=2", "--device", "cpu", "--quiet"]
    env = {**os.environ, "AL_DATA_ROOT": str(data_root), "PYTHONPATH": str(REPO)}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), "-m", "core", *args, "--out", str(tmp_path / "two")],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("results: ") == 1                     # only rank 0 reports
    monkeypatch.setenv("AL_DATA_ROOT", str(data_root))
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    single, double = rows_of(tmp_path / "one"), rows_of(tmp_path / "two")
    assert [r["cycle"] for r in double] == [0, 1]                   # each row once
    assert [r["processes"] for r in double] == [2, 2] and [r["processes"] for r in single] == [1, 1]
    assert [r["n_labeled"] for r in double] == [r["n_labeled"] for r in single]
    assert [r["selected"] for r in double] == [r["selected"] for r in single]
    assert [r["train_steps"] for r in double] == [r["train_steps"] for r in single]
    for a, b in zip(single, double):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
    assert not list((tmp_path / "two").rglob("*.partial*"))


# ---------------------------------------------------------------- fast paths

def test_channels_last_auto_is_on_for_conv_nets_on_cuda_only():
    conv, mlp = Tiny(), nn.Sequential(nn.Linear(4, 4))
    assert use_channels_last("auto", "cuda", conv) and not use_channels_last("auto", "cpu", conv)
    assert not use_channels_last("auto", "cuda", mlp)
    assert use_channels_last("on", "cpu", conv) and not use_channels_last("off", "cuda", conv)


def test_a_bad_channels_last_value_is_a_one_line_user_error():
    with pytest.raises(UserError) as raised:
        get_experiment("vaal", "fig2_cifar10").config("smoke", {"runtime.channels_last": "yes"})
    assert "runtime.channels_last='yes' is not one of auto, on, off" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_compile_is_off_by_default_and_runtime_keys_leave_the_hash():
    assert RuntimeConfig().compile == "off" and RuntimeConfig().channels_last == "auto"
    experiment = get_experiment("vaal", "fig2_cifar10")
    assert run_hash(experiment.config("paper"), "vaal") == run_hash(experiment.config(
        "paper", {"runtime.compile": "graphs", "runtime.channels_last": "on", "runtime.sync_batchnorm": "false"}),
        "vaal")
    compiled = TrainingForward(Tiny(), [], True, "cpu", RuntimeConfig(compile="on"), 8)
    assert isinstance(compiled.module.compiled, torch._dynamo.eval_frame.OptimizedModule)   # compiled at first call
    assert TrainingForward(Tiny(), [], True, "cpu", RuntimeConfig(), 8).module.compiled is None


def test_channels_last_training_matches_contiguous_training_on_cpu():
    """The memory format changes only which kernels run: a few steps end at the same weights up to rounding.
    A run refuses channels_last=on on the CPU (tests/test_reliability.py), where oneDNN's channels-last backward
    corrupted the heap on segmentation crops; this 3-channel 8x8 net is the CPU's one run of the path CUDA takes."""
    from core.lib.config import TrainConfig

    rng = np.random.default_rng(0)
    split = Split(targets=rng.integers(0, 3, 16), images=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    source = TensorSource(split, (0.5,) * 3, (0.25,) * 3, Augmentation(hflip=True, crop_padding=2), "cpu")
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=8, epochs=2)
    weights = {}
    for setting in ("off", "on"):
        torch.manual_seed(0)
        model = Tiny()
        Trainer(cfg, "cpu", 3, progress=False, runtime=RuntimeConfig(channels_last=setting)).fit(
            model, source, np.arange(16), split.targets, generator=torch.Generator().manual_seed(1))
        weights[setting] = model.state_dict()
    assert weights["on"]["conv.weight"].is_contiguous(memory_format=torch.channels_last)
    for name, value in weights["off"].items():
        torch.testing.assert_close(weights["on"][name], value, rtol=1e-5, atol=1e-6)
