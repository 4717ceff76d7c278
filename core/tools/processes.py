"""Every process a command starts ends with it.

- A worker (a `--jobs` worker, the queue's manager process, a command that gpucheck starts) calls
  `exit_with_parent`: on Linux the kernel kills it when its parent dies (PR_SET_PDEATHSIG, which also covers
  SIGKILL and the OOM killer), and everywhere a thread checks every POLL_SECONDS that its parent is the one it
  started with, and that the parent has not asked it to stop. A worker that ends this way leaves its folder's
  lock behind, which the next command takes over at once: its owner is a dead process on this host
  (core.tools.locks).
- `stop_on_sigterm`: while a parent runs workers, SIGTERM (a scheduler, `kill`) raises `Stopped` in it, so that
  it asks its workers to stop, waits for them and exits with status 143.
- `run_group`: a child command in a process group of its own, the whole group killed at its time limit and at
  its end; the child is told to exit with its parent (EXIT_WITH_PARENT), so a killed caller leaves nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

POLL_SECONDS = 0.5
EXIT_WITH_PARENT = "AL_EXIT_WITH_PARENT"     # environment: the pid whose death ends this command
STOPPED_STATUS = 128 + signal.SIGTERM         # the shell's status of a process ended by SIGTERM
PR_SET_PDEATHSIG = 1                          # linux/prctl.h


class Stopped(SystemExit):
    """SIGTERM reached a process that runs workers; raised in its main thread."""

    def __init__(self):
        super().__init__(STOPPED_STATUS)


def exit_with_parent(parent: int, stop=None, kernel: bool = True) -> None:
    """End this process as soon as `parent` is no longer its parent or `stop` (a multiprocessing Event) is set.
    `kernel` False leaves the portable polling alone (the tests check both)."""
    if kernel and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:                # it died before the line above took effect
        os._exit(STOPPED_STATUS)
    threading.Thread(target=_watch, args=(parent, stop), name="parent watch", daemon=True).start()


def _watch(parent: int, stop) -> None:
    # wait returns True once the parent asks to stop; a plain Event is never set
    pause = (stop if stop is not None else threading.Event()).wait
    while not pause(POLL_SECONDS) and os.getppid() == parent:
        pass
    # no clean-up: the parent is gone or stopping, and a dead process's lock is free for the next command
    os._exit(STOPPED_STATUS)


def exit_with_parent_if_asked() -> None:
    """For a command started by `run_group`: watch the parent named in the environment. The variable is removed
    so that this command's own children, started by the command itself, watch it rather than its parent."""
    parent = os.environ.pop(EXIT_WITH_PARENT, "")
    if parent.isdigit():
        exit_with_parent(int(parent))


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM raises Stopped in the main thread while inside; a second SIGTERM ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_group(argv: list[str], timeout: float, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(argv, capture_output=True, text=True) in a new session (its own process group); at the time
    limit, at its end, and when this process is interrupted, every process left in the group is killed. Raises
    subprocess.TimeoutExpired, with what it printed, after the kill. Its output goes to files, not pipes, so that
    a process it leaves behind cannot hold this one waiting for the end of a pipe."""
    env = {**(os.environ if env is None else env), EXIT_WITH_PARENT: str(os.getpid())}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(argv, env=env, start_new_session=True, stdout=stdout, stderr=stderr, text=True,
                                   **popen)
        try:
            process.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_group(process.pid)
            process.wait()
        stdout.seek(0)
        stderr.seek(0)
        printed, errors = stdout.read(), stderr.read()
    if timed_out:
        raise subprocess.TimeoutExpired(argv, timeout, printed, errors)
    return subprocess.CompletedProcess(argv, process.returncode, printed, errors)


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat from field 3 (the state) on: the command name before them may hold spaces,
    so they are read after its closing parenthesis. OSError where there is no /proc or no such process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def seconds_since_process_start() -> float:
    """From the kernel's record of this process's start (Linux: /proc/self/stat against the boot clock), so that
    the interpreter's start and the imports count; elsewhere from this module's import."""
    try:
        ticks = int(proc_stat("self")[19])     # field 22, starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return time.perf_counter() - IMPORTED


IMPORTED = time.perf_counter()


def kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
