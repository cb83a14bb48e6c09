"""A speaker folder's "training in progress" mark, visible to every process.

While :func:`workbench.workflow.train` runs, it holds an exclusive ``fcntl`` lock on
``<speaker>/.training`` (a private file that says which process holds it and since when).
Anyone may ask :func:`training_in_progress` (a non-blocking try of the same lock): a live
correction is then refused with a plain message rather than changing the takes under a run.

The mark goes when the run ends, however it ends (finished, Stop, an error): the file is
removed while the lock is still held. A run that was killed leaves the file, but the lock
belongs to the open file and goes with the process, so that file marks nothing, and the next
run takes it over and removes it. A lock that outlives its run (a child process that inherited
it) is not believed either: the mark names its process, and a mark whose process is gone on
this computer, or that is older than :data:`STALE_AFTER_S`, is stale. On systems without
``fcntl`` (Windows) nothing is ever busy.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> with training_lock(root):
...     training_in_progress(root) is not None
True
>>> training_in_progress(root) is None, os.path.exists(os.path.join(root, TRAINING_MARK))
(True, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from workbench._atomic import open_private

__all__ = ["STALE_AFTER_S", "TRAINING_MARK", "training_in_progress", "training_lock"]

TRAINING_MARK = ".training"
#: A mark older than this (seconds) is stale whoever holds it: a personalization runs for minutes
#: (the app offers at most 10, the CLI's default is 1.5), a bank for at most a few hours.
STALE_AFTER_S = 12 * 3600.0
_MAX_MARK_BYTES = 4096

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None


def _same_file(fd: int, path: Path) -> bool:
    """True while ``path`` still names the file open as ``fd`` (the previous holder may have removed it)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(path: Path) -> dict:
    """What the mark says about its holder (``pid``, ``host``, ``started``); {} when unreadable (untrusted)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(_MAX_MARK_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stale(path: Path, *, now: float | None = None) -> bool:
    """True when the mark's lock is held but its run is over: its process is gone from this computer,
    or it is older than :data:`STALE_AFTER_S`. A mark that names no process is judged by the file's age."""
    holder = _holder(path)
    started = holder.get("started")
    if not isinstance(started, (int, float)) or isinstance(started, bool):
        try:
            started = os.stat(path).st_mtime
        except OSError:
            return False
    if (time.time() if now is None else now) - started > STALE_AFTER_S:
        return True
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # another computer's run (a shared folder), or no process named: only the age can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's process)
        return False
    return False


def _take(path: Path) -> int | None:
    """Open and lock the mark (None: a live run holds it, or the folder cannot be written or locked)."""
    for _ in range(3):
        try:
            fd = open_private(path, os.O_RDWR | os.O_CREAT)
        except OSError:  # a read-only folder: training itself decides about that
            return None
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not _stale(path):
                return None  # another run holds it: training itself decides about that
            with contextlib.suppress(OSError):
                path.unlink()  # its run is over: start a new mark (the old lock stays with the old file)
            continue
        except OSError:  # a file system without locks
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the run that held it removed it meanwhile: take the new one
    return None


@contextlib.contextmanager
def training_lock(speaker_dir: str | Path) -> Iterator[None]:
    """Hold the folder's training mark for the block and remove it after (a folder that cannot be
    written is simply not marked)."""
    path = Path(speaker_dir) / TRAINING_MARK
    fd = _take(path) if _fcntl is not None else None
    if fd is not None:
        with contextlib.suppress(OSError):
            mark = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(mark).encode())
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                if _same_file(fd, path):
                    path.unlink()  # while still locked: nobody can take the old file meanwhile
            os.close(fd)  # closing releases the lock


def training_in_progress(speaker_dir: str | Path) -> str | None:
    """``"a training run is using this speaker's folder"`` while a live run holds the mark, else None."""
    path = Path(speaker_dir) / TRAINING_MARK
    if _fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        _fcntl.flock(fd, _fcntl.LOCK_SH | _fcntl.LOCK_NB)
    except BlockingIOError:
        return None if _stale(path) else "a training run is using this speaker's folder"
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
