"""Clean stops (issue 28 item 1, core/tools/processes.py): a worker ends when its parent dies or asks it to stop, a
child command's whole process group ends at its time limit, and a dead process's lock is free at once. The whole
`run --jobs 2` killed mid-cycle is in tests/test_scaleout.py (slow)."""
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from core.tools import processes
from core.tools.locks import FolderLock

REPO = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """Running, not a zombie: the state in /proc/<pid>/stat follows the command name in parentheses."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("kernel", [True, False], ids=["pdeathsig", "polling"])
def test_a_worker_ends_when_its_parent_is_killed(kernel):
    """parent -> child watching it; SIGKILL of the parent ends the child, by the kernel's parent-death signal or
    by the watching thread alone."""
    child = ("import os, time; from core.tools.processes import exit_with_parent; "
             f"exit_with_parent(os.getppid(), kernel={kernel}); print('watching', flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"c = subprocess.Popen([sys.executable, '-c', {child!r}]); "
                               "print(c.pid, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    worker = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "watching"
    parent.kill()
    parent.wait()
    assert ends_within(worker, 3 * processes.POLL_SECONDS + 1)


def test_a_pool_worker_ends_when_its_parent_asks_it_to_stop():
    """The stop event of executors.run_parallel: a worker busy with a long job ends within a poll."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with ProcessPoolExecutor(1, mp_context=context, initializer=processes.exit_with_parent,
                             initargs=(os.getpid(), stop)) as pool:
        job = pool.submit(time.sleep, 60)
        time.sleep(1)                       # the job has started
        started = time.monotonic()
        stop.set()
        with pytest.raises(BrokenProcessPool):
            job.result(timeout=10)
        assert time.monotonic() - started < 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_child_commands_whole_group_is_killed_at_its_limit_and_at_its_end(tmp_path):
    """The command starts a grandchild in its own process group (as run --jobs starts its workers); the time
    limit, and the command's own end, kill it too."""
    starts_sleeper = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; "
                      f"time.sleep(60)']); open({str(tmp_path / 'pid')!r}, 'w').write(str(p.pid)); ")
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        processes.run_group([sys.executable, "-c", starts_sleeper + "print('started', flush=True); "
                             "import time; time.sleep(60)"], timeout=2)
    assert stopped.value.output.strip() == "started"
    assert ends_within(int((tmp_path / "pid").read_text()), 2)
    done = processes.run_group([sys.executable, "-c", starts_sleeper + "print('done')"], timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "done")
    assert ends_within(int((tmp_path / "pid").read_text()), 2)


def test_a_child_command_is_told_to_exit_with_its_caller(monkeypatch):
    """run_group names the caller in the environment; the command watches it and removes the name, so that its
    own workers watch the command instead."""
    done = processes.run_group([sys.executable, "-c", f"import os; print(os.environ['{processes.EXIT_WITH_PARENT}'])"],
                               timeout=30)
    assert done.stdout.strip() == str(os.getpid())
    watched = []
    monkeypatch.setattr(processes, "exit_with_parent", watched.append)
    monkeypatch.setenv(processes.EXIT_WITH_PARENT, "4242")
    processes.exit_with_parent_if_asked()
    assert watched == [4242] and processes.EXIT_WITH_PARENT not in os.environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_lock_of_a_killed_process_is_free_at_once_even_before_it_is_reaped(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; from pathlib import Path; "
                               "from core.tools.locks import FolderLock; "
                               f"FolderLock(Path({str(tmp_path / '.lock')!r})).acquire(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    while Path(f"/proc/{holder.pid}/stat").read_text().split(") ")[1][0] != "Z":
        time.sleep(0.01)                    # a zombie: still a pid, until this test reaps it below
    assert FolderLock(tmp_path / ".lock").try_acquire()
    holder.wait()
