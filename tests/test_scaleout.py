"""Scale-out: mid-cycle checkpoints resume exactly, parallel and Slurm executors give the rows of a sequential
run (issue 14)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from core.lib.results import read_jsonl
from tests.test_stops import alive

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


PARALLEL = ["--methods", "random,entropy", "--set", "train.epochs=6", "--set", "protocol.cycles=2",
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


@pytest.mark.slow   # by default the packing tests below run the executor's placement loop in this process
@pytest.mark.parametrize("per_device", ["2", "1"])
def test_two_jobs_at_once_give_the_rows_of_one_at_a_time(per_device, sequential, data_root, tmp_path):
    """Two workers on the CPU, or one with the second job waiting for its slot. Also in a log: the workers'
    cycles reach the parent, which prints one plain line per finished cycle."""
    command = [arg for arg in run_command(tmp_path, *PARALLEL, "--jobs", "2", "--jobs-per-gpu", per_device)
               if arg != "--quiet"]
    log = subprocess.run(command, cwd=REPO, env=one_thread(data_root), check=True, capture_output=True,
                         text=True).stdout
    for method, rows in sequential.items():
        assert stable(job_rows(tmp_path, method)) == stable(rows) and len(rows) == 2
        assert all(log.count(f"{method} seed 0 cycle {cycle}: ") == 1 for cycle in (0, 1))
    assert (tmp_path / "baselines" / "ll4al_cifar10" / "report.md").exists()


def run_processes(marker: str) -> list[int]:
    """The live processes whose environment holds `marker`: every process a run starts inherits it."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environment = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:                       # ended meanwhile, or not ours
            continue
        if marker.encode() in environment and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_parallel_run_stopped_mid_cycle_leaves_no_process_and_resumes(stop, sequential, data_root, tmp_path):
    """The parent of `run --jobs 2` is killed (SIGKILL: its workers see it gone) or stopped (SIGTERM: it stops
    them, then exits 143) once a job has written its first mid-cycle checkpoint; within 10 s no process of the
    run is left (found by an environment marker they all inherit), and the same command resumes, taking over the
    workers' locks, to the rows of the sequential run."""
    marker = f"AL_TEST_RUN={uuid.uuid4().hex}"
    env = {**one_thread(data_root), "AL_TEST_RUN": marker.split("=")[1]}
    command = run_command(tmp_path, *PARALLEL, "--jobs", "2")
    process = subprocess.Popen(command, cwd=REPO, env=env)
    checkpoints = [tmp_path / "baselines" / "ll4al_cifar10" / method / "seed0" / "train_cycle0.ckpt"
                   for method in sequential]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(c.exists() for c in checkpoints):
        time.sleep(0.01)
    assert len(run_processes(marker)) >= 4, "the parent, the queue's manager and two workers run"
    process.send_signal(stop)
    assert process.wait(30) == (143 if stop == signal.SIGTERM else -signal.SIGKILL)
    deadline = time.monotonic() + 10
    while run_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_processes(marker)
    assert not all(len(job_rows(tmp_path, method)) == 2 for method in sequential), "stopped before the end"
    subprocess.run(command, cwd=REPO, env=env, check=True, timeout=600)
    for method, rows in sequential.items():
        assert stable(job_rows(tmp_path, method)) == stable(rows)


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
from core.tools.cli import main
code = main(sys.argv[1:])
assert "submitit" not in sys.modules
sys.exit(code)
"""


@pytest.mark.slow
def test_the_default_path_needs_no_submitit(data_root, tmp_path):
    env = {**os.environ, "AL_DATA_ROOT": str(data_root)}
    command = [sys.executable, "-c", BLOCK_SUBMITIT] + run_command(tmp_path, "--methods", "random")[3:]
    subprocess.run(command, cwd=REPO, env=env, check=True)
    assert len(job_rows(tmp_path, "random")) == 3
    slurm = subprocess.run(command + ["--executor", "slurm"], cwd=REPO, env=env, capture_output=True, text=True)
    assert slurm.returncode == 2 and slurm.stderr.strip().splitlines() == [
        "error: --executor slurm needs submitit: .venv/bin/pip install -e '.[slurm]'"]


@pytest.mark.parametrize("flags,message", [
    (["--jobs", "2", "--executor", "slurm"], "--jobs and --jobs-per-gpu apply to --executor local"),
    (["--jobs-per-gpu", "2", "--executor", "slurm"], "--jobs and --jobs-per-gpu apply to --executor local"),
    (["--partition", "gpu"], "--partition: only for --executor slurm"),
    (["--jobs", "0"], "must be 1 or more"),
])
def test_executor_flags_of_another_executor_are_refused(flags, message, data_root, tmp_path, capsys):
    from core.tools.cli import main

    try:
        code = main(run_command(tmp_path, "--methods", "random", *flags)[3:])
    except SystemExit as exit_:            # argparse's own refusals
        code = exit_.code
    assert code == 2 and message in capsys.readouterr().err and not tmp_path.joinpath("baselines").exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a Slurm cluster is reachable here")
def test_slurm_where_there_is_none_is_one_line(data_root, tmp_path, capsys):
    pytest.importorskip("submitit")
    from core.tools.cli import main

    assert main(run_command(tmp_path, "--methods", "random", "--executor", "slurm")[3:]) == 2
    assert "cannot reach Slurm here" in capsys.readouterr().err and not tmp_path.joinpath("baselines").exists()


def test_slurm_options_come_from_defaults_then_file_then_flags(tmp_path):
    from core.lib.errors import UserError
    from core.tools.executors import slurm_options

    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"partition": "a100", "time": 600, "sbatch": {"account": "lab"}}))
    options = slurm_options(config, {"time": 120, "mem_gb": None, "sbatch": {}})
    assert (options["partition"], options["time"], options["mem_gb"], options["sbatch"]) == \
        ("a100", 120, 32, {"account": "lab"})
    config.write_text(json.dumps({"partitoin": "a100"}))
    with pytest.raises(UserError, match="unknown keys partitoin"):
        slurm_options(config, {})


def test_each_gpu_is_one_device_and_the_cpu_shares_its_cores(monkeypatch):
    from core.tools.executors import device_environments

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert device_environments("cuda", 6) == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert device_environments("cpu", 4) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}]


def test_jobs_are_placed_k_per_device_round_robin():
    from core.tools.packing import Packing

    packing = Packing([None, None], per_device=2, limit=8)
    assert [packing.place(1) for _ in range(5)] == [0, 1, 0, 1, None]
    packing.release(1, 1)
    assert packing.place(1) == 1 and packing.place(1) is None
    limited = Packing([None] * 3, per_device=4, limit=2)
    assert [limited.place(1) for _ in range(3)] == [0, 1, None]


def test_a_job_that_does_not_fit_waits_until_memory_frees():
    """Free bytes as the devices reported them before the run (faked): 10 on each of two GPUs."""
    from core.tools.packing import Packing

    packing = Packing([10, 10], per_device=3, limit=6)
    assert [packing.place(6), packing.place(6), packing.place(6)] == [0, 1, None]
    assert packing.place(5) is None and packing.running == [[6], [6]]
    packing.release(1, 6)
    assert packing.place(6) == 1
    assert packing.place(3) == 0 and packing.running == [[6, 3], [6]]


def test_an_idle_device_takes_a_job_larger_than_its_memory():
    from core.tools.packing import Packing

    packing = Packing([4], per_device=2, limit=2)
    assert packing.place(6) == 0 and packing.place(1) is None


def test_one_probe_reads_the_free_memory_of_every_gpu(monkeypatch):
    """Three GPUs faked in this process; then the real probe process, which on this CPU machine sees none."""
    import multiprocessing

    from core.tools.packing import free_memory_of_every_gpu, gpu_free_memory

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda gpu: ((gpu + 1) * 2**30, 80 * 2**30))
    assert gpu_free_memory() == [2**30, 2 * 2**30, 3 * 2**30]
    if not torch.cuda.is_available():
        assert free_memory_of_every_gpu(multiprocessing.get_context("spawn")) == []


def test_a_worker_hands_cached_gpu_memory_back_after_each_job(monkeypatch):
    from types import SimpleNamespace

    from core.tools import executors

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty cache"))
    monkeypatch.setattr(executors, "run_spec", lambda spec, on_cycle: calls.append("job") or 2)
    assert executors.run_spec_sending_cycles(None, SimpleNamespace(put=print)) == 2

    def out_of_memory(spec, on_cycle):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(executors, "run_spec", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        executors.run_spec_sending_cycles(None, SimpleNamespace(put=print))
    assert calls == ["job", "empty cache", "empty cache"]


def test_the_live_peak_counts_tensors_until_they_are_freed():
    from core.tools.packing import LivePeak

    with torch.device("meta"), LivePeak() as live:
        first = torch.empty(100)                       # 400 bytes
        second = (first * 2).view(10, 10)              # 400 more; the view shares them
        del first
        third = second.relu_() + 1                     # in place: nothing new; the sum: 400
    assert live.peak == 800 and live.live == 800 and third.shape == (10, 10)


class PixelHead(torch.nn.Module):
    """Segmentation-like scores whose outputs dominate memory: the trunk is the image, the head a dropout and a
    1x1 convolution to 19 classes."""

    def __init__(self):
        super().__init__()
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Conv2d(3, 19, 1))

    def forward_trunk(self, images):
        return images

    def forward_head(self, trunk):
        return self.classifier(trunk), trunk

    def forward(self, images):
        return self.forward_head(images)[0]


@pytest.mark.parametrize("method,options", [("mc_dropout", {"acquisition": "entropy"}),
                                            ("mc_dropout", {"acquisition": "bald"}),
                                            ("mc_dropout", {"acquisition": "variation_ratio"}),
                                            ("qbc", {}), ("ensemble_varratio", {}), ("suggestive_annotation", {})])
def test_the_outputs_a_method_declares_held_bound_what_its_scoring_keeps(method, options):
    """The scoring of one batch of 2 images, 32x32, on the meta device, through the methods' own code: its peak
    stays within the evaluation forward's peak plus CycleWork.held_outputs outputs (packing's selection term),
    and above three quarters of that term (a declaration close to what the code keeps)."""
    from types import SimpleNamespace

    from baselines.committee import mean_class_variance, member_scores
    from baselines.mc_dropout import ACQUISITIONS, mc_dropout_samples
    from core.lib import experiments
    from core.lib.strategy import CycleSizes, make_strategy
    from core.tools.packing import LivePeak

    experiments.papers()
    strategy = make_strategy(method, options)
    held = strategy.cycle_work(None, 19, CycleSizes(0, 1, 1, 1, 1, 1)).held_outputs
    source = SimpleNamespace(device=torch.device("meta"),
                             batches=lambda indices, size: [(torch.empty(size, 3, 32, 32), None)])
    with torch.device("meta"), torch.no_grad():
        members = [PixelHead() for _ in range(strategy.options.get("members", 1))]
        with LivePeak() as forward:
            members[0](next(iter(source.batches(None, 2)))[0])
        with LivePeak() as scoring:
            if method == "mc_dropout":
                mc_dropout_samples(members[0], source, [0, 1], 2, strategy.options["passes"],
                                   ACQUISITIONS[options["acquisition"]])
            else:
                context = SimpleNamespace(source=source, eval_batch_size=2, device=source.device,
                                          config=SimpleNamespace(train=SimpleNamespace(amp=False)))
                member_scores(members, context, [0, 1], getattr(strategy, "reduce", mean_class_variance))
    output = 2 * 19 * 32 * 32 * 4
    assert forward.peak + 0.75 * held * output < scoring.peak <= forward.peak + held * output


def test_small_images_pack_three_per_gpu_and_segmentation_runs_alone():
    from core.lib import experiments
    from core.tools.packing import default_jobs_per_gpu, job_memory

    experiments.papers()
    cifar = experiments.get_experiment("baselines", "ll4al_cifar10").config("paper")
    camvid = experiments.get_experiment("segmentation", "camvid").config("paper")
    assert (default_jobs_per_gpu(cifar), default_jobs_per_gpu(camvid)) == (3, 1)
    gib = 2**30
    random, vaal = job_memory(cifar, "random"), job_memory(cifar, "vaal")
    assert 1 * gib < random < 4 * gib, "ResNet-18, batch 128: about 1 GB saved for backward, 0.2 GB of images"
    assert vaal > random, "VAAL adds its VAE and discriminator"
    assert job_memory(camvid, "random") > random, "DRN-D-22 on 352-pixel crops keeps more"


def test_memory_estimates_include_the_evaluation_and_selection_peaks():
    """Cityscapes' MC-Dropout scores whole 1024x2048 frames, 4 at once, 10 passes: its stacked softmax outputs
    (about 13 GB measured) outweigh the training step's 6.5 GB; a committee keeps its members' weights too."""
    from core.lib import experiments
    from core.tools.packing import ALLOCATOR_SLACK, job_memory

    experiments.papers()
    cityscapes = experiments.get_experiment("vaal", "fig3_cityscapes").config("paper")
    output = 4 * 19 * 1024 * 2048 * 4
    random, mc_dropout = job_memory(cityscapes, "random"), job_memory(cityscapes, "mc_dropout")
    assert random < 10 * 2**30 and mc_dropout > ALLOCATOR_SLACK * 22 * output > 13 * 2**30
    cifar = experiments.get_experiment("baselines", "ll4al_cifar10").config("paper")
    assert job_memory(cifar, "qbc") > job_memory(cifar, "random"), "four more ResNet-18s on the device"


def test_a_job_that_does_not_fit_starts_when_the_job_before_it_ends():
    """Threads stand in for the workers of one GPU with 10 free bytes (faked), 3 slots: the second job (6 bytes)
    waits for the first (6) to end, the third (3) waits behind it, then the two run side by side."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from core.tools.executors import run_packed
    from core.tools.packing import Packing

    events, lock, release_first = [], threading.Lock(), threading.Event()

    def job(name):
        with lock:
            events.append(f"start {name}")
        if name == "a":
            assert release_first.wait(10)
        else:
            time.sleep(0.2)
        with lock:
            events.append(f"end {name}")
        return 1

    specs = [SimpleNamespace(method=name, seed=0) for name in "abc"]
    with ThreadPoolExecutor(3) as threads:
        def start(device, spec):
            future = threads.submit(job, spec.method)
            if spec.method == "a":
                threading.Timer(0.3, release_first.set).start()
            return future

        done = []
        run_packed(list(zip(specs, [6, 6, 3])), Packing([10], per_device=3, limit=3), start,
                   lambda spec, cycles: done.append(spec.method))
    assert events[:3] == ["start a", "end a", "start b"] and events.index("start c") < events.index("end b")
    assert sorted(done) == ["a", "b", "c"]


def test_after_a_failed_job_the_waiting_ones_are_cancelled_and_the_error_raised():
    from concurrent.futures import Future
    from types import SimpleNamespace

    from core.tools.executors import run_packed
    from core.tools.packing import Packing

    started = []

    def start(device, spec):
        started.append(spec.method)
        future = Future()
        if spec.method == "a":
            future.set_exception(RuntimeError("out of memory"))
        else:
            future.set_result(1)
        return future

    specs = [SimpleNamespace(method=name, seed=0) for name in "abc"]
    with pytest.raises(RuntimeError, match="out of memory"):
        run_packed([(spec, 1) for spec in specs], Packing([None], per_device=1, limit=1), start, lambda *a: None)
    assert started == ["a"]
