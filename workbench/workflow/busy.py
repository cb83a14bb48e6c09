"""A speaker folder's "training in progress" mark, visible to every process.

While :func:`workbench.workflow.train` runs, it holds an exclusive ``fcntl`` lock on
``<speaker>/.training``. Anyone may ask :func:`training_in_progress` (a non-blocking try
of the same lock): a live correction is then refused with a plain message rather than
changing the takes under a run. The lock belongs to the open file, so a killed run
leaves no stale mark behind. On systems without ``fcntl`` (Windows) nothing is ever busy.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> with training_lock(root):
...     training_in_progress(root) is not None
True
>>> training_in_progress(root) is None
True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TRAINING_MARK", "training_in_progress", "training_lock"]

TRAINING_MARK = ".training"

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None


@contextlib.contextmanager
def training_lock(speaker_dir: str | Path) -> Iterator[None]:
    """Hold the folder's training mark for the block (a folder that cannot be written is simply not marked)."""
    path = Path(speaker_dir) / TRAINING_MARK
    fd = None
    if _fcntl is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError:  # read-only folder, or another run holds it: training itself decides about those
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def training_in_progress(speaker_dir: str | Path) -> str | None:
    """``"a training run is using this speaker's folder"`` while one holds the mark, else None."""
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
        return "a training run is using this speaker's folder"
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
