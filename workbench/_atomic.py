"""Crash-safe file writes: the file on disk is either the old one or the complete new one.

Write to a temporary file in the same folder, flush and fsync it, rename it
over the target (``os.replace``, atomic on POSIX and Windows), then fsync the
folder so the rename itself survives a power cut.

**One rule for file modes:** everything written here (recordings, speaker files,
personal models, reports and their CSV, checkpoints) is private to the user who
runs the workbench (mode 0600, whatever the umask): it is patient data. The
temporary file is created 0600 (``mkstemp``) and keeps that mode when renamed. Files written
in place (a speaker folder's ``manifest.jsonl``, its ``.lock`` and ``.training`` marks) are
opened with :func:`open_private`, which holds them to the same rule. A failed write (full disk,
read-only folder) removes its temporary file; a crash leaves at worst a hidden
``.<name>.*.tmp`` file, which readers ignore (:func:`is_temp_name`) and
:meth:`workbench.corpus.SpeakerCorpus.open` removes.

:func:`disk_error_message` turns the ``OSError`` of a failed write into words a
person can act on ("the disk is full: free some space ...").
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["PRIVATE_MODE", "atomic_file", "disk_error_message", "disk_reason", "fsync_dir", "is_temp_name",
           "open_private", "write_atomic_with", "write_bytes_atomic"]

_TMP_SUFFIX = ".tmp"
PRIVATE_MODE = 0o600  # every file written here: read and write for its owner only


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """A temporary file beside ``path`` (mode 0600), as ``(fd, name)``: when the block ends normally it
    replaces ``path`` and the folder is synced; when the block raises, it is removed. The block owns ``fd``."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)  # 0600
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` durably.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_file(target, "w") as f:
    ...     _ = f.write("hello")
    >>> target.read_text()
    'hello'
    """
    with _replacing(path) as (fd, _tmp), os.fdopen(fd, mode) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def open_private(path: str | os.PathLike, flags: int) -> int:
    """``os.open(path, flags)`` for a file written in place: created 0600, and an existing file of
    this user that others may read (made before this rule, or by hand) is made 0600 when opened to write.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "manifest.jsonl"
    >>> os.close(open_private(target, os.O_WRONLY | os.O_CREAT))
    >>> oct(target.stat().st_mode & 0o777)
    '0o600'
    """
    fd = os.open(path, flags, PRIVATE_MODE)
    if flags & (os.O_WRONLY | os.O_RDWR) and hasattr(os, "fchmod"):  # POSIX
        with contextlib.suppress(OSError):  # another user's file, or a file system without modes: leave it
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, PRIVATE_MODE)
    return fd


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)


def write_atomic_with(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Replace ``path`` with what ``writer(temporary_path)`` writes: for a function that takes a path
    (e.g. ``Comparison.to_csv``). The temporary file exists (mode 0600) before ``writer`` opens it, so
    the result is private, atomic and durable like :func:`atomic_file`'s.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "b.txt"
    >>> _ = write_atomic_with(target, lambda p: p.write_text("hi"))
    >>> target.read_text(), oct(target.stat().st_mode & 0o777)
    ('hi', '0o600')
    """
    path = Path(os.fspath(path))
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        writer(Path(tmp))
        with open(tmp, "rb+") as fh:  # durable before it becomes visible
            os.fsync(fh.fileno())
        os.chmod(tmp, PRIVATE_MODE)  # in case the writer replaced the file rather than writing into it
    return path


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file of :func:`atomic_file` (``.<name>.<random>.tmp``).

    >>> is_temp_name(".take.flac.k2j4_x.tmp"), is_temp_name("take.flac")
    (True, False)
    """
    return name.startswith(".") and name.endswith(_TMP_SUFFIX) and name.count(".") >= 3


_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})
_DENIED = frozenset({errno.EACCES, errno.EPERM})


def disk_reason(err: OSError) -> str:
    """Why a write failed, in a few plain words ("the disk is full", "the disk or folder is read-only", ...).

    >>> disk_reason(OSError(errno.EROFS, "Read-only file system"))
    'the disk or folder is read-only'
    """
    if err.errno in _FULL:
        return "the disk is full"
    if err.errno == errno.EROFS:
        return "the disk or folder is read-only"
    if err.errno in _DENIED:
        return "this account may not write there"
    return str(err.strerror or err)


def disk_error_message(err: OSError, path: str | os.PathLike) -> str:
    """What went wrong when writing ``path``, and what to do, in plain words.

    >>> disk_error_message(OSError(errno.ENOSPC, "No space left on device"), "a/take.flac")
    "Could not write 'a/take.flac': the disk is full. Free some space (or move the folder to a disk with room) and try again."
    """
    where = f"Could not write '{os.fspath(path)}'"
    if err.errno in _FULL:
        return f"{where}: the disk is full. Free some space (or move the folder to a disk with room) and try again."
    if err.errno == errno.EROFS:
        return (f"{where}: the disk or folder is read-only (a locked USB stick, a CD, a read-only network share "
                "or an unpacked archive). Copy the folder to a place you can write to, such as your Documents, "
                "and use the copy.")
    if err.errno in _DENIED:
        return (f"{where}: this account may not write there. Copy the folder to a place you can write to, such as "
                "your Documents, or ask whoever manages this computer for write access.")
    return f"{where}: {err.strerror or err}. Check that the disk is still connected and has room, then try again."
