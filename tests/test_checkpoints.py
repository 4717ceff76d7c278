"""Mid-cycle checkpoints (issue 28): CUDA generator states follow the job's device, not the GPU numbering of the
process that wrote them; the adversarial games resume mid-way to the result of an uninterrupted game."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.learning_loss import LossPredictionModule, block_channels
from core.lib import parallel
from core.lib.errors import UserError
from core.lib.game import GameState
from core.lib.networks import build_network
from core.lib.results import RESULTS_FILE, read_jsonl
from core.tools.checkpoint import TrainCheckpoint
from daal.method import DAAL
from ta_vaal.method import TAVAAL
from tests.test_scaleout import stable
from tests.test_ta_vaal import ta_context
from tests.test_vaal import synthetic_context
from vaal.method import VAAL

REPO = Path(__file__).resolve().parent.parent


class FakeCuda:
    """The CUDA generators of `count` visible GPUs, each state a distinct byte tensor."""

    def __init__(self, monkeypatch, count: int, current: int = 0):
        self.states = [torch.full((16,), 10 * (i + 1), dtype=torch.uint8) for i in range(count)]
        self.current = current
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.states))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda index: self.states[index].clone())
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set)

    def set(self, state: torch.Tensor, index: int) -> None:
        self.states[index] = state.clone()          # IndexError for a GPU this process does not see


def checkpoint(tmp_path, device: str) -> TrainCheckpoint:
    return TrainCheckpoint(tmp_path / "train_cycle0.ckpt", 1, "key", device=torch.device(device))


def test_two_gpus_seen_when_saved_one_when_resumed(tmp_path, monkeypatch):
    """Written by a process that saw 2 GPUs and trained on cuda:1; resumed where only that GPU is visible, as
    cuda:0: the job's generator goes to the GPU the job now trains on."""
    saving = FakeCuda(monkeypatch, 2)
    checkpoint(tmp_path, "cuda:1").save({})
    written = saving.states[1]
    resuming = FakeCuda(monkeypatch, 1)
    assert checkpoint(tmp_path, "cuda:0").load() is not None
    assert torch.equal(resuming.states[0], written)


def test_one_gpu_seen_when_saved_two_when_resumed(tmp_path, monkeypatch):
    """Written on the only GPU of its process (`cuda`, the current one); resumed on the second of two: that GPU
    gets it, the other is left alone."""
    saving = FakeCuda(monkeypatch, 1)
    checkpoint(tmp_path, "cuda").save({})
    written = saving.states[0]
    resuming = FakeCuda(monkeypatch, 2, current=1)
    untouched = resuming.states[0].clone()
    checkpoint(tmp_path, "cuda").load()
    assert torch.equal(resuming.states[1], written) and torch.equal(resuming.states[0], untouched)


def test_a_torchrun_rank_resumes_its_own_generator(tmp_path, monkeypatch):
    """Rank 0 writes the checkpoint with every rank's generator; rank 1 resumes with rank 1's, not GPU 0's."""
    cuda = FakeCuda(monkeypatch, 2)
    rank_1_state = torch.full((16,), 77, dtype=torch.uint8)
    monkeypatch.setattr(parallel, "all_values", lambda value: [value, rank_1_state])
    checkpoint(tmp_path, "cuda:0").save({})
    rank_0_state = cuda.states[0].clone()
    monkeypatch.setattr(parallel, "rank", lambda: 1)
    cuda.states = [torch.zeros(16, dtype=torch.uint8)] * 2
    checkpoint(tmp_path, "cuda:1").load()
    assert torch.equal(cuda.states[1], rank_1_state) and not torch.equal(cuda.states[1], rank_0_state)
    assert torch.equal(cuda.states[0], torch.zeros(16, dtype=torch.uint8))


@pytest.mark.parametrize("written_on", ["cpu", "cuda:0"])
def test_a_checkpoint_without_this_ranks_generator_is_refused_in_one_line(tmp_path, monkeypatch, written_on):
    """Written on the CPU, or by one CUDA process and resumed by rank 1 of two: nothing to put on this GPU."""
    FakeCuda(monkeypatch, 2)
    checkpoint(tmp_path, written_on).save({})
    monkeypatch.setattr(parallel, "rank", lambda: 1)
    with pytest.raises(UserError, match="holds no CUDA generator state for rank 1") as refused:
        checkpoint(tmp_path, "cuda:1").load()
    assert len(str(refused.value).splitlines()) == 1


def test_the_cpu_and_numpy_generators_come_back(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    checkpoint(tmp_path, "cpu").save({})
    expected = torch.rand(4), np.random.rand(4)
    torch.manual_seed(4)
    np.random.seed(4)
    checkpoint(tmp_path, "cpu").load()
    assert torch.equal(torch.rand(4), expected[0]) and np.array_equal(np.random.rand(4), expected[1])


class Interrupted(Exception):
    pass


def vaal_game():
    ctx = synthetic_context(shift=60, count=64)
    ctx.config.model.width = 0.0625
    return VAAL({"iterations": 2, "latent_dim": 8}), ctx, None


def ta_vaal_game():
    ctx = ta_context(count=64, subset=32)
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 1, width=0.0625).eval()
    strategy = TAVAAL({"latent_dim": 8, "iterations": 3})
    strategy.ranker.module = LossPredictionModule(block_channels(model), 8)
    return strategy, ctx, model


def daal_game():
    torch.manual_seed(0)
    return (DAAL({"iterations": 3, "batch_size": 16}), synthetic_context(shift=60, count=64),
            build_network("wrn28_2", 2, width=0.25))


def game_networks(strategy) -> dict[str, torch.nn.Module]:
    return strategy.nets.modules() if isinstance(strategy, DAAL) else {"VAE": strategy.vae, "D": strategy.disc}


# the game, and its epoch: the task model's steps per epoch (32 / 32), (labeled + subset) / batch, unlabeled / batch
GAMES = {"vaal": (vaal_game, 1), "ta_vaal": (ta_vaal_game, (32 + 32) // 32), "daal": (daal_game, 32 // 16)}


@pytest.mark.parametrize("method", GAMES)
def test_a_game_stopped_after_its_first_checkpoint_resumes_to_the_uninterrupted_networks(method, tmp_path, monkeypatch):
    """The game is stopped after its first checkpoint (one game epoch), then played again by new objects: it
    continues from that iteration and ends with the networks and diagnostics of a game never stopped."""
    make, per_epoch = GAMES[method]

    def played(checkpoint):
        strategy, ctx, model = make()
        ctx.checkpoint = checkpoint
        strategy.prepare_selection(model, ctx)
        return strategy

    clean = played(None)
    game_checkpoint = lambda tag: TrainCheckpoint(tmp_path / f"{tag}.ckpt", 1, "key")
    save = TrainCheckpoint.save

    def save_then_stop(checkpoint, state):
        save(checkpoint, state)
        raise Interrupted

    with monkeypatch.context() as patched:
        patched.setattr(TrainCheckpoint, "save", save_then_stop)
        with pytest.raises(Interrupted):
            played(game_checkpoint)
    resumed_at, load = [], GameState.load_state_dict
    monkeypatch.setattr(GameState, "load_state_dict",
                        lambda game, saved, device: resumed_at.append(load(game, saved, device)) or resumed_at[-1])
    resumed = played(game_checkpoint)
    assert resumed_at == [per_epoch]
    for name, module in game_networks(clean).items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, game_networks(resumed)[name].state_dict()[key]), f"{name} {key}"
    assert resumed.diagnostics == clean.diagnostics


# A run whose process SIGKILLs itself right after writing its KILL_AFTER-th game checkpoint (0: never), and
# which says at which iteration a game resumed.
KILLED_IN_THE_GAME = """
import os, signal, sys
from core.lib.game import GameState
from core.tools.checkpoint import TrainCheckpoint
save, load, written = TrainCheckpoint.save, GameState.load_state_dict, []

def save_then_die(checkpoint, state):
    save(checkpoint, state)
    if checkpoint.path.name.endswith("_game.ckpt"):
        written.append(state["iteration"])
        if len(written) == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)

def say_resumed(game, saved, device):
    done = load(game, saved, device)
    print(f"game resumed at iteration {done}", flush=True)
    return done

TrainCheckpoint.save, GameState.load_state_dict = save_then_die, say_resumed
from core.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""

# (paper, experiment, method, settings, game checkpoints before the kill): one cycle that selects, a game
# checkpoint every game epoch (VAAL: 1 of 4 iterations; TA-VAAL: 1 of 3; DAAL with the unlabeled pool in one
# batch: 1 of 3)
KILLED_GAMES = [
    ("vaal", "fig2_cifar10", "vaal", [], 2),
    ("ta_vaal", "supp_fig5a_cifar10", "ta_vaal", [], 1),
    ("daal", "fig3_cifar10", "daal", ["method_options.daal.batch_size=1024"], 2),
]


@pytest.mark.slow
@pytest.mark.parametrize("paper,experiment,method,settings,kill_after", KILLED_GAMES, ids=[c[2] for c in KILLED_GAMES])
def test_a_job_killed_inside_its_game_resumes_to_the_uninterrupted_rows(paper, experiment, method, settings,
                                                                        kill_after, data_root, tmp_path):
    """SIGKILL inside the game of cycle 0, after its `kill_after`-th checkpoint; the same command continues the
    game from that checkpoint (the task model from its end-of-training one) to the rows of a run never killed."""
    env = {**os.environ, "AL_DATA_ROOT": str(data_root), "OMP_NUM_THREADS": "1"}
    command = ["run", paper, experiment, "--profile", "smoke", "--seeds", "1", "--methods", method, "--quiet",
               "--device", "cpu", *[arg for setting in ["protocol.cycles=2", "runtime.stop_after_cycles=1",
                                                        "runtime.checkpoint_every=1", *settings]
                                     for arg in ("--set", setting)]]

    def run(out, kill_after):
        return subprocess.run([sys.executable, "-c", KILLED_IN_THE_GAME, *command, "--out", str(out)], cwd=REPO,
                              env={**env, "KILL_AFTER": str(kill_after)}, capture_output=True, text=True)

    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    folder = interrupted / paper / experiment / method / "seed0"
    killed = run(interrupted, kill_after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    game = torch.load(folder / "train_cycle0_game.ckpt", weights_only=False)
    assert game["iteration"] == kill_after and not read_jsonl(folder / RESULTS_FILE)
    resumed = run(interrupted, 0)
    assert resumed.returncode == 0 and f"game resumed at iteration {kill_after}" in resumed.stdout, resumed.stderr
    assert run(clean, 0).returncode == 0
    resumed_rows, clean_rows = (read_jsonl(out / paper / experiment / method / "seed0" / RESULTS_FILE)
                                for out in (interrupted, clean))
    assert stable(resumed_rows) == stable(clean_rows) and len(clean_rows) == 1 and clean_rows[0]["selected"]
    assert not list(folder.glob("*.ckpt")), "a finished cycle leaves no checkpoint behind"
