"""One writer per run folder: ``OUT/.lock``, created exclusively, naming who holds it.

The lock file is JSON written once at creation (O_CREAT | O_EXCL, so of two processes racing for a folder
exactly one creates it):

    {"pid": int, "host": str, "started": unix time, "command": str, "token": str, "pid_start": str | null}

A second writer finds the file and gets a one-line ValueError naming the holder. A lock is *stale*, and is
taken over with a message on stderr, when

- its holder ran on this host and that process is gone (or its pid now belongs to a process started at
  another time: ``pid_start`` is the process start time from /proc, where there is one), or
- its holder ran on another host (a shared file system) and the file has not been touched for
  ``stale_after`` seconds: the holder touches it every ``heartbeat`` seconds from a daemon thread while it
  holds it, so only a dead (or suspended) writer falls that far behind.

A file that cannot be parsed (a writer killed between creating and filling it) is stale once it is older
than a few seconds. The lock is re-entrant within one process (``reflow`` holds it around pair generation
and training, and the trainer takes it again inside); the outermost release removes the file, and only if
it still carries this holder's token.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["LOCK", "RunLock", "read_lock"]

LOCK = ".lock"
HEARTBEAT_S = 30.0  # how often a holder touches its lock
STALE_AFTER_S = 600.0  # a lock from another host untouched this long is stale
_UNPARSED_GRACE_S = 5.0  # an unreadable lock younger than this may still be being written

# Locks this process holds: resolved lock path -> [depth, token, stop event of the heartbeat thread].
_HELD: dict[str, list[Any]] = {}
_HELD_GUARD = threading.Lock()


def _process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of stat: after "pid (comm)" it is the 20th


def _pid_alive(pid: int, pid_start: str | None) -> bool:
    """Whether process `pid` on this host is the one that wrote a lock (same start time where known)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if pid_start is not None:
        now = _process_start(pid)
        if now is not None and now != pid_start:
            return False  # the pid was reused by another process
    return True


def read_lock(folder: str | Path) -> dict[str, Any] | None:
    """The holder recorded in FOLDER/.lock ({} when the file exists but cannot be parsed); None without one."""
    path = Path(folder) / LOCK
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    text = str(info.get("command") or "")
    command = f" ({text[:77] + '...' if len(text) > 80 else text})" if text else ""
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}{command}"


class RunLock:
    """``with RunLock(out, command):`` holds OUT/.lock for the block (creating OUT if needed).

    Raises ValueError (one line) when another live writer holds the folder, or when OUT cannot be
    created or written (a read-only or misspelt --out): both before any work starts.
    """

    def __init__(self, folder: str | Path, command: str = "", stale_after: float = STALE_AFTER_S,
                 heartbeat: float = HEARTBEAT_S) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.command = command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])
        self.stale_after, self.heartbeat = float(stale_after), float(heartbeat)
        self._key: str | None = None
        self._created = False  # whether acquire made the folder (an empty one is removed again on release)

    # --------------------------------------------------------------------------------------------- acquire
    def acquire(self) -> RunLock:
        try:
            self._created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the run folder {self.folder} ({e.strerror or e}); choose a "
                             "writable --out") from None
        key = str(self.path.resolve())
        with _HELD_GUARD:
            if key in _HELD:  # re-entrant: this process already holds it
                _HELD[key][0] += 1
                self._key = key
                return self
        token = uuid.uuid4().hex
        for _ in range(3):  # a take-over can race with another; three tries settle it
            if self._create(token):
                break
            self._take_over_if_stale()
        else:
            raise ValueError(f"{self.folder} is locked by {_describe(read_lock(self.folder) or {})}")
        stop = threading.Event()
        threading.Thread(target=self._beat, args=(stop,), daemon=True, name="straightflow-lock").start()
        with _HELD_GUARD:
            _HELD[key] = [1, token, stop]
        self._key = key
        return self

    def _create(self, token: str) -> bool:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command,
                "token": token, "pid_start": _process_start(os.getpid())}
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise ValueError(f"cannot write to the run folder {self.folder} ({e.strerror or e}); choose a "
                             "writable --out") from None
        try:
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise ValueError(f"cannot write to the run folder {self.folder} ({e.strerror or e})") from None
        os.close(fd)
        return True

    def _stale_reason(self, info: dict[str, Any]) -> str | None:
        """Why the lock described by `info` is stale, or None while its holder may be alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        if not info:
            return "unreadable and not being written" if age > _UNPARSED_GRACE_S else None
        pid, host = info.get("pid"), info.get("host")
        if host == socket.gethostname():
            alive = isinstance(pid, int) and _pid_alive(pid, info.get("pid_start"))
            return None if alive else "that process is no longer running"
        if age > self.stale_after:
            return f"another host, untouched for {age:.0f} s"
        return None

    def _take_over_if_stale(self) -> None:
        info = read_lock(self.folder)
        if info is None:
            return  # released meanwhile: try to create it again
        reason = self._stale_reason(info)
        if reason is None:
            if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                raise ValueError(f"{self.folder} is already being written by this process")
            raise ValueError(f"{self.folder} is locked by {_describe(info)}; another straightflow process is "
                             f"writing this run (if none is, delete {self.path})")
        if reason == "released":
            return
        if read_lock(self.folder) != info:  # changed under us: someone else took it over first
            return
        self.path.unlink(missing_ok=True)
        print(f"straightflow: taking over the stale lock {self.path} of {_describe(info)}: {reason}",
              file=sys.stderr)

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                pass

    # --------------------------------------------------------------------------------------------- release
    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is None:
                return
            held[0] -= 1
            if held[0] > 0:
                return
            del _HELD[key]
        _, token, stop = held
        stop.set()
        info = read_lock(self.folder)
        if info and info.get("token") == token:
            self.path.unlink(missing_ok=True)
        if self._created:
            try:
                self.folder.rmdir()  # only if nothing was written: a refused command leaves no empty --out
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
