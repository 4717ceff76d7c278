"""`./reproduce.sh gpucheck`: one command that checks a CUDA machine against this project, on one GPU, in at most
8 minutes counted from the start of its process (Sizes: each step has a time budget, the steps run to a deadline
that keeps a margin for the report and the exit; what does not fit is listed as not run), and writes every figure
to gpucheck.md:

1. smoke: every registered experiment at its smoke profile with every implemented method (1 seed), and every
   method no experiment runs on `baselines ll4al_cifar10`, each experiment in its own `./reproduce.sh run`
   process, several processes at once on the one GPU;
2. throughput: one epoch of the trainer against a bare loop of the same training step over the same images
   already on the device (core.tools.bench), for ResNet-18 and VGG16-BN at full width, batch 128, and the
   trainer compiled (runtime.compile on and graphs; on CUDA only);
3. verify: `verify baselines ll4al_cifar10 --cycles 1` with 3 seeds of random and learning_loss, 3 jobs at once,
   against the registry (core.tools.verify).

It needs only the CIFAR-10 ImageFolder tree in the data root. The smoke step runs on any part of its training
images; verify needs 10,000 of them (the LL4AL protocol's 10 cycles of 1,000 labels are checked before its first
cycle runs) and with fewer is refused, which the report says. Every case runs in a process group of its own,
killed whole at its time limit (core.tools.processes), so no worker of a stopped case trains on. Exit status 0
when nothing crashed (a case that stopped with an error other than a refusal, or ran past its own time limit), 1
otherwise; verify's pass/fail against the papers is a finding, reported in the file, not a failure of the machine.
Without a CUDA GPU it refuses in one line (exit 2). `run_checks` runs the same steps on any device at the sizes it
is given: the tests run them on the CPU at TINY size.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.lib.datasets import load_dataset
from core.lib.errors import UserError
from core.tools.processes import run_group, seconds_since_process_start

REPO = Path(__file__).resolve().parents[2]
REPORT_FILE = "gpucheck.md"
TIMED_OUT, STOPPED = -124, -125          # Case.returncode of a process stopped on its own limit, or the step's


@dataclass(frozen=True)
class Sizes:
    experiments: tuple | None = None         # (paper, experiment) pairs; None: every registered one
    other_methods: tuple | None = None       # run on baselines ll4al_cifar10; None: every method no experiment runs
    processes: int = 0                       # smoke processes at once on the one GPU (0: all cores but 2)
    total_seconds: float = 480.0             # the whole check from its process's start: 8 minutes on one GPU
    margin_seconds: float = 40.0             # kept free at the end: gpucheck.md, removing the runs, the exit
    smoke_seconds: float = 190.0             # budget of the smoke step, every process included
    case_seconds: float = 160.0              # one smoke process at most
    bench_archs: tuple = ("resnet18_cifar", "vgg16_bn")
    bench_images: int = 10000
    bench_width: float = 1.0
    throughput_seconds: float = 80.0         # eager first, then compiled: a timing not started by then is not run
    bench_compile: tuple = ("on", "graphs")  # runtime.compile settings the trainer is timed under (CUDA only)
    verify_seconds: float = 130.0
    verify_seeds: int = 3
    verify_methods: str = "random,learning_loss"
    verify_set: tuple = ()                   # --set overrides of the verify run (TINY shrinks the paper profile)

    @property
    def start_seconds(self) -> float:
        """What the budgets leave for the process's start (imports) and decoding CIFAR-10, before the smoke step
        (FULL: 40 s); a slower start shortens the smoke step, not the margin."""
        return self.total_seconds - self.margin_seconds - self.smoke_seconds - self.throughput_seconds - \
            self.verify_seconds


FULL = Sizes()
TINY = Sizes(experiments=(("baselines", "ll4al_cifar10"),), other_methods=("entropy",), processes=2,
             total_seconds=3600, smoke_seconds=600, case_seconds=600, bench_archs=("resnet18_cifar",),
             bench_images=256, bench_width=0.0625, throughput_seconds=600, verify_seeds=1, verify_seconds=600,
             verify_set=("train.epochs=1", "model.width=0.0625", "protocol.cycles=2", "protocol.budget=50",
                         "protocol.subset=0", "data.test_subset=100"))


class Deadline:
    """The end of the check: `total_seconds` after the process started, less the margin."""

    def __init__(self, sizes: Sizes):
        self.end = time.perf_counter() - seconds_since_process_start() + sizes.total_seconds - sizes.margin_seconds

    def limit(self, step_seconds: float, later_seconds: float) -> float:
        """A step's budget: its own, or less when the steps after it (`later_seconds`) would not fit otherwise."""
        return max(0.0, min(step_seconds, self.end - time.perf_counter() - later_seconds))


@dataclass
class Case:
    """One `./reproduce.sh` process and what came of it."""

    name: str
    argv: list[str]
    returncode: int | None = None            # None: not started within the step's budget
    seconds: float = 0.0
    last_line: str = ""
    stdout: str = field(default="", repr=False)

    @property
    def result(self) -> str:
        if self.returncode is None:
            return "not run (time budget)"
        return {0: "pass", 2: "refused", TIMED_OUT: "timed out", STOPPED: "not finished (time budget)"}.get(
            self.returncode, "CRASH")


def command(args) -> int:
    from core.tools.arguments import check_out_folder, resolve_data_root_arg, user_path

    if not torch.cuda.is_available():
        raise UserError("gpucheck checks a CUDA GPU and PyTorch sees none here (torch "
                        f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); run it on a GPU machine")
    out = user_path(args.out)
    check_out_folder(out)
    data_root = resolve_data_root_arg(args.data_root)
    report, crashed = run_checks(torch.device("cuda"), data_root, out, FULL)
    print(report, end="")
    print(f"written: {out / REPORT_FILE}")
    return 1 if crashed else 0


def run_checks(device: torch.device, data_root: Path, out: Path, sizes: Sizes) -> tuple[str, bool]:
    """The three steps on `device` at `sizes`, their runs in a fresh folder below `out` removed at the end (a
    second gpucheck trains again rather than resuming); writes out/gpucheck.md and returns its text and whether
    anything crashed."""
    from core.lib.results import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    deadline = Deadline(sizes)
    seconds = {"start": seconds_since_process_start()}
    with tempfile.TemporaryDirectory(prefix="runs-", dir=out) as runs:
        started = time.perf_counter() - seconds["start"]
        cifar10 = load_dataset("cifar10", data_root)     # decoded once here: the smoke processes read the cache
        seconds["data"] = time.perf_counter() - started - sum(seconds.values())
        processes = sizes.processes or max(2, (os.cpu_count() or 4) - 2)
        budget = deadline.limit(sizes.smoke_seconds, sizes.throughput_seconds + sizes.verify_seconds)
        smoke = run_cases(smoke_cases(device, data_root, Path(runs) / "smoke", sizes), processes, budget,
                          sizes.case_seconds)
        seconds["smoke"] = time.perf_counter() - started - sum(seconds.values())
        throughput = measure_throughput(device, cifar10.train, sizes,
                                        deadline.limit(sizes.throughput_seconds, sizes.verify_seconds))
        seconds["throughput"] = time.perf_counter() - started - sum(seconds.values())
        verify = verify_case(device, data_root, Path(runs) / "verify", sizes)
        run_cases([verify], 1, deadline.limit(sizes.verify_seconds, 0), sizes.verify_seconds)
        seconds["verify"] = time.perf_counter() - started - sum(seconds.values())
    report = "\n".join([
        header(device, data_root, len(cifar10.train), seconds, sizes),
        f"## 1. Smoke: every experiment and every method ({seconds['smoke']:.0f} s, {processes} processes at "
        "once)", "", smoke_table(smoke), "",
        f"## 2. Training throughput ({seconds['throughput']:.0f} s)", "", throughput_table(throughput, sizes), "",
        f"## 3. verify baselines ll4al_cifar10 --cycles 1 --seeds {sizes.verify_seeds} --methods "
        f"{sizes.verify_methods} ({seconds['verify']:.0f} s)", "", verify_section(verify), ""])
    write_atomic(out / REPORT_FILE, report)
    return report, machine_failed(smoke, verify)


def machine_failed(smoke: list[Case], verify: Case) -> bool:
    """A smoke case or verify crashed; verify's exit 1 (a point outside its tolerance) is a finding about the
    reproduction, shown in the report, not a failure of the machine."""
    return crashed(smoke) or (verify.returncode != 1 and crashed([verify]))


def crashed(cases: list[Case]) -> bool:
    """A case crashed, or ran past its own limit; a refusal (exit 2: data missing, say) and a case the step's
    budget stopped or never started are reported, not failures of the machine."""
    return any(case.result in ("CRASH", "timed out") for case in cases)


# ---------------------------------------------------------------- the steps

def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "core", *args]


def smoke_cases(device: torch.device, data_root: Path, out: Path, sizes: Sizes) -> list[Case]:
    from core.lib import experiments
    from core.lib.strategy import STRATEGIES

    experiments.papers()
    chosen = sizes.experiments or sorted(experiments.EXPERIMENTS)
    common = ["--profile", "smoke", "--seeds", "1", "--device", device.type, "--data-root", str(data_root),
              "--out", str(out), "--quiet"]
    cases = [Case(f"{paper}/{name}", cli_argv("run", paper, name, *common)) for paper, name in chosen]
    covered = {method for key in experiments.EXPERIMENTS
               for method in experiments.method_status(experiments.EXPERIMENTS[key].config("smoke"))[0]}
    others = sorted(set(STRATEGIES) - covered) if sizes.other_methods is None else list(sizes.other_methods)
    if others:
        cases.append(Case(f"baselines/ll4al_cifar10 --methods {','.join(others)}",
                          cli_argv("run", "baselines", "ll4al_cifar10", "--methods", ",".join(others), *common)))
    return cases


def run_cases(cases: list[Case], processes: int, budget: float, case_seconds: float) -> list[Case]:
    """Run each case's process, `processes` at once, within `budget` seconds for them all: a case not started by
    then is not run, one still running then is stopped (not finished); one running longer than `case_seconds`
    on its own is stopped too (timed out)."""
    deadline = time.perf_counter() + budget
    environment = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, processes)))}

    def run(case: Case) -> Case:
        started = time.perf_counter()
        if started >= deadline:
            return case
        limit = min(case_seconds, deadline - started)
        try:
            done = run_group(case.argv, limit, env=environment, cwd=REPO)     # its workers end with it
            case.returncode, case.stdout = done.returncode, done.stdout
            lines = (done.stderr or done.stdout).strip().splitlines()
            case.last_line = lines[-1] if lines else ""
        except subprocess.TimeoutExpired:
            stopped_by_budget = limit < case_seconds
            case.returncode = STOPPED if stopped_by_budget else TIMED_OUT
            case.last_line = f"stopped after {limit:.0f} s" + (" (the step's time budget)" if stopped_by_budget else "")
        case.seconds = time.perf_counter() - started
        return case

    with ThreadPoolExecutor(processes) as pool:
        return list(pool.map(run, cases))


def measure_throughput(device: torch.device, train, sizes: Sizes, budget: float) -> list[dict]:
    """Per network: the trainer and the bare step as the paper profile runs (core.tools.bench), then on CUDA the
    trainer under every runtime.compile setting of `sizes.bench_compile`; a timing not started within `budget`
    seconds has no figure (the eager ones come first, so a slow compilation costs only compiled figures)."""
    from core.lib.datasets import subsample
    from core.tools.bench import time_bare_loop, time_our_trainer

    split = subsample(train, min(sizes.bench_images, len(train)), "bench")
    compiled = sizes.bench_compile if device.type == "cuda" else ()
    rows, deadline = [], time.perf_counter() + budget
    for arch in sizes.bench_archs:
        row = {"arch": arch, "images": len(split)}
        if time.perf_counter() < deadline:
            torch.manual_seed(0)
            row["ours"] = time_our_trainer(split, device, arch, sizes.bench_width, 128)
            row["bare"] = time_bare_loop(split, device, arch, sizes.bench_width, 128)
        rows.append(row)
    for row in rows:
        for setting in compiled:
            if "ours" in row and time.perf_counter() < deadline:
                row[setting] = time_our_trainer(split, device, row["arch"], sizes.bench_width, 128, compile=setting)
    return rows


def verify_case(device: torch.device, data_root: Path, out: Path, sizes: Sizes) -> Case:
    overrides = [part for item in sizes.verify_set for part in ("--set", item)]
    return Case("verify", cli_argv("verify", "baselines", "ll4al_cifar10", "--cycles", "1", "--seeds",
                                   str(sizes.verify_seeds), "--methods", sizes.verify_methods, "--jobs",
                                   str(min(3, sizes.verify_seeds)), "--device", device.type, "--data-root",
                                   str(data_root), "--out", str(out), "--quiet", *overrides))


# ---------------------------------------------------------------- gpucheck.md

def header(device: torch.device, data_root: Path, train_images: int, seconds: dict, sizes: Sizes) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine()}"
    steps = ", ".join(f"{step} {value:.0f} s" for step, value in seconds.items())
    return "\n".join([
        "# gpucheck", "",
        f"- device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, "
        f"{os.cpu_count()} CPU cores",
        f"- data: {data_root}, {train_images:,} CIFAR-10 training images (of 50,000)",
        f"- time from the process's start: {sum(seconds.values()):.0f} s ({steps}); budget "
        f"{sizes.total_seconds:.0f} s on one GPU, of which {sizes.margin_seconds:.0f} s kept for the report and the "
        "exit", ""])


def smoke_table(cases: list[Case]) -> str:
    counts = {result: sum(c.result == result for c in cases)
              for result in ("pass", "refused", "CRASH", "timed out", "not finished (time budget)",
                             "not run (time budget)")}
    lines = [", ".join(f"{count} {result}" for result, count in counts.items() if count) + ".", "",
             "| case | result | seconds | last line |", "|---|---|---:|---|"]
    lines += [f"| {c.name} | {c.result} | {c.seconds:.0f} | {'' if c.result == 'pass' else shown_line(c)} |"
              for c in cases]
    return "\n".join(lines)


def shown_line(case: Case) -> str:
    """The last line a case printed, as a table cell."""
    return case.last_line.replace("|", "/")[:200]


def throughput_table(rows: list[dict], sizes: Sizes) -> str:
    from core.tools.bench import STEP_TIMED

    compiled = [setting for setting in sizes.bench_compile if any(setting in row for row in rows)]
    lines = [f"One epoch, batch 128, width {sizes.bench_width:g}, as the paper profile runs (deterministic, float32). "
             f"{STEP_TIMED}", "",
             "| network | images | trainer (images/s) | bare step (images/s) | trainer / bare |"
             + "".join(f" trainer, compile={s} | compile={s} / eager |" for s in compiled),
             "|---|---:|---:|---:|---:|" + "---:|---:|" * len(compiled)]
    lines += [f"| {r['arch']} | {r['images']:,} | {r['ours']:,.0f} | {r['bare']:,.0f} | {r['ours'] / r['bare']:.2f} |"
              + "".join(f" {r[s]:,.0f} | {r[s] / r['ours']:.2f}x |" if s in r else " not run (time budget) | |"
                        for s in compiled)
              if "ours" in r else f"| {r['arch']} | {r['images']:,} | not run (time budget) | | |" for r in rows]
    if not compiled and sizes.bench_compile:
        lines += ["", f"runtime.compile ({', '.join(sizes.bench_compile)}) is timed on CUDA only: skipped here."]
    return "\n".join(lines)


def verify_section(case: Case) -> str:
    if case.returncode in (0, 1):
        verdict = "all checked points within tolerance" if case.returncode == 0 else \
            "a point lies outside its tolerance (a finding about the reproduction, not the machine)"
        table = case.stdout[case.stdout.find("Reported vs reproduced"):] if "Reported vs" in case.stdout else \
            case.stdout
        return f"exit {case.returncode}: {verdict}.\n\n{table.strip()}"
    return f"{case.result}: {case.last_line}"
