"""The export folder appears complete or not at all.

Everything is written into a hidden temporary folder next to the target
(``.<name>.<random>.tmp``, on the same disk), every file is fsynced, and only then is the
folder renamed into place (``os.replace``; with ``force`` the old folder is first moved
aside, then removed). A failure at any point (a full or read-only disk, a refused merge, an
engine error) removes the temporary folder and leaves an existing target untouched.

Before anything is written, the free space on the target's disk is compared with the
export's expected size, so a disk that is too small gets a plain message at once rather
than after minutes of work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workbench._atomic import disk_error_message, fsync_dir
from workbench.errors import ExportError

__all__ = ["check_target", "staged_folder"]

_HEADROOM = 1.2  # free space needed, as a multiple of the expected size (temporary files, rounding)


def check_target(out: str | os.PathLike, *, force: bool) -> Path:
    """``out`` as a path, refused when it exists without ``force`` or is not a folder."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"{out} exists and is not a folder; choose another --out folder")
        if not force:
            raise ExportError(f"{out} already exists; choose another --out folder, or add --force to replace it "
                              "(the old folder is kept until the new one is complete)")
    return out


def _fsync_tree(root: Path) -> None:
    """Make every file durable, readable like any other file (temporary files are private: 0600/0700)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            path.chmod(0o644)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            path.chmod(0o755)
    root.chmod(0o755)
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(root)


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, *, force: bool = False, need_bytes: int = 0) -> Iterator[Path]:
    """A temporary folder to write the export into; renamed to ``out`` when the block ends cleanly.

    Args:
        out: the export folder to create (or, with ``force``, to replace).
        force: replace an existing folder (only after the new one is complete).
        need_bytes: the expected size of the export, checked against the free space first.

    Raises:
        ExportError: ``out`` exists (without ``force``), the disk is too small, full or
            read-only (in words a person can act on).
    """
    out = check_target(out, force=force)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(parent).free
    except OSError as err:
        raise ExportError(disk_error_message(err, out)) from None
    if need_bytes and free < need_bytes * _HEADROOM:
        raise ExportError(f"{disk_error_message(OSError(errno.ENOSPC, 'No space left'), out)} The export needs about "
                          f"{need_bytes * _HEADROOM / 1e6:.0f} MB and {free / 1e6:.0f} MB are free.")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as err:
        raise ExportError(disk_error_message(err, out)) from None
    try:
        yield tmp
        _fsync_tree(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old / out.name, out)  # put the old export back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        fsync_dir(parent)
    except OSError as err:
        raise ExportError(disk_error_message(err, out)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
