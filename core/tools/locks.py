"""Folder locks that hold across processes and hosts, also on NFS.

A lock is a small file created with O_CREAT | O_EXCL (atomic on local filesystems and on NFSv3+), holding its
owner's pid, host and a random token. flock/fcntl locks are not used because NFS clients implement them
unreliably. While held, a thread touches the file every `heartbeat` seconds. A lock is stale, and taken over,
when its owner is a dead (or zombie) process on this host, or when its modification time has not changed for
`stale_after` seconds of watching: the waiter compares the file's mtime with itself, never with its own clock, so
clock skew between hosts does not matter. Take-overs are serialised by a second O_EXCL file and re-check the token
under it, so two waiters can never both remove a lock, nor remove one that was just created by a third process.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.lib.errors import UserError
from core.tools.processes import proc_stat

HEARTBEAT_SECONDS = 20.0
STALE_AFTER_SECONDS = 180.0        # well above NFS attribute caching (actimeo is at most 60 s by default)
POLL_SECONDS = 0.5


class LockBusy(UserError):
    """The lock is held by another live process."""

    def __init__(self, path: Path, owner: dict):
        self.path, self.owner = path, owner
        super().__init__(f"{path.parent} is in use by {describe_owner(owner)}; wait for it to finish, or stop "
                         f"that process (a lock of a dead process is taken over by itself)")


def describe_owner(owner: dict) -> str:
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"


def _pid_alive(pid: int) -> bool:
    """False for a process that is gone or a zombie: one killed (a stopped run's worker, the parent of a test's
    Popen) keeps its pid until its parent reaps it, but holds nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:                   # no /proc (macOS), or it ended meanwhile: kill said it was there
        return True


def _read_owner(path: Path) -> dict | None:
    """The owner written in a lock file; {} while it is being written or unreadable; None when it is gone."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@dataclass
class _Watch:
    """What a waiter has seen of one holder: its token, the last mtime and when (monotonic) it last changed."""

    token: str
    mtime: int | None
    since: float


class FolderLock:
    """An exclusive lock on a folder, held through the file `path`; usable as a context manager."""

    def __init__(self, path: Path, heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_AFTER_SECONDS):
        self.path = Path(path)
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.token = uuid.uuid4().hex
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: _Watch | None = None

    # ------------------------------------------------------------ acquiring

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; False when a live process holds it."""
        if self._create():
            return True
        owner = _read_owner(self.path)
        if owner is None:                      # released between our attempt and the read
            return self._create()
        if self._is_stale(owner):
            self._take_over(owner.get("token", ""))
            return self._create()
        return False

    def acquire(self, wait: bool = True, on_wait=None, timeout: float | None = None) -> None:
        """Take the lock; while it is busy, call `on_wait(owner)` once and poll (or raise LockBusy if not wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while not self.try_acquire():
            owner = _read_owner(self.path) or {}
            if not wait or (deadline is not None and time.monotonic() > deadline):
                raise LockBusy(self.path, owner)
            if on_wait and not told:
                on_wait(owner)
                told = True
            time.sleep(POLL_SECONDS)
        self._start_heartbeat()

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as stream:
            stream.write(json.dumps(self.owner))
            stream.flush()
            os.fsync(stream.fileno())
        self._watch = None
        return True

    def _is_stale(self, owner: dict) -> bool:
        token = owner.get("token", "")
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
                and not _pid_alive(owner["pid"]):
            return True
        mtime, now = _mtime(self.path), time.monotonic()
        if self._watch is None or self._watch.token != token or self._watch.mtime != mtime:
            self._watch = _Watch(token, mtime, now)
            return False
        return now - self._watch.since > self.stale_after

    def _take_over(self, stale_token: str) -> None:
        """Remove the lock file if it still holds `stale_token`; one process at a time does this."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            handle = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._clear_dead_guard(guard)
            return
        os.close(handle)
        try:
            if (_read_owner(self.path) or {}).get("token", "") != stale_token:
                return                              # released or taken over meanwhile
            aside = self.path.with_name(f"{self.path.name}.stale-{self.token}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                return
            if (_read_owner(aside) or {}).get("token", "") != stale_token:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)       # not the lock we judged stale: put it back, never clobbering
            aside.unlink()
        finally:
            guard.unlink(missing_ok=True)

    def _clear_dead_guard(self, guard: Path) -> None:
        """A take-over takes milliseconds: a guard older than the stale age was left by a killed process."""
        mtime = _mtime(guard)
        if mtime is not None and time.time() - mtime / 1e9 > self.stale_after:
            guard.unlink(missing_ok=True)

    # ------------------------------------------------------------ holding

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):
                if self.held():
                    os.utime(self.path)

    def held(self) -> bool:
        return (_read_owner(self.path) or {}).get("token") == self.token

    def verify(self) -> None:
        """Raise if the lock was taken over (this process stalled longer than the stale age): never write then."""
        if not self.held():
            raise UserError(f"lost the lock {self.path} (this process stalled for over {self.stale_after:.0f} s "
                            f"and another took the folder over); run the command again to resume")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
